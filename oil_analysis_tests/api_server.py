"""The read API as its users run it: ``python -m oil_analysis.api serve`` (uvicorn) on a free loopback
port, for tests and the bench.

    with ApiServer(env) as api:        # env: the product's variables (storage, OIL_API_KEYS_FILE, ...)
        api.url, api.log_text()        # base URL; everything uvicorn and the app logged
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time

import httpx

REPO = pathlib.Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ApiServer:
    """One API process; host and port are given through OIL_API_HOST / OIL_API_PORT, as documented."""

    def __init__(self, env: dict[str, str], log_dir: str | pathlib.Path | None = None) -> None:
        self.port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("OIL_API_", "AWS_", "S3_"))},
            "OIL_API_HOST": "127.0.0.1",
            "OIL_API_PORT": str(self.port),
            **env,
        }
        folder = pathlib.Path(log_dir or tempfile.mkdtemp(prefix="oil-api-"))
        folder.mkdir(parents=True, exist_ok=True)
        self.log_path = folder / f"api-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> ApiServer:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oil_analysis.api", "serve"],
            cwd=REPO,
            env=self.env,
            stdout=open(self.log_path, "ab"),  # noqa: SIM115 - the child owns it
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the API exited with {self.proc.returncode}: {self.log_text()[-3000:]}")
            try:
                httpx.get(f"{self.url}/openapi.json", timeout=2)
                return self
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"the API did not answer in {timeout_s:.0f} s: {self.log_text()[-3000:]}"
                    ) from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
