"""Bronze: find a client's raw lab files, parse each content once, quarantine the bad ones.

Every raw file under ``bronze/{client}/`` gets a row in the client's file registry keyed by its
path and sha256. A content already parsed is not parsed again (its tidy samples are cached as
parquet under ``bronze/_registry/{client}/parsed/``). A file that cannot be read is copied to
``bronze/_quarantine/{client}/{its path under bronze/{client}/}`` with a ``.reason.json`` naming
file, sheet, row and column, and the run goes on with the other files.

No file can hurt the run:

* files are parsed in child processes (``workers`` of them, each parsing one file after another),
  with a memory budget per file (``OIL_PARSER_MEMORY_MB``): a parser that raises, runs out of
  memory or dies of a native abort (python-calamine on an absurd sheet) quarantines that file only
  (one that failed so in a worker used by other files is parsed again in a fresh one first);
* workbooks are checked before parsing (uncompressed part sizes, declared and real sheet extent:
  :mod:`oil_analysis.domain.labs.xlsx_guard`);
* symlinks are followed only inside the data root and never in a cycle; a file that vanishes
  between listing and reading is skipped with a warning;
* a registry that cannot be read is reported with its path and rebuilt from bronze.
"""

from __future__ import annotations

import contextlib
import faulthandler
import functools
import gc
import hashlib
import io
import json
import multiprocessing as mp
import multiprocessing.connection
import os
import posixpath
import resource
import signal
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..domain.clients import Client
from ..domain.labs import IGNORED_FILES, LAB_FORMATS, LabFileError, ReadResult
from ..domain.labs.common import RowCache, empty_rejects, ledger_types
from ..domain.labs.preload import preload_readers
from ..storage import layout, runstate
from ..storage.filesystem import (
    Storage,
    UnsafePathError,
    check_relative,
    table_parquet_bytes,
)
from ..storage.registry import (
    INT_COLUMNS,
    READER_VERSION,
    REGISTRY_COLUMNS,
    empty_registry,
    load_registry,
    quarantine,
)


@dataclass(frozen=True)
class ReaderLimits:
    """Bounds checked before and while parsing one file (see README: OIL_MAX_SHEET_* variables)."""

    max_xml_mb: float = 256.0
    max_cells: int = 5_000_000
    memory_mb: int = 1024

    @classmethod
    def from_settings(cls, settings) -> ReaderLimits:
        return cls(settings.max_sheet_xml_mb, settings.max_sheet_cells, settings.parser_memory_mb)


@dataclass
class BronzeBatch:
    registry: pd.DataFrame
    parsed_now: int
    reused: int
    quarantined_now: list[dict]
    warnings: list[str] = field(default_factory=list)
    repairs: list[dict] = field(default_factory=list)
    rows_reused: int = 0  # raw rows of re-sent files taken from their previous parse
    rows_parsed: int = 0  # raw rows parsed this run
    # raw rows the parser read from the files this run (a re-sent workbook's known rows are not)
    rows_read: int = 0
    # parsed path → (samples, ledger) of the contents parsed this run, as ``load_parsed`` reads them
    parsed: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = field(default_factory=dict)


def _parse_one(
    lab_format: str, path: str, timezone: str, limits: dict
) -> tuple[ReadResult | None, dict | None, float, bool]:
    """Read one file, or describe why it cannot be read (runs in a parse worker). The last value
    says whether the parse ended cleanly (a result, or a file the reader refused): after a
    ``MemoryError`` or a reader bug the worker's state is not trusted for another file."""
    start = time.perf_counter()
    reader = LAB_FORMATS[lab_format][1]
    try:
        result = reader(path, timezone, **limits)
        return result, None, time.perf_counter() - start, True
    except LabFileError as exc:
        return None, exc.as_dict(), time.perf_counter() - start, True
    except FileNotFoundError:
        return None, {"vanished": True}, time.perf_counter() - start, True
    except MemoryError:
        err = _error(path, "the parser ran out of its memory budget (OIL_PARSER_MEMORY_MB); not parsed")
        return None, err, time.perf_counter() - start, False
    except Exception as exc:  # a reader bug must not lose the other files of the run
        return (
            None,
            _error(path, f"unexpected {type(exc).__name__}: {exc}"),
            time.perf_counter() - start,
            False,
        )


