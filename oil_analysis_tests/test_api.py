"""The read API (issue 18) as its users run it: ``python -m oil_analysis.api serve`` under uvicorn on a
loopback port, a real HTTP client (httpx), gold materialized from the demo data once per module, on
local disk and on the S3 server (SeaweedFS). Keys come from the documented CLI."""

from __future__ import annotations

import hashlib
import io
import json
import pathlib
import re
import shutil
import subprocess
import sys
import time
import uuid

import httpx
import pandas as pd
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, materialize

from oil_analysis.api import models
from oil_analysis.definitions import all_assets, build_resources
from oil_analysis.storage import layout, manifest

from .api_server import ApiServer
from .conftest import DEMO_BRONZE, REPO
from .s3_server import SeaweedS3, s3_server  # noqa: F401

CLIENTS = ("cda", "emin")
PUBLISHED = ("gold", "silver")

pytestmark = pytest.mark.timeout(600)


def materialize_demo(root: pathlib.Path) -> None:
    shutil.copytree(DEMO_BRONZE, root / "bronze", dirs_exist_ok=True)
    for reserved in ("_registry", "_quarantine"):
        shutil.rmtree(root / "bronze" / reserved, ignore_errors=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OIL_DATA_ROOT", str(root))
        mp.setenv("USE_S3", "false")
        mp.delenv("STORAGE_MODE", raising=False)
        mp.delenv("LEGACY_EXPORTS", raising=False)
        for client in CLIENTS:
            with DagsterInstance.ephemeral() as instance:
                result = materialize(
                    all_assets, partition_key=client, instance=instance, resources=build_resources(str(root))
                )
                assert result.success


def add_key(keys_file: pathlib.Path, *args: str) -> str:
    """``python -m oil_analysis.api keys add …``: the key is the last line of stdout."""
    out = subprocess.run(
        [sys.executable, "-m", "oil_analysis.api", "keys", "add", *args],
        cwd=REPO,
        env={**_base_env(), "OIL_API_KEYS_FILE": str(keys_file)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"oilk_[A-Za-z0-9_\-]{40,}", key)
    return key


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("OIL_API_", "AWS_", "S3_"))}


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gold_root(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("api-gold") / "data"
    (root / "bronze").mkdir(parents=True)
    materialize_demo(root)
    return root


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("api-keys") / "keys.yaml"
    return {
        "file": path,
        "cda": add_key(path, "--client", "cda", "--name", "fusion"),
        "all": add_key(path, "--all"),
        "emin": add_key(path, "--client", "emin"),
    }


def local_env(root: pathlib.Path, keys_file: pathlib.Path, **extra: str) -> dict[str, str]:
    return {
        "OIL_DATA_ROOT": str(root),
        "USE_S3": "false",
        "OIL_API_KEYS_FILE": str(keys_file),
        "OIL_API_REFRESH_S": "0.2",
        **extra,
    }


def s3_env(server: SeaweedS3, prefix: str, keys_file: pathlib.Path, **extra: str) -> dict[str, str]:
    return {
        **server.env(prefix),
        "OIL_API_KEYS_FILE": str(keys_file),
        "OIL_API_REFRESH_S": "0.2",
        **extra,
    }


def upload_published(server: SeaweedS3, root: pathlib.Path, prefix: str) -> None:
    for top in PUBLISHED:
        server.upload_tree(root / top, f"{prefix}/{top}")


class Backend:
    """A running API and how to reach and change what it serves."""

    def __init__(self, name: str, api: ApiServer, root: pathlib.Path, keys: dict, s3=None, prefix=None):
        self.name, self.api, self.root, self.keys, self.s3, self.prefix = name, api, root, keys, s3, prefix

    def get(self, path: str, key: str | None = None, **kwargs) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if key:
            headers["Authorization"] = f"Bearer {self.keys.get(key, key)}"
        return httpx.get(self.api.url + path, headers=headers, timeout=60, **kwargs)

    def write(self, rel: str, data: bytes) -> None:
        if self.s3 is None:
            (self.root / rel).write_bytes(data)
        else:
            self.s3.client().put_object(Bucket=self.s3.bucket, Key=f"{self.prefix}/{rel}", Body=data)


@pytest.fixture(scope="module")
def local_api(gold_root, keys, tmp_path_factory):
    with ApiServer(local_env(gold_root, keys["file"]), tmp_path_factory.mktemp("api-log")) as api:
        yield Backend("local", api, gold_root, keys)


@pytest.fixture(scope="module")
def s3_api(gold_root, keys, s3_server, tmp_path_factory):  # noqa: F811
    prefix = f"api-{uuid.uuid4().hex[:8]}"
    upload_published(s3_server, gold_root, prefix)
    with ApiServer(s3_env(s3_server, prefix, keys["file"]), tmp_path_factory.mktemp("api-log")) as api:
        yield Backend("s3", api, gold_root, keys, s3_server, prefix)


@pytest.fixture(params=["local", "s3"])
def backend(request) -> Backend:
    return request.getfixturevalue(f"{request.param}_api")


def gold(root: pathlib.Path, client: str, name: str) -> pd.DataFrame:
    return pd.read_parquet(root / layout.gold_path(client, name))


# -- health, clients, keys ----------------------------------------------------------------------


def test_health_without_a_key_names_no_client(backend):
    r = backend.get("/health")
    assert r.status_code == 200, r.text
    doc = models.Health.model_validate(r.json())
    assert doc.status == "ok" and doc.storage.reachable and doc.storage.backend == backend.name
    assert doc.clients is None
    assert not any(c in r.text for c in CLIENTS)


def test_health_with_a_key_gives_its_clients_publication_age_and_limits_version(backend):
    r = backend.get("/health", "cda")
    assert r.status_code == 200
    doc = models.Health.model_validate(r.json())
    assert list(doc.clients) == ["cda"]
    cda = doc.clients["cda"]
    man = json.loads((backend.root / manifest.manifest_path("cda")).read_text())
    assert cda.serving == "current" and cda.consistent and cda.problems == []
    assert cda.limits_version == man["limits_version"]
    assert cda.published_at == man["updated_at"] and cda.age_seconds > 0
    assert (
        cda.manifest_sha256
        == hashlib.sha256((backend.root / manifest.manifest_path("cda")).read_bytes()).hexdigest()
    )
    assert sorted(models.Health.model_validate(backend.get("/health", "all").json()).clients) == list(CLIENTS)


def test_no_key_or_an_unknown_key_is_401(backend):
    for path in (
        "/clients",
        "/clients/cda/machines",
        "/clients/cda/reports",
        "/metrics",
        "/clients/cda/limits",
    ):
        r = backend.get(path)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
        assert backend.get(path, "oilk_" + "x" * 43).status_code == 401
    assert (
        backend.get("/clients", headers={"Authorization": f"Basic {backend.keys['cda']}"}).status_code == 401
    )
    assert backend.get("/health", "oilk_unknownunknownunknown").status_code == 401


def test_a_key_without_the_client_gets_403_the_same_as_an_unknown_client(backend):
    paths = ["/machines", "/machines/T_01", "/reports", "/limits", "/fleet-report"]
    for p in paths:
        other = backend.get(f"/clients/emin{p}", "cda")
        ghost = backend.get(f"/clients/nosuchclient{p}", "cda")
        assert other.status_code == ghost.status_code == 403
        assert (
            other.content == ghost.content and other.headers["content-type"] == ghost.headers["content-type"]
        )
    assert backend.get("/clients/emin/machines", "emin").status_code == 200


def test_clients_lists_what_the_key_may_read(backend):
    one = models.ClientList.model_validate(backend.get("/clients", "cda").json())
    assert [c.client for c in one.clients] == ["cda"] and one.clients[0].published
    every = models.ClientList.model_validate(backend.get("/clients", "all").json())
    assert [c.client for c in every.clients] == list(CLIENTS)


# -- machines -----------------------------------------------------------------------------------


def test_machines_in_priority_order_filtered_and_paginated(backend):
    status = gold(backend.root, "cda", "machine_status_current")
    expected = status.sort_values(["priority", "unitId"], ascending=[False, True], kind="mergesort")
    r = backend.get("/clients/cda/machines", "cda")
    page = models.MachinePage.model_validate(r.json())
    assert page.total == len(status) and [m.unitId for m in page.items] == list(expected["unitId"])
    assert r.headers["x-oil-serving"] == "current" and page.snapshot.serving == "current"
    first = page.items[0]
    row = expected.iloc[0]
    assert first.machine_status == row["machine_status"] and first.machine_score == pytest.approx(
        row["machine_score"]
    )
    assert [c.component for c in first.components] == [
        c["component"] for c in json.loads(row["component_status"])
    ]
    # pagination: follow `next` with pages of 3
    seen, url = [], "/clients/cda/machines?limit=3"
    while url:
        p = models.MachinePage.model_validate(backend.get(url, "cda").json())
        assert len(p.items) <= 3 and p.total == len(status)
        seen += [m.unitId for m in p.items]
        url = p.next.removeprefix(backend.api.url) if p.next else None
    assert seen == list(expected["unitId"])
    # filter by status (repeatable)
    flagged = backend.get("/clients/cda/machines?status=Alerta&status=Anormal", "cda").json()
    want = expected[expected["machine_status"] != "Normal"]
    assert flagged["total"] == len(want) > 0 and [m["unitId"] for m in flagged["items"]] == list(
        want["unitId"]
    )
    assert backend.get("/clients/cda/machines?status=Bad", "cda").status_code == 422
    assert backend.get("/clients/cda/machines?limit=0", "cda").status_code == 422


def test_machine_detail_components_latest_reports_and_trends_with_limits(backend):
    status = gold(backend.root, "cda", "machine_status_current")
    reports = gold(backend.root, "cda", "classified_reports")
    unit = status.sort_values("priority", ascending=False)["unitId"].iloc[0]
    r = backend.get(f"/clients/cda/machines/{unit}?history=20", "cda")
    assert r.status_code == 200, r.text
    doc = models.MachineDetail.model_validate(r.json())
    assert doc.machine.unitId == unit and doc.machine.machine_status != "Normal"
    mine = reports[reports["unitId"] == unit].sort_values(["sampleDate", "reportDate", "sampleNumber"])
    latest = mine.groupby("componentName").tail(1).set_index("componentName")
    assert sorted(c.componentName for c in doc.components) == sorted(latest.index)
    for comp in doc.components:
        assert comp.latest_report.sampleNumber == latest.loc[comp.componentName, "sampleNumber"]
        assert comp.status == latest.loc[comp.componentName, "report_status"]
    assert doc.trends, "a non-Normal machine has breached essays"
    limits = pd.read_parquet(
        next((backend.root / "silver/stewart_limits/cda").glob("*/stewart_limits.parquet"))
    )
    for t in doc.trends:
        series = mine[(mine["componentName"] == t.componentName) & mine[t.essay].notna()].tail(20)
        assert [p.sampleNumber for p in t.points] == list(series["sampleNumber"])
        assert [p.value for p in t.points] == pytest.approx(list(series[t.essay]))
        assert {b.essay for b in t.breaches} == {t.essay}
        comp_norm = latest.loc[t.componentName, "componentNameNormalized"]
        machine = latest.loc[t.componentName, "machineName"]
        lim = limits[
            (limits["machine"] == machine) & (limits["component"] == comp_norm) & (limits["essay"] == t.essay)
        ]
        assert len(t.limits) == int(lim["kind"].isin(["level", "trend"]).sum())
    assert backend.get("/clients/cda/machines/NO_SUCH_UNIT", "cda").status_code == 404


# -- reports ------------------------------------------------------------------------------------


def _expected_reports(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(
        ["sampleDate", "reportDate", "sampleNumber"], ascending=[False, False, True], kind="mergesort"
    )


def test_reports_filters_pagination_newest_first(backend):
    reports = gold(backend.root, "cda", "classified_reports")
    r = backend.get("/clients/cda/reports", "cda")
    page = models.ReportPage.model_validate(r.json())
    assert page.total == len(reports) and len(page.items) == 100
    assert r.headers["x-total-count"] == str(len(reports)) and 'rel="next"' in r.headers["link"]
    exp = _expected_reports(reports)
    assert [i.sampleNumber for i in page.items] == list(exp["sampleNumber"].iloc[:100])
    # nested essays are the measured values of the row
    first = exp.iloc[0]
    item = page.items[0]
    assert item.essays and all(first[e] == pytest.approx(v) for e, v in item.essays.items())
    assert [b.model_dump(exclude_none=True) for b in item.breaches] == [
        {k: v for k, v in b.items() if v is not None} for b in json.loads(first["breached_essays"])
    ]
    # every filter, combined
    flagged = reports[reports["report_status"] != "Normal"]
    unit, comp = flagged.iloc[0]["unitId"], flagged.iloc[0]["componentName"]
    d0, d1 = "2023-01-01", "2025-12-31"
    want = _expected_reports(
        reports[
            reports["report_status"].isin(["Alerta", "Anormal"])
            & (reports["unitId"] == unit)
            & (reports["componentName"] == comp)
            & (reports["sampleDate"] >= d0)
            & (reports["sampleDate"] <= d1)
        ]
    )
    q = f"/clients/cda/reports?status=Alerta&status=Anormal&unit={unit}&component={comp}&date_from={d0}&date_to={d1}&limit=2"
    got, url = [], q
    while url:
        p = models.ReportPage.model_validate(backend.get(url, "cda").json())
        assert p.total == len(want)
        got += [i.sampleNumber for i in p.items]
        url = p.next.removeprefix(backend.api.url) if p.next else None
    assert got == list(want["sampleNumber"]) and len(got) > 0
    # a component filter also matches the normalized name; unknown values give empty pages
    norm = flagged.iloc[0]["componentNameNormalized"]
    n_norm = int((reports["componentNameNormalized"] == norm).sum() | 0)
    assert backend.get(f"/clients/cda/reports?component={norm}&limit=1", "cda").json()["total"] >= n_norm
    empty = backend.get("/clients/cda/reports?unit=NOPE", "cda").json()
    assert empty["total"] == 0 and empty["items"] == [] and empty["next"] is None
    one_day = reports["sampleDate"].max().date().isoformat()
    day = backend.get(f"/clients/cda/reports?date_from={one_day}&date_to={one_day}", "cda").json()
    assert day["total"] == int((reports["sampleDate"].dt.date.astype(str) == one_day).sum()) > 0
    assert backend.get("/clients/cda/reports?date_from=notadate", "cda").status_code == 422


def test_reports_as_csv_and_parquet_by_accept_header(backend):
    q = "/clients/emin/reports?status=Anormal&limit=7&offset=2"
    js = backend.get(q, "emin").json()
    csv = backend.get(q, "emin", headers={"Accept": "text/csv"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    frame = pd.read_csv(io.StringIO(csv.text))
    assert list(frame["sampleNumber"].astype(str)) == [i["sampleNumber"] for i in js["items"]]
    assert csv.headers["x-total-count"] == str(js["total"])
    pq_resp = backend.get(q, "emin", headers={"Accept": "application/vnd.apache.parquet"})
    assert pq_resp.headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(pq_resp.content))
    assert table.column("sampleNumber").to_pylist() == [i["sampleNumber"] for i in js["items"]]
    full = pq.read_schema(backend.root / layout.gold_path("emin", "classified_reports"))
    assert table.schema.names == full.names
    # q-values: csv preferred over json
    pref = backend.get(q, "emin", headers={"Accept": "application/json;q=0.5, text/csv"})
    assert pref.headers["content-type"].startswith("text/csv")
    assert backend.get(q, "emin", headers={"Accept": "application/xml"}).status_code == 406


# -- limits, fleet report, metrics -------------------------------------------------------------


def test_limits_current_and_by_version(backend):
    latest = json.loads((backend.root / layout.limits_latest("cda")).read_text())
    limits = pd.read_parquet(backend.root / latest["path"] / "stewart_limits.parquet")
    doc = models.Limits.model_validate(backend.get("/clients/cda/limits", "cda").json())
    assert doc.version == doc.current_version == latest["version"] and doc.total == len(limits) == len(
        doc.rows
    )
    assert latest["version"] in doc.versions
    same = backend.get(f"/clients/cda/limits?version={latest['version']}&essay=fe", "cda").json()
    assert same["total"] == int((limits["essay"] == "fe").sum()) > 0
    assert backend.get("/clients/cda/limits?version=limits-0000000000", "cda").status_code == 404
    assert backend.get("/clients/cda/limits?version=../../gold", "cda").status_code == 404


def test_fleet_report_is_the_published_html(backend):
    r = backend.get("/clients/cda/fleet-report", "cda")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.content == (backend.root / "gold/cda/fleet_report.html").read_bytes()


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_metrics_prometheus_text_per_client(backend):
    r = backend.get("/metrics", "all")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = _samples(r.text)
    assert all(name.startswith("oil_") for name in samples)
    for client in CLIENTS:
        reports = gold(backend.root, client, "classified_reports")
        machines = gold(backend.root, client, "machine_status_current")
        assert samples[f'oil_samples{{client="{client}"}}'] == len(reports)
        flagged = float((reports["report_status"] != "Normal").mean())
        assert samples[f'oil_flagged_share{{client="{client}"}}'] == pytest.approx(flagged, rel=1e-5)
        for s in ("Normal", "Alerta", "Anormal"):
            assert samples[f'oil_machines{{client="{client}",status="{s}"}}'] == int(
                (machines["machine_status"] == s).sum()
            )
        for source, n in reports["ai_source"].value_counts().items():
            assert samples[f'oil_advisor_source_reports{{client="{client}",source="{source}"}}'] == n
        assert samples[f'oil_publication_age_seconds{{client="{client}"}}'] > 0
        assert samples[f'oil_snapshot_consistent{{client="{client}"}}'] == 1
    assert any(k.startswith("oil_api_requests_total{") for k in samples)
    scoped = backend.get("/metrics", "cda").text
    assert 'client="cda"' in scoped and 'client="emin"' not in scoped


def test_keys_never_appear_in_the_logs(backend):
    key = backend.keys["cda"]
    backend.get("/clients/cda/machines", "cda")
    backend.get(f"/clients/cda/machines?api_key={key}", "cda")  # a key pasted into a URL
    backend.get("/clients/cda/machines", key[:-2] + "zz")  # an unknown key
    backend.get("/clients/emin/machines", "cda")
    time.sleep(0.3)
    log = backend.api.log_text()
    assert "GET /clients/cda/machines" in log and " 403" in log, "access log is on"
    assert "snapshot" in log, "app log is on"
    for k in backend.keys.values():
        if isinstance(k, str):
            assert k not in log and k[5:25] not in log


# -- keys CLI -----------------------------------------------------------------------------------


def test_keys_cli_add_list_revoke_take_effect_without_restart(local_api, tmp_path):
    path = local_api.keys["file"]
    key = add_key(path, "--client", "emin", "--name", "cmms")
    assert local_api.get("/clients", key).status_code == 200
    stored = path.read_text()
    assert key not in stored and hashlib.sha256(key.encode()).hexdigest() in stored
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    env = {**_base_env(), "OIL_API_KEYS_FILE": str(path)}
    listed = subprocess.run(
        [sys.executable, "-m", "oil_analysis.api", "keys", "list"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    line = next(ln for ln in listed.stdout.splitlines() if "cmms" in ln)
    assert key not in listed.stdout
    key_id = line.split("\t")[0]
    revoked = subprocess.run(
        [sys.executable, "-m", "oil_analysis.api", "keys", "revoke", key_id],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert revoked.returncode == 0, revoked.stderr
    assert local_api.get("/clients", key).status_code == 401
    bad = subprocess.run(
        [sys.executable, "-m", "oil_analysis.api", "keys", "add", "--client", "nope"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "unknown client" in bad.stderr


def test_default_keys_file_is_beside_the_instance(tmp_path, monkeypatch):
    from oil_analysis.api.keys import keys_file

    monkeypatch.delenv("OIL_API_KEYS_FILE", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "inst" / ".dagster_home"))
    assert keys_file() == tmp_path / "inst" / ".oil_api_keys.yaml"
    assert ".oil_api_keys.yaml" in (REPO / ".gitignore").read_text().splitlines()


# -- consistency and outages --------------------------------------------------------------------


def wait_for(condition, timeout_s: float = 20.0) -> None:
    """Checks of the manifest run in the background: poll until the service has seen a change."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the service did not see the change in time"
        time.sleep(0.2)


def _copy_published(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    for top in PUBLISHED:
        shutil.copytree(src / top, dst / top)
    return dst


def _half_publish(backend: Backend, client: str) -> tuple[bytes, dict]:
    """A new publication caught half-way: the manifest names new classified reports whose file is not
    written yet. Returns the new file's bytes and the new manifest."""
    rel = layout.gold_path(client, "classified_reports")
    reports = pd.read_parquet(backend.root / rel)
    from oil_analysis.storage.filesystem import parquet_bytes

    new = parquet_bytes(reports.iloc[:-5])
    doc = json.loads((backend.root / manifest.manifest_path(client)).read_text())
    for f in doc["files"]:
        if f["path"] == rel:
            f.update(sha256=hashlib.sha256(new).hexdigest(), bytes=len(new), rows=len(reports) - 5)
    doc["updated_at"] = "2099-01-01T00:00:00.000000Z"
    return new, doc


@pytest.fixture(params=["local", "s3"])
def own_backend(request, gold_root, keys, tmp_path):
    """A backend with its own copy of the published files (the test changes them)."""
    root = _copy_published(gold_root, tmp_path / "data")
    if request.param == "local":
        with ApiServer(local_env(root, keys["file"]), tmp_path) as api:
            yield Backend("local", api, root, keys)
    else:
        server = request.getfixturevalue("s3_server")
        prefix = f"api-{uuid.uuid4().hex[:8]}"
        upload_published(server, root, prefix)
        with ApiServer(s3_env(server, prefix, keys["file"]), tmp_path) as api:
            yield Backend("s3", api, root, keys, server, prefix)


def test_a_half_published_state_is_never_served(own_backend):
    b = own_backend
    before = b.get("/clients/cda/reports?limit=1", "cda")
    total = before.json()["total"]
    old_sha = before.headers["x-oil-snapshot"]
    new, doc = _half_publish(b, "cda")
    new_manifest = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
    b.write(manifest.manifest_path("cda"), new_manifest)  # manifest first, data file not yet written
    (b.root / manifest.manifest_path("cda")).write_bytes(new_manifest)
    wait_for(lambda: b.get("/health", "cda").json()["clients"]["cda"]["serving"] == "previous")
    for _ in range(3):
        r = b.get("/clients/cda/reports?limit=1", "cda")
        assert r.json()["total"] == total and r.headers["x-oil-snapshot"] == old_sha
        assert r.headers["x-oil-serving"] == "previous" and r.json()["snapshot"]["serving"] == "previous"
    h = models.Health.model_validate(b.get("/health", "cda").json())
    cda = h.clients["cda"]
    assert h.status == "degraded" and cda.serving == "previous" and not cda.consistent
    assert any("classified_reports.parquet" in p and "differs" in p for p in cda.problems)
    assert cda.published_at != doc["updated_at"]
    # the publication completes: the new snapshot is served
    b.write(layout.gold_path("cda", "classified_reports"), new)
    deadline = time.monotonic() + 20
    while b.get("/clients/cda/reports?limit=1", "cda").json()["total"] != total - 5:
        assert time.monotonic() < deadline, "the completed publication was not picked up"
        time.sleep(0.2)
    h = models.Health.model_validate(b.get("/health", "cda").json()).clients["cda"]
    assert h.serving == "current" and h.consistent and h.published_at == doc["updated_at"]


def test_a_tampered_file_is_not_served_by_a_fresh_service(gold_root, keys, tmp_path):
    root = _copy_published(gold_root, tmp_path / "data")
    rel = root / layout.gold_path("cda", "machine_status_current")
    rel.write_bytes(rel.read_bytes()[:-1] + b"\x00")
    with ApiServer(local_env(root, keys["file"]), tmp_path) as api:
        b = Backend("local", api, root, keys)
        r = b.get("/clients/cda/machines", "cda")
        assert r.status_code == 503 and "machine_status_current.parquet" in r.json()["detail"]
        cda = models.Health.model_validate(b.get("/health", "all").json()).clients
        assert cda["cda"].serving == "none" and not cda["cda"].consistent
        assert cda["emin"].serving == "current"
        assert b.get("/clients/emin/machines", "emin").status_code == 200


def test_storage_down_local_is_503_and_cached_data_keeps_being_served(gold_root, keys, tmp_path):
    root = _copy_published(gold_root, tmp_path / "data")
    with ApiServer(local_env(root, keys["file"]), tmp_path) as api:
        b = Backend("local", api, root, keys)
        assert b.get("/clients/cda/machines", "cda").status_code == 200
        root.rename(tmp_path / "moved")
        wait_for(lambda: b.get("/health", "cda").json()["clients"]["cda"]["serving"] == "previous")
        h = b.get("/health", "cda")
        assert h.status_code == 503 and h.json()["status"] == "unavailable"
        assert h.json()["storage"]["reachable"] is False
        cached = b.get("/clients/cda/machines", "cda")
        assert cached.status_code == 200 and cached.headers["x-oil-serving"] == "previous"
        assert b.get("/clients/emin/machines", "emin").status_code == 503  # never loaded


def test_storage_down_s3_is_503(gold_root, keys, tmp_path):
    with SeaweedS3(tmp_path / "weed") as server:
        prefix = "down"
        upload_published(server, gold_root, prefix)
        with ApiServer(s3_env(server, prefix, keys["file"]), tmp_path) as api:
            b = Backend("s3", api, gold_root, keys)
            assert b.get("/health").status_code == 200
            assert b.get("/clients/cda/machines", "cda").status_code == 200
            server.stop()
            h = b.get("/health", "cda")
            assert h.status_code == 503 and h.json()["storage"]["reachable"] is False
            assert b.get("/clients/emin/machines", "emin").status_code == 503
    # an endpoint nobody listens on, from the start
    dead = SeaweedS3(tmp_path / "dead")
    dead.port = __import__("oil_analysis_tests.api_server", fromlist=["free_port"]).free_port()
    with ApiServer(s3_env(dead, "x", keys["file"]), tmp_path) as api:
        b = Backend("s3", api, gold_root, keys)
        assert b.get("/health").status_code == 503
        assert b.get("/clients/cda/machines", "cda").status_code == 503


# -- legacy consumer paths ----------------------------------------------------------------------


def test_legacy_consumer_paths_are_written_and_listed(tmp_path):
    root = tmp_path / "data"
    (root / "bronze").mkdir(parents=True)
    shutil.copytree(DEMO_BRONZE / "emin", root / "bronze" / "emin")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LEGACY_EXPORTS", "true")
        mp.setenv("OIL_DATA_ROOT", str(root))
        with DagsterInstance.ephemeral() as instance:
            assert materialize(
                all_assets, partition_key="emin", instance=instance, resources=build_resources(str(root))
            ).success
    doc = json.loads((root / manifest.manifest_path("emin")).read_text())
    listed = {f["path"]: f for f in doc["files"]}
    for table in ("classified_reports", "machine_status_current"):
        rel = f"to_consume/emin/{table}.parquet"
        assert (root / rel).read_bytes() == (root / layout.gold_path("emin", table)).read_bytes()
        assert listed[rel]["legacy"] is True
        assert listed[rel]["sha256"] == hashlib.sha256((root / rel).read_bytes()).hexdigest()
    assert (
        listed["gold/emin/fleet_report.html"]["sha256"]
        == hashlib.sha256((root / "gold/emin/fleet_report.html").read_bytes()).hexdigest()
    )


# -- deployment files ---------------------------------------------------------------------------


def test_compose_and_kubernetes_run_the_api_on_the_product_image():
    import yaml

    compose = yaml.safe_load((REPO / "deploy/docker-compose.yaml").read_text())["services"]["api"]
    assert compose["command"] == ["python", "-m", "oil_analysis.api", "serve"]
    assert compose["environment"]["OIL_API_HOST"] == "0.0.0.0" and compose["ports"][0].startswith(
        "127.0.0.1:"
    )
    assert compose["volumes"] == ["../.oil_api_keys.yaml:/run/oil-api/keys.yaml:ro"]
    assert compose["environment"]["OIL_API_KEYS_FILE"] == "/run/oil-api/keys.yaml"
    assert "/health" in " ".join(compose["healthcheck"]["test"])
    docs = list(yaml.safe_load_all((REPO / "deploy/k8s-api.yaml").read_text()))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    helm = yaml.safe_load((REPO / "deploy/helm-values.yaml").read_text())
    image = helm["dagster-user-deployments"]["deployments"][0]["image"]
    assert container["image"] == f"{image['repository']}:{image['tag']}"
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == helm["serviceAccount"]["name"]
    assert container["command"] == compose["command"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["OIL_API_HOST"] == "0.0.0.0" and env["OIL_API_KEYS_FILE"].startswith("/run/oil-api/")
    service = next(d for d in docs if d["kind"] == "Service")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert (
        "api:" in (REPO / "Makefile").read_text()
        and "oil_analysis.api serve" in (REPO / "Makefile").read_text()
    )


# -- the OpenAPI page in a browser --------------------------------------------------------------

CHROMIUM = pathlib.Path("/usr/bin/chromium")


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium")
def test_docs_page_lists_every_endpoint_and_answers_with_a_key(local_api):
    from playwright.sync_api import sync_playwright

    from .test_ui_browser import CHROMIUM_ARGS, shot

    outside: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.set_default_timeout(30_000)
            page.on(
                "request",
                lambda req: outside.append(req.url) if not req.url.startswith(local_api.api.url) else None,
            )
            page.goto(f"{local_api.api.url}/docs")
            page.locator(".opblock").first.wait_for()
            text = page.locator("#swagger-ui").inner_text()
            for path in (
                "/health",
                "/clients",
                "/clients/{client}/machines",
                "/clients/{client}/machines/{unit}",
                "/clients/{client}/reports",
                "/clients/{client}/limits",
                "/clients/{client}/fleet-report",
                "/metrics",
            ):
                assert path in text, path
            assert "MachinePage" in text and "ReportPage" in text  # response models
            shot(page, "api_docs", publish=True, full_page=False)
            # authorize with a key, then try /clients from the page
            page.get_by_role("button", name=re.compile("Authorize")).first.click()
            page.locator(".modal-ux input[type=text], .modal-ux input[type=password]").first.fill(
                local_api.keys["cda"]
            )
            page.locator(".modal-ux button.authorize").click()
            page.locator(".modal-ux button.btn-done").click()
            block = page.locator("#operations-gold-clients_clients_get")
            block.locator(".opblock-summary").click()
            block.locator("button.try-out__btn").click()
            block.locator("button.execute").click()
            body = block.locator(".responses-wrapper .live-responses-table .microlight").first
            body.wait_for()
            assert '"client": "cda"' in body.inner_text()
            assert (
                block.locator(".live-responses-table tbody .response-col_status")
                .first.inner_text()
                .strip()
                .startswith("200")
            )
        finally:
            browser.close()
    assert outside == [], f"the docs page reached outside the service: {outside[:5]}"
    assert local_api.keys["cda"] not in local_api.api.log_text()
