"""Silver from the bronze registry: incremental when it can be, a full rebuild when it must be.

No dagster import: the silver asset calls :func:`build_silver` and publishes what it returns.

The reject ledger (``silver/rejects/{client}.parquet``) is part of silver: it always holds the
rejected samples and cleared cells of every raw file that currently feeds silver, and only those.
An incremental build keeps the rows of unchanged files, drops those of changed or removed files and
adds those of new files; when a duplicate contest of an unchanged file could change, it rebuilds.

Saved state that cannot be read (``files.json``, ``candidates.parquet``, the previous silver or
ledger) is reported in ``repairs`` with its path and rebuilt from bronze by a full build.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..domain.catalog import load_catalog
from ..domain.contracts import conform
from ..domain.harmonize import describe, finish, prepare
from ..domain.incremental import (
    INDEX_COLUMNS,
    NO_CHANGES,
    among,
    audit,
    candidate_index,
    empty_audit,
    upsert,
)
from ..domain.labs.common import REJECT_COLUMNS, concat_rejects, ledger_types
from ..storage import layout, runstate
from ..storage.filesystem import Storage, parquet_bytes
from ..storage.registry import load_parsed


@dataclass
class SilverBuild:
    silver: pd.DataFrame
    rejects: pd.DataFrame
    audit: pd.DataFrame
    changes: dict
    info: dict
    mode: str  # "full" | "incremental" | "unchanged"
    files: dict = field(default_factory=dict)
    index: pd.DataFrame | None = None
    repairs: list = field(default_factory=list)


def _read(store: Storage, path: str, reader, repairs: list, what: str):
    """``reader(path)`` when the file exists; a file that cannot be read is a repair, not a failure."""
    if not store.exists(path):
        return None
    try:
        return reader(path)
    except Exception as exc:
        repairs.append(
            {
                "path": store.display(path),
                "error": f"{type(exc).__name__}: {exc}"[:300],
                "action": f"{what} rebuilt from bronze (full silver build)",
            }
        )
        return None


def _files_state(store: Storage, client: str, repairs: list) -> dict:
    """The saved file → state map of the last silver (empty: none, or unreadable and reported)."""
    path = f"{layout.silver_state_dir(client)}/files.json"
    files = _read(store, path, store.read_json, repairs, "silver state (files.json)")
    if files is not None and not (
        isinstance(files, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
    ):
        repairs.append(
            {
                "path": store.display(path),
                "error": "not a JSON object of file → sha256",
                "action": "silver state (files.json) rebuilt from bronze (full silver build)",
            }
        )
        files = None
    return files or {}


def _table_state(store: Storage, client: str) -> tuple:
    """The saved tables of the last silver: (candidate index, silver, reject ledger, repairs);
    a table that is missing, unreadable or of an older layout is None."""
    repairs: list[dict] = []
    d = layout.silver_state_dir(client)
    index = _read(store, f"{d}/candidates.parquet", store.read_parquet, repairs, "silver state (candidates)")
    if index is not None and not set(INDEX_COLUMNS) <= set(index.columns):
        index = None
    previous = _read(store, layout.harmonized_path(client), store.read_parquet, repairs, "silver")
    ledger = _read(store, layout.rejects_path(client), store.read_parquet, repairs, "reject ledger")
    if ledger is not None and not set(REJECT_COLUMNS) <= set(ledger.columns):
        ledger = None  # written by an older version (rejects of one run only): rebuilt in full
    return index, previous, ledger, repairs


def save_state(store: Storage, client: str, build: SilverBuild) -> None:
    d = layout.silver_state_dir(client)
    store.write_parquet(f"{d}/candidates.parquet", build.index)
    store.write_json(f"{d}/files.json", build.files)


def build_silver(
    store: Storage,
    client: str,
    registry: pd.DataFrame,
    *,
    full_rebuild: bool = False,
    now: pd.Timestamp | None = None,
    min_date: pd.Timestamp | str | None = None,
    run_id: str | None = None,
) -> SilverBuild:
    """The client's silver and reject ledger after this registry; ``full_rebuild`` ignores the
    saved state; ``min_date``: the plausible floor of sample dates (``OIL_MIN_SAMPLE_DATE``);
    ``run_id``: the files bronze parsed in this run (same process) are not read back."""
    catalog = load_catalog()
    now = now or pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
    min_date = pd.Timestamp(min_date) if min_date is not None else None
    as_of = now.normalize()  # prepare's run day (future sample dates)
    ok = registry[registry["status"] == "ok"]
    # A file's state is its content and the reader rules it was parsed with: a new rule set re-reads it.
    version = ok["reader_version"].astype(str) if "reader_version" in ok else ""
    files = dict(zip(ok["key"].astype(str), ok["sha256"].astype(str) + "@" + version, strict=True))
    repairs: list[dict] = []
    old_files = _files_state(store, client, repairs)
    # The saved tables are read on the other core while this one prepares the new rows.
    saved = runstate.in_background(_table_state, store, client)
    new_keys = {k for k, sha in files.items() if old_files.get(k) != sha}
    dropped = {k for k, sha in old_files.items() if files.get(k) != sha}
    maybe_incremental = not full_rebuild and not repairs and bool(old_files)
    if maybe_incremental and (new_keys or dropped):
        samples, read_rejects = load_parsed(store, ok[ok["key"].isin(new_keys)], run_id)
        cand, prep_rejects, info = prepare(samples, client, as_of=as_of, catalog=catalog, min_date=min_date)
    index, previous, ledger, table_repairs = saved.result()
    repairs += table_repairs
    incremental = (
        maybe_incremental
        and not repairs
        and previous is not None
        and index is not None
        and ledger is not None
        and "cellsCleared" in previous.columns
    )
    if incremental and not new_keys and not dropped:
        return SilverBuild(
            previous,
            ledger_types(ledger),
            empty_audit(),
            NO_CHANGES,
            {**describe(previous), "files_new": 0, "files_dropped": 0},
            "unchanged",
            files,
            index,
        )
    if incremental:
        touched = new_keys | dropped
        old = ledger_types(ledger)
        old = old[~old["file"].isin(touched)]
        contested = old["stage"].eq("duplicate").to_numpy(bool) & among(
            old["sampleNumber"], cand["sampleNumber"]
        )
        out = None if contested.any() else upsert(previous, index, cand, dropped, catalog)
        if out is not None:
            silver, new_index, dup_rejects, dup_info = out
            # Only samples prepared again or gone can differ from the previous silver (the rows of
            # untouched files are the previous ones): the audit compares those.
            moved = previous["sourceFile"].isin(touched).to_numpy(bool)
            redo = set(cand["sampleNumber"].tolist()) | set(previous["sampleNumber"][moved].tolist())
            table, summary = audit(
                _rows(previous, among(previous["sampleNumber"], redo)),
                _rows(silver, among(silver["sampleNumber"], redo)),
                now,
                catalog,
            )
            return SilverBuild(
                silver,
                sort_ledger(concat_rejects([old, read_rejects, prep_rejects, dup_rejects])),
                table,
                summary,
                {
                    **info,
                    **dup_info,
                    **describe(silver),
                    "files_new": len(new_keys),
                    "files_dropped": len(dropped),
                },
                "incremental",
                files,
                new_index,
            )
    samples, read_rejects = load_parsed(store, ok, run_id)
    cand, prep_rejects, info = prepare(samples, client, as_of=as_of, catalog=catalog, min_date=min_date)
    silver, dup_rejects, dup_info = finish(cand, catalog)
    if previous is not None:
        table, summary = audit(previous.reindex(columns=silver.columns), silver, now, catalog)
    else:
        table, summary = empty_audit(), {**NO_CHANGES, "samples_added": int(len(silver))}
    return SilverBuild(
        silver,
        sort_ledger(concat_rejects([read_rejects, prep_rejects, dup_rejects])),
        table,
        summary,
        {**info, **dup_info, **describe(silver), "files_new": len(new_keys), "files_dropped": len(dropped)},
        "full",
        files,
        candidate_index(cand),
        repairs,
    )


def _rows(frame: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    """``frame[mask]``, without the copy when every row is kept (every file re-sent)."""
    return frame if mask.all() else frame[mask]


def sort_ledger(ledger: pd.DataFrame) -> pd.DataFrame:
    """The ledger in a stable order (file, sheet, row, column, reason): same inputs, same bytes."""
    out = ledger_types(ledger)
    keys = ["file", "sheet", "row", "column", "reason"]
    return out.sort_values(keys, kind="mergesort", na_position="first").reset_index(drop=True)


def side_files(client: str, build: SilverBuild, run_id: str) -> list[tuple[str, bytes, int | None]]:
    """The files published with a build's silver, in its commit (path, bytes, rows): the reject
    ledger, and the audit of what an incremental build changed (when it changed anything)."""
    rejects = conform(build.rejects, "silver_rejects")
    files = [(layout.rejects_path(client), parquet_bytes(rejects), len(rejects))]
    if len(build.audit):
        stamp = f"{pd.Timestamp.now(tz='UTC'):%Y%m%dT%H%M%S}-{run_id[:8]}"
        files.append((layout.audit_path(client, stamp), parquet_bytes(build.audit), len(build.audit)))
    return files
