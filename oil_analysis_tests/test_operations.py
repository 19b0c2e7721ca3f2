"""The operator commands' instance helpers (fast; the commands themselves run in test_cli_e2e.py)."""

from __future__ import annotations

import time

import pytest
from dagster._daemon.types import DaemonHeartbeat

from oil_analysis.automation import backfill as operations
from oil_analysis.definitions import defs

from .conftest import REPO


@pytest.fixture
def cwd_home(tmp_path, monkeypatch):
    """A working directory holding the repository's dagster.yaml, DAGSTER_HOME unset."""
    (tmp_path / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return tmp_path


def test_cli_instance_defaults_to_dot_dagster_home_with_the_repository_config(cwd_home):
    with operations.cli_instance() as instance:
        assert instance.is_persistent
        assert operations.needs_daemon(instance)  # the repository's queued run coordinator
    home = cwd_home / ".dagster_home"
    assert (home / "dagster.yaml").read_text() == (REPO / "dagster.yaml").read_text()
    assert operations.dagster_home(create=False) == home
    with operations.cli_instance(ephemeral=True) as throwaway:
        assert not throwaway.is_persistent and not operations.needs_daemon(throwaway)


def test_daemon_alive_only_with_a_recent_heartbeat(cwd_home):
    with operations.cli_instance() as instance:
        assert not operations.daemon_alive(instance)
        now = time.time()
        instance.add_daemon_heartbeat(DaemonHeartbeat(now - 600, "SENSOR", "old", None))
        assert not operations.daemon_alive(instance, now=now)
        instance.add_daemon_heartbeat(DaemonHeartbeat(now - 5, "QUEUED_RUN_COORDINATOR", "d1", None))
        assert operations.daemon_alive(instance, now=now)
        assert not operations.daemon_alive(instance, now=now + operations.HEARTBEAT_FRESH_S)


def test_backfill_refuses_without_the_workspace_file(cwd_home, capsys):
    lines: list[str] = []
    assert operations.backfill(["cda"], cwd_home / "workspace.yaml", 10, log=lines.append) == 2
    assert "workspace.yaml not found" in lines[0]


def test_every_job_runs_its_steps_in_the_run_process():
    for name in ("oil_analysis_job", "gold_history_retention"):
        assert defs.resolve_job_def(name).executor_def.name == "in_process"
    assert defs.resolve_implicit_global_asset_job_def().executor_def.name == "in_process"


def test_workspace_and_dg_name_the_same_code_location():
    import tomllib

    import yaml

    workspace = yaml.safe_load((REPO / "workspace.yaml").read_text())
    entries = [e["python_module"] for e in workspace["load_from"]]
    assert entries == [{"module_name": "oil_analysis.definitions", "location_name": "oil_analysis"}]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dg"]["project"]
    assert project["code_location_target_module"] == "oil_analysis.definitions"
    assert project["code_location_name"] == operations.LOCATION_NAME == "oil_analysis"
