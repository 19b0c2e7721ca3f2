"""The same graph on a real S3 server (SeaweedFS on 127.0.0.1): exact keys, same bytes as local disk,
dual writes, clear credential errors, atomic publish, and no secret anywhere."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import pathlib
import shutil
import sys
import tempfile
import threading
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.fs as pafs
import pytest
from dagster import DagsterInstance, materialize
from dagster._serdes import serialize_value

from oil_analysis.definitions import all_assets, build_resources
from oil_analysis.resources.storage import StorageResource
from oil_analysis.storage import layout, legacy, manifest
from oil_analysis.storage.filesystem import DualStorage, Storage, StorageAccessError

from .conftest import DEMO_BRONZE
from .s3_server import s3_env, s3_server  # noqa: F401
from .test_storage_local import assert_publish_reads_parts_once_and_survives_a_stale_view

CLIENTS = ("cda", "emin")
DAY = "2024-05-01"  # raw files arrive under bronze/{client}/{YYYY-MM-DD}/
GOLD = ("classified_reports", "machine_status_current", "limit_quality")


def run(client: str, resources: dict | None = None):
    """One partition in-process; returns the result and every event log entry of the run."""
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            all_assets,
            partition_key=client,
            instance=instance,
            resources=resources or build_resources(),
            raise_on_error=False,
        )
        entries = instance.all_logs(result.run_id)
        dagster_run = instance.get_run_by_id(result.run_id)
    return result, entries, dagster_run


def failures(result) -> list[str]:
    """The full error (message and causes) of every failed step."""
    return [e.step_failure_data.error.to_string() for e in result.all_events if e.is_step_failure]


def stage_bronze(target: pathlib.Path) -> None:
    for client in CLIENTS:
        shutil.copytree(DEMO_BRONZE / client, target / "bronze" / client / DAY)


def upload_bronze(server, prefix: str, clients=CLIENTS) -> list[str]:
    return [k for c in clients for k in server.upload_tree(DEMO_BRONZE / c, f"{prefix}/bronze/{c}/{DAY}")]


@contextlib.contextmanager
def captured(path: pathlib.Path):
    """Everything written to stdout/stderr (Python and native code) and every log record."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    records = io.StringIO()
    handler = logging.StreamHandler(records)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    py_out = io.StringIO()
    with open(path, "wb") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stdout(py_out), contextlib.redirect_stderr(py_out):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            root.removeHandler(handler)
            root.setLevel(level)
            with open(path, "ab") as f:
                f.write(py_out.getvalue().encode() + records.getvalue().encode())


@pytest.fixture(scope="module")
def demo_on_s3(s3_server, tmp_path_factory):  # noqa: F811
    """Both clients in S3 mode from raw files uploaded to the server, then the same inputs on local
    disk; legacy exports on, so every published path is exercised. Output and logs captured. The S3
    environment stays set for the module's tests."""
    tmp = tmp_path_factory.mktemp("s3demo")
    prefix = "demo"
    uploaded = upload_bronze(s3_server, prefix)
    runs = {}
    with pytest.MonkeyPatch.context() as mp:
        for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "STORAGE_MODE", "OPENAI_API_KEY"):
            mp.delenv(var, raising=False)
        for k, v in s3_server.env(prefix, OIL_LLM_OFFLINE="true", LEGACY_EXPORTS="true").items():
            mp.setenv(k, v)
        with captured(tmp / "output.txt"):
            for client in CLIENTS:
                runs[client] = run(client)
        objects = s3_server.keys(prefix)

        local = tmp / "local"
        stage_bronze(local)
        mp.setenv("USE_S3", "false")
        for client in CLIENTS:
            result, *_ = run(client, build_resources(str(local)))
            assert result.success, failures(result)
        mp.setenv("USE_S3", "true")
        yield SimpleNamespace(
            prefix=prefix,
            uploaded=uploaded,
            runs=runs,
            objects=objects,
            local=local,
            output=(tmp / "output.txt").read_bytes(),
            store=Storage.s3(s3_server.bucket, prefix, s3_server.region, s3_server.endpoint),
        )


