"""Gold: the fleet report of each client, one self-contained HTML page for fleet managers."""

import hashlib

import pandas as pd
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from ..domain.catalog import load_catalog
from ..report import ReportParams, fleet_report_path, render_fleet_report
from ..resources.storage import StorageResource
from ..settings import get_settings
from ..storage import manifest
from .common import CLIENTS, OWNER, client_partitions, md_table


@asset(
    group_name="gold",
    partitions_def=client_partitions,
    owners=[OWNER],
    kinds={"html", "pandas"},
    code_version="fleet-report-1",
    description="Fleet report per client (gold/{client}/fleet_report.html, Spanish): fleet status "
    "summary, machines needing action by priority with their recommendation, trend charts of the "
    "breached essays of every non-Normal compartment against their marginal/condemning/critical limits, "
    "limits version and data freshness. One self-contained file: inline SVG, no script, no network request.",
)
def fleet_report(
    context: AssetExecutionContext,
    storage: StorageResource,
    classified_reports: pd.DataFrame,
    machine_status_current: pd.DataFrame,
    stewart_limits: pd.DataFrame,
) -> MaterializeResult:
    client = CLIENTS[context.partition_key]
    # The data's own date, not the wall clock: the same inputs write the same bytes.
    as_of = classified_reports["sampleDate"].max() if len(classified_reports) else None
    params = ReportParams(freshness_days=get_settings().freshness_days)
    html = render_fleet_report(
        client.display_name,
        classified_reports,
        machine_status_current,
        stewart_limits,
        load_catalog(),
        as_of=as_of,
        params=params,
    )
    data = html.encode("utf-8")
    store = storage.get()
    path = fleet_report_path(client.key)
    store.write_bytes(path, data)
    todo = machine_status_current[machine_status_current["machine_status"].astype(str) != "Normal"]
    version = str(classified_reports["limits_version"].iloc[0]) if len(classified_reports) else ""
    # Listed in the manifest like the tables, so consumers (the read API) can verify what they serve.
    manifest.write_part(
        store,
        client.key,
        "fleet_report",
        [manifest.FileRecord.of(path, data, None)],
        run_id=context.run_id,
        limits_version=version or None,
    )
    return MaterializeResult(
        metadata={
            "path": MetadataValue.path(store.display(path)),
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "as_of": str(as_of.date()) if as_of is not None else "",
            "limits_version": version,
            "machines_needing_action": len(todo),
            "trend_charts": html.count('<figure class="trend"'),
            "preview": md_table(
                todo.sort_values("priority", ascending=False)[
                    ["unitId", "machine_status", "machine_score", "latest_sample_date"]
                ]
            ),
        },
    )
