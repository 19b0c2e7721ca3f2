"""The storage layer on local disk: configuration, atomic publish, manifest, legacy exports."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import threading
from datetime import datetime

import pandas as pd
import pyarrow.parquet as pq
import pytest
from dagster import AssetKey, DagsterInstance, build_output_context, materialize

from oil_analysis.definitions import all_assets, build_resources
from oil_analysis.domain.contracts import SCHEMA_VERSION
from oil_analysis.resources.io_manager import LayoutIOManager
from oil_analysis.resources.storage import StorageResource
from oil_analysis.settings import get_settings
from oil_analysis.storage import layout, legacy, manifest
from oil_analysis.storage.filesystem import Storage, json_bytes, public_endpoint
from oil_analysis.storage.healing import check_writable

STORAGE_VARS = (
    "USE_S3",
    "STORAGE_MODE",
    "S3_BUCKET",
    "S3_PREFIX",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "LEGACY_EXPORTS",
)
GOLD = ("classified_reports", "machine_status_current", "limit_quality")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("OIL_LLM_OFFLINE", "true")
    for var in STORAGE_VARS[1:]:
        monkeypatch.delenv(var, raising=False)


def run(root, client: str, selection=None):
    with DagsterInstance.ephemeral() as instance:
        return materialize(
            all_assets,
            partition_key=client,
            instance=instance,
            resources=build_resources(str(root)),
            selection=selection,
            raise_on_error=False,
        )


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def every_file(root) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# -- configuration ------------------------------------------------------------------------------


def test_settings_defaults_are_the_documented_ones(monkeypatch):
    for var in STORAGE_VARS:
        monkeypatch.delenv(var, raising=False)
    s = get_settings()
    assert (s.use_s3, s.storage_mode, s.legacy_exports) == (False, "local", False)
    assert (s.s3_bucket, s.s3_prefix, s.aws_region, s.aws_endpoint_url) == (
        "mining-data-mesh",
        "oil-analysis",
        "us-east-1",
        None,
    )


@pytest.mark.parametrize(
    "env, mode",
    [
        ({"USE_S3": "true"}, "s3"),
        ({"STORAGE_MODE": "dual"}, "dual"),
        ({"STORAGE_MODE": "DUAL", "USE_S3": "true"}, "dual"),
        ({"STORAGE_MODE": "s3"}, "s3"),
        ({"USE_S3": "no"}, "local"),
    ],
)
def test_storage_mode_from_environment(monkeypatch, env, mode):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert get_settings().storage_mode == mode
    assert get_settings().use_s3 == (mode == "s3")


@pytest.mark.parametrize("env", [{"STORAGE_MODE": "both"}, {"STORAGE_MODE": "local", "USE_S3": "true"}])
def test_contradictory_or_unknown_mode_is_an_error(monkeypatch, env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValueError, match="STORAGE_MODE"):
        get_settings()


def test_resource_fields_override_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("USE_S3", "true")
    store = StorageResource(data_root=str(tmp_path), use_s3=False).get()
    assert store.is_local and store.base == str(tmp_path) and store.kind == "local"
    assert StorageResource(legacy_exports=True).legacy_enabled()
    monkeypatch.setenv("LEGACY_EXPORTS", "true")
    assert StorageResource().legacy_enabled() and not StorageResource(legacy_exports=False).legacy_enabled()


def test_endpoint_shown_in_errors_has_no_user_info_or_query():
    assert (
        public_endpoint("http://user:pa55@127.0.0.1:8333/path?X-Amz-Signature=abc") == "http://127.0.0.1:8333"
    )
    assert public_endpoint(None, "sa-east-1") == "https://s3.sa-east-1.amazonaws.com (AWS default)"


# -- atomic writes ------------------------------------------------------------------------------


def test_failed_local_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    store = Storage.local(str(tmp_path))
    store.write_json("gold/cda/doc.json", {"v": 1})
    with pytest.raises(TypeError):
        store.write_bytes("gold/cda/doc.json", None)  # fails inside the temp file, before the rename
    assert store.read_json("gold/cda/doc.json") == {"v": 1}
    assert every_file(tmp_path) == {"gold/cda/doc.json"}


def test_probe_write_fails_where_a_write_fails_and_leaves_nothing(tmp_path):
    store = Storage.local(str(tmp_path))
    assert check_writable(store, "cda") == []
    # The folders a run publishes to exist now, and no probe file is left in them.
    assert (tmp_path / "gold/cda").is_dir() and (tmp_path / "silver/harmonized").is_dir()
    assert every_file(tmp_path) == set()
    # A file standing where a folder must be: the probe and a real write both refuse it.
    (tmp_path / "gold/cda/_changes").rmdir()
    (tmp_path / "gold/cda/_changes").write_bytes(b"in the way")
    with pytest.raises(OSError) as probe_error:
        store.probe_write("gold/cda/_changes/.tmp-probe-x")
    with pytest.raises(OSError) as write_error:
        store.write_bytes("gold/cda/_changes/log.json", b"{}")
    assert type(probe_error.value) is type(write_error.value)
    problems = check_writable(store, "cda")
    assert len(problems) == 1 and "gold/cda/_changes" in problems[0]
    assert every_file(tmp_path) == {"gold/cda/_changes"}


@pytest.fixture
def umask():
    """Set the process umask for one test (``umask(0o022)``); the previous one comes back after."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield os.umask
    os.umask(saved)