def test_server_listens_on_loopback_only(s3_server):  # noqa: F811
    addresses = s3_server.listening()
    assert f"127.0.0.1:{s3_server.port}" in addresses
    assert all(a.startswith("127.0.0.1:") for a in addresses), addresses


def test_whole_graph_on_s3_writes_every_object_at_its_exact_key(demo_on_s3):
    for client, (result, _, _) in demo_on_s3.runs.items():
        assert result.success, failures(result)
        latest = demo_on_s3.store.read_json(layout.limits_latest(client))
        folder = layout.limits_dir(client, latest["version"])
        expected = [
            layout.harmonized_path(client),
            layout.rejects_path(client),
            f"{folder}/stewart_limits.parquet",
            f"{folder}/stewart_limits.json",
            layout.limits_latest(client),
            *(layout.gold_path(client, n) for n in GOLD),
            manifest.manifest_path(client),
            layout.registry_path(client),
            *legacy.all_paths(client),
        ]
        missing = [p for p in expected if f"{demo_on_s3.prefix}/{p}" not in demo_on_s3.objects]
        assert missing == []
    # raw files were read straight from S3 under their date folder
    registry = demo_on_s3.store.read_parquet(layout.registry_path("cda"))
    assert list(registry["key"]) == [f"bronze/cda/{DAY}/T-0{i}.xlsx" for i in (1, 2, 3)]
    assert set(registry["status"]) == {"ok"}


def test_s3_objects_have_the_bytes_of_a_local_run(demo_on_s3):
    local = {
        p.relative_to(demo_on_s3.local).as_posix(): p.read_bytes()
        for p in demo_on_s3.local.rglob("*")
        if p.is_file()
        and p.relative_to(demo_on_s3.local).parts[0] in ("silver", "gold", "processed", "to_consume")
    }
    remote = {
        k.removeprefix(demo_on_s3.prefix + "/"): v
        for k, v in demo_on_s3.objects.items()
        if k.split("/")[1] in ("silver", "gold", "processed", "to_consume")
    }
    # data files: everything but bookkeeping under `_`-folders/files (manifest, change logs), whose
    # content names runs and times
    data = sorted(p for p in local if not any(seg.startswith("_") for seg in p.split("/")))
    assert sorted(p for p in remote if not any(seg.startswith("_") for seg in p.split("/"))) == data
    digest = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    # latest.json also says when its limits were computed (the age trigger's clock): the same but that.
    pointers = [p for p in data if p.endswith("/latest.json")]
    assert pointers
    for p in pointers:
        local_doc, remote_doc = json.loads(local[p]), json.loads(remote[p])
        assert local_doc.pop("refreshed_at") and remote_doc.pop("refreshed_at")
        assert remote_doc == local_doc
    data = [p for p in data if p not in pointers]
    assert {p: digest(remote[p]) for p in data} == {p: digest(local[p]) for p in data}
    gold = [layout.gold_path(c, n) for c in CLIENTS for n in GOLD]
    assert set(gold) <= set(data)
    for client in CLIENTS:
        assert manifest.verify(demo_on_s3.store, client) == []
        doc = demo_on_s3.store.read_json(manifest.manifest_path(client))
        listed = {f["path"]: f["sha256"] for f in doc["files"]}
        for name in GOLD:
            assert listed[layout.gold_path(client, name)] == digest(local[layout.gold_path(client, name)])


def leaks(blobs: dict[str, bytes], secrets: list[str]) -> list[str]:
    return [
        f"{secret[:4]}… in {where}"
        for where, blob in blobs.items()
        for secret in secrets
        if secret.encode() in blob
    ]


def test_no_secret_in_logs_metadata_or_output_files(demo_on_s3, s3_server):  # noqa: F811
    secrets = [s3_server.access_key, s3_server.secret_key]
    blobs = {f"s3://{k}": v for k, v in demo_on_s3.objects.items()}
    blobs["stdout/stderr/logging"] = demo_on_s3.output
    for client, (result, entries, dagster_run) in demo_on_s3.runs.items():
        blobs[f"{client} event log"] = "\n".join(serialize_value(e) for e in entries).encode()
        blobs[f"{client} run"] = serialize_value(dagster_run).encode()
        metadata = [
            str(e.step_materialization_data.materialization.metadata)
            for e in result.get_asset_materialization_events()
        ]
        assert len(metadata) >= 6 and any("s3://" in m for m in metadata)
        blobs[f"{client} metadata"] = "\n".join(metadata).encode()
    assert len(demo_on_s3.output) > 0 and len(blobs) > 20
    assert leaks({"control": b"x" + secrets[1].encode()}, secrets) != []  # the scan does find a secret
    assert leaks(blobs, secrets) == []


