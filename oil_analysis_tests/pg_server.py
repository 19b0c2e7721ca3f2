"""A real PostgreSQL server on 127.0.0.1 (Debian's PostgreSQL 15 binaries), for tests.

    with PostgresServer() as pg:          # initdb into a temp dir + postgres: ~2 s
        pg.port, pg.user, pg.password     # 127.0.0.1 only; unix socket in the temp dir
        pg.create_database("t1")          # a fresh database
        pg.env("t1")                      # DAGSTER_PG_* variables of deploy/dagster.prod.yaml
        pg.connect("t1")                  # psycopg2 connection, to read back what Dagster wrote

PostgreSQL refuses to run as root: as root the data directory is handed to the ``postgres`` system
user (else ``nobody``) and the server process runs under that uid; otherwise it runs as the current
user. Password authentication (scram) on TCP, the password random per server. The server is the
child process itself (no ``pg_ctl`` daemon), so stopping means signalling it, and it also gets
SIGTERM if the test process dies. Tests use the session fixture ``pg_server`` and the per-test
``pg_env`` (own database, environment set); import them with
``from .pg_server import pg_env, pg_server  # noqa: F401``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pathlib
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

INSTALL_HINT = "apt-get install -y postgresql (Debian: PostgreSQL 15 under /usr/lib/postgresql/15/bin)"


def pg_bin_dir() -> pathlib.Path:
    """Where ``initdb`` and ``postgres`` live: /usr/lib/postgresql/<newest>/bin, else PATH."""
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    for d in reversed(dirs):
        if (pathlib.Path(d) / "initdb").exists() and (pathlib.Path(d) / "postgres").exists():
            return pathlib.Path(d)
    initdb = shutil.which("initdb")
    if initdb:
        return pathlib.Path(os.path.realpath(initdb)).parent
    raise RuntimeError(f"PostgreSQL server binaries not found: {INSTALL_HINT}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def listening_sockets(pid: int) -> list[str]:
    """``host:port`` of the TCP sockets process ``pid`` listens on (Linux /proc)."""
    inodes = set()
    for fd in pathlib.Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    out = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        if not os.path.exists(table):
            continue
        for line in pathlib.Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] != "0A" or cols[9] not in inodes:  # 0A: LISTEN
                continue
            addr, port = cols[1].split(":")
            raw = bytes.fromhex(addr)
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # little-endian words
            out.append(f"{socket.inet_ntop(family, raw)}:{int(port, 16)}")
    return sorted(out)


class PostgresServer:
    """One ``postgres`` process on 127.0.0.1:<free port> over a fresh cluster in a temp dir."""

    def __init__(self, user: str = "oil", db: str = "dagster") -> None:
        self.user, self.db = user, db
        self.password = secrets.token_urlsafe(24)
        self.host = "127.0.0.1"
        self.port = 0
        self.dir: pathlib.Path | None = None
        self.proc: subprocess.Popen | None = None
        self.os_user = self._os_user()

    @staticmethod
    def _os_user() -> pwd.struct_passwd | None:
        """The uid to run the server under: ``None`` (ourselves) unless we are root."""
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                return pwd.getpwnam(name)
        raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists")

    @property
    def data_dir(self) -> pathlib.Path:
        return self.dir / "data"

    @property
    def socket_dir(self) -> pathlib.Path:
        return self.dir / "socket"

    @property
    def log_path(self) -> pathlib.Path:
        return self.dir / "postgres.log"

    # -- lifecycle ------------------------------------------------------------------------------
    def _run_as_kwargs(self) -> dict:
        if self.os_user is None:
            return {}
        return {"user": self.os_user.pw_uid, "group": self.os_user.pw_gid, "extra_groups": []}

    def _child_env(self) -> dict[str, str]:
        home = str(self.dir)
        return {"PATH": os.environ.get("PATH", ""), "HOME": home, "LC_ALL": "C", "TZ": "UTC"}

    def start(self, timeout_s: float = 30.0) -> PostgresServer:
        # Not under pytest's tmp_path: its parents are 0700 root-owned, closed to the postgres uid.
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="oil-pg-"))
        self.socket_dir.mkdir()
        if self.os_user is not None:
            for p in (self.dir, self.socket_dir):
                os.chown(p, self.os_user.pw_uid, self.os_user.pw_gid)
        self._initdb()
        last = ""
        for _ in range(3):  # a port taken between probing and binding: try another one
            try:
                self._start_once(timeout_s)
                return self
            except RuntimeError as exc:
                last = str(exc)
                self._terminate()
        self.stop()
        raise RuntimeError(f"PostgreSQL did not start: {last}")

    def _initdb(self) -> None:
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if self.os_user is not None:
            os.chown(pwfile, self.os_user.pw_uid, self.os_user.pw_gid)
        cmd = [
            str(pg_bin_dir() / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            self.user,
            f"--pwfile={pwfile}",
            "--auth-local=trust",  # the socket is in our private temp dir
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=self._child_env(), cwd=self.dir, **self._run_as_kwargs()
        )
        pwfile.unlink()
        if proc.returncode != 0:
            raise RuntimeError(f"initdb failed ({proc.returncode}): {proc.stderr[-2000:]}")

    def _start_once(self, timeout_s: float) -> None:
        self.port = free_port()
        cmd = [
            str(pg_bin_dir() / "postgres"),
            "-D",
            str(self.data_dir),
            "-c",
            f"listen_addresses={self.host}",
            "-c",
            f"port={self.port}",
            "-c",
            f"unix_socket_directories={self.socket_dir}",
            # A throwaway cluster: durability off for speed.
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ]
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        if self.os_user is not None:
            os.chown(self.log_path, self.os_user.pw_uid, self.os_user.pw_gid)
        self.proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self._child_env(),
            cwd=self.dir,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            **self._run_as_kwargs(),
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                self.connect("postgres").close()
                break
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"no connection after {timeout_s:.0f} s ({exc}): {self.log_tail()}"
                    ) from None
                time.sleep(0.1)
        self.create_database(self.db)

    def _terminate(self) -> None:
        """Fast shutdown (SIGINT: disconnect clients, checkpoint), then immediate, then kill."""
        if self.proc is None:
            return
        for sig, wait in ((signal.SIGINT, 20), (signal.SIGQUIT, 10), (signal.SIGKILL, 10)):
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=wait)
        self.proc = None

    def stop(self) -> None:
        """Stop the server and delete its cluster."""
        self._terminate()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- helpers --------------------------------------------------------------------------------
    def connect(self, db: str | None = None):
        """A psycopg2 connection over TCP with the password (autocommit)."""
        import psycopg2

        conn = psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=db or self.db,
            connect_timeout=3,
        )
        conn.autocommit = True
        return conn

    def create_database(self, name: str) -> str:
        with contextlib.closing(self.connect("postgres")) as conn, conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        return name

    def query(self, sql: str, params: tuple = (), db: str | None = None) -> list[tuple]:
        with contextlib.closing(self.connect(db)) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def env(self, db: str | None = None) -> dict[str, str]:
        """The variables deploy/dagster.prod.yaml reads for its PostgreSQL storage."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": db or self.db,
        }

    def listening(self) -> list[str]:
        """``host:port`` of every TCP socket in LISTEN state owned by the server's processes."""
        return listening_sockets(self.proc.pid) if self.proc is not None else []

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except (OSError, TypeError):
            return ""


@pytest.fixture(scope="session")
def pg_server() -> PostgresServer:
    """One PostgreSQL server for the whole session; always stopped, also when tests fail."""
    server = PostgresServer()
    try:
        server.start()
    except RuntimeError as exc:
        server.stop()
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_env(pg_server, monkeypatch) -> dict[str, str]:
    """A fresh database for one test; its DAGSTER_PG_* variables set in the environment."""
    env = pg_server.env(pg_server.create_database(f"t_{uuid.uuid4().hex[:10]}"))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env
