"""Input fingerprints and the in-process memo: how a step knows nothing it depends on changed.

Every published asset output records, beside its files, the **fingerprint of its inputs**
(``silver/_state/{client}/fingerprints/{asset}.json``): a hash of the asset's code version, its
parameters and the fingerprints of the upstream outputs it was computed from. A step whose inputs
have the fingerprint of its published output (and whose files are still there) has nothing to do:
it returns an *unchanged* placeholder instead of a table, the IO manager writes nothing, and the
next step, seeing only upstream fingerprints, decides the same way without reading a table. The
fingerprint is also the Dagster data version of the output (shown in the UI with the metadata
``unchanged``).

The memo keeps the frames published (or found unchanged) by the current run in this process, so a
step of the same run gets its inputs without reading them back from storage (in-process runs; with
one process per step the memo is empty and inputs are read as before). The parses bronze made in
this run are kept the same way for silver (:func:`remember_parsed`).

No dagster import.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import pandas as pd

from . import layout
from .filesystem import parquet_frame

UNCHANGED = "unchanged_fingerprint"
KEPT = "kept_as_published"
_MEMO: dict[tuple, pd.DataFrame] = {}
_PENDING: dict[tuple, dict] = {}
_SIDE: dict[tuple, list] = {}
_PARSED: dict[tuple, dict[str, tuple[pd.DataFrame, pd.DataFrame]]] = {}
_PREPARED: dict[tuple, tuple[pd.DataFrame, Future]] = {}
_PREFETCHED: dict[tuple, Future] = {}
_LOCK = threading.Lock()
# One worker for work a step hands off while it goes on (a parquet file rendered, a JSON column
# parsed): Arrow releases the GIL, so the second core does it.
_BACKGROUND = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oil-background")


def _fresh_after_fork() -> None:
    """A forked child has none of its parent's threads: it gets its own worker and no parent work."""
    global _BACKGROUND, _LOCK
    _BACKGROUND = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oil-background")
    _LOCK = threading.Lock()
    _PREPARED.clear()
    _PREFETCHED.clear()


os.register_at_fork(after_in_child=_fresh_after_fork)


def in_background(fn: Callable, *args) -> Future:
    """Run ``fn(*args)`` on the background worker (one at a time, in submission order)."""
    return _BACKGROUND.submit(fn, *args)


def settle() -> None:
    """Wait until the background worker has done what was handed to it (e.g. before forking: a
    child must not inherit a lock that thread held mid-task, such as one of Arrow's)."""
    _BACKGROUND.submit(lambda: None).result()


def fingerprint(asset: str, code_version: str | None, inputs: dict) -> str:
    """A stable hash of what an asset output is a function of (``inputs``: JSON-able values;
    dataclass parameters are expanded)."""

    def plain(v):
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return dataclasses.asdict(v)
        return v

    doc = {"asset": asset, "code_version": code_version, "inputs": {k: plain(v) for k, v in inputs.items()}}
    text = json.dumps(doc, sort_keys=True, default=str)
    return "fp-" + hashlib.sha256(text.encode()).hexdigest()[:20]


def state_path(client: str, asset: str) -> str:
    return f"{layout.silver_state_dir(client)}/fingerprints/{asset}.json"


def read_state(store, client: str, asset: str) -> dict | None:
    """The recorded state of the published output of ``asset`` (None: never recorded)."""
    path = state_path(client, asset)
    return store.read_json(path) if store.exists(path) else None


def published_fingerprint(store, client: str, asset: str) -> str | None:
    state = read_state(store, client, asset)
    return state.get("fingerprint") if state else None


def write_state(store, client: str, asset: str, state: dict) -> None:
    store.write_json(state_path(client, asset), state)


def clear_state(store, client: str, asset: str) -> None:
    """Forget the recorded fingerprint (an output is being replaced by one that may record none)."""
    store.delete(state_path(client, asset))


def unchanged_frame(fp: str) -> pd.DataFrame:
    """The placeholder a step returns when its published output is still right."""
    frame = pd.DataFrame()
    frame.attrs[UNCHANGED] = fp
    return frame


def is_unchanged(frame) -> bool:
    return isinstance(frame, pd.DataFrame) and bool(frame.attrs.get(UNCHANGED))


def kept(frame: pd.DataFrame) -> pd.DataFrame:
    """Mark a frame read from its published files and returned as is (limits kept by the refresh
    decision): the IO manager writes nothing but hands the frame to the next steps."""
    frame.attrs[KEPT] = True
    return frame


def is_kept(frame) -> bool:
    return isinstance(frame, pd.DataFrame) and bool(frame.attrs.get(KEPT))