def modes(root) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mode & 0o777 for p in root.rglob("*") if p.is_file()}


def test_published_files_honour_the_process_umask(demo_root, umask):
    umask(0o022)
    assert run(demo_root, "emin").success
    published = {p: m for p, m in modes(demo_root).items() if not p.startswith("bronze/emin/")}
    assert "gold/emin/fleet_report.html" in published and "gold/emin/classified_reports.parquet" in published
    assert any(p.startswith("silver/stewart_limits/emin/") for p in published)
    assert {p: oct(m) for p, m in published.items() if m != 0o644} == {}
    assert all(p.stat().st_mode & 0o777 == 0o755 for p in (demo_root / "gold").rglob("*") if p.is_dir())
    # A stricter umask keeps new files private: the mode comes from the process, not from the code.
    umask(0o077)
    store = Storage.local(str(demo_root))
    store.write_bytes("gold/emin/private.json", b"{}")
    assert (demo_root / "gold/emin/private.json").stat().st_mode & 0o777 == 0o600
    umask(0o027)
    store.write_bytes("gold/emin/fleet_report.html", b"<html></html>")  # replaces: new mode too
    assert (demo_root / "gold/emin/fleet_report.html").stat().st_mode & 0o777 == 0o640


def test_output_that_cannot_be_serialized_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("LEGACY_EXPORTS", "true")
    io_manager = LayoutIOManager(storage=StorageResource(data_root=str(tmp_path)))
    bad = pd.DataFrame({"sampleNumber": ["a", "b"], "value": [1.0, object()]})
    for asset in ("classified_reports", "stewart_limits"):
        ctx = build_output_context(asset_key=AssetKey(asset), partition_key="cda")
        with pytest.raises(Exception):  # noqa: B017 - pyarrow's own error type
            io_manager.handle_output(ctx, bad.assign(version="v1"))
    assert every_file(tmp_path) == set()


def test_failing_gold_asset_writes_nothing_and_previous_gold_stays(data_root, demo_root, monkeypatch):
    assert run(demo_root, "emin").success
    gold = {n: sha(demo_root / layout.gold_path("emin", n)) for n in GOLD}
    before = manifest.read_manifest(Storage.local(str(demo_root)), "emin")
    files_before = every_file(demo_root / "gold")

    def boom(*args, **kwargs):
        raise RuntimeError("contract violated")

    monkeypatch.setattr("oil_analysis.pipeline.gold.classify_reports", boom)
    # Forget the recorded input fingerprints: every step has work to do again (as after a change).
    shutil.rmtree(demo_root / "silver/_state/emin/fingerprints")
    result = run(demo_root, "emin")
    assert not result.success
    assert {n: sha(demo_root / layout.gold_path("emin", n)) for n in GOLD} == gold
    assert every_file(demo_root / "gold") == files_before
    after = manifest.read_manifest(Storage.local(str(demo_root)), "emin")
    gold_entries = lambda doc: [f for f in doc["files"] if f["path"].startswith("gold/")]  # noqa: E731
    assert gold_entries(after) == gold_entries(before)
    assert after["assets"]["silver_harmonized"]["run_id"] == result.run_id  # upstream did publish


# -- manifest -----------------------------------------------------------------------------------


