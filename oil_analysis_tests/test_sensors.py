"""Sensors on a real S3 server and on local disk, with a real Dagster instance; the weekly schedule."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from dagster import DagsterInstance, build_schedule_context, build_sensor_context

from oil_analysis.automation.arrivals import Cursor, RawObject, client_of, plan_tick
from oil_analysis.automation.schedule_status import schedule_status
from oil_analysis.automation.sensors import raw_files_local_sensor, raw_files_s3_sensor, weekly_limits_refresh
from oil_analysis.definitions import defs
from oil_analysis.settings import resolve

from .builders import finning_row, write_finning
from .conftest import DEMO_BRONZE
from .s3_server import s3_env, s3_server  # noqa: F401

DAY = "2026-11-20"


def tick(sensor, instance, cursor):
    result = sensor(build_sensor_context(instance=instance, cursor=cursor, definitions=defs))
    return list(result.run_requests or []), result.cursor


def execute(instance, request):
    """Run the requested partition in-process, as the daemon would launch it."""
    job = defs.resolve_job_def("oil_analysis_job")
    result = job.execute_in_process(
        partition_key=request.partition_key,
        tags=request.tags,
        instance=instance,
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    assert result.success


def small_workbook(path: pathlib.Path, first: int) -> pathlib.Path:
    rows = [
        finning_row(i, **{"No. de control de laboratorio": f"R777-{first:05d}-{i:04d}"}) for i in range(4)
    ]
    return write_finning(path, rows)


def test_s3_sensor_requests_one_run_per_new_content(s3_server, s3_env, tmp_path):  # noqa: F811
    prefix = s3_env
    s3 = s3_server.client()
    for client in ("cda", "emin"):
        s3_server.upload_tree(DEMO_BRONZE / client, f"{prefix}/bronze/{client}/{DAY}")
    s3.put_object(Bucket=s3_server.bucket, Key=f"{prefix}/bronze/acme/{DAY}/x.xlsx", Body=b"x")
    s3.put_object(Bucket=s3_server.bucket, Key=f"{prefix}/elsewhere/y.xlsx", Body=b"y")
    with DagsterInstance.ephemeral() as instance:
        # First tick: one run per client with files.
        requests, cursor = tick(raw_files_s3_sensor, instance, None)
        assert sorted(r.partition_key for r in requests) == ["cda", "emin"]
        cda = next(r for r in requests if r.partition_key == "cda")
        assert cda.tags["oil/files"] == "3" and cda.run_key.startswith("cda:")
        for r in requests:
            execute(instance, r)
        # No change: nothing.
        requests, cursor = tick(raw_files_s3_sensor, instance, cursor)
        assert requests == []
        # A new file: exactly one run for its client, keyed by object key and ETag.
        wb = small_workbook(tmp_path / "T-77.xlsx", 1)
        key = f"{prefix}/bronze/cda/2026-11-21/T-77.xlsx"
        s3.put_object(Bucket=s3_server.bucket, Key=key, Body=wb.read_bytes())
        etag = s3.head_object(Bucket=s3_server.bucket, Key=key)["ETag"].strip('"')
        requests, cursor = tick(raw_files_s3_sensor, instance, cursor)
        assert [(r.partition_key, r.run_key) for r in requests] == [
            ("cda", f"bronze/cda/2026-11-21/T-77.xlsx@{etag}")
        ]
        execute(instance, requests[0])
        # The new file's samples reached gold without any other step.
        gold = s3.get_object(Bucket=s3_server.bucket, Key=f"{prefix}/gold/cda/classified_reports.parquet")[
            "Body"
        ]
        reports = pd.read_parquet(pd.io.common.BytesIO(gold.read()))
        assert {f"R777-00001-{i:04d}" for i in range(4)} <= set(reports["sampleNumber"])
        # Re-uploading identical bytes: nothing.
        s3.put_object(Bucket=s3_server.bucket, Key=key, Body=wb.read_bytes())
        requests, cursor = tick(raw_files_s3_sensor, instance, cursor)
        assert requests == []
        # Overwriting with new bytes: one run.
        s3.put_object(
            Bucket=s3_server.bucket, Key=key, Body=small_workbook(tmp_path / "T-77b.xlsx", 2).read_bytes()
        )
        requests, cursor = tick(raw_files_s3_sensor, instance, cursor)
        assert [r.partition_key for r in requests] == ["cda"]


def test_local_sensor_same_rules(data_root, tmp_path):
    shutil.copytree(DEMO_BRONZE / "cda", data_root / "bronze/cda")
    with DagsterInstance.ephemeral() as instance:
        requests, cursor = tick(raw_files_local_sensor, instance, None)
        assert [r.partition_key for r in requests] == ["cda"]
        execute(instance, requests[0])
        requests, cursor = tick(raw_files_local_sensor, instance, cursor)
        assert requests == []
        new = small_workbook(data_root / "bronze/cda/2026-11-21/T-78.xlsx", 3)
        requests, cursor = tick(raw_files_local_sensor, instance, cursor)
        assert [r.partition_key for r in requests] == ["cda"]
        execute(instance, requests[0])
        # Same bytes saved again (new modification time): nothing.
        data = new.read_bytes()
        new.write_bytes(data)
        os.utime(new, None)
        requests, cursor = tick(raw_files_local_sensor, instance, cursor)
        assert requests == []
        small_workbook(new, 4)
        requests, cursor = tick(raw_files_local_sensor, instance, cursor)
        assert [r.partition_key for r in requests] == ["cda"]


def test_a_copy_that_keeps_an_old_modification_time_still_triggers(data_root):
    """``cp -p``, ``rsync -t`` and unzip keep the sender's modification time, older than anything the
    sensor has seen: the file's arrival (its status-change time) is what counts."""
    shutil.copytree(DEMO_BRONZE / "cda", data_root / "bronze/cda")
    with DagsterInstance.ephemeral() as instance:
        requests, cursor = tick(raw_files_local_sensor, instance, None)
        execute(instance, requests[0])
        assert tick(raw_files_local_sensor, instance, cursor)[0] == []
        sent = small_workbook(data_root.parent / "outbox" / "T-79.xlsx", 5)
        month_ago = sent.stat().st_mtime - 30 * 86400
        os.utime(sent, (month_ago, month_ago))  # as the lab's machine stamped it
        arrived = data_root / "bronze/cda/T-79.xlsx"
        shutil.copy2(sent, arrived)  # keeps the old modification time
        assert arrived.stat().st_mtime == month_ago
        requests, cursor = tick(raw_files_local_sensor, instance, cursor)
        assert [r.partition_key for r in requests] == ["cda"]
        assert any(v for k, v in requests[0].tags.items() if k.startswith("oil/file."))
        execute(instance, requests[0])
        reports = pd.read_parquet(data_root / "gold/cda/classified_reports.parquet")
        assert reports["sampleNumber"].astype(str).str.startswith("R777-00005-").sum() == 4