def test_wrong_credentials_fail_once_clearly_and_write_nothing(s3_server, s3_env, monkeypatch, tmp_path):  # noqa: F811
    uploaded = sorted(upload_bronze(s3_server, s3_env, ["emin"]))
    wrong = "wrong-" + s3_server.secret_key[::-1]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    for mode in ("s3", "dual"):
        monkeypatch.setenv("STORAGE_MODE", mode)
        monkeypatch.setenv("OIL_DATA_ROOT", str(tmp_path))
        result, entries, _ = run("emin")
        assert not result.success
        errors = failures(result)
        assert len(errors) == 1, errors
        assert "StorageAccessError" in errors[0] or "access denied" in errors[0]
        assert f"'{s3_server.bucket}'" in errors[0] and s3_server.endpoint in errors[0]
        assert "credentials" in errors[0]
        log = "\n".join(serialize_value(e) for e in entries)
        assert wrong not in log and s3_server.secret_key not in log
    assert sorted(s3_server.keys(s3_env)) == uploaded  # nothing new on S3
    assert list(tmp_path.rglob("*")) == []  # dual: the local side was not touched either
    store = Storage.s3(s3_server.bucket, s3_env, s3_server.region, s3_server.endpoint)
    with pytest.raises(StorageAccessError, match=s3_server.bucket):
        store.exists("bronze/emin/missing.parquet")


def test_read_only_identity_cannot_publish_and_leaves_nothing_half_written(s3_server, s3_env, monkeypatch):  # noqa: F811
    uploaded = sorted(upload_bronze(s3_server, s3_env, ["emin"]))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.reader_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.reader_secret)
    result, _, _ = run("emin")
    errors = failures(result)
    assert not result.success and len(errors) == 1
    assert "writing" in errors[0] and f"'{s3_server.bucket}'" in errors[0] and "access denied" in errors[0]
    assert sorted(s3_server.keys(s3_env)) == uploaded


def test_dual_mode_writes_both_backends_identically(s3_server, s3_env, monkeypatch, tmp_path):  # noqa: F811
    root = tmp_path / "root"
    shutil.copytree(DEMO_BRONZE / "emin", root / "bronze" / "emin" / DAY)
    monkeypatch.setenv("STORAGE_MODE", "dual")
    monkeypatch.setenv("LEGACY_EXPORTS", "true")
    saved = os.umask(0o022)
    try:
        result, _, _ = run("emin", build_resources(str(root)))
    finally:
        os.umask(saved)
    assert result.success, failures(result)
    # The local side is readable by group and others (0644 under umask 022), not mkstemp's 0600.
    written = {
        p: p.stat().st_mode & 0o777 for p in root.rglob("*") if p.is_file() and "bronze/emin/" not in str(p)
    }
    assert (
        root / "gold/emin/fleet_report.html" in written
        and root / "gold/emin/classified_reports.parquet" in written
    )
    assert {str(p): oct(m) for p, m in written.items() if m != 0o644} == {}
    store = StorageResource(data_root=str(root)).get()
    assert isinstance(store, DualStorage) and store.kind == "dual"
    for prefix in ("silver", "gold", "processed", "to_consume", "bronze/_registry"):
        assert store.diff(prefix) == [], prefix
    objects = s3_server.keys(s3_env)
    assert f"{s3_env}/{layout.gold_path('emin', 'classified_reports')}" in objects
    assert (root / layout.gold_path("emin", "classified_reports")).exists()
    assert manifest.verify(store.mirror, "emin") == [] and manifest.verify(store.primary, "emin") == []
    assert not any(k.startswith(f"{s3_env}/bronze/emin/{DAY}") for k in objects)  # raw files stay local


