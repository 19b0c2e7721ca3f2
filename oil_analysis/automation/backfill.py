"""Operator commands on the Dagster instance that ``make ui`` uses (no asset logic here).

* :func:`cli_instance` — the instance at ``DAGSTER_HOME`` (default ``./.dagster_home``, the Makefile's),
  created with the repository's ``dagster.yaml`` when missing, so ``python -m oil_analysis run`` and
  ``make ui`` see the same runs.
* :func:`backfill` — one run of ``oil_analysis_job`` per client through the workspace of
  ``workspace.yaml`` (code location ``oil_analysis``, the name the UI and the daemon know), then waits
  for those runs and returns the ids of the ones that did not succeed. Queued runs need a daemon:
  the one of ``make ui`` when it is running, otherwise a ``dagster-daemon`` started for the duration
  of the command.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from ..settings import child_env, get_settings

LOCATION_NAME = "oil_analysis"
JOB_NAME = "oil_analysis_job"
WORKSPACE_FILE = "workspace.yaml"
# The daemon writes a heartbeat every 30 s; an older one means no daemon serves this instance.
HEARTBEAT_FRESH_S = 90.0
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
MINIMAL_INSTANCE_YAML = "telemetry:\n  enabled: false\nnux:\n  enabled: false\n"


def dagster_home(create: bool = True) -> Path:
    """``DAGSTER_HOME`` (absolute), default ``./.dagster_home``; with ``create``, the folder and its
    ``dagster.yaml`` (a copy of ``./dagster.yaml`` when present) exist afterwards. Children that
    need it (the daemon) get it in their environment (:func:`settings.child_env`)."""
    home = get_settings().instance_home()
    if create:
        home.mkdir(parents=True, exist_ok=True)
        config = home / "dagster.yaml"
        if not config.exists():
            template = Path("dagster.yaml")
            config.write_text(template.read_text() if template.is_file() else MINIMAL_INSTANCE_YAML)
    return home


def cli_instance(ephemeral: bool = False) -> DagsterInstance:
    """The persistent instance at :func:`dagster_home`, or a throw-away one (``ephemeral``)."""
    if ephemeral:
        return DagsterInstance.ephemeral()
    return DagsterInstance.from_config(str(dagster_home()))


def daemon_alive(instance: DagsterInstance, now: float | None = None) -> bool:
    """Whether a daemon heart-beat on this instance recently (its run queue is being served)."""
    now = time.time() if now is None else now
    beats = instance.get_daemon_heartbeats()
    return any(now - hb.timestamp < HEARTBEAT_FRESH_S for hb in beats.values())


def needs_daemon(instance: DagsterInstance) -> bool:
    """Runs submitted to a queued run coordinator start only when a daemon dequeues them."""
    from dagster._core.run_coordinator import QueuedRunCoordinator

    return isinstance(instance.run_coordinator, QueuedRunCoordinator)


@contextlib.contextmanager
def temporary_daemon(workspace: Path, log: Callable[[str], None]) -> Iterator[subprocess.Popen]:
    """``dagster-daemon run -w workspace`` in its own process group until the block ends."""
    exe = Path(sys.executable).parent / "dagster-daemon"
    home = dagster_home()
    log_path = home / "backfill-daemon.log"
    out = open(log_path, "w")  # noqa: SIM115 (closed when the daemon is stopped)
    log(f"no daemon serves {home}: starting `dagster-daemon run` (log {log_path})")
    proc = subprocess.Popen(
        [str(exe), "run", "-w", str(workspace)],
        env=child_env(DAGSTER_HOME=str(home)),
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        out.close()


@dataclass
class RunOutcome:
    client: str
    run_id: str
    status: str
    seconds: float | None
    error: str = ""


def launch_backfill(instance: DagsterInstance, workspace: Path, clients: list[str]) -> str:
    """Create the backfill (one run per client, submitted to the instance's run coordinator) exactly
    as ``dagster job backfill -w workspace.yaml -l oil_analysis`` does; returns its id."""
    from dagster._cli.job import execute_backfill_command
    from dagster._cli.workspace.cli_target import RepositoryOpts
    from dagster_shared.cli import WorkspaceOpts

    printed: list[str] = []
    execute_backfill_command(
        workspace_opts=WorkspaceOpts(workspace=(str(workspace),)),
        repository_opts=RepositoryOpts(location=LOCATION_NAME),
        partitions=",".join(clients),
        noprompt=True,
        job_name=JOB_NAME,
        print_fn=printed.append,
        instance=instance,
    )
    found = re.search(r"Launched backfill job `([^`]+)`", "\n".join(printed))
    if not found:
        raise RuntimeError("the backfill was not launched:\n" + "\n".join(printed))
    return found.group(1)


def run_error(instance: DagsterInstance, run_id: str) -> str:
    """The first failed step and its error (one line), or the run failure message."""
    from dagster import DagsterEventType

    for record in instance.get_records_for_run(
        run_id, of_type={DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE}
    ).records:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        data = event.event_specific_data
        error = getattr(data, "error", None)
        text = (error.message if error else event.message or "").strip().splitlines()
        first = text[0] if text else ""
        return f"step {event.step_key}: {first}" if event.step_key else first
    return ""


def wait_for_backfill(
    instance: DagsterInstance,
    backfill_id: str,
    expected: int,
    timeout_s: float,
    log: Callable[[str], None],
    poll_s: float = 2.0,
) -> list[RunOutcome]:
    """Poll the instance until the backfill's ``expected`` runs have finished (or ``timeout_s``);
    logs each run as it ends. Unfinished runs at the timeout come back with their current status."""
    deadline = time.monotonic() + timeout_s
    reported: set[str] = set()
    while True:
        runs = instance.get_runs(filters=RunsFilter(tags={"dagster/backfill": backfill_id}))
        for run in runs:
            if run.status in FINISHED and run.run_id not in reported:
                reported.add(run.run_id)
                log(f"[{run.tags.get('dagster/partition', '?')}] run {run.run_id} {run.status.value}")
        done = len(runs) >= expected and all(r.status in FINISHED for r in runs)
        if done or time.monotonic() > deadline:
            break
        time.sleep(poll_s)
    outcomes = []
    for run in sorted(runs, key=lambda r: r.tags.get("dagster/partition", "")):
        record = instance.get_run_record_by_id(run.run_id)
        took = None
        if record and record.start_time and record.end_time:
            took = record.end_time - record.start_time
        error = run_error(instance, run.run_id) if run.status != DagsterRunStatus.SUCCESS else ""
        outcomes.append(
            RunOutcome(run.tags.get("dagster/partition", "?"), run.run_id, run.status.value, took, error)
        )
    return outcomes


def backfill(
    clients: list[str], workspace: Path, timeout_s: float, log: Callable[[str], None] = print
) -> int:
    """Backfill ``clients`` and wait; 0 when every run succeeded, 1 otherwise (the failed run ids and
    their errors on stderr)."""
    if not workspace.is_file():
        log(f"{workspace} not found: run from the repository root (where `make ui` runs)")
        return 2
    instance = cli_instance()
    with contextlib.ExitStack() as stack:
        if needs_daemon(instance) and not daemon_alive(instance):
            stack.enter_context(temporary_daemon(workspace, log))
        started = time.monotonic()
        backfill_id = launch_backfill(instance, workspace, clients)
        log(f"backfill {backfill_id}: {len(clients)} run(s) of {JOB_NAME} ({', '.join(clients)}), waiting")
        outcomes = wait_for_backfill(instance, backfill_id, len(clients), timeout_s, log)
    took = time.monotonic() - started
    failed = [o for o in outcomes if o.status != DagsterRunStatus.SUCCESS.value]
    missing = len(clients) - len(outcomes)
    for o in outcomes:
        line = f"  {o.client:<8} {o.status:<8} {o.run_id}" + (f"  {o.seconds:.1f} s" if o.seconds else "")
        log(line)
    if failed or missing:
        print(
            f"backfill {backfill_id} FAILED after {took:.0f} s: "
            + (f"{missing} run(s) never created; " if missing else "")
            + "failed runs: "
            + " ".join(o.run_id for o in failed),
            file=sys.stderr,
        )
        for o in failed:
            print(f"  [{o.client}] {o.run_id} {o.status}: {o.error}", file=sys.stderr)
        return 1
    log(f"backfill {backfill_id}: every run succeeded in {took:.0f} s")
    return 0
