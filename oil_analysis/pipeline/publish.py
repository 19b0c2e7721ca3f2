"""Publication of a client's gold, without Dagster: the dated history snapshot and what changed.

Every side output goes through :func:`oil_analysis.storage.publication.publish_files` (atomic, listed
in the manifest with sha256): the history snapshot here, the fleet report and the change logs in
their steps. The notification itself (SNS, webhook) is a resource: the ``gold_publication`` asset
sends the message built from :func:`snapshot_history` and :func:`run_machine_changes`.
"""

from __future__ import annotations

import hashlib
import posixpath

from ..storage import layout
from ..storage.filesystem import Storage
from ..storage.publication import parquet_rows, publish_files


def gold_files(client: str) -> list[str]:
    """The gold files a publication announces and snapshots, in this order."""
    return [
        layout.gold_path(client, "classified_reports"),
        layout.gold_path(client, "machine_status_current"),
        layout.gold_path(client, "limit_quality"),
        layout.fleet_report_path(client),
    ]


def snapshot_history(
    store: Storage, client: str, day: str, run_id: str, limits_version: str | None
) -> list[dict]:
    """Copy each published gold file to ``gold/{client}/_history/{day}/`` (a same-day publish
    replaces that day) as one publication (manifest part ``gold_history``); returns the gold files
    as published (path, sha256, bytes)."""
    files, copies = [], []
    for path in gold_files(client):
        if not store.exists(path):
            continue
        data = store.read_bytes(path)
        rows = parquet_rows(data) if path.endswith(".parquet") else None
        copies.append((layout.history_path(client, day, posixpath.basename(path)), data, rows))
        files.append({"path": path, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})
    if copies:
        publish_files(store, client, "gold_history", copies, run_id=run_id, limits_version=limits_version)
    return files


def run_machine_changes(store: Storage, client: str, run_id: str) -> dict:
    """The ``machines`` section of this run's change log (empty when the run did not rebuild the
    machine status, e.g. a publish materialized alone)."""
    suffix = f"-{run_id[:8]}.json"
    logs = [e.path for e in store.list_files(layout.changes_dir(client) + "/") if e.path.endswith(suffix)]
    return store.read_json(logs[-1]).get("machines", {}) if logs else {}
