"""The production instance (deploy/dagster.prod.yaml) on a real PostgreSQL server and a real S3 server:
the graph runs on it, runs / events / materializations are read back from PostgreSQL, compute logs
from S3; with a real daemon, queued runs of different clients overlap and runs of one client never do.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import boto3
import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from oil_analysis import settings

from .conftest import DEMO_BRONZE, REPO
from .dagster_dev import DagsterDev, free_port
from .llm_server import FakeLLMServer
from .pg_server import pg_env, pg_server  # noqa: F401
from .s3_server import s3_env, s3_server  # noqa: F401

PROD_YAML = REPO / "deploy" / "dagster.prod.yaml"
CLIENTS = ("cda", "emin")
GOLD_ASSETS = ("classified_reports", "machine_status_current", "limit_quality")


@pytest.fixture
def prod_home(tmp_path, pg_env, s3_server, s3_env, monkeypatch) -> pathlib.Path:  # noqa: F811
    """DAGSTER_HOME holding the production instance config, pointed at the test PostgreSQL database
    and at a compute-log prefix on the test S3 server; demo raw files uploaded under the S3 prefix."""
    # The S3 compute-log manager uses boto3's default session, which keeps the first credentials it
    # resolves: give this test its own, and leave the next test the one it had.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROD_YAML, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("OIL_ENV", "prod")
    monkeypatch.delenv("USE_S3")  # S3 storage comes from the prod defaults
    monkeypatch.setenv("OIL_SENSORS_RUNNING", "false")  # the runs under test are the only ones
    monkeypatch.setenv("DAGSTER_COMPUTE_LOGS_BUCKET", s3_server.bucket)
    monkeypatch.setenv("DAGSTER_COMPUTE_LOGS_PREFIX", f"{s3_env}/_dagster/compute-logs")
    monkeypatch.setenv("DAGSTER_MAX_CONCURRENT_RUNS", "4")
    for client in CLIENTS:
        s3_server.upload_tree(DEMO_BRONZE / client, f"{s3_env}/bronze/{client}/2026-01-31")
    return home


def compute_log_keys(s3_server, prefix: str) -> list[str]:  # noqa: F811
    return sorted(s3_server.keys(f"{prefix}/_dagster/compute-logs"))


def test_prod_instance_runs_the_graph_on_postgres_with_compute_logs_on_s3(
    prod_home,
    pg_server,  # noqa: F811
    pg_env,  # noqa: F811
    s3_server,  # noqa: F811
    s3_env,  # noqa: F811
):
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    from oil_analysis.definitions import defs
    from oil_analysis.settings import get_settings

    assert get_settings().environment == "prod" and get_settings().storage_mode == "s3"
    assert settings.resolve().sources["USE_S3"] == "prod defaults"
    with DagsterInstance.from_config(str(prod_home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert isinstance(instance.compute_log_manager, S3ComputeLogManager)
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"

        result = defs.resolve_job_def("oil_analysis_job").execute_in_process(
            instance=instance, partition_key="cda"
        )
        assert result.success
        run_id = result.run_id

    # Read back through a new instance (nothing cached in memory) …
    with DagsterInstance.from_config(str(prod_home)) as instance:
        [record] = instance.get_run_records(RunsFilter(run_ids=[run_id]))
        assert record.dagster_run.status == DagsterRunStatus.SUCCESS
        assert record.dagster_run.tags["dagster/partition"] == "cda"
        for asset in ("silver_harmonized", *GOLD_ASSETS):
            events = instance.fetch_materializations(AssetKey(asset), limit=10).records
            assert [(e.run_id, e.partition_key) for e in events] == [(run_id, "cda")], asset
        logs = instance.all_logs(run_id)
        assert any(e.dagster_event_type == DagsterEventType.RUN_SUCCESS for e in logs)

    # … and with plain SQL: the rows are in PostgreSQL, in the test database.
    db = pg_env["DAGSTER_PG_DB"]
    assert pg_server.query("SELECT run_id, status FROM runs", db=db) == [(run_id, "SUCCESS")]
    materialized = pg_server.query(
        "SELECT asset_key, partition FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'",
        db=db,
    )
    assert {(k, p) for k, p in materialized} >= {(AssetKey(a).to_string(), "cda") for a in GOLD_ASSETS}
    assert pg_server.query("SELECT count(*) FROM event_logs WHERE run_id = %s", (run_id,), db=db)[0][0] > 20

    # Compute logs were uploaded to S3 under the configured prefix, keyed by run.
    keys = compute_log_keys(s3_server, s3_env)
    assert keys and all(run_id in k for k in keys), keys[:5]
    # The data itself went to the S3 layout (prod environment), not to local disk.
    assert f"{s3_env}/gold/cda/classified_reports.parquet" in s3_server.keys(f"{s3_env}/gold")


def test_pg_server_listens_on_loopback_only(pg_server):  # noqa: F811
    listening = pg_server.listening()
    assert listening == [f"127.0.0.1:{pg_server.port}"]
    with pytest.raises(Exception, match="password"):
        import psycopg2

        psycopg2.connect(
            host="127.0.0.1", port=pg_server.port, user=pg_server.user, password="wrong", dbname="postgres"
        )


# -- with a real daemon -------------------------------------------------------------------------

LAUNCH = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) { __typename
  ... on LaunchRunSuccess { run { runId status } }
  ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }
"""
LOCATIONS = "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }"


