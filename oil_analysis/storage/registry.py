"""The bronze registry of a client: one row per raw file seen, the parse cache and the quarantine.

``bronze/_registry/{client}/registry.parquet`` names every raw file under ``bronze/{client}/`` with its
sha256 and status; ``…/parsed/{sha256}.parquet`` (+ ``.rejects.parquet``) holds the tidy samples of one
content; ``bronze/_quarantine/{client}/…`` holds unreadable files and a ``.reason.json``. Written and
read by the bronze intake (:mod:`oil_analysis.pipeline.bronze`) and the silver build. No dagster.
"""

from __future__ import annotations

import pandas as pd

from ..domain.labs.common import empty_rejects, ledger_types
from . import layout, runstate
from .filesystem import Storage

REGISTRY_COLUMNS = [
    "key",
    "sha256",
    "size",
    "lab_format",
    "status",
    "rows_parsed",
    "rows_rejected",
    "parse_seconds",
    "reason",
    "parsed_path",
    "mtime_ns",
    "cells_cleared",
    "reader_version",
]
# The readers' rules: a cached parse made under other rules is parsed again (bump on a rule change).
READER_VERSION = "readers-2"
INT_COLUMNS = ("size", "rows_parsed", "rows_rejected", "mtime_ns", "cells_cleared")


def empty_registry() -> pd.DataFrame:
    """A registry with no row, in its column types."""
    return pd.DataFrame(
        {
            c: pd.Series(
                dtype="int64" if c in INT_COLUMNS else "float64" if c == "parse_seconds" else "string"
            )
            for c in REGISTRY_COLUMNS
        }
    )


def load_registry(storage: Storage, client: str, repairs: list[dict] | None = None) -> pd.DataFrame:
    """The client's registry; one that cannot be read is reported in ``repairs`` and rebuilt from
    bronze (an empty registry: every file is read and registered again)."""
    path = layout.registry_path(client)
    if not storage.exists(path):
        return empty_registry()
    try:
        reg = storage.read_parquet(path)
        missing = {"key", "sha256", "status", "parsed_path"} - set(reg.columns)
        if missing:
            raise ValueError(f"columns {sorted(missing)} missing")
    except Exception as exc:
        if repairs is None:
            raise
        repairs.append(
            {
                "path": storage.display(path),
                "error": f"{type(exc).__name__}: {exc}"[:300],
                "action": "registry rebuilt from the files under bronze (each file read again)",
            }
        )
        return empty_registry()
    for c in REGISTRY_COLUMNS:
        if c not in reg:
            reg[c] = 0 if c in INT_COLUMNS else None
    # Parses cached under older reader rules are not reused (e.g. whole samples rejected for a cell).
    return reg[reg["reader_version"].astype("string").fillna("") == READER_VERSION].reset_index(drop=True)


def quarantine(storage: Storage, client: str, key: str, data: bytes | None, reason: dict) -> str:
    """Copy a bad raw file to the quarantine (under its path relative to the client's bronze folder,
    so two files of the same name never collide) with its reason; returns the quarantine path.
    ``data`` None: not copied (too big to duplicate); the reason names the file."""
    target = layout.quarantine_path(client, key)
    if data is not None:
        storage.write_bytes(target, data)
    storage.write_json(target + ".reason.json", {"client": client, "source_key": key, **reason})
    return target


def load_parsed(
    storage: Storage, registry: pd.DataFrame, run_id: str | None = None
) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    """The cached tidy samples and reader rejects of every readable file in the registry.

    ``run_id``: the parses bronze made in this run, in this process, are taken from memory
    (:func:`runstate.recall_parsed`), the others read from storage."""
    ok = registry[registry["status"] == "ok"]
    samples, rejects = [], []
    for r in ok.itertuples(index=False):
        memo = runstate.recall_parsed(run_id, storage.uri, r.parsed_path) if run_id else None
        if memo is not None:
            samples.append(memo[0].assign(sourceFile=r.key))
            if len(memo[1]):
                rejects.append(ledger_types(memo[1].assign(file=r.key)))
            continue
        samples.append(storage.read_parquet(r.parsed_path).assign(sourceFile=r.key))
        rej_path = r.parsed_path.replace(".parquet", ".rejects.parquet")
        if storage.exists(rej_path):
            rej = storage.read_parquet(rej_path)
            if len(rej):
                rejects.append(ledger_types(rej.assign(file=r.key)))
    rej = pd.concat(rejects, ignore_index=True) if rejects else empty_rejects()
    return samples, ledger_types(rej)