def _error(path: str, message: str) -> dict:
    return {"file": os.path.basename(path), "sheet": None, "row": None, "column": None, "error": message}


def _data_size() -> int:
    """This process's data segment size in bytes (heap and private writable mappings; 0 if unknown)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _set_data_limit(soft: int, hard: int) -> None:
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def _worker(conn, memory_mb: int, finish=None) -> None:
    """Parse worker body: parse the files the parent sends, one at a time, until told to stop.

    Each file gets the whole memory budget on top of what the worker holds when it starts (what an
    earlier file left is never taken from it). After a file whose parse did not end cleanly (a
    ``MemoryError``, a reader bug, a result that could not be sent) the worker exits: the parent
    starts a fresh one for the next file.
    """
    faulthandler.disable()  # a crash here is reported by the parent, per file, not as a traceback dump
    # What the fork inherited is never garbage here: the worker's collections leave it alone (no walk
    # of the parent's heap, no copy-on-write of its pages; ~5 % of a child's CPU under a 2 M-object parent).
    gc.freeze()
    if memory_mb > 0:
        # Arrow's default allocator reserves large arenas up front, which a cap would refuse; the
        # system allocator asks only for what it uses.
        pa.set_memory_pool(pa.system_memory_pool())
    hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
    try:
        while (task := conn.recv()) is not None:
            i, lab_format, path, timezone, limits = task
            if memory_mb > 0:
                # Data size = what the worker holds now + the budget: any allocation beyond fails
                # (a MemoryError, or a native abort that ends this worker and this file only).
                cap = _data_size() + memory_mb * 1024 * 1024
                _set_data_limit(cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard)
            try:
                notes: list[str] = []
                previous = limits.get("previous")
                if isinstance(previous, EarlierParse):  # decoded here, in parallel, not by the parent
                    limits = {**limits, "previous": previous.decode(notes)}
                    if limits["previous"] is None:
                        del limits["previous"]
                result, error, seconds, clean = _parse_one(lab_format, path, timezone, limits)
                if result is not None and finish is not None:
                    result = finish(i, result, notes)  # e.g. the tables encoded here, in parallel
                conn.send((i, (result, error, seconds), clean))
            except BaseException as exc:  # the outcome could not be sent (e.g. too big to pickle in memory)
                clean = False
                why = f"the parse result could not be returned ({type(exc).__name__})"
                conn.send((i, (None, _error(path, why), 0.0), clean))
            result = limits = previous = None  # this file's tables are not kept while waiting
            if memory_mb > 0:
                _set_data_limit(hard, hard)
            if not clean:
                break
    except EOFError:  # the parent closed its end (it stopped on an error of its own): nothing to do
        pass
    finally:
        conn.close()


def _crash_reason(path: str, exitcode: int | None) -> dict:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        what = f"the parser process died of {name}"
        if name == "SIGABRT":
            what += " (a native abort, e.g. an allocation failure on an absurd sheet)"
        elif name == "SIGKILL":
            what += " (killed, e.g. out of memory)"
    else:
        what = f"the parser process exited with code {exitcode} without a result"
    return _error(path, f"{what}; this file only is quarantined, the other files of the run go on")


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:  # vanished: its worker says so
        return 0


@dataclass
class _Worker:
    proc: mp.Process
    conn: mp.connection.Connection
    task: int | None = None  # the file it is parsing
    started: float = 0.0
    done: int = 0  # files it has parsed


def parse_isolated(
    tasks: list[tuple], *, workers: int, limits: ReaderLimits, finish=None, on_result=None
) -> list[tuple[object | None, dict | None, float]]:
    """Parse ``(lab_format, path, timezone[, reader_kwargs])`` tasks in child processes (``workers``
    at a time, each parsing one file after another). A child that dies (native abort, kill) yields
    an error for its file only; the other files go on in a fresh child.

    A file is never failed for what an earlier file did to its worker: a file whose worker died or
    ran out of memory after parsing other files is parsed again in a fresh child, and only an
    outcome in a fresh child counts. Forking a worker per file cost ~0.02 s in the parent and
    ~0.02 s of copy-on-write faults in each child (a Dagster process is large): a worker is forked
    once per ``workers`` and reused.

    ``reader_kwargs`` (e.g. ``previous``, a row cache) are sent to the worker with its file; a
    callable instead of a dict is called in the parent just before that file is sent (what it reads
    is held for the running files only). ``previous`` may be an :class:`EarlierParse` (the bytes of
    an earlier parse), decoded in the worker. ``finish(index, result, notes)``, when given, runs in
    the worker on a successful :class:`ReadResult` of task ``index`` and its return value is sent
    instead (e.g. the tables already encoded: work done in parallel, and bytes are cheap to send);
    ``notes`` are the worker's warnings (an earlier parse it could not decode).
    ``on_result(index, outcome)``, when given, is called in the parent as each file's outcome is
    final (e.g. to write it while the workers go on). The largest files are parsed first (the last
    file to finish, with one worker idle, is a small one).
    """
    opts = {"max_xml_mb": limits.max_xml_mb, "max_cells": limits.max_cells}
    if tasks:
        preload_readers({t[0] for t in tasks})  # inherited by every fork instead of loaded by each
    runstate.settle()  # no background work of an earlier step is mid-way in the forked workers
    ctx = mp.get_context("fork")
    results: list = [None] * len(tasks)
    queue = sorted(range(len(tasks)), key=lambda i: _size(tasks[i][1]), reverse=True)
    fresh_only: set[int] = set()  # files to parse again in a fresh worker
    pool: list[_Worker] = []

    def spawn() -> _Worker:
        receive, send = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=_worker, args=(send, limits.memory_mb, finish))
        proc.start()
        send.close()
        return _Worker(proc, receive)

    def retire(w: _Worker) -> None:
        pool.remove(w)
        w.conn.close()
        w.proc.join(timeout=30)
        if w.proc.exitcode is None:
            w.proc.kill()
            w.proc.join()

    def dispatch() -> None:
        """Give the next files to idle workers (forking one where needed), up to ``workers``."""
        for w in [w for w in pool if w.task is None and not w.proc.is_alive()]:
            retire(w)
        while queue and sum(w.task is not None for w in pool) < max(1, workers):
            idle = [w for w in pool if w.task is None]
            i = queue[0]
            if i in fresh_only:
                idle = [w for w in idle if w.done == 0]
            if not idle:
                if len(pool) >= max(1, workers):  # a used worker is idle: it makes room
                    retire(next(w for w in pool if w.task is None))
                idle = [spawn()]
                pool.append(idle[0])
            w = idle[0]
            queue.pop(0)
            lab_format, path, timezone, *extra = tasks[i]
            more = extra[0] if extra else {}
            try:
                w.conn.send((i, lab_format, path, timezone, {**opts, **(more() if callable(more) else more)}))
            except (BrokenPipeError, OSError):  # the worker is gone: the file goes to a fresh one
                queue.insert(0, i)
                retire(w)
                continue
            w.task, w.started = i, time.perf_counter()

    arrived: list[int] = []  # files whose outcome is final, not yet given to on_result
    try:
        # Every worker forked before the first file is sent: sending waits for the worker to read it.
        pool.extend(spawn() for _ in range(min(max(1, workers), len(tasks))))
        dispatch()
        while any(w.task is not None for w in pool):
            busy = [w for w in pool if w.task is not None]
            ready = set(mp.connection.wait([w.conn for w in busy] + [w.proc.sentinel for w in busy]))
            for w in busy:
                if w.conn not in ready and w.proc.sentinel not in ready:
                    continue
                i, outcome, clean = w.task, None, False
                if w.conn in ready or w.conn.poll():
                    try:
                        _, outcome, clean = w.conn.recv()
                    except (EOFError, OSError):
                        outcome = None
                elif w.proc.is_alive():
                    continue
                w.task = None
                if outcome is not None:
                    if not clean and w.done:  # may be what earlier files left: again, in a fresh worker
                        fresh_only.add(i)
                        queue.insert(0, i)
                    else:
                        results[i] = outcome
                        arrived.append(i)
                        w.done += 1
                    if not clean:  # the worker exits after it
                        retire(w)
                    continue
                w.proc.join(timeout=30)
                if w.done:  # died after other files: the file is parsed again in a fresh worker
                    fresh_only.add(i)
                    queue.insert(0, i)
                else:
                    elapsed = time.perf_counter() - w.started
                    results[i] = (None, _crash_reason(tasks[i][1], w.proc.exitcode), elapsed)
                    arrived.append(i)
                retire(w)
            dispatch()  # the next files start before this process handles what arrived
            for i in arrived if on_result is not None else ():
                on_result(i, results[i])
            arrived.clear()
        for w in pool:
            with contextlib.suppress(BrokenPipeError, OSError):
                w.conn.send(None)
    finally:
        for w in list(pool):
            if w.task is not None:  # only on an error of this loop itself
                w.proc.kill()
            retire(w)
    return results


def _hash(storage: Storage, key: str) -> tuple[str, int, str, bool]:
    """sha256, size and a local path of a raw file, without holding it in memory when local.

    Returns ``(sha256, size, local_path, is_temporary)``; raises FileNotFoundError if it vanished.
    """
    if storage.is_local:
        path = storage.full(key)
        digest, size = hashlib.sha256(), 0
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        return digest.hexdigest(), size, path, False
    data = storage.read_bytes(key)
    fd, tmp = tempfile.mkstemp(suffix=posixpath.splitext(key)[1])
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest(), len(data), tmp, True


def ingest_client(
    storage: Storage,
    client: Client,
    *,
    max_file_mb: float = 200.0,
    workers: int = 2,
    log=None,
    warn=None,
    limits: ReaderLimits | None = None,
) -> BronzeBatch:
    """Bring a client's file registry up to date with what is under ``bronze/{client}/``."""
    log = log or (lambda msg: None)
    warnings: list[str] = []

    def warning(msg: str) -> None:
        warnings.append(msg)
        (warn or log)(msg)

    limits = limits or ReaderLimits()
    suffixes, _ = LAB_FORMATS[client.lab_format]
    repairs: list[dict] = []
    previous = load_registry(storage, client.key, repairs)
    for r in repairs:
        warning(f"{r['path']} could not be read ({r['error']}): {r['action']}")
    by_sha = {r.sha256: r for r in previous.itertuples(index=False)}
    by_key = {r.key: r for r in previous.itertuples(index=False)}
    ignored = IGNORED_FILES.get(client.lab_format)
    mtimes: dict[str, int] = {}
    rows: list[dict] = []
    todo: list[tuple[str, str, int, str, bool]] = []
    quarantined: list[dict] = []

    def bad(key: str, sha: str, size: int, reason: dict, copy: bool = True) -> None:
        data = None
        if copy:
            try:
                data = storage.read_bytes(key)
            except FileNotFoundError:
                data = None
        where = quarantine(storage, client.key, key, data, reason)
        log(f"quarantined {key}: {reason['error']} → {where}")
        quarantined.append({"key": key, **reason, "quarantine": where})
        rows.append(
            {
                "key": key,
                "sha256": sha,
                "size": size,
                "lab_format": client.lab_format,
                "status": "quarantined",
                "rows_parsed": 0,
                "rows_rejected": 0,
                "parse_seconds": 0.0,
                "reason": reason["error"],
                "parsed_path": None,
                "mtime_ns": mtimes.get(key, 0),
                "cells_cleared": 0,
                "reader_version": READER_VERSION,
            }
        )

    skipped: list[str] = []
    entries = storage.list_files(layout.bronze_dir(client.key) + "/", skipped)
    for s in skipped:
        warning(f"skipped {s}")
    for entry in entries:
        key = entry.path
        mtimes[key] = entry.arrived_ns
        name = posixpath.basename(key)
        try:
            check_relative(key)
        except UnsafePathError:
            warning(f"skipped {key!r}: unsafe path")
            continue
        if name.startswith(".") or name.endswith(".reason.json"):
            continue
        if entry.size > max_file_mb * 1024 * 1024:
            reason = _error(key, f"file is {entry.size / 1e6:.1f} MB, over the {max_file_mb:g} MB limit")
            bad(key, "", entry.size, reason, copy=False)  # too big to duplicate: the reason names it
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
                    "mtime_ns": entry.arrived_ns,
                    "cells_cleared": 0,
                    "reader_version": READER_VERSION,
                }
            )
            continue
        same = by_key.get(key)
        if (
            same is not None
            and same.size == entry.size
            and same.mtime_ns == entry.arrived_ns
            and (same.status == "quarantined" or (same.parsed_path and storage.exists(same.parsed_path)))
        ):
            rows.append(same._asdict())  # unchanged since the last run: not even read
            continue
        try:
            sha, size, local, is_tmp = _hash(storage, key)
        except FileNotFoundError:
            warning(f"skipped {key}: the file vanished between listing and reading")
            continue
        known = by_sha.get(sha)
        if known is not None and (
            known.status == "quarantined" or (known.parsed_path and storage.exists(known.parsed_path))
        ):
            if is_tmp:
                os.unlink(local)
            rows.append({**known._asdict(), "key": key, "mtime_ns": entry.arrived_ns})
            continue
        if not name.lower().endswith(suffixes):
            if is_tmp:
                os.unlink(local)
            reason = _error(
                key,
                f"wrong lab format for client {client.key!r}: expected a {'/'.join(suffixes)} "
                f"file of format {client.lab_format}",
            )
            bad(key, sha, size, reason)
            continue
        todo.append((key, sha, size, local, is_tmp))

    parsed_now = 0
    rows_reused = rows_reparsed = rows_read = 0
    frames: dict[str, tuple[pd.DataFrame, pd.DataFrame]] = {}
    if todo:
        # An earlier parse of a file key is read just before that file's child starts (the parent
        # holds the running files' bytes only) and decoded by the child, in parallel.
        tasks = [
            (
                client.lab_format,
                local,
                client.timezone,
                functools.partial(_earlier, storage, by_key.get(key), warning),
            )
            for key, *_, local, _ in todo
        ]

        def write(i: int, outcome: tuple) -> None:
            """A parse's files, written as it arrives (while the workers parse the next files)."""
            if outcome[1] is None:
                _write_parse(storage, layout.parsed_path(client.key, todo[i][1]), outcome[0])

        try:
            results = parse_isolated(
                tasks,
                workers=workers,
                limits=limits,
                finish=lambda i, result, notes: EncodedParse.of(result, todo[i][0], notes),
                on_result=write,
            )
        finally:
            for *_, local, is_tmp in todo:
                if is_tmp and os.path.exists(local):
                    os.unlink(local)
        for (key, sha, size, _, _), (result, error, seconds) in zip(todo, results, strict=True):
            if error is not None and error.get("vanished"):
                warning(f"skipped {key}: the file vanished between listing and reading")
                continue
            if error is not None:
                error["file"] = posixpath.basename(key)
                bad(key, sha, size, error)
                continue
            for note in result.notes:
                warning(note)
            parsed = layout.parsed_path(client.key, sha)  # written as it arrived (_write_parse)
            if result.frames is not None:
                frames[parsed] = result.frames
            rows_reused += int(result.info.get("rows_reused", 0))
            rows_reparsed += int(result.info.get("rows_parsed", result.info.get("rows_read", 0)))
            rows_read += int(result.info.get("sheet_rows_read", result.info.get("rows_read", 0)))
            parsed_now += 1
            rows.append(
                {
                    "key": key,
                    "sha256": sha,
                    "size": size,
                    "lab_format": client.lab_format,
                    "status": "ok",
                    "rows_parsed": result.n_samples,
                    "rows_rejected": int(result.info.get("rows_rejected", result.n_rejects)),
                    "parse_seconds": round(seconds, 3),
                    "reason": None,
                    "parsed_path": parsed,
                    "mtime_ns": mtimes.get(key, 0),
                    "cells_cleared": result.cells_cleared,
                    "reader_version": READER_VERSION,
                }
            )
    registry = pd.DataFrame(rows, columns=REGISTRY_COLUMNS) if rows else empty_registry()
    registry = registry.sort_values("key", kind="mergesort").reset_index(drop=True)
    for c in INT_COLUMNS:
        registry[c] = pd.to_numeric(registry[c], errors="coerce").fillna(0).astype("int64")
    registry["parse_seconds"] = registry["parse_seconds"].astype("float64")
    for c in ("key", "sha256", "lab_format", "status", "reason", "parsed_path", "reader_version"):
        registry[c] = registry[c].astype("string")
    return BronzeBatch(
        registry,
        parsed_now,
        len(rows) - parsed_now - len(quarantined),
        quarantined,
        warnings,
        repairs,
        rows_reused,
        rows_reparsed,
        rows_read,
        frames,
    )