class _FlipOneByte(pafs.FileSystemHandler):
    """A backend that stores gold objects with one byte changed (bit rot, a faulty proxy…)."""

    def __init__(self, inner: pafs.FileSystem) -> None:
        self.inner = inner

    def open_output_stream(self, path, metadata):
        if "/gold/" not in path or not path.endswith(".parquet"):
            return self.inner.open_output_stream(path, metadata=metadata)
        inner = self.inner

        class Sink(io.BytesIO):
            def close(self) -> None:
                if not self.closed:
                    data = bytearray(self.getvalue())
                    data[len(data) // 2] ^= 0xFF
                    with inner.open_output_stream(path, metadata=metadata) as f:
                        f.write(bytes(data))
                super().close()

        return pa.PythonFile(Sink(), mode="w")

    def get_type_name(self):
        return "flip-one-byte"

    def equals(self, other):
        return self is other

    def normalize_path(self, path):
        return path

    def get_file_info(self, paths):
        return self.inner.get_file_info(paths)

    def get_file_info_selector(self, selector):
        return self.inner.get_file_info(selector)

    def open_input_stream(self, path):
        return self.inner.open_input_stream(path)

    def open_input_file(self, path):
        return self.inner.open_input_file(path)

    def delete_file(self, path):
        self.inner.delete_file(path)

    def create_dir(self, path, recursive):
        self.inner.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.inner.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.inner.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise NotImplementedError

    def move(self, src, dest):
        self.inner.move(src, dest)

    def copy_file(self, src, dest):
        self.inner.copy_file(src, dest)

    def open_append_stream(self, path, metadata):
        raise NotImplementedError


class FaultyMirrorStorage(StorageResource):
    def get(self):
        store = super().get()
        mirror = store.mirror
        faulty = Storage(
            pafs.PyFileSystem(_FlipOneByte(mirror.fs)),
            mirror.base,
            mirror.uri,
            endpoint_url=mirror.endpoint_url,
            region=mirror.region,
        )
        return DualStorage(store.primary, faulty)


def test_dual_mode_fails_loudly_when_the_backends_differ(s3_server, s3_env, monkeypatch, tmp_path):  # noqa: F811
    root = tmp_path / "root"
    shutil.copytree(DEMO_BRONZE / "emin", root / "bronze" / "emin" / DAY)
    monkeypatch.setenv("STORAGE_MODE", "dual")
    resources = build_resources(str(root))
    storage = FaultyMirrorStorage(data_root=str(root))
    resources.update(storage=storage, layout_io_manager=type(resources["layout_io_manager"])(storage=storage))
    result, _, _ = run("emin", resources)
    errors = failures(result)
    assert not result.success and len(errors) == 1
    gold = layout.gold_path("emin", "classified_reports")
    assert "StorageMismatchError" in errors[0] and gold in errors[0] and "sha256" in errors[0]
    assert not (root / gold).exists()  # the primary keeps its previous state
    assert (root / layout.harmonized_path("emin")).exists()  # upstream of gold went through


def test_s3_publish_is_atomic_for_concurrent_readers(s3_server, s3_env):  # noqa: F811
    store = Storage.s3(s3_server.bucket, s3_env, s3_server.region, s3_server.endpoint)
    client = s3_server.client()
    key = f"{s3_env}/gold/cda/big.parquet"
    old, new = os.urandom(1024), os.urandom(24 * 1024 * 1024)  # large enough for a multipart upload
    store.write_bytes("gold/cda/big.parquet", old)
    seen, done = set(), threading.Event()

    def read_while_writing() -> None:
        while not done.is_set():
            seen.add(client.head_object(Bucket=s3_server.bucket, Key=key)["ContentLength"])

    reader = threading.Thread(target=read_while_writing)
    reader.start()
    try:
        sha = store.write_bytes("gold/cda/big.parquet", new)
    finally:
        done.set()
        reader.join()
    head = client.head_object(Bucket=s3_server.bucket, Key=key)
    assert "-" in head["ETag"], "expected the multipart path"
    assert seen <= {len(old), len(new)} and len(old) in seen
    assert hashlib.sha256(store.read_bytes("gold/cda/big.parquet")).hexdigest() == sha


def test_a_publish_on_s3_reads_parts_once_and_a_stale_view_still_lists_every_part(s3_server, s3_env):  # noqa: F811
    store = Storage.s3(s3_server.bucket, s3_env, s3_server.region, s3_server.endpoint)
    assert_publish_reads_parts_once_and_survives_a_stale_view(store)


def test_storage_mode_s3_is_checked_once_and_reused(s3_server, s3_env):  # noqa: F811
    first = StorageResource().get()
    assert first.kind == "s3" and first.uri == f"s3://{s3_server.bucket}/{s3_env}"
    assert StorageResource().get() is first
    with tempfile.TemporaryDirectory() as tmp:
        assert StorageResource(data_root=tmp, use_s3=False).get().is_local


def test_missing_bucket_is_named_in_the_error(s3_server, s3_env):  # noqa: F811
    store = Storage.s3("no-such-bucket", s3_env, s3_server.region, s3_server.endpoint)
    with pytest.raises(
        StorageAccessError,
        match="no-such-bucket.*the bucket does not exist|the bucket does not exist.*no-such-bucket",
    ):
        store.write_bytes("gold/cda/x.json", b"{}")


def test_a_resent_workbook_on_s3_reads_only_its_new_rows_and_publishes_what_local_disk_does(
    s3_server,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    """The monthly re-send on S3: the cumulative workbook comes back under the same key with more
    rows and a correction; only its new or corrected rows are read (its row cache, kept workbook
    bytes included, lives in the bucket) and silver and gold are the bytes of the same months on
    local disk."""
    from .builders import finning_row
    from .builders import run_cda as run_local
    from .test_resent_workbook import SAMPLE, month_one, month_two, with_fe_copies, write

    books, local, prefix = tmp_path / "books", tmp_path / "local", "resend"
    other = [finning_row(i, **{SAMPLE: f"R121-00000-{i:04d}", "ID de equipo": "T-02"}) for i in range(8)]
    write(books / "one" / "T-01.xlsx", with_fe_copies(month_one()))
    write(books / "one" / "T-02.xlsx", with_fe_copies(other))
    write(books / "two" / "T-01.xlsx", with_fe_copies(month_two()))
    client = s3_server.client()
    (local / "bronze" / "cda").mkdir(parents=True)
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "STORAGE_MODE", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    for k, v in s3_server.env(prefix, OIL_LLM_OFFLINE="true").items():
        monkeypatch.setenv(k, v)
    bronze = {}
    with DagsterInstance.ephemeral() as on_s3, DagsterInstance.ephemeral() as on_disk:
        for month in ("one", "two"):
            for f in sorted((books / month).glob("*.xlsx")):  # the lab's files of the month, both backends
                client.put_object(
                    Bucket=s3_server.bucket, Key=f"{prefix}/bronze/cda/{f.name}", Body=f.read_bytes()
                )
                shutil.copyfile(f, local / "bronze" / "cda" / f.name)
            monkeypatch.setenv("USE_S3", "true")
            result = materialize(all_assets, partition_key="cda", instance=on_s3, resources=build_resources())
            assert result.success, failures(result)
            bronze["s3", month] = next(
                e.step_materialization_data.materialization.metadata
                for e in result.get_asset_materialization_events()
                if e.asset_key.path[-1] == "bronze_lab_files"
            )
            monkeypatch.setenv("USE_S3", "false")
            bronze["local", month] = run_local(local, on_disk)["bronze_lab_files"]
    for backend in ("s3", "local"):
        second = {k: bronze[backend, "two"][k].value for k in ("rows_reused", "raw_rows_parsed_this_run")}
        assert second == {"rows_reused": 7, "raw_rows_parsed_this_run": 4}, backend
        assert bronze[backend, "two"]["raw_rows_read_this_run"].value == 4, backend  # read through the XML
        assert bronze[backend, "one"]["raw_rows_read_this_run"].value >= 16, backend
    objects = s3_server.keys(prefix)
    assert any(k.endswith(".rowcache.arrow") for k in objects)
    for path in (
        "silver/harmonized/CDA.parquet",
        "silver/rejects/cda.parquet",
        *(layout.gold_path("cda", name) for name in GOLD),
    ):
        assert objects[f"{prefix}/{path}"] == (local / path).read_bytes(), path