@contextlib.contextmanager
def dagster_dev_with_instance(
    home: pathlib.Path, env: dict[str, str], timeout: float = 120
) -> Iterator[DagsterDev]:
    """``dagster dev`` (webserver + daemon + code server) on ``home``'s own dagster.yaml; always stopped."""
    port = free_port()
    dagster = str(pathlib.Path(sys.executable).parent / "dagster")
    log = home / "dagster_dev.log"
    cmd = ["setsid", "env", "--default-signal=INT,TERM", dagster, "dev", "-h", "127.0.0.1", "-p", str(port)]
    cmd += ["-m", "oil_analysis.definitions"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = DagsterDev(proc, port, home, log)
    try:
        server.wait_loaded(timeout)
        yield server
    finally:
        server.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def overlaps(a, b) -> bool:
    return a.start_time < b.end_time and b.start_time < a.end_time


@pytest.mark.e2e
@pytest.mark.timing
def test_queued_runs_one_per_client_at_a_time_clients_in_parallel(
    prod_home,
    pg_server,  # noqa: F811
    pg_env,  # noqa: F811
    s3_server,  # noqa: F811
    s3_env,  # noqa: F811
):
    # The child's environment is the test's plus the prod advisor on a slow local LLM endpoint: a first run then lasts ~25 s (calls capped, one
    # at a time), far longer than the start-up jitter of two runs launched together; later runs of
    # a client read the advisor cache and are quick.
    env = settings.child_env() | {
        "PYTHONUNBUFFERED": "1",
        "OIL_LLM_OFFLINE": "false",
        "OPENAI_API_KEY": "test-key",
        "OIL_LLM_CONCURRENCY": "1",
        "OIL_LLM_MAX_CALLS": "25",
    }
    submitted: dict[str, str] = {}
    with (
        FakeLLMServer(latency_s=0.5) as llm,
        dagster_dev_with_instance(prod_home, env | {"OPENAI_BASE_URL": llm.base_url}) as server,
    ):
        [location] = [e["name"] for e in server.graphql(LOCATIONS)["workspaceOrError"]["locationEntries"]]
        # cda, emin, cda, emin: the queue must hold the second run of each client back.
        for i, client in enumerate(CLIENTS * 2):
            params = {
                "selector": {
                    "repositoryLocationName": location,
                    "repositoryName": "__repository__",
                    "jobName": "oil_analysis_job",
                },
                "runConfigData": {"execution": {"config": {"in_process": {}}}},  # one process per run
                "executionMetadata": {"tags": [{"key": "dagster/partition", "value": client}]},
            }
            answer = server.graphql(LAUNCH, {"params": params})["launchRun"]
            assert answer["__typename"] == "LaunchRunSuccess", answer
            assert answer["run"]["status"] == "QUEUED", answer
            submitted[answer["run"]["runId"]] = f"{client}#{i // 2 + 1}"

        with DagsterInstance.from_config(str(prod_home)) as instance:
            deadline = time.monotonic() + 400
            while True:
                records = instance.get_run_records(RunsFilter(run_ids=list(submitted)))
                if len(records) == 4 and all(r.dagster_run.is_finished for r in records):
                    break
                if time.monotonic() > deadline:
                    states = {submitted[r.dagster_run.run_id]: r.dagster_run.status.value for r in records}
                    pytest.fail(f"runs not finished after 400 s: {states}\n{server.log_tail()}")
                time.sleep(1)

    by_name = {submitted[r.dagster_run.run_id]: r for r in records}
    assert {n: r.dagster_run.status for n, r in by_name.items()} == dict.fromkeys(
        by_name, DagsterRunStatus.SUCCESS
    ), server.log_tail()
    t0 = min(r.start_time for r in by_name.values())
    spans = {n: (round(r.start_time - t0, 1), round(r.end_time - t0, 1)) for n, r in by_name.items()}
    assert all(r.start_time and r.end_time for r in by_name.values()), spans
    # One client never runs twice at once; two clients do run at the same time.
    for client in CLIENTS:
        assert not overlaps(by_name[f"{client}#1"], by_name[f"{client}#2"]), spans
    assert overlaps(by_name["cda#1"], by_name["emin#1"]), spans

    # Everything was recorded in PostgreSQL: the four runs, and each client's gold twice.
    db = pg_env["DAGSTER_PG_DB"]
    rows = pg_server.query("SELECT run_id, status FROM runs", db=db)
    assert sorted(rows) == sorted((run_id, "SUCCESS") for run_id in submitted)
    counts = pg_server.query(
        "SELECT partition, count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
        " AND asset_key = %s GROUP BY partition",
        (AssetKey("classified_reports").to_string(),),
        db=db,
    )
    assert dict(counts) == {"cda": 2, "emin": 2}
    keys = compute_log_keys(s3_server, s3_env)
    assert {run_id for run_id in submitted if any(run_id in k for k in keys)} == set(submitted)
    assert llm.count > 0  # the prod advisor did call the endpoint