def test_manifest_lists_every_published_file_with_checksums(demo_root):
    result = run(demo_root, "emin")
    assert result.success
    store = Storage.local(str(demo_root))
    doc = manifest.read_manifest(store, "emin")
    version = store.read_json(layout.limits_latest("emin"))["version"]
    folder = layout.limits_dir("emin", version)
    silver = {layout.harmonized_path("emin"), layout.rejects_path("emin")}
    expected = silver | {
        f"{folder}/stewart_limits.parquet",
        f"{folder}/stewart_limits.json",
        layout.limits_latest("emin"),
        *(layout.gold_path("emin", n) for n in GOLD),
    }
    paths = [f["path"] for f in doc["files"]]
    assert paths == sorted(paths) and expected <= set(paths)
    assert all(p.startswith(("silver/", "gold/emin/")) for p in paths)
    assert doc["client"] == "emin" and doc["limits_version"] == version
    for f in doc["files"]:
        path = demo_root / f["path"]
        assert f["sha256"] == sha(path) and f["bytes"] == path.stat().st_size, f["path"]
        if f["format"] == "parquet":
            assert f["rows"] == pq.ParquetFile(path).metadata.num_rows
        assert f["schema_version"] == SCHEMA_VERSION and f["run_id"] == result.run_id
        assert datetime.fromisoformat(f["written_at"].replace("Z", "+00:00")).tzinfo is not None
        assert f["limits_version"] == (None if f["path"] in silver else version), f["path"]
        assert f["legacy"] is False
    assert manifest.verify(store, "emin") == []
    assert not (demo_root / "processed").exists() and not (demo_root / "to_consume").exists()

    # side outputs are listed too: the run's change log (one per run, both sections)
    logs = [p for p in paths if p.startswith(layout.changes_dir("emin") + "/")]
    assert len(logs) == 1 and logs[0].endswith(f"-{result.run_id[:8]}.json")
    assert set(store.read_json(logs[0])) >= {"reports", "machines"}

    # a re-run of one asset replaces the entries of its paths and of the run's change log, and only
    # those (its recorded input fingerprint forgotten: with unchanged inputs the step would rightly
    # write nothing)
    (demo_root / "silver/_state/emin/fingerprints/machine_status_current.json").unlink()
    again = run(demo_root, "emin", selection=["machine_status_current"])
    assert again.success
    doc2 = manifest.read_manifest(store, "emin")
    paths2 = [f["path"] for f in doc2["files"]]
    logs2 = [p for p in paths2 if p.startswith(layout.changes_dir("emin") + "/")]
    assert len(logs2) == 1 and logs2[0].endswith(f"-{again.run_id[:8]}.json")
    assert [p for p in paths2 if p not in logs2] == [p for p in paths if p not in logs]
    runs = {f["path"]: f["run_id"] for f in doc2["files"]}
    assert runs.pop(layout.gold_path("emin", "machine_status_current")) == again.run_id
    assert runs.pop(logs2[0]) == again.run_id
    assert set(runs.values()) == {result.run_id}

    tampered = layout.gold_path("emin", "limit_quality")
    listed = next(f for f in doc2["files"] if f["path"] == tampered)
    (demo_root / tampered).write_bytes(b"tampered")
    assert manifest.verify(store, "emin") == [
        f"differs: {tampered} (manifest {listed['sha256'][:12]}, "
        f"stored {hashlib.sha256(b'tampered').hexdigest()[:12]})"
    ]


def test_concurrent_writers_of_one_client_lose_no_entry(tmp_path):
    store = Storage.local(str(tmp_path))
    assets = [f"asset_{i:02d}" for i in range(12)]
    for round_ in range(3):
        barrier = threading.Barrier(len(assets))
        errors = []

        def publish(asset: str, r: int = round_, b: threading.Barrier = barrier, errs: list = errors) -> None:
            data = f"{asset} round {r}".encode()
            path = f"gold/cda/{asset}.parquet"
            store.write_bytes(path, data)
            b.wait()
            try:
                manifest.write_part(
                    store,
                    "cda",
                    asset,
                    [manifest.FileRecord.of(path, data, 1)],
                    run_id=f"run-{r}",
                    limits_version=None,
                )
            except Exception as exc:  # pragma: no cover - reported below
                errs.append(exc)

        threads = [threading.Thread(target=publish, args=(a,)) for a in assets]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        doc = manifest.read_manifest(store, "cda")
        assert [f["path"] for f in doc["files"]] == [f"gold/cda/{a}.parquet" for a in assets]
        assert {f["run_id"] for f in doc["files"]} == {f"run-{round_}"}
        assert manifest.verify(store, "cda") == []