def test_product_outputs_and_foreign_keys_never_trigger():
    assert client_of("bronze/_quarantine/cda/x.xlsx", ["cda"])[1] == "product output (registry or quarantine)"
    assert client_of("bronze/acme/x.xlsx", ["cda"])[1] == "unknown client 'acme'"
    assert client_of("silver/x.parquet", ["cda"])[1] == "outside the bronze/ prefix"
    assert client_of("bronze/cda/../emin/x.parquet", ["cda", "emin"])[1] == "unsafe key"
    assert client_of("bronze/cda/2026-01-01/T-1.xlsx", ["cda"]) == ("cda", None)


def test_bounded_work_per_tick_and_nothing_lost():
    objects = sorted(
        (RawObject(f"bronze/c{i % 30:02d}/f{i:05d}.xlsx", f"e{i}", 1000.0 + i) for i in range(10_010)),
        key=lambda o: o.key,
    )  # a listing is in key order
    clients = [f"c{i:02d}" for i in range(30)]

    def listing(after, limit):
        rest = [o for o in objects if after is None or o.key > after]
        return rest[:limit], len(rest) <= limit

    requested: set[str] = set()
    cursor, ticks, calls = Cursor(), 0, []
    while ticks < 100:
        plan = plan_tick(
            listing, cursor, clients, lambda o: o.token in requested, max_keys=4000, max_runs=8, now=1e9
        )
        calls.append(plan.listed)
        for files in plan.requests.values():
            requested.update(f.token for f in files)
        cursor, ticks = plan.cursor, ticks + 1
        if not plan.requests and cursor.scan_after is None and cursor.hw > 0:
            break
    assert max(calls) <= 4000 and ticks < 100
    assert requested == {o.token for o in objects}
    # The mark now covers everything: one more tick finds nothing new.
    assert not plan_tick(listing, cursor, clients, lambda o: False, max_keys=20_000, now=1e9).requests


def test_same_second_files_are_not_missed():
    first = [RawObject("bronze/cda/a.xlsx", "1", 500.0)]
    both = first + [RawObject("bronze/cda/b.xlsx", "2", 500.0)]
    plan = plan_tick(lambda a, n: (first, True), Cursor(), ["cda"], lambda o: False, now=1e9)
    plan2 = plan_tick(lambda a, n: (both, True), plan.cursor, ["cda"], lambda o: False, now=1e9)
    assert [f.key for f in plan2.requests["cda"]] == ["bronze/cda/b.xlsx"]


def test_weekly_schedule_requests_every_client():
    ctx = build_schedule_context(
        scheduled_execution_time=pd.Timestamp("2026-11-23 06:00", tz="UTC").to_pydatetime()
    )
    requests = list(weekly_limits_refresh(ctx))
    assert [(r.partition_key, r.run_key) for r in requests] == [
        ("cda", "limits-refresh-2026-11-23-cda"),
        ("emin", "limits-refresh-2026-11-23-emin"),
    ]
    assert weekly_limits_refresh.cron_schedule == "0 6 * * 1"


