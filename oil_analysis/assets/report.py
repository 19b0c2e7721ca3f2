"""Gold: the fleet report of each client, one self-contained HTML page for fleet managers."""

import hashlib

import pandas as pd
from dagster import AssetExecutionContext, DataVersion, MaterializeResult, MetadataValue

from ..domain.catalog import load_catalog
from ..report import ReportParams, render_fleet_report
from ..resources.storage import StorageResource
from ..settings import get_settings
from ..storage import layout, runstate
from ..storage.publication import load_published, publish_files
from .common import (
    CLIENTS,
    client_asset,
    md_table,
    scalar_metadata,
    step_fingerprint,
    storage_kinds,
    unchanged_state,
)


@client_asset(
    "gold",
    table=False,
    kinds={"html", "pandas", *storage_kinds()},
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
    client, store = CLIENTS[context.partition_key], storage.get()
    path = layout.fleet_report_path(client.key)
    # Ages are measured against the run's report date (OIL_REPORT_DATE, else today): the same inputs
    # on the same report date write the same bytes, so the report date is one of its inputs.
    settings = get_settings()
    as_of = pd.Timestamp(settings.report_date())
    params = ReportParams(freshness_days=settings.freshness_days)
    fp = step_fingerprint(
        context,
        store,
        ["classified_reports", "machine_status_current", "stewart_limits"],
        params=params,
        client_name=client.display_name,
        catalog=load_catalog().version,
        report_date=str(as_of.date()),
    )
    # Rendered only when its inputs changed: the same inputs would give the same bytes.
    state = unchanged_state(store, client.key, "fleet_report", fp, path=path)
    if state is not None:
        return MaterializeResult(
            metadata={**state.get("metadata", {}), "unchanged": True, "unchanged_since_run": state["run_id"]},
            data_version=DataVersion(fp),
        )
    inputs = {
        "classified_reports": classified_reports,
        "machine_status_current": machine_status_current,
        "stewart_limits": stewart_limits,
    }
    classified_reports, machine_status_current, stewart_limits = (
        load_published(store, client.key, name) if runstate.is_unchanged(frame) else frame
        for name, frame in inputs.items()
    )
    newest = classified_reports["sampleDate"].max() if len(classified_reports) else None
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
    version = str(classified_reports["limits_version"].iloc[0]) if len(classified_reports) else ""
    # Atomic and listed in the manifest like the tables, so consumers (the read API) can verify it.
    publish_files(
        store,
        client.key,
        "fleet_report",
        [(path, data, None)],
        run_id=context.run_id,
        limits_version=version or None,
    )
    todo = machine_status_current[machine_status_current["machine_status"].astype(str) != "Normal"]
    metadata = {
        "path": MetadataValue.path(store.display(path)),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "report_date": str(as_of.date()),
        "newest_sample": str(pd.Timestamp(newest).date()) if newest is not None else "",
        "data_age_days": int((as_of - pd.Timestamp(newest).normalize()).days) if newest is not None else -1,
        "limits_version": version,
        "machines_needing_action": len(todo),
        "trend_charts": html.count('<figure class="trend"'),
        "preview": md_table(
            todo.sort_values("priority", ascending=False)[
                ["unitId", "machine_status", "machine_score", "latest_sample_date"]
            ]
        ),
    }
    scalars = scalar_metadata(metadata)
    scalars["path"] = store.display(path)
    state = {"fingerprint": fp, "run_id": context.run_id, "checks": [], "metadata": scalars}
    runstate.write_state(store, client.key, "fleet_report", state)
    return MaterializeResult(metadata={**metadata, "unchanged": False}, data_version=DataVersion(fp))
