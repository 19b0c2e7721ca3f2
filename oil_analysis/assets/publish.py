"""The publish step of a client's gold: a dated history snapshot and the downstream notification."""

import hashlib

import pandas as pd
from dagster import AssetExecutionContext, DataVersion, MaterializeResult, MetadataValue, asset

from ..automation.notify import (
    configured,
    notify,
    public_url,
    publication_message,
    publication_text,
    status_changes,
    topic_arn,
    webhook_url,
)
from ..resources.storage import StorageResource
from ..storage import layout, runstate
from .common import OWNER, client_partitions, notify_kinds, status_counts, step_fingerprint, storage_kinds

GOLD_FILES = (
    "classified_reports.parquet",
    "machine_status_current.parquet",
    "limit_quality.parquet",
    "fleet_report.html",
)


@asset(
    group_name="gold",
    partitions_def=client_partitions,
    deps=["classified_reports", "machine_status_current", "limit_quality", "fleet_report"],
    owners=[OWNER],
    kinds={*storage_kinds(), *notify_kinds()},
    code_version="publish-1",
    description="After the gold of a client is published: copies each gold file to "
    "gold/{client}/_history/{YYYY-MM-DD}/ (a same-day publish replaces that day) and, when "
    "NOTIFY_SNS_TOPIC_ARN / OIL_ALERT_WEBHOOK_URL are set, sends a message with the files, checksums, "
    "status counts and the machines whose status changed in the run.",
)
def gold_publication(context: AssetExecutionContext, storage: StorageResource) -> MaterializeResult:
    store, client = storage.get(), context.partition_key
    arn = topic_arn()
    fp = step_fingerprint(
        context,
        store,
        ["classified_reports", "machine_status_current", "limit_quality", "fleet_report"],
        topic=arn or "",
        webhook=public_url(webhook_url()) if webhook_url() else "",
    )
    state = runstate.read_state(store, client, "gold_publication")
    if state and state.get("fingerprint") == fp:
        # Nothing of the gold changed since it was published and announced: no new snapshot, no message.
        context.log.info(f"gold of {client} unchanged since run {state.get('run_id')}: not published again")
        return MaterializeResult(
            metadata={**state.get("metadata", {}), "unchanged": True, "unchanged_since_run": state["run_id"]},
            data_version=DataVersion(fp),
        )
    day = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d")
    files = []
    for name in GOLD_FILES:
        path = f"gold/{client}/{name}"
        if not store.exists(path):
            continue
        data = store.read_bytes(path)
        store.write_bytes(layout.history_path(client, day, name), data)
        files.append({"path": path, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})
    reports = store.read_parquet(layout.gold_path(client, "classified_reports"))
    machines = store.read_parquet(layout.gold_path(client, "machine_status_current"))
    version = str(reports["limits_version"].iloc[0]) if len(reports) else ""
    changes = status_changes(run_machine_changes(store, client, context.run_id), machines, reports)
    message = publication_message(
        client,
        context.run_id,
        files,
        status_counts(reports["report_status"]),
        version,
        status_counts(machines["machine_status"]),
        changes,
        len(changes),
    )
    sent = {}
    if configured():
        sent = notify(message, publication_text(message), f"oil-analysis gold published: {client}")
        context.log.info(f"notified: {sent}")
    url = webhook_url()
    metadata = {
        "history_day": day,
        "machine_status_changes": len(changes),
        "notified_topic": topic_arn() or "(NOTIFY_SNS_TOPIC_ARN not set)",
        "sns_message_id": sent.get("sns", ""),
        "notified_webhook": public_url(url) if url else "(OIL_ALERT_WEBHOOK_URL not set)",
    }
    runstate.write_state(
        store, client, "gold_publication", {"fingerprint": fp, "run_id": context.run_id, "metadata": metadata}
    )
    return MaterializeResult(
        metadata={**metadata, "files": MetadataValue.json(files), "unchanged": False},
        data_version=DataVersion(fp),
    )


def run_machine_changes(store, client: str, run_id: str) -> dict:
    """The ``machines`` section of this run's change log (empty when the run did not rebuild the
    machine status, e.g. a publish materialized alone)."""
    suffix = f"-{run_id[:8]}.json"
    logs = [e.path for e in store.list_files(f"gold/{client}/_changes/") if e.path.endswith(suffix)]
    return store.read_json(logs[-1]).get("machines", {}) if logs else {}
