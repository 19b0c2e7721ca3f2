"""`make ui`'s server as a test server: ``dg dev -w workspace.yaml`` (the real webserver and daemon, the
code location ``oil_analysis`` of workspace.yaml) on a free local port, a temporary instance, a given
data root. Stopped with SIGTERM to its whole process group, then waited for."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

from .conftest import REPO

INSTANCE_YAML = "telemetry:\n  enabled: false\nnux:\n  enabled: false\n"
LOCATION_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DagsterDev:
    """A running ``dagster dev``: its URL, a GraphQL helper and its log."""

    def __init__(self, proc: subprocess.Popen, port: int, home: pathlib.Path, log: pathlib.Path):
        self.proc, self.port, self.home, self.log = proc, port, home, log
        self.url = f"http://127.0.0.1:{port}"

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 10) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            doc = json.loads(resp.read())
        if doc.get("errors"):
            raise RuntimeError(f"GraphQL errors: {doc['errors']}")
        return doc["data"]

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def wait_loaded(self, timeout: float) -> None:
        """Until the code location is loaded (raises with the server log if it dies or errors)."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                entries = self.graphql(LOCATION_QUERY, timeout=5)["workspaceOrError"]["locationEntries"]
            except (OSError, RuntimeError, KeyError, ValueError) as exc:
                last = repr(exc)
            else:
                loaded = [e for e in entries if e["loadStatus"] == "LOADED"]
                errors = [e for e in loaded if e["locationOrLoadError"]["__typename"] == "PythonError"]
                if errors:
                    raise RuntimeError(f"code location failed to load: {errors[0]['locationOrLoadError']}")
                if loaded and len(loaded) == len(entries):
                    return
                last = f"locations {entries}"
            time.sleep(0.5)
        raise TimeoutError(f"dagster dev not ready after {timeout:.0f} s ({last}):\n{self.log_tail()}")

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM to the process group (webserver, daemon, code server, runs), then wait."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # Children (code server, run workers) share the group; leave none behind.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def dagster_dev(
    data_root: pathlib.Path,
    home: pathlib.Path,
    ready_timeout: float = 120,
    instance_yaml: str = INSTANCE_YAML,
    env: dict | None = None,
) -> Iterator[DagsterDev]:
    """Start what ``make ui`` starts (``dg dev -w workspace.yaml``) on 127.0.0.1 with
    ``DAGSTER_HOME=home`` (its ``dagster.yaml``: ``instance_yaml``) and ``OIL_DATA_ROOT=data_root``
    (``env``: more variables); yield once the code location is loaded; always stop it."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(instance_yaml)
    port = free_port()
    env = dict(
        os.environ,
        DAGSTER_HOME=str(home),
        OIL_DATA_ROOT=str(data_root),
        USE_S3="false",
        OIL_LLM_OFFLINE="true",
        PYTHONUNBUFFERED="1",
        **(env or {}),
    )
    dg = str(pathlib.Path(sys.executable).parent / "dg")
    log = home / "dagster_dev.log"
    # setsid: a new process group to signal as a whole; env --default-signal: a test runner started in
    # the background may ignore INT/TERM, and dagster dev must see them to shut its children down.
    cmd = ["setsid", "env", "--default-signal=INT,TERM", dg, "dev", "-w", "workspace.yaml"]
    cmd += ["-h", "127.0.0.1", "-p", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = DagsterDev(proc, port, home, log)
    try:
        server.wait_loaded(ready_timeout)
        yield server
    finally:
        server.stop()
