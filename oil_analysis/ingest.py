"""Bronze: find a client's raw lab files, parse each content once, quarantine the bad ones.

Every raw file under ``bronze/{client}/`` gets a row in the client's file registry keyed by its
path and sha256. A content already parsed is not parsed again (its tidy samples are cached as
parquet under ``bronze/_registry/{client}/parsed/``). A file that cannot be read is copied to
``bronze/_quarantine/{client}/`` with a ``.reason.json`` naming file, sheet, row and column, and
the run goes on with the other files.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import pandas as pd

from .domain.clients import Client
from .domain.labs import IGNORED_FILES, LAB_FORMATS, LabFileError, ReadResult
from .domain.labs.common import REJECT_COLUMNS
from .storage import layout
from .storage.filesystem import Storage, UnsafePathError, check_relative

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
]


@dataclass
class BronzeBatch:
    registry: pd.DataFrame
    parsed_now: int
    reused: int
    quarantined_now: list[dict]


def _empty_registry() -> pd.DataFrame:
    return pd.DataFrame(
        {
            c: pd.Series(
                dtype="int64"
                if c in ("size", "rows_parsed", "rows_rejected")
                else "float64"
                if c == "parse_seconds"
                else "string"
            )
            for c in REGISTRY_COLUMNS
        }
    )


def load_registry(storage: Storage, client: str) -> pd.DataFrame:
    path = layout.registry_path(client)
    return storage.read_parquet(path) if storage.exists(path) else _empty_registry()


def _parse_one(lab_format: str, path: str, timezone: str) -> tuple[ReadResult | None, dict | None, float]:
    """Run in a worker process: read one file, or describe why it cannot be read."""
    start = time.perf_counter()
    reader = LAB_FORMATS[lab_format][1]
    try:
        result = reader(path, timezone)
        return result, None, time.perf_counter() - start
    except LabFileError as exc:
        return None, exc.as_dict(), time.perf_counter() - start
    except Exception as exc:  # a reader bug must not lose the other files of the run
        err = {
            "file": os.path.basename(path),
            "sheet": None,
            "row": None,
            "column": None,
            "error": f"unexpected {type(exc).__name__}: {exc}",
        }
        return None, err, time.perf_counter() - start


def quarantine(storage: Storage, client: str, key: str, data: bytes, reason: dict) -> str:
    """Copy a bad raw file to the quarantine with its reason; returns the quarantine path."""
    target = layout.quarantine_path(client, key)
    storage.write_bytes(target, data)
    storage.write_json(target + ".reason.json", {"client": client, "source_key": key, **reason})
    return target


def ingest_client(
    storage: Storage, client: Client, *, max_file_mb: float = 200.0, workers: int = 2, log=None
) -> BronzeBatch:
    """Bring a client's file registry up to date with what is under ``bronze/{client}/``."""
    log = log or (lambda msg: None)
    suffixes, _ = LAB_FORMATS[client.lab_format]
    previous = load_registry(storage, client.key)
    if "mtime_ns" not in previous:
        previous["mtime_ns"] = 0
    by_sha = {r.sha256: r for r in previous.itertuples(index=False)}
    by_key = {r.key: r for r in previous.itertuples(index=False)}
    ignored = IGNORED_FILES.get(client.lab_format)
    mtimes: dict[str, int] = {}
    rows: list[dict] = []
    todo: list[tuple[str, str, bytes]] = []
    quarantined: list[dict] = []

    def bad(key: str, data: bytes, sha: str, reason: dict) -> None:
        where = quarantine(storage, client.key, key, data, reason)
        log(f"quarantined {key}: {reason['error']} → {where}")
        quarantined.append({"key": key, **reason, "quarantine": where})
        rows.append(
            {
                "key": key,
                "sha256": sha,
                "size": len(data),
                "lab_format": client.lab_format,
                "status": "quarantined",
                "rows_parsed": 0,
                "rows_rejected": 0,
                "parse_seconds": 0.0,
                "reason": reason["error"],
                "parsed_path": None,
                "mtime_ns": mtimes.get(key, 0),
            }
        )

    for entry in storage.list_files(layout.bronze_dir(client.key) + "/"):
        key = entry.path
        mtimes[key] = entry.mtime_ns
        name = posixpath.basename(key)
        try:
            check_relative(key)
        except UnsafePathError:
            log(f"skipped {key!r}: unsafe path")
            continue
        if name.startswith(".") or name.endswith(".reason.json"):
            continue
        if entry.size > max_file_mb * 1024 * 1024:
            reason = {
                "file": name,
                "sheet": None,
                "row": None,
                "column": None,
                "error": f"file is {entry.size / 1e6:.1f} MB, over the {max_file_mb:g} MB limit",
            }
            bad(key, b"", "", reason)  # not copied: too big to duplicate; the reason names it
            continue
        if ignored is not None and ignored.match(name):
            rows.append(
                {
                    "key": key,
                    "sha256": "",
                    "size": entry.size,
                    "lab_format": client.lab_format,
                    "status": "ignored",
                    "rows_parsed": 0,
                    "rows_rejected": 0,
                    "parse_seconds": 0.0,
                    "reason": "not a sample file of this lab format (equipment metadata)",
                    "parsed_path": None,
                    "mtime_ns": entry.mtime_ns,
                }
            )
            continue
        same = by_key.get(key)
        if (
            same is not None
            and same.size == entry.size
            and same.mtime_ns == entry.mtime_ns
            and (same.status == "quarantined" or (same.parsed_path and storage.exists(same.parsed_path)))
        ):
            rows.append(same._asdict())  # unchanged since the last run: not even read
            continue
        data = storage.read_bytes(key)
        sha = hashlib.sha256(data).hexdigest()
        known = by_sha.get(sha)
        if known is not None and (
            known.status == "quarantined" or (known.parsed_path and storage.exists(known.parsed_path))
        ):
            rows.append({**known._asdict(), "key": key, "mtime_ns": entry.mtime_ns})
            continue
        if not name.lower().endswith(suffixes):
            reason = {
                "file": name,
                "sheet": None,
                "row": None,
                "column": None,
                "error": f"wrong lab format for client {client.key!r}: expected a {'/'.join(suffixes)} "
                f"file of format {client.lab_format}",
            }
            bad(key, data, sha, reason)
            continue
        todo.append((key, sha, data))

    parsed_now = 0
    if todo:
        paths = []
        for key, _sha, data in todo:
            local, is_tmp = storage.local_copy(key, data)  # S3: the bytes already read, no second GET
            paths.append((local, is_tmp))
        try:
            if workers > 1 and len(todo) > 1:
                with ProcessPoolExecutor(max_workers=min(workers, len(todo))) as pool:
                    results = list(
                        pool.map(
                            _parse_one,
                            [client.lab_format] * len(todo),
                            [p for p, _ in paths],
                            [client.timezone] * len(todo),
                        )
                    )
            else:
                results = [_parse_one(client.lab_format, p, client.timezone) for p, _ in paths]
        finally:
            for p, is_tmp in paths:
                if is_tmp:
                    os.unlink(p)
        for (key, sha, data), (result, error, seconds) in zip(todo, results, strict=True):
            if error is not None:
                error["file"] = posixpath.basename(key)
                bad(key, data, sha, error)
                continue
            parsed = layout.parsed_path(client.key, sha)
            storage.write_parquet(parsed, result.samples.assign(sourceFile=key))
            rej = result.rejects.assign(file=key) if len(result.rejects) else result.rejects
            storage.write_parquet(parsed.replace(".parquet", ".rejects.parquet"), rej.astype("string"))
            parsed_now += 1
            rows.append(
                {
                    "key": key,
                    "sha256": sha,
                    "size": len(data),
                    "lab_format": client.lab_format,
                    "status": "ok",
                    "rows_parsed": int(len(result.samples)),
                    "rows_rejected": int(len(result.rejects)),
                    "parse_seconds": round(seconds, 3),
                    "reason": None,
                    "parsed_path": parsed,
                    "mtime_ns": mtimes.get(key, 0),
                }
            )
    registry = pd.DataFrame(rows, columns=REGISTRY_COLUMNS) if rows else _empty_registry()
    registry = registry.sort_values("key", kind="mergesort").reset_index(drop=True)
    for c in ("size", "rows_parsed", "rows_rejected", "mtime_ns"):
        registry[c] = registry[c].fillna(0).astype("int64")
    registry["parse_seconds"] = registry["parse_seconds"].astype("float64")
    for c in ("key", "sha256", "lab_format", "status", "reason", "parsed_path"):
        registry[c] = registry[c].astype("string")
    return BronzeBatch(registry, parsed_now, len(rows) - parsed_now - len(quarantined), quarantined)


def unknown_client_folders(storage: Storage, clients) -> list[str]:
    """Folders under ``bronze/`` that are not registered clients: their files are never read."""
    known = set(clients) | set(layout.RESERVED_BRONZE)
    seen = set()
    for entry in storage.list_files(layout.BRONZE + "/"):
        parts = entry.path.split("/")
        if len(parts) > 2 and parts[1] not in known:
            seen.add(parts[1])
    return sorted(seen)


def load_parsed(storage: Storage, registry: pd.DataFrame) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    """The cached tidy samples and row rejects of every readable file in the registry."""
    ok = registry[registry["status"] == "ok"]
    samples, rejects = [], []
    for r in ok.itertuples(index=False):
        samples.append(storage.read_parquet(r.parsed_path).assign(sourceFile=r.key))
        rej_path = r.parsed_path.replace(".parquet", ".rejects.parquet")
        if storage.exists(rej_path):
            rej = storage.read_parquet(rej_path)
            if len(rej):
                rejects.append(rej.assign(file=r.key))
    rej = pd.concat(rejects, ignore_index=True) if rejects else pd.DataFrame(columns=REJECT_COLUMNS)
    return samples, rej