def assert_publish_reads_parts_once_and_survives_a_stale_view(store: Storage) -> None:
    """A part's publish reads the parts once (to verify the manifest it wrote) while this process's
    view of them is current; when another writer added a part since, the listing shows it, every part
    is read again and the manifest lists them all. Shared with the S3 test (one layout, two
    backends)."""

    def put(asset: str, data: bytes) -> None:
        path = f"gold/cda/{asset}.parquet"
        store.write_bytes(path, data)
        manifest.write_part(
            store, "cda", asset, [manifest.FileRecord.of(path, data, 1)], run_id="r", limits_version=None
        )

    put("a", b"a1")
    put("b", b"b1")
    reads: list[str] = []
    real = store.read_json
    store.read_json = lambda path: (reads.append(path), real(path))[1]
    put("a", b"a2")
    assert sorted(reads) == [layout.manifest_part_path("cda", x) for x in ("a", "b")]
    # Another process publishes part c: its part and file land, this process's view lacks them.
    store.write_bytes("gold/cda/c.parquet", b"c1")
    other = {
        "asset": "c",
        "client": "cda",
        "run_id": "other",
        "written_at": manifest.now_utc(),
        "schema_version": SCHEMA_VERSION,
        "limits_version": None,
        "files": [dataclasses.asdict(manifest.FileRecord.of("gold/cda/c.parquet", b"c1", 1))],
    }
    store.write_bytes(layout.manifest_part_path("cda", "c"), json_bytes(other))
    reads.clear()
    put("b", b"b2")
    # The listing shows a part this process did not write: every part is read, then verified.
    assert sorted(reads) == sorted(2 * [layout.manifest_part_path("cda", x) for x in ("a", "b", "c")])
    doc = manifest.read_manifest(store, "cda")
    files = {f["path"]: f for f in doc["files"]}
    assert sorted(files) == [f"gold/cda/{x}.parquet" for x in ("a", "b", "c")]
    assert files["gold/cda/a.parquet"]["sha256"] == hashlib.sha256(b"a2").hexdigest()
    assert files["gold/cda/b.parquet"]["sha256"] == hashlib.sha256(b"b2").hexdigest()
    assert files["gold/cda/c.parquet"]["run_id"] == "other"
    assert manifest.verify(store, "cda") == []


def test_a_publish_reads_parts_once_and_a_stale_view_still_lists_every_part(tmp_path):
    assert_publish_reads_parts_once_and_survives_a_stale_view(Storage.local(str(tmp_path)))


# -- legacy exports -----------------------------------------------------------------------------


def test_legacy_exports_are_copies_and_shared_limits_merge_per_client(demo_root, monkeypatch):
    monkeypatch.setenv("LEGACY_EXPORTS", "true")
    store = Storage.local(str(demo_root))
    old_format = {"CAMION": {"MOTOR": {"FE": {"normal_limit": 52.75}}}}
    store.write_json(legacy.LIMITS_JSON, old_format)
    other = pd.DataFrame([["OLD", "camion", "motor", "fe", 1.0, 2.0, 3.0]], columns=legacy.V1_COLUMNS).astype(
        {c: "string" for c in legacy.V1_COLUMNS[:4]}
    )
    store.write_parquet(legacy.LIMITS_PARQUET, other)

    for client in ("cda", "emin"):
        assert run(demo_root, client).success
        pairs = {
            legacy.to_consume_path(client): layout.harmonized_path(client),
            legacy.classified_path(client): layout.gold_path(client, "classified_reports"),
            legacy.machine_status_path(client): layout.gold_path(client, "machine_status_current"),
            # the original consumers' fixed paths (issue 18)
            f"to_consume/{client}/classified_reports.parquet": layout.gold_path(client, "classified_reports"),
            f"to_consume/{client}/machine_status_current.parquet": layout.gold_path(
                client, "machine_status_current"
            ),
        }
        doc = manifest.read_manifest(store, client)
        listed = {f["path"]: f for f in doc["files"]}
        for old, new in pairs.items():
            assert (demo_root / old).read_bytes() == (demo_root / new).read_bytes(), old
            assert listed[old]["legacy"] is True and listed[old]["sha256"] == listed[new]["sha256"]
        assert listed[legacy.LIMITS_JSON]["shared"] and listed[legacy.LIMITS_PARQUET]["legacy"]
    assert (demo_root / "to_consume/CDA.parquet").exists()

    nested = store.read_json(legacy.LIMITS_JSON)
    assert set(nested) == {"CAMION", "CDA", "EMIN"} and nested["CAMION"] == old_format["CAMION"]
    flat = store.read_parquet(legacy.LIMITS_PARQUET)
    assert set(flat["client"]) == {"OLD", "CDA", "EMIN"} and list(flat.columns) == legacy.V1_COLUMNS
    latest = store.read_json(layout.limits_latest("cda"))
    limits = store.read_parquet(f"{latest['path']}/stewart_limits.parquet")
    up = limits[(limits["kind"] == "level") & (limits["direction"] == "upper")].iloc[0]
    assert nested["CDA"][up["machine"]][up["component"]][up["essay"]] == {
        "threshold_normal": up["marginal"],
        "threshold_alert": up["condemning"],
        "threshold_critic": up["critical"],
    }
    cda_rows = flat[flat["client"] == "CDA"]
    assert len(cda_rows) == int(
        ((limits["kind"] == "level") & (limits["direction"] == "upper") & (limits["stratum"] == "ALL")).sum()
    )


