"""Silver from the bronze registry: incremental when it can be, a full rebuild when it must be.

No dagster import: the silver asset calls :func:`build_silver` and publishes what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .domain.catalog import load_catalog
from .domain.harmonize import describe, finish, prepare
from .domain.incremental import NO_CHANGES, audit, candidate_index, empty_audit, upsert
from .domain.labs.common import REJECT_COLUMNS, concat_rejects
from .ingest import load_parsed
from .storage import layout
from .storage.filesystem import Storage


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


def _state(store: Storage, client: str) -> tuple[dict, pd.DataFrame | None, pd.DataFrame | None]:
    d = layout.silver_state_dir(client)
    files = store.read_json(f"{d}/files.json") if store.exists(f"{d}/files.json") else {}
    index = store.read_parquet(f"{d}/candidates.parquet") if store.exists(f"{d}/candidates.parquet") else None
    path = layout.harmonized_path(client)
    previous = store.read_parquet(path) if store.exists(path) else None
    return files, index, previous


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
) -> SilverBuild:
    """The client's silver after this registry; ``full_rebuild`` ignores the saved state."""
    catalog = load_catalog()
    now = now or pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
    ok = registry[registry["status"] == "ok"]
    files = dict(zip(ok["key"].astype(str), ok["sha256"].astype(str), strict=True))
    old_files, index, previous = _state(store, client)
    new_keys = {k for k, sha in files.items() if old_files.get(k) != sha}
    dropped = {k for k, sha in old_files.items() if files.get(k) != sha}
    incremental = not full_rebuild and previous is not None and index is not None and old_files
    if incremental and not new_keys and not dropped:
        return SilverBuild(
            previous,
            pd.DataFrame(columns=REJECT_COLUMNS),
            empty_audit(),
            NO_CHANGES,
            {**describe(previous), "files_new": 0, "files_dropped": 0},
            "unchanged",
            files,
            index,
        )
    if incremental:
        samples, read_rejects = load_parsed(store, ok[ok["key"].isin(new_keys)])
        cand, prep_rejects, info = prepare(samples, client, catalog=catalog)
        out = upsert(previous, index, cand, dropped, catalog)
        if out is not None:
            silver, new_index, dup_rejects, dup_info = out
            table, summary = audit(previous, silver, now, catalog)
            return SilverBuild(
                silver,
                concat_rejects([read_rejects, prep_rejects, dup_rejects]),
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
    samples, read_rejects = load_parsed(store, ok)
    cand, prep_rejects, info = prepare(samples, client, catalog=catalog)
    silver, dup_rejects, dup_info = finish(cand, catalog)
    if previous is not None:
        table, summary = audit(previous, silver, now, catalog)
    else:
        table, summary = empty_audit(), {**NO_CHANGES, "samples_added": int(len(silver))}
    return SilverBuild(
        silver,
        concat_rejects([read_rejects, prep_rejects, dup_rejects]),
        table,
        summary,
        {**info, **dup_info, **describe(silver), "files_new": len(new_keys), "files_dropped": len(dropped)},
        "full",
        files,
        candidate_index(cand),
    )
