"""The local-instance SQLite tuning: only dagster's run/event databases, WAL-only, same contents."""

from __future__ import annotations

import sqlite3
import time

from dagster import DagsterInstance
from dagster._core.events.log import EventLogEntry

from oil_analysis.resources import sqlite_instance


def test_only_the_instance_run_and_event_databases_are_tuned(tmp_path):
    assert sqlite_instance.is_instance_db(str(tmp_path / "history" / "runs" / "index.db"))
    assert sqlite_instance.is_instance_db(str(tmp_path / "history" / "runs" / "0ebe4279.db"))
    assert sqlite_instance.is_instance_db(str(tmp_path / "history" / "runs.db"))
    assert not sqlite_instance.is_instance_db(str(tmp_path / "schedules" / "schedules.db"))
    assert not sqlite_instance.is_instance_db(str(tmp_path / "data" / "runs" / "cache.db"))
    assert not sqlite_instance.is_instance_db(str(tmp_path / "history" / "runs" / "notes.sqlite"))


def test_event_writes_keep_a_connection_and_skip_commit_fsyncs(tmp_path):
    """A real instance on disk: the events round-trip, each written shard has a kept connection
    (closing dagster's connection is then not the last close: no checkpoint) and new connections
    to it run with synchronous=NORMAL (1) in WAL mode."""
    sqlite_instance.install()
    sqlite_instance.install()  # idempotent: one listener
    sqlite_instance.close_kept()
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        for i in range(3):
            instance.event_log_storage.store_event(
                EventLogEntry(
                    error_info=None, level=20, user_message=f"m{i}", run_id="run1", timestamp=time.time()
                )
            )
        logs = instance.event_log_storage.get_logs_for_run("run1")
        assert [e.user_message for e in logs] == ["m0", "m1", "m2"]
        shard = tmp_path / "history" / "runs" / "run1.db"
        assert str(shard) in sqlite_instance._kept
        assert str(tmp_path / "history" / "runs" / "index.db") in sqlite_instance._kept
        with instance.event_log_storage.run_connection("run1") as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    sqlite_instance.close_kept()
    assert not sqlite_instance._kept
    # Another process (plain sqlite3, default settings) reads the same rows: nothing is lost.
    with sqlite3.connect(shard) as plain:
        assert plain.execute("SELECT count(*) FROM event_logs").fetchone()[0] == 3


def test_non_instance_sqlite_files_are_left_alone(tmp_path):
    from sqlalchemy import create_engine, text

    sqlite_instance.install()
    other = tmp_path / "elsewhere.db"
    engine = create_engine(f"sqlite:///{other}")
    with engine.connect() as conn:
        conn.execute(text("PRAGMA journal_mode=WAL"))
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL, SQLite's default
    engine.dispose()
    assert str(other) not in sqlite_instance._kept
