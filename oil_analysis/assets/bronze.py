"""Bronze: the raw lab files of each client, registered and parsed once per content."""

import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, Output, asset

from ..ingest import ingest_client, unknown_client_folders
from ..resources.storage import StorageResource
from .common import CLIENTS, OWNER, client_partitions, md_table


@asset(
    group_name="bronze",
    partitions_def=client_partitions,
    io_manager_key="layout_io_manager",
    owners=[OWNER],
    kinds={"parquet", "excel"},
    code_version="bronze-1",
    description="Raw lab files under bronze/{client}/ (any depth): one registry row per file with its "
    "sha256, status (ok / quarantined) and parse facts. Each content is parsed once; unreadable files "
    "are copied to bronze/_quarantine/{client}/ with a .reason.json.",
)
def bronze_lab_files(context: AssetExecutionContext, storage: StorageResource) -> Output[pd.DataFrame]:
    client = CLIENTS[context.partition_key]
    batch = ingest_client(storage.get(), client, max_file_mb=storage.max_file_mb(), log=context.log.info)
    reg = batch.registry
    unknown = unknown_client_folders(storage.get(), CLIENTS)
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
            "unregistered_client_folders": MetadataValue.json(unknown),
            "preview": md_table(reg[["key", "status", "rows_parsed", "rows_rejected", "reason"]]),
        },
    )
