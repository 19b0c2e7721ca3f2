"""End to end through the dagster CLI (slow: a CLI call costs ~15 s), and `python -m oil_analysis run`."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from .conftest import REPO

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
