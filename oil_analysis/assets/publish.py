"""The publish step of a client's gold: a dated history snapshot and the downstream notification."""

import pandas as pd
from dagster import AssetExecutionContext, DataVersion, MaterializeResult, MetadataValue

from ..pipeline import publish as publication
from ..resources.notify import (
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
from .common import client_asset, notify_kinds, status_counts, step_fingerprint, storage_kinds

GOLD_FILES = (
    "classified_reports.parquet",
    "machine_status_current.parquet",
    "limit_quality.parquet",
    "fleet_report.html",
)


def _published(store, client: str, run_id: str, asset: str, columns: list[str] | None = None) -> pd.DataFrame:
    """The published table of ``asset``: the frame this run wrote, when it ran in this process
    (no read back), else its file (only ``columns`` when given)."""
    frame = runstate.recall(run_id, store.uri, client, asset)
    if frame is None or runstate.is_unchanged(frame):
        return store.read_parquet(layout.gold_path(client, asset), columns=columns)
    return frame


@client_asset(
    "gold",
    table=False,
    deps=["classified_reports", "machine_status_current", "limit_quality", "fleet_report"],
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
    # What the message needs of the reports: counts, version and the breaches of changed machines.
    reports = _published(
        store,
        client,
        context.run_id,
        "classified_reports",
        columns=["sampleNumber", "report_status", "breached_essays", "limits_version"],
    )
    machines = _published(store, client, context.run_id, "machine_status_current")
    version = str(reports["limits_version"].iloc[0]) if len(reports) else ""
    files = publication.snapshot_history(store, client, day, context.run_id, version or None)
    changes = status_changes(
        publication.run_machine_changes(store, client, context.run_id), machines, reports
    )
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
