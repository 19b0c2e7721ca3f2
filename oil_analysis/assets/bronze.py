"""Bronze: the raw lab files of each client, registered and parsed once per content."""

import pandas as pd
from dagster import AssetExecutionContext, Failure, MetadataValue, Output, asset

from ..ingest import ReaderLimits, ingest_client, unknown_client_folders
from ..resources.storage import StorageResource
from ..settings import get_settings
from ..storage.healing import check_writable, remove_stale_temps
from .common import CLIENTS, OWNER, client_partitions, md_table


@asset(
    group_name="bronze",
    partitions_def=client_partitions,
    io_manager_key="layout_io_manager",
    owners=[OWNER],
    kinds={"parquet", "excel"},
    code_version="bronze-1",
    description="Raw lab files under bronze/{client}/ (any depth): one registry row per file with its "
    "sha256, status (ok / quarantined) and parse facts. Each content is parsed once, in its own "
    "process; unreadable, oversized or parser-crashing files are copied to bronze/_quarantine/{client}/ "
    "with a .reason.json. The run starts by removing stale temp files of earlier runs and by checking "
    "that every folder it publishes to can be written (nothing is published otherwise).",
)
def bronze_lab_files(context: AssetExecutionContext, storage: StorageResource) -> Output[pd.DataFrame]:
    client = CLIENTS[context.partition_key]
    store = storage.get()
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
    batch = ingest_client(
        store,
        client,
        max_file_mb=storage.max_file_mb(),
        log=context.log.info,
        warn=context.log.warning,
        limits=ReaderLimits.from_settings(get_settings()),
    )
    reg = batch.registry
    unknown = unknown_client_folders(store, CLIENTS)
    for folder in unknown:
        context.log.warning(f"bronze/{folder}/ is not a registered client: its files are ignored")
    for q in batch.quarantined_now:
        context.log.error(
            f"{q['key']}: {q['error']} (sheet={q.get('sheet')}, row={q.get('row')}, column={q.get('column')})"
        )
    return Output(
        reg,
        metadata={
            "lab_format": client.lab_format,
            "files": len(reg),
            "files_ok": int((reg["status"] == "ok").sum()),
            "files_quarantined": int((reg["status"] == "quarantined").sum()),
            "parsed_this_run": batch.parsed_now,
            "reused_from_cache": batch.reused,
            "rows_parsed": int(reg["rows_parsed"].sum()),
            "quarantined_this_run": MetadataValue.json(batch.quarantined_now),
            "cells_cleared": int(reg["cells_cleared"].sum()),
            "intake_warnings": MetadataValue.json(batch.warnings),
            "stale_temps_removed": MetadataValue.json(removed),
            "state_repairs": MetadataValue.json(batch.repairs),
            "unregistered_client_folders": MetadataValue.json(unknown),
            "preview": md_table(reg[["key", "status", "rows_parsed", "rows_rejected", "reason"]]),
        },
    )