def _limits(client: str, version: str, value: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "client": [client.upper()],
            "machine": ["camion"],
            "component": ["motor"],
            "stratum": ["ALL"],
            "essay": ["fe"],
            "kind": ["level"],
            "direction": ["upper"],
            "marginal": [value],
            "condemning": [value + 1],
            "critical": [value + 2],
            "version": [version],
        }
    )


def _new_limits(store: Storage, client: str, version: str, value: float) -> None:
    folder = layout.limits_dir(client, version)
    store.write_parquet(f"{folder}/stewart_limits.parquet", _limits(client, version, value))
    store.write_json(layout.limits_latest(client), {"client": client, "version": version, "path": folder})


def _thresholds(store: Storage) -> dict[str, float]:
    nested = store.read_json(legacy.LIMITS_JSON)
    return {k: v["camion"]["motor"]["fe"]["threshold_normal"] for k, v in nested.items()}


def test_shared_legacy_limits_publish_repairs_a_stale_view(tmp_path, monkeypatch):
    """Client A renders the shared file from B's old limits, B publishes its new ones completely,
    then A's write lands: A must notice and republish with B's new limits."""
    store = Storage.local(str(tmp_path))
    for c in ("a", "b"):
        _new_limits(store, c, f"{c}-v0", 1.0)
    legacy.publish_shared_limits(store, ["a", "b"])
    render, paused, resume = legacy._render, threading.Event(), threading.Event()

    def render_then_pause(store_, sources):
        out = render(store_, sources)
        if threading.current_thread().name == "client-a" and not paused.is_set():
            paused.set()
            resume.wait(10)
        return out

    monkeypatch.setattr(legacy, "_render", render_then_pause)

    def client_a() -> None:
        _new_limits(store, "a", "a-v1", 2.0)
        legacy.publish_shared_limits(store, ["a", "b"])

    a = threading.Thread(target=client_a, name="client-a")
    a.start()
    assert paused.wait(10)
    _new_limits(store, "b", "b-v1", 3.0)
    legacy.publish_shared_limits(store, ["a", "b"])
    assert _thresholds(store) == {"A": 2.0, "B": 3.0}
    resume.set()
    a.join()
    assert _thresholds(store) == {"A": 2.0, "B": 3.0}


def test_shared_legacy_limits_survive_concurrent_clients(tmp_path):
    store = Storage.local(str(tmp_path))
    clients = [f"c{i}" for i in range(4)]
    rounds = 3
    errors = []

    def client_runs(client: str) -> None:
        try:
            for r in range(rounds):
                _new_limits(store, client, f"{client}-v{r}", 10.0 * r)
                legacy.publish_shared_limits(store, clients)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client_runs, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    final = 10.0 * (rounds - 1)
    assert _thresholds(store) == {c.upper(): final for c in clients}
    flat = store.read_parquet(legacy.LIMITS_PARQUET)
    assert sorted(flat["client"]) == sorted(c.upper() for c in clients)
    assert (flat["threshold_normal"] == final).all()