def _write_parse(storage: Storage, parsed: str, result: EncodedParse) -> None:
    """Write the files of one parse (samples, ledger, row cache) under its parsed path."""
    storage.write_bytes(parsed, result.samples)
    storage.write_bytes(parsed.replace(".parquet", ".rejects.parquet"), result.rejects)
    if result.rows is not None:
        rows_path, cache_path = _row_cache_paths(parsed)
        storage.write_bytes(rows_path, result.rows)
        storage.write_bytes(cache_path, result.cache)


def _row_cache_paths(parsed: str) -> tuple[str, str]:
    """The row digests and the reusable tables (samples, ledger and its order) of a cached parse,
    beside its samples."""
    return parsed.replace(".parquet", ".rows.parquet"), parsed.replace(".parquet", ".rowcache.arrow")


# The reusable tables of a parse as Arrow IPC streams (read back without decoding: a parquet file
# of ~90 columns costs ~10 ms to decode, its IPC stream ~0.1 ms). Bump on a layout change: a cache
# of another layout is not used (the file is parsed in full).
_CACHE_MAGIC = b"oil-rowcache-2\n"


def _pack(tables: dict[str, pa.Table]) -> bytes:
    """Tables → one blob: the magic, a JSON index of ``name → [offset, length]``, IPC streams."""
    streams = {}
    for name, table in tables.items():
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema, options=_IPC_OPTIONS) as writer:
            writer.write_table(table)
        streams[name] = sink.getvalue()
    index, at = {}, 0
    for name, buf in streams.items():
        index[name] = [at, buf.size]
        at += buf.size
    head = json.dumps(index).encode()
    return b"".join(
        [_CACHE_MAGIC, len(head).to_bytes(4, "little"), head, *(b.to_pybytes() for b in streams.values())]
    )