@pytest.mark.parametrize("force", [False, True])
def test_schedule_run_keeps_or_forces_limits(demo_root, force):
    job = defs.resolve_job_def("oil_analysis_job")
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    with DagsterInstance.ephemeral() as instance:
        assert job.execute_in_process(partition_key="cda", instance=instance, run_config=quiet).success
        tags = {"oil/trigger": "weekly_limits_refresh", **({"force_limits_refresh": "true"} if force else {})}
        result = job.execute_in_process(partition_key="cda", instance=instance, run_config=quiet, tags=tags)
        meta = next(
            e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "stewart_limits"
        ).step_materialization_data.materialization.metadata
    assert meta["refreshed"].value is force
    assert ("forced" in meta["refresh_decision"].value) is force
    if not force:
        assert "no trigger held" in meta["refresh_decision"].value


def test_limits_older_than_the_max_age_are_recomputed_with_the_reason_in_metadata(demo_root):
    """No sleeping: the pointer of the published limits is dated 8 days back, as a week-old run left it."""
    job = defs.resolve_job_def("oil_analysis_job")
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    pointer = demo_root / "silver/stewart_limits/emin/latest.json"

    def limits_meta(instance):
        result = job.execute_in_process(partition_key="emin", instance=instance, run_config=quiet)
        assert result.success
        return next(
            e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "stewart_limits"
        ).step_materialization_data.materialization.metadata

    with DagsterInstance.ephemeral() as instance:
        first = limits_meta(instance)
        doc = json.loads(pointer.read_text())
        assert first["refreshed"].value and doc["refreshed_at"] == first["limits_refreshed_at"].value
        assert limits_meta(instance)["refreshed"].value is False  # fresh limits, unchanged data: kept
        assert json.loads(pointer.read_text()) == doc  # byte-identical pointer: refreshed_at kept
        week_ago = pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=8)
        pointer.write_text(json.dumps({**doc, "refreshed_at": week_ago.isoformat()}))
        aged = limits_meta(instance)
    assert aged["refreshed"].value is True
    assert aged["refresh_decision"].value == "recomputed: limits_age"
    assert aged["refresh_reasons"].value == "limits_age"
    assert aged["refresh_details"].value["limits_age_days"] == 8
    # Same data, so the same version; the pointer now says the limits were computed today.
    assert aged["limits_version"].value == first["limits_version"].value
    assert pd.Timestamp(json.loads(pointer.read_text())["refreshed_at"]) > week_ago + pd.Timedelta(days=7)


SCHEDULES = ("weekly_limits_refresh", "gold_history_retention_schedule")


def test_schedules_default_status_follows_the_environment(tmp_path):
    """The code location loaded in a fresh process per OIL_ENV: RUNNING in prod, STOPPED in dev."""
    code = (
        "from oil_analysis.definitions import defs\n"
        "print(' '.join(defs.get_schedule_def(n).default_status.value for n in "
        f"{SCHEDULES!r}))\n"
    )
    ours = ("OIL_", "S3_", "USE_S3", "STORAGE_MODE", "OPENAI_", "NOTIFY_")
    base = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    procs = {
        env: subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            env=base | {"OIL_ENV": env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for env in ("dev", "prod")
    }
    got = {}
    for env, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
        got[env] = out.split()
    assert got == {"dev": ["STOPPED", "STOPPED"], "prod": ["RUNNING", "RUNNING"]}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"OIL_ENV": "dev"}, "STOPPED"),
        ({"OIL_ENV": "staging"}, "RUNNING"),
        ({"OIL_ENV": "prod"}, "RUNNING"),
        ({"OIL_ENV": "prod", "OIL_SCHEDULES_RUNNING": "false"}, "STOPPED"),
        ({"OIL_ENV": "dev", "OIL_SCHEDULES_RUNNING": "true"}, "RUNNING"),
    ],
)
def test_schedule_status_of_each_environment_and_override(tmp_path, monkeypatch, environ, expected):
    """The same rule, for every environment and an explicit override (resolved as at import)."""
    resolved = resolve(environ, cwd=tmp_path).values
    monkeypatch.delenv("OIL_SCHEDULES_RUNNING", raising=False)
    if "OIL_SCHEDULES_RUNNING" in resolved:
        monkeypatch.setenv("OIL_SCHEDULES_RUNNING", resolved["OIL_SCHEDULES_RUNNING"])
    assert schedule_status().value == expected


def test_large_backlog_is_split_over_runs_of_bounded_size():
    objects = [RawObject(f"bronze/cda/f{i:05d}.xlsx", f"e{i}", 100.0 + i) for i in range(1200)]
    requested: set[str] = set()
    cursor, sizes = Cursor(), []
    for _ in range(10):
        plan = plan_tick(
            lambda a, n: (objects, True),
            cursor,
            ["cda"],
            lambda o: o.token in requested,
            max_files_per_run=500,
            now=1e9,
        )
        for files in plan.requests.values():
            sizes.append(len(files))
            requested.update(f.token for f in files)
        cursor = plan.cursor
    assert sizes == [500, 500, 200] and len(requested) == 1200
