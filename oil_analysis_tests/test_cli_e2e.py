"""End to end through the dagster CLI (slow: a CLI call costs ~15 s), and `python -m oil_analysis run`."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pandas as pd
import pytest

from .conftest import REPO
from .s3_server import s3_env, s3_server  # noqa: F401

pytestmark = pytest.mark.e2e


def _env(root) -> dict:
    env = dict(os.environ, OIL_DATA_ROOT=str(root), USE_S3="false")
    env["DAGSTER_HOME"] = str(root.parent / "dagster_home")
    os.makedirs(env["DAGSTER_HOME"], exist_ok=True)
    with open(os.path.join(env["DAGSTER_HOME"], "dagster.yaml"), "w") as f:
        f.write("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    return env


def test_dagster_asset_materialize_on_real_workbooks(real_cda_root):
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    proc = subprocess.run(
        [
            dagster,
            "asset",
            "materialize",
            "-m",
            "oil_analysis.definitions",
            "--select",
            "*",
            "--partition",
            "cda",
        ],
        cwd=REPO,
        env=_env(real_cda_root),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = pd.read_parquet(real_cda_root / "gold/cda/classified_reports.parquet")
    assert len(reports) == 1945 and reports["sampleNumber"].is_unique
    assert {"breached_essays", "severity_score", "report_status", "limits_version"} <= set(reports.columns)


def test_main_run_prints_fleet_summary_and_fails_loudly(demo_root):
    proc = subprocess.run(
        [sys.executable, "-m", "oil_analysis", "run"],
        cwd=REPO,
        env=_env(demo_root),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for client in ("cda", "emin"):
        assert f"== {client}" in out
    assert "report status" in out and "machines by status" in out and "classified_reports.parquet" in out
    # A broken registry makes the run fail with a non-zero exit code.
    bad = dict(_env(demo_root), OIL_CLIENTS_FILE=str(demo_root / "missing.yaml"))
    proc = subprocess.run(
        [sys.executable, "-m", "oil_analysis", "run"],
        cwd=REPO,
        env=bad,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0


def test_sensor_preview_prints_the_run_request(s3_server, s3_env, tmp_path):  # noqa: F811
    from .conftest import DEMO_BRONZE

    s3_server.upload_tree(DEMO_BRONZE / "cda", f"{s3_env}/bronze/cda/2026-11-20")
    dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
    env = dict(_env(tmp_path / "data"), **s3_server.env(s3_env))
    proc = subprocess.run(
        [dagster, "sensor", "preview", "raw_files_s3_sensor", "-m", "oil_analysis.definitions"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # One client has files: one run request (its run config is the job's default, printed as {}).
    assert "Sensor returning run requests for 1 run(s)" in proc.stdout, proc.stdout[-2000:]


def test_job_backfill_all_with_running_daemon(demo_root, tmp_path):
    from .dagster_dev import dagster_dev

    home = tmp_path / "home"
    with dagster_dev(demo_root, home) as server:
        dagster = os.path.join(os.path.dirname(sys.executable), "dagster")
        env = dict(_env(demo_root), DAGSTER_HOME=str(home))
        proc = subprocess.run(
            [
                dagster,
                "job",
                "backfill",
                "-j",
                "oil_analysis_job",
                "--all",
                "--noprompt",
                "-m",
                "oil_analysis.definitions",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        query = "{ runsOrError { ... on Runs { results { status tags { key value } } } } }"
        deadline = time.monotonic() + 300
        statuses: dict[str, str] = {}
        while time.monotonic() < deadline:
            runs = server.graphql(query)["runsOrError"]["results"]
            statuses = {
                next((t["value"] for t in r["tags"] if t["key"] == "dagster/partition"), "?"): r["status"]
                for r in runs
            }
            if set(statuses) >= {"cda", "emin"} and all(
                s in ("SUCCESS", "FAILURE", "CANCELED") for s in statuses.values()
            ):
                break
            time.sleep(2)
    assert statuses.get("cda") == "SUCCESS" and statuses.get("emin") == "SUCCESS", (
        statuses,
        server.log_tail(),
    )
    for client in ("cda", "emin"):
        assert (demo_root / f"gold/{client}/classified_reports.parquet").exists()
