"""Cheaper writes into the local (SQLite) Dagster instance from the processes that run our steps.

Dagster's SQLite storages open a new connection for every statement batch (``NullPool``): a run of
the 11-truck client writes ~110 events through ~280 connections into the run's shard and the
``index.db`` shard under ``$DAGSTER_HOME/history``. Each close of the last connection to a WAL
database checkpoints it (copies the WAL back and fsyncs the file), and each commit fsyncs the WAL:
~15 ms per write on this machine kind, 3–5 s of a CLI materialization (bench/README.md).

:func:`install` registers a SQLAlchemy ``connect`` listener that, for those instance databases only:

* sets ``PRAGMA synchronous=NORMAL`` on the connection: in WAL mode a commit no longer waits for
  an fsync; the database cannot be corrupted by a crash, a power loss may drop the last commits
  (SQLite's documented guarantee for WAL + NORMAL), acceptable for a local development instance;
* keeps one idle connection open per database (at most :data:`MAX_KEPT`, least recently used
  closed first) so that closing dagster's connection is not the last close and does not checkpoint;
  SQLite still checkpoints automatically every 1000 WAL pages, and the kept connections are closed
  at exit.

The files, schema and contents are exactly dagster's: the UI, the daemon and ``dagster instance``
commands see the same instance. PostgreSQL instances (``deploy/dagster.prod.yaml``) are untouched.
"""

from __future__ import annotations

import atexit
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path

# Kept connections: a run touches its own shard, index.db and runs.db; a few more cover concurrent
# runs in a long-lived code server without holding a file descriptor per run ever seen.
MAX_KEPT = 8

_kept: OrderedDict[str, sqlite3.Connection] = OrderedDict()
_lock = threading.Lock()
_installed = False


def is_instance_db(path: str) -> bool:
    """True for the SQLite files of a local Dagster instance's run and event-log storage."""
    p = Path(path)
    if p.suffix != ".db":
        return False
    return (p.parent.name == "runs" and p.parent.parent.name == "history") or (
        p.name == "runs.db" and p.parent.name == "history"
    )


def _keep_open(path: str) -> None:
    with _lock:
        if path in _kept:
            _kept.move_to_end(path)
            return
        conn = sqlite3.connect(path, check_same_thread=False)
        # A connection takes its share of the WAL index only once it has read the database.
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        _kept[path] = conn
        while len(_kept) > MAX_KEPT:
            _kept.popitem(last=False)[1].close()


def close_kept() -> None:
    """Close the kept connections (at exit; tests)."""
    with _lock:
        while _kept:
            _kept.popitem(last=False)[1].close()


def _on_connect(dbapi_conn, _record) -> None:
    if not isinstance(dbapi_conn, sqlite3.Connection):
        return
    row = dbapi_conn.execute("PRAGMA database_list").fetchone()
    path = row[2] if row else ""
    if not path or not is_instance_db(path):
        return
    mode = dbapi_conn.execute("PRAGMA journal_mode").fetchone()[0]
    if str(mode).lower() != "wal":
        # NORMAL is only crash-safe in WAL mode; dagster creates its databases in WAL mode.
        return
    dbapi_conn.execute("PRAGMA synchronous=NORMAL")
    _keep_open(path)


def install() -> None:
    """Register the listener once per process (idempotent)."""
    global _installed
    if _installed:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    event.listen(Engine, "connect", _on_connect)
    atexit.register(close_kept)
    _installed = True