def set_pending(run_id: str, client: str, asset: str, state: dict) -> None:
    """The state to record once the IO manager has written this output (same process, same step)."""
    with _LOCK:
        _PENDING[(run_id, client, asset)] = state


def pop_pending(run_id: str, client: str, asset: str) -> dict | None:
    with _LOCK:
        return _PENDING.pop((run_id, client, asset), None)


def set_side_files(run_id: str, client: str, asset: str, files: list[tuple[str, bytes, int | None]]) -> None:
    """Side files (path, bytes, rows) the IO manager publishes in the same commit as this output
    (same process, same step): a blocked output publishes none of them."""
    with _LOCK:
        _SIDE[(run_id, client, asset)] = files


def pop_side_files(run_id: str, client: str, asset: str) -> list[tuple[str, bytes, int | None]]:
    with _LOCK:
        return _SIDE.pop((run_id, client, asset), [])


def _keep(table: dict, key: tuple, value) -> None:
    """``table[key] = value`` (``key[0]`` is the run id); what older runs kept there is dropped.
    Call with ``_LOCK`` held."""
    for old in [k for k in table if k[0] != key[0]]:
        del table[old]
    table[key] = value


def remember_parsed(run_id: str, root: str, parsed: dict[str, tuple[pd.DataFrame, pd.DataFrame]]) -> None:
    """Keep the parses this run's bronze made (parsed path → samples, ledger, as
    :func:`~oil_analysis.storage.registry.load_parsed` reads them) for this run's silver; the
    parses of older runs are dropped."""
    with _LOCK:
        _keep(_PARSED, (run_id, root), {**_PARSED.get((run_id, root), {}), **parsed})


def recall_parsed(run_id: str, root: str, parsed_path: str) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The parse of ``parsed_path`` made by this run in this process (None: read it from storage)."""
    with _LOCK:
        return _PARSED.get((run_id, root), {}).get(parsed_path)


def remember(run_id: str, root: str, client: str, asset: str, frame: pd.DataFrame) -> None:
    """Keep the output of this run in memory for the next steps; outputs of older runs are dropped."""
    with _LOCK:
        _keep(_MEMO, (run_id, root, client, asset), frame)


def recall(run_id: str, root: str, client: str, asset: str) -> pd.DataFrame | None:
    """This run's output of ``asset`` if it was produced in this process (a shallow copy: a consumer
    adding columns never changes what the next consumer sees)."""
    with _LOCK:
        frame = _MEMO.get((run_id, root, client, asset))
    return None if frame is None else frame.copy(deep=False)


def prepare(
    run_id: str, client: str, asset: str, frame: pd.DataFrame, render: Callable[[pd.DataFrame], bytes]
):
    """Start ``render(frame)`` (its file's bytes) in the background; the IO manager takes them with
    :func:`take_prepared` when it is handed this very frame (never mutated meanwhile: outputs are
    not written into). Preparations of other runs are dropped."""
    with _LOCK:
        _keep(_PREPARED, (run_id, client, asset), (frame, _BACKGROUND.submit(render, frame)))


def take_prepared(run_id: str, client: str, asset: str, frame: pd.DataFrame) -> bytes | None:
    """The bytes :func:`prepare` rendered for ``frame`` (the same object), else None. An error of
    the rendering is raised here, as it would have been by rendering now."""
    with _LOCK:
        entry = _PREPARED.pop((run_id, client, asset), None)
    if entry is None or entry[0] is not frame:
        return None
    return entry[1].result()


def prefetch(run_id: str, store, path: str) -> None:
    """Start reading the parquet table at ``path`` on the background worker, for a later step of
    this run (:func:`read_table`); what older runs prefetched is dropped."""

    def read():
        if not store.exists(path):
            return None
        data = store.read_bytes(path)
        return data, parquet_frame(data)

    with _LOCK:
        _keep(_PREFETCHED, (run_id, store.uri, path), _BACKGROUND.submit(read))


def read_table(run_id: str, store, path: str) -> pd.DataFrame | None:
    """The table at ``path`` as ``store.read_parquet`` gives it now (None: no such file): the frame
    :func:`prefetch` decoded when the file still holds the very bytes it decoded (compared byte for
    byte: a file published meanwhile is read again), else read now. Each prefetch is used once."""
    with _LOCK:
        pending = _PREFETCHED.pop((run_id, store.uri, path), None)
    if not store.exists(path):
        return None
    done = None
    if pending is not None:
        try:
            done = pending.result()
        except Exception:  # noqa: BLE001 - the read below raises it again if it still stands
            done = None
    if done is not None and store.read_bytes(path) == done[0]:
        return done[1]
    return store.read_parquet(path)