def _unpack(blob: bytes) -> dict[str, pa.Table]:
    """The tables of :func:`_pack` (ValueError on another layout or a truncated blob)."""
    if not blob.startswith(_CACHE_MAGIC):
        raise ValueError("not a row cache of this layout")
    view = memoryview(blob)[len(_CACHE_MAGIC) :]
    size = int.from_bytes(view[:4], "little")
    index = json.loads(bytes(view[4 : 4 + size]))
    body = view[4 + size :]
    out = {}
    for name, (at, length) in index.items():
        if at < 0 or length < 0 or at + length > len(body):
            raise ValueError(f"the row cache is truncated (part {name})")
        out[name] = pa.ipc.open_stream(pa.py_buffer(body[at : at + length])).read_all()
    return out


_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")
# The parse cache is read by this code only, often in the run that wrote it: snappy writes and reads
# in half the time of the published files' zstd (the cache is ~20 % larger).
_CACHE_PARQUET = {"compression": "snappy", "write_statistics": True}


_SCHEMAS: dict[tuple, pa.Schema] = {}


def _arrow(frame: pd.DataFrame) -> pa.Table:
    """``pa.Table.from_pandas(frame, preserve_index=False)``, in a fraction of its time for the
    readers' frames: the schema (with its pandas metadata) is made once per column layout (it
    depends on the columns' names and dtypes only), and each column's array is converted as is."""
    dtypes = frame.dtypes.tolist()
    if any(isinstance(t, np.dtype) and t.kind == "O" for t in dtypes) or not frame.columns.is_unique:
        return pa.Table.from_pandas(frame, preserve_index=False)  # the types inferred from the values
    key = tuple(zip(frame.columns, dtypes, strict=True))  # dtypes compare and hash as they are
    schema = _SCHEMAS.get(key)
    if schema is None:
        if len(_SCHEMAS) > 64:
            _SCHEMAS.clear()
        schema = _SCHEMAS[key] = pa.Table.from_pandas(frame.iloc[:0], preserve_index=False).schema
    arrays = [
        pa.array(values, type=f.type, from_pandas=True)
        for values, f in zip(frame._iter_column_arrays(), schema, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


_EMPTY_LEDGER: list[tuple[pa.Table, bytes]] = []


def _empty_ledger() -> tuple[pd.DataFrame, pa.Table, bytes]:
    """An empty ledger, its Arrow table and its cached parquet bytes (converted and written once)."""
    rej = empty_rejects()
    if not _EMPTY_LEDGER:
        ledger = _arrow(rej)
        _EMPTY_LEDGER.append((ledger, table_parquet_bytes(ledger, _CACHE_PARQUET)))
    return rej, *_EMPTY_LEDGER[0]


@dataclass
class EncodedParse:
    """A parse as the registry stores it: the bytes of its files (made in the parse child, in
    parallel; the parent only writes them), the figures the registry row needs, and the tables as
    :func:`~oil_analysis.storage.registry.load_parsed` reads them back (handed to silver in-process)."""

    samples: bytes
    rejects: bytes
    rows: bytes | None  # the row cache (row digests; reusable tables), for the next re-send
    cache: bytes | None
    n_samples: int
    n_rejects: int
    cells_cleared: int
    info: dict
    notes: list[str]
    frames: tuple[pd.DataFrame, pd.DataFrame] | None = None  # (samples, ledger) of this content

    @classmethod
    def of(cls, result: ReadResult, key: str, notes: list[str]) -> EncodedParse:
        """Encode ``result`` of the raw file ``key`` (the tables ``Storage.write_parquet`` writes)."""
        samples = result.samples.assign(sourceFile=key)
        # Each table converted once, for its parquet file and the row cache (in one chunk per
        # column: a re-send's samples are joined from slices, its cache written as one batch).
        table = _arrow(samples).combine_chunks()
        if len(result.rejects):
            rej = ledger_types(result.rejects.assign(file=key))
            ledger = _arrow(rej)
            ledger_bytes = table_parquet_bytes(ledger, _CACHE_PARQUET)
        else:  # the usual parse: no record (an empty ledger, the same bytes for every file)
            rej, ledger, ledger_bytes = _empty_ledger()
        cache = result.row_cache
        rows = blob = None
        if cache is not None:
            digests = pa.table(
                {
                    "row": pa.array(cache.rows["row"].to_numpy(), pa.int64()),
                    "hash": pa.array(cache.rows["hash"].to_numpy(dtype=object), pa.string()),
                    "dates": pa.array(cache.rows["dates"].to_numpy(), pa.int64()),
                }
            )
            rows = table_parquet_bytes(
                digests.replace_schema_metadata({"context": cache.context}), _CACHE_PARQUET
            )
            calls = pa.array(cache.reject_calls.astype("int64"))
            tables = {"samples": table, "rejects": ledger.append_column("_call", calls)}
            if cache.xml is not None:  # the XML row table (see domain/labs/xlsx_rows.py)
                xml = pa.table(
                    {
                        "key": pa.array(cache.xml["key"].tolist(), pa.string()),
                        "hash": pa.array(cache.xml["hash"].tolist(), pa.string()),
                        "flags": pa.array(cache.xml["flags"].to_numpy(), pa.int64()),
                    }
                )
                tables["xml"] = xml.replace_schema_metadata({"context": cache.xml_context})
            if cache.source is not None:  # a first parse: the raw file, split if it comes back
                tables["source"] = pa.table({"bytes": pa.array([cache.source], pa.large_binary())})
            blob = _pack(tables)
        return cls(
            table_parquet_bytes(table, _CACHE_PARQUET),
            ledger_bytes,
            rows,
            blob,
            int(len(samples)),
            int(len(result.rejects)),
            int(samples["cellsCleared"].sum()) if "cellsCleared" in samples else 0,
            result.info,
            notes,
            (samples, rej),
        )


@dataclass
class EarlierParse:
    """The row cache of an earlier parse of a file key, as bytes: read by the parent (storage access
    stays in the parent), decoded into a :class:`RowCache` by the parse child."""

    key: str
    rows: bytes
    cache: bytes

    def decode(self, notes: list[str]) -> RowCache | None:
        """The row cache; None (and a note) when it cannot be used: the file is then parsed in full."""
        try:
            digests = pq.read_table(io.BytesIO(self.rows), use_threads=False)
            context = (digests.schema.metadata or {}).get(b"context")
            if context is None or not digests.num_rows:
                raise ValueError("the row digests have no context")
            tables = _unpack(self.cache)
            ledger = tables["rejects"]
            rejects = (
                ledger_types(ledger.drop_columns(["_call"]).to_pandas())
                if ledger.num_rows
                else empty_rejects()  # the usual earlier parse: no record
            )
            xml = tables.get("xml")
            return RowCache(
                context.decode(),
                pd.DataFrame(
                    {
                        "row": digests["row"].to_numpy(),
                        "hash": digests["hash"].to_numpy(zero_copy_only=False),
                        "dates": digests["dates"].to_numpy(),
                    }
                ),
                tables["samples"],  # taken from as Arrow: only the result is made a frame
                rejects,
                ledger["_call"].to_numpy(),
                None if xml is None else xml.to_pandas(),
                None if xml is None else xml.schema.metadata[b"context"].decode(),
                None if "source" not in tables else tables["source"]["bytes"][0].as_py(),
            )
        except Exception as exc:
            notes.append(
                f"{self.key}: row cache not used ({type(exc).__name__}: {exc}); the file is parsed in full"
            )
            return None


def _earlier(storage: Storage, previous, warning) -> dict:
    """Reader arguments of a file: ``previous``, the row cache of the earlier parse of its key (same
    reader version), when there is one. A re-sent cumulative workbook is then parsed only for its
    new or changed rows. Files that cannot be read only cost a full parse (with a warning)."""
    if previous is None or previous.status != "ok" or not previous.parsed_path:
        return {}
    rows_path, cache_path = _row_cache_paths(previous.parsed_path)
    try:
        if not (storage.exists(rows_path) and storage.exists(cache_path)):
            return {}
        return {
            "previous": EarlierParse(
                previous.key, storage.read_bytes(rows_path), storage.read_bytes(cache_path)
            )
        }
    except Exception as exc:
        warning(
            f"{previous.key}: row cache not used ({type(exc).__name__}: {exc}); the file is parsed in full"
        )
        return {}


def unknown_client_folders(storage: Storage, clients) -> list[str]:
    """Folders under ``bronze/`` that are not registered clients: their files are never read."""
    known = set(clients) | set(layout.RESERVED_BRONZE)
    seen = set()
    for entry in storage.list_files(layout.BRONZE + "/"):
        parts = entry.path.split("/")
        if len(parts) > 2 and parts[1] not in known:
            seen.add(parts[1])
    return sorted(seen)
