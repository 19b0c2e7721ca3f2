"""Bronze: the raw lab files of each client, registered and parsed once per content."""

import pandas as pd
from dagster import AssetExecutionContext, Failure, MetadataValue

from ..pipeline.bronze import ReaderLimits, ingest_client, unknown_client_folders
from ..resources.storage import StorageResource
from ..settings import get_settings
from ..storage import layout, runstate
from ..storage.healing import check_writable, remove_stale_temps
from ..storage.registry import READER_VERSION
from .common import (
    CLIENTS,
    client_asset,
    md_table,
    scalar_metadata,
    storage_kinds,
    table_metadata,
    versioned_output,
    yield_unchanged,
)

# What a registry row says about the content (not when it was parsed or touched): its fingerprint.
CONTENT_COLUMNS = [
    "key",
    "sha256",
    "lab_format",
    "status",
    "rows_parsed",
    "rows_rejected",
    "reason",
    "parsed_path",
]


def registry_fingerprint(registry: pd.DataFrame) -> str:
    """The data version of the registry: the files' contents and parse outcomes, not their mtimes."""
    rows = registry[CONTENT_COLUMNS].astype("string").fillna("").to_numpy().tolist()
    return runstate.fingerprint("bronze_lab_files", None, {"rows": rows})


@client_asset(
    "bronze",
    kinds={"parquet", "excel", *storage_kinds()},
    metadata=table_metadata("bronze_lab_files"),
    code_version="bronze-1",
    description="Raw lab files under bronze/{client}/ (any depth): one registry row per file with its "
    "sha256, status (ok / quarantined) and parse facts. Each content is parsed once, in its own "
    "process; unreadable, oversized or parser-crashing files are copied to bronze/_quarantine/{client}/ "
    "with a .reason.json. The run starts by removing stale temp files of earlier runs and by checking "
    "that every folder it publishes to can be written (nothing is published otherwise).",
)
def bronze_lab_files(context: AssetExecutionContext, storage: StorageResource):
    client, store = CLIENTS[context.partition_key], storage.get()
    removed = remove_stale_temps(store, client.key)
    if removed:
        context.log.warning(f"removed {len(removed)} stale temp files of earlier runs: {removed[:10]}")
    problems = check_writable(store, client.key, legacy=storage.legacy_enabled())
    if problems:
        raise Failure(
            description=f"cannot publish {client.key}: {'; '.join(problems)}. Nothing was published: the "
            "previous silver, gold and manifest stay as they are (consistent).",
            metadata={"unwritable": MetadataValue.json(problems)},
        )
    unknown = unknown_client_folders(store, CLIENTS)
    for folder in unknown:
        context.log.warning(f"bronze/{folder}/ is not a registered client: its files are ignored")
    # Nothing under bronze/{client}/ added, removed, resized or touched since the registry was
    # written: the registry stands, and no file or table is read.
    entries = store.list_files(layout.bronze_dir(client.key) + "/")
    limits = ReaderLimits.from_settings(get_settings())
    listing = runstate.fingerprint(
        "bronze_listing",
        context.assets_def.code_versions_by_key.get(context.asset_key),
        {
            "files": [(e.path, e.size, e.arrived_ns) for e in entries],
            "max_file_mb": storage.max_file_mb(),
            "reader_version": READER_VERSION,
            "reader_limits": repr(limits),
        },
    )
    state = runstate.read_state(store, client.key, "bronze_lab_files")
    if state and state.get("listing") == listing and store.exists(layout.registry_path(client.key)):
        context.log.info(f"bronze of {client.key}: no raw file changed since run {state.get('run_id')}")
        files_ok = state.get("metadata", {}).get("files_ok", 0)
        yield from yield_unchanged(
            "bronze_lab_files", state["fingerprint"], state, parsed_this_run=0, reused_from_cache=files_ok
        )
        return
    batch = ingest_client(
        store,
        client,
        max_file_mb=storage.max_file_mb(),
        log=context.log.info,
        warn=context.log.warning,
        limits=limits,
    )
    reg = batch.registry
    runstate.remember_parsed(context.run_id, store.uri, batch.parsed)  # silver reads them from memory
    for q in batch.quarantined_now:
        context.log.error(
            f"{q['key']}: {q['error']} (sheet={q.get('sheet')}, row={q.get('row')}, column={q.get('column')})"
        )
    fp = registry_fingerprint(reg)
    metadata = {
        "lab_format": client.lab_format,
        "files": len(reg),
        "dagster/row_count": len(reg),
        "files_ok": int((reg["status"] == "ok").sum()),
        "files_quarantined": int((reg["status"] == "quarantined").sum()),
        "parsed_this_run": batch.parsed_now,
        "reused_from_cache": batch.reused,
        # rows of re-sent (cumulative) files taken from their previous parse, and rows parsed now
        "rows_reused": batch.rows_reused,
        "raw_rows_parsed_this_run": batch.rows_parsed,
        # rows the parser read from the files (a re-sent workbook's rows known by their XML are not)
        "raw_rows_read_this_run": batch.rows_read,
        "rows_parsed": int(reg["rows_parsed"].sum()),
        "quarantined_this_run": MetadataValue.json(batch.quarantined_now),
        "cells_cleared": int(reg["cells_cleared"].sum()),
        "intake_warnings": MetadataValue.json(batch.warnings),
        "stale_temps_removed": MetadataValue.json(removed),
        "state_repairs": MetadataValue.json(batch.repairs),
        "unregistered_client_folders": MetadataValue.json(unknown),
        "preview": md_table(reg[["key", "status", "rows_parsed", "rows_rejected", "reason"]]),
    }
    scalars = scalar_metadata(metadata)
    runstate.set_pending(
        context.run_id,
        client.key,
        "bronze_lab_files",
        {"fingerprint": fp, "listing": listing, "run_id": context.run_id, "checks": [], "metadata": scalars},
    )
    yield versioned_output(reg, {**metadata, "unchanged": False}, fp)
