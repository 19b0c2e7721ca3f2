"""End to end: the README's operational commands, as written (`make run`, `make materialize`,
`make backfill`), against the instance and the workspace that `make ui` uses (slow: each command
imports the code location; a backfill also starts run workers)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter

from oil_analysis.definitions import all_assets

from .conftest import REPO
from .s3_server import s3_env, s3_server  # noqa: F401

pytestmark = pytest.mark.e2e

ASSET_KEYS = sorted({key for a in all_assets for key in a.keys}, key=lambda k: k.to_user_string())
# The instance `make install` copies into .dagster_home (queued runs, one per client at a time).
REPO_INSTANCE_YAML = (REPO / "dagster.yaml").read_text()


def _env(root, home=None) -> dict:
    """The environment of a command: this data root, an instance configured as `make install` does."""
    env = dict(os.environ, OIL_DATA_ROOT=str(root), USE_S3="false")
    env["DAGSTER_HOME"] = str(home or root.parent / "dagster_home")
    os.makedirs(env["DAGSTER_HOME"], exist_ok=True)
    with open(os.path.join(env["DAGSTER_HOME"], "dagster.yaml"), "w") as f:
        f.write(REPO_INSTANCE_YAML)
    return env


def _make(args: list[str], env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _materialized(home: str) -> dict[AssetKey, set[str]]:
    with DagsterInstance.from_config(home) as instance:
        return {key: set(instance.get_materialized_partitions(key)) for key in ASSET_KEYS}


def test_make_materialize_with_dg_on_real_workbooks(real_cda_root):
    env = _env(real_cda_root)
    proc = _make(["materialize", "CLIENT=cda"], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # dg is the primary CLI: the documented command prints no SupersessionWarning.
    assert "SupersessionWarning" not in proc.stdout + proc.stderr
    reports = pd.read_parquet(real_cda_root / "gold/cda/classified_reports.parquet")
    assert len(reports) == 1945 and reports["sampleNumber"].is_unique
    assert {"breached_essays", "severity_score", "report_status", "limits_version"} <= set(reports.columns)
    # Recorded in the instance the UI shows: every asset materialized for cda.
    assert all(parts == {"cda"} for parts in _materialized(env["DAGSTER_HOME"]).values())


def test_make_run_records_every_asset_in_the_instance(demo_root):
    env = _env(demo_root)
    proc = _make(["run"], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for client in ("cda", "emin"):
        assert f"== {client}" in out
    assert "report status" in out and "machines by status" in out and "classified_reports.parquet" in out
    assert f"DAGSTER_HOME={env['DAGSTER_HOME']}" in out
    # What `make ui` shows afterwards: every asset materialized for both clients.
    materialized = _materialized(env["DAGSTER_HOME"])
    assert all(parts == {"cda", "emin"} for parts in materialized.values()), materialized
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        runs_before = len(instance.get_runs())
    # A broken registry makes the run fail with a non-zero exit code; --ephemeral records nothing.
    bad = dict(env, OIL_CLIENTS_FILE=str(demo_root / "missing.yaml"))
    proc = subprocess.run(
        [sys.executable, "-m", "oil_analysis", "run", "--ephemeral"],
        cwd=REPO,
        env=bad,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert len(instance.get_runs()) == runs_before == 2


def test_sensor_preview_prints_the_run_request(s3_server, s3_env, tmp_path):  # noqa: F811
    from .conftest import DEMO_BRONZE

    s3_server.upload_tree(DEMO_BRONZE / "cda", f"{s3_env}/bronze/cda/2026-11-20")
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    env = dict(_env(tmp_path / "data"), **s3_server.env(s3_env))
    proc = subprocess.run(
        [dagster, "sensor", "preview", "raw_files_s3_sensor", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # One client has files: one run request (its run config is the job's default, printed as {}).
    assert "Sensor returning run requests for 1 run(s)" in proc.stdout, proc.stdout[-2000:]


def _wait_for_daemon(home: str, timeout: float = 180) -> None:
    """Until the daemon of `make ui` has written a heartbeat (else the backfill starts its own)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with DagsterInstance.from_config(home) as instance:
            if instance.get_daemon_heartbeats():
                return
        time.sleep(1)
    raise TimeoutError("the daemon of dg dev wrote no heartbeat")


def test_make_backfill_waits_for_the_runs_and_fails_loudly(demo_root, tmp_path):
    from .dagster_dev import dagster_dev

    home = tmp_path / "home"
    env = _env(demo_root, home)
    with dagster_dev(demo_root, home, ready_timeout=400, instance_yaml=REPO_INSTANCE_YAML) as server:
        _wait_for_daemon(str(home))
        proc = _make(["backfill", "CLIENTS=cda,emin"], env)
        assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:], server.log_tail())
        assert "every run succeeded" in proc.stdout
        assert "starting `dagster-daemon run`" not in proc.stdout  # the daemon of make ui ran them
        assert "SupersessionWarning" not in server.log_tail(10**7)  # dg dev, not dagster dev
        with DagsterInstance.from_config(str(home)) as instance:
            runs = instance.get_runs()
            assert sorted(r.tags["dagster/partition"] for r in runs) == ["cda", "emin"]
            assert all(r.status == DagsterRunStatus.SUCCESS for r in runs)
            # One code location name everywhere: the one of workspace.yaml, which the UI loads.
            assert {r.remote_job_origin.location_name for r in runs} == {"oil_analysis"}
        for client in ("cda", "emin"):
            assert (demo_root / f"gold/{client}/classified_reports.parquet").exists()

        # emin's gold folder becomes a file: its run fails (even as root), cda's succeeds.
        shutil.rmtree(demo_root / "gold" / "emin")
        (demo_root / "gold" / "emin").write_text("not a folder")
        proc = _make(["backfill"], env)
        # The command exits 1; make reports it ("Error 1") and exits 2.
        assert proc.returncode != 0 and "Error 1" in proc.stderr, (proc.stdout[-2000:], proc.stderr[-3000:])
        with DagsterInstance.from_config(str(home)) as instance:
            latest = {
                r.tags["dagster/partition"]: r
                for r in reversed(instance.get_runs(filters=RunsFilter(job_name="oil_analysis_job")))
            }
        assert latest["cda"].status == DagsterRunStatus.SUCCESS
        assert latest["emin"].status == DagsterRunStatus.FAILURE
        failed_line = re.search(r"failed runs: (.+)", proc.stderr)
        assert failed_line and failed_line.group(1).split() == [latest["emin"].run_id], proc.stderr
        assert f"[emin] {latest['emin'].run_id} FAILURE: step " in proc.stderr
