"""Read API bench: a published 1 M-sample client served by ``python -m oil_analysis.api serve``.

    uv run python bench/api_bench.py [--samples 1000000] [--concurrency 16] [--requests 1600] [--json PATH]

1. **Publish** (once, cached in ``bench/out/api/``; child process): the synthetic client of
   ``bench/scale.py`` (``generate_silver``: 500 units × 10 compartments × ~200 samples at 1 M), its
   Stewart limits, classification and machine status from the domain functions, written to a local
   data root with the IO manager's byte format and manifest parts (``manifest.write_part``), so the
   API reads exactly what a run publishes. The pipeline itself (Dagster, advisor) is not run at 1 M:
   the advice columns are filled with a fixed offline text (``ai_source`` = ``offline`` / ``normal``),
   the only difference from a real publication (the offline advisor alone takes ~70 s at 1 M).
   The client ``scale`` is registered through ``OIL_CLIENTS_FILE``.
2. **Serve**: the API under uvicorn on a loopback port, one key for ``scale``; the first request loads
   the snapshot (timed).
3. **Load**: 16 concurrent clients (16 processes, one keep-alive ``http.client`` connection each) send ``--requests`` requests to
   ``/clients/scale/machines`` (100 rows, priority order), then as many to a filtered reports page:
   ``/reports?unit=<random unit>&status=Alerta&status=Anormal&date_from=<random date>&limit=100``.
   Latency is taken per request on the client side; p50 / p95 per endpoint, the mean time inside
   the service (its own ``oil_api_request_duration_seconds`` in ``/metrics``), and the server's CPU
   time per request and share of a core over the phase (``/proc``). The load average before and
   after is printed: on a shared 2-core machine other work inflates every latency (the server's
   share of a core drops); the CPU time per request is the service's own cost.
4. **Memory**: the server's RSS after the load and its peak (``VmHWM``), from ``/proc``.

Targets (issue 18): machines p95 ≤ 50 ms, reports page p95 ≤ 150 ms, memory < 2 GB. Prints one
``api_bench: …`` line (collected by ``run_bench.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import OUT, machine_info, write_result  # noqa: E402

CLIENT = "scale"
CLIENTS_YAML = """clients:
  - key: scale
    display_name: Synthetic 1 M-sample client (bench)
    lab_format: finning_xlsx
    timezone: America/Santiago
"""


def publish(root: Path, n: int) -> dict:
    """Write the gold of a synthetic ``n``-sample client under ``root`` (runs in a child process)."""
    import pandas as pd
    from scale import generate_silver

    from oil_analysis.domain import contracts
    from oil_analysis.domain.catalog import load_catalog
    from oil_analysis.domain.classify import classify_reports
    from oil_analysis.domain.fleet import machine_status_current
    from oil_analysis.domain.limits import compute_limits, limits_to_nested
    from oil_analysis.storage import layout, manifest
    from oil_analysis.storage.filesystem import Storage, json_bytes, parquet_bytes
    from oil_analysis.storage.manifest import FileRecord

    started = time.perf_counter()
    catalog = load_catalog()
    silver = generate_silver(n)
    silver["client"] = silver["client"].astype("string")
    limits = compute_limits(silver, catalog, computed_at=silver["sampleDate"].max())
    reports = classify_reports(silver, limits, catalog)
    normal = reports["report_status"].astype(str) == "Normal"
    text = (
        "Revisar "
        + reports["componentName"].astype(str)
        + ": ensayos fuera de límite (texto fijo del bench)."
    )
    reports["ai_recommendation"] = pd.Series(text.where(~normal, "Sin hallazgos."), dtype="string")
    reports["ai_source"] = pd.Series(normal.map({True: "normal", False: "offline"}), dtype="string")
    reports["ai_model"] = pd.Series("offline-advisor", index=reports.index, dtype="string")
    reports["ai_prompt_version"] = pd.Series("offline-v1", index=reports.index, dtype="string")
    reports["ai_generated_at"] = pd.Series(pd.NaT, index=reports.index, dtype="datetime64[us]")
    reports["ai_error"] = pd.Series(None, index=reports.index, dtype="string")
    reports["ai_input_hash"] = pd.Series(None, index=reports.index, dtype="string")
    reports = contracts.conform(reports, "classified_reports")
    status = machine_status_current(reports)
    m_normal = status["machine_status"].astype(str) == "Normal"
    status["machine_ai_recommendation"] = pd.Series(
        m_normal.map({True: "Sin hallazgos.", False: "Revisar los compartimentos fuera de límite."}),
        dtype="string",
    )
    status["machine_ai_source"] = pd.Series(m_normal.map({True: "normal", False: "offline"}), dtype="string")
    for col, value in (("machine_ai_model", "offline-advisor"), ("machine_ai_prompt_version", "offline-v1")):
        status[col] = pd.Series(value, index=status.index, dtype="string")
    status["machine_ai_generated_at"] = pd.Series(pd.NaT, index=status.index, dtype="datetime64[us]")
    for col in ("machine_ai_error", "machine_ai_input_hash"):
        status[col] = pd.Series(None, index=status.index, dtype="string")
    version = str(reports["limits_version"].iloc[0])
    status["limits_version"] = pd.Series(version, index=status.index, dtype="string")
    status = contracts.conform(status, "machine_status_current")

    store = Storage.local(str(root))
    folder = layout.limits_dir(CLIENT, version)
    files = [
        (f"{folder}/stewart_limits.parquet", parquet_bytes(limits), len(limits)),
        (f"{folder}/stewart_limits.json", json_bytes(limits_to_nested(limits)), len(limits)),
        (
            layout.limits_latest(CLIENT),
            json_bytes({"client": CLIENT, "version": version, "path": folder}),
            None,
        ),
    ]
    records = []
    for path, data, rows in files:
        store.write_bytes(path, data)
        records.append(FileRecord.of(path, data, rows))
    manifest.write_part(store, CLIENT, "stewart_limits", records, run_id="api-bench", limits_version=version)
    for name, frame in (("classified_reports", reports), ("machine_status_current", status)):
        data = parquet_bytes(frame)
        path = layout.gold_path(CLIENT, name)
        store.write_bytes(path, data)
        record = FileRecord.of(path, data, len(frame))
        manifest.write_part(store, CLIENT, name, [record], run_id="api-bench", limits_version=version)
    return {
        "samples": len(reports),
        "units": len(status),
        "flagged_share": round(float((~normal).mean()), 4),
        "reports_bytes": (root / layout.gold_path(CLIENT, "classified_reports")).stat().st_size,
        "publish_s": round(time.perf_counter() - started, 1),
    }


def ensure_published(n: int, fresh: bool) -> tuple[Path, dict]:
    folder = OUT / "api" / f"n{n}"
    root, info_path = folder / "data", folder / "published.json"
    if fresh or not info_path.exists():
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        root.mkdir(parents=True)
        out = subprocess.run(
            [sys.executable, __file__, "publish", "--root", str(root), "--samples", str(n)],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise SystemExit(f"publishing the {n}-sample client failed:\n{out.stderr[-4000:]}")
        info_path.write_text(out.stdout.strip().splitlines()[-1])
    return root, json.loads(info_path.read_text())


def proc_memory(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            name, kb = line.split()[:2]
            out[name.rstrip(":")] = int(kb) / 1024
    return out


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used, from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _client(url: str, key: str, paths: list[str], start_at: float) -> tuple[list[float], list[int]]:
    """One client (its own process): keep-alive connection, requests back to back, latency of each."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    headers = {"Authorization": f"Bearer {key}"}
    times, codes = [], []
    while time.time() < start_at:  # every client starts at once
        time.sleep(0.001)
    for path in paths:
        t0 = time.perf_counter()
        conn.request("GET", path, headers=headers)
        resp = resp_body = conn.getresponse()
        resp_body.read()
        times.append((time.perf_counter() - t0) * 1000)
        codes.append(resp.status)
    conn.close()
    return times, codes


def load(url: str, key: str, paths: list[str], concurrency: int) -> tuple[list[float], list[int]]:
    """``concurrency`` client processes share ``paths``; each sends its share back to back.

    Processes, not threads or one asyncio loop: a Python client is ~0.5 ms of CPU per request, and
    16 of them in one interpreter would measure the client's own queue, not the service."""
    import multiprocessing

    shares = [paths[i::concurrency] for i in range(concurrency)]
    start_at = time.time() + 1.0
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(concurrency) as pool:
        results = pool.starmap(_client, [(url, key, share, start_at) for share in shares])
    return [t for r in results for t in r[0]], [c for r in results for c in r[1]]


def server_means(url: str, key: str) -> dict[str, tuple[float, int]]:
    """``route → (seconds, count)`` from the service's own /metrics (time inside the service)."""
    import httpx

    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {key}"}).text
    out: dict[str, list[float]] = {}
    for line in text.splitlines():
        for kind in ("sum", "count"):
            prefix = f'oil_api_request_duration_seconds_{kind}{{route="'
            if line.startswith(prefix):
                route = line[len(prefix) : line.index('"}')]
                out.setdefault(route, [0.0, 0])[0 if kind == "sum" else 1] = float(line.rsplit(" ", 1)[1])
    return {k: (v[0], int(v[1])) for k, v in out.items()}


def run(args) -> dict:
    import httpx

    from oil_analysis.api.keys import add_key
    from oil_analysis_tests.api_server import ApiServer

    root, info = ensure_published(args.samples, args.fresh)
    work = OUT / "api" / "run"
    work.mkdir(parents=True, exist_ok=True)
    clients_file = work / "clients.yaml"
    clients_file.write_text(CLIENTS_YAML)
    keys_path = work / "keys.yaml"
    keys_path.unlink(missing_ok=True)
    key, _ = add_key(keys_path, [CLIENT], "bench")
    env = {
        "OIL_DATA_ROOT": str(root),
        "USE_S3": "false",
        "OIL_CLIENTS_FILE": str(clients_file),
        "OIL_API_KEYS_FILE": str(keys_path),
    }
    load_start = os.getloadavg()[0]
    with ApiServer(env, work) as api:
        idle = proc_memory(api.proc.pid)
        t0 = time.perf_counter()
        first = httpx.get(
            f"{api.url}/clients/{CLIENT}/machines", headers={"Authorization": f"Bearer {key}"}, timeout=600
        )
        load_s = time.perf_counter() - t0
        assert first.status_code == 200, first.text[:500]
        units = [m["unitId"] for m in first.json()["items"]]
        units = [
            m["unitId"]
            for m in httpx.get(
                f"{api.url}/clients/{CLIENT}/machines?limit=10000", headers={"Authorization": f"Bearer {key}"}
            ).json()["items"]
        ]
        after_load = proc_memory(api.proc.pid)
        rng = random.Random(18)
        machines_paths = [f"/clients/{CLIENT}/machines?limit=100"] * args.requests
        report_paths = [
            f"/clients/{CLIENT}/reports?unit={rng.choice(units)}&status=Alerta&status=Anormal"
            f"&date_from=202{rng.randint(1, 3)}-0{rng.randint(1, 9)}-01&limit=100"
            for _ in range(args.requests)
        ]
        # warm-up (connections, code paths), not measured
        load(api.url, key, machines_paths[:64] + report_paths[:64], args.concurrency)
        before = server_means(api.url, key)
        m_times, m_codes, m_cpu = timed_load(api, key, machines_paths, args.concurrency)
        mid = server_means(api.url, key)
        r_times, r_codes, r_cpu = timed_load(api, key, report_paths, args.concurrency)
        after = server_means(api.url, key)
        sample = httpx.get(api.url + report_paths[0], headers={"Authorization": f"Bearer {key}"}).json()
        mem = proc_memory(api.proc.pid)
    doc = {
        "load_average": [load_start, os.getloadavg()[0]],
        "machine": machine_info(),
        "published": info,
        "concurrency": args.concurrency,
        "requests_per_endpoint": args.requests,
        "snapshot_load_s": round(load_s, 2),
        "memory_mb": {"idle": idle.get("VmRSS"), "after_snapshot": after_load.get("VmRSS"), **mem},
        "machines": _stats(m_times, m_codes)
        | {"in_service_mean_ms": _mean(before, mid, MACHINES_ROUTE)}
        | m_cpu,
        "reports_page": _stats(r_times, r_codes)
        | {"in_service_mean_ms": _mean(mid, after, REPORTS_ROUTE)}
        | r_cpu
        | {"rows_in_a_page": len(sample["items"]), "example_total": sample["total"]},
    }
    doc["targets"] = {
        "machines_p95_le_50ms": doc["machines"]["p95_ms"] <= 50,
        "reports_p95_le_150ms": doc["reports_page"]["p95_ms"] <= 150,
        "memory_lt_2gb": mem["VmHWM"] < 2048,
    }
    return doc


def timed_load(api, key: str, paths: list[str], concurrency: int) -> tuple[list[float], list[int], dict]:
    """:func:`load`, plus the server's CPU time per request and the share of a core it got over the
    phase (a share well below 1 while 16 clients wait means other work on the machine took the
    CPU: the latencies then measure the machine, the CPU time per request still the service)."""
    cpu0, wall0 = proc_cpu_s(api.proc.pid), time.perf_counter()
    times, codes = load(api.url, key, paths, concurrency)
    cpu, wall = proc_cpu_s(api.proc.pid) - cpu0, time.perf_counter() - wall0 - 1.0  # 1 s start gate
    return (
        times,
        codes,
        {
            "server_cpu_ms_per_request": round(cpu / len(paths) * 1000, 2),
            "server_cpu_share": round(cpu / wall, 2),
        },
    )


MACHINES_ROUTE = "/clients/{client}/machines"
REPORTS_ROUTE = "/clients/{client}/reports"


def _mean(a: dict, b: dict, route: str) -> float:
    s0, n0 = a.get(route, (0.0, 0))
    s1, n1 = b.get(route, (0.0, 0))
    return round((s1 - s0) / max(n1 - n0, 1) * 1000, 2)


def _stats(times: list[float], codes: list[int]) -> dict:
    return {
        "n": len(times),
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(pct(times, 0.95), 1),
        "max_ms": round(max(times), 1),
        "non_200": sum(c != 200 for c in codes),
    }


def line(doc: dict) -> str:
    m, r, mem = doc["machines"], doc["reports_page"], doc["memory_mb"]
    ok = lambda b: "ok" if b else "MISSED"  # noqa: E731
    t = doc["targets"]
    return (
        f"api_bench: {doc['published']['samples']:,} samples, {doc['published']['units']} units, "
        f"{doc['concurrency']} concurrent clients, {doc['requests_per_endpoint']} requests each: "
        f"machines p50 {m['p50_ms']} ms / p95 {m['p95_ms']} ms (target ≤ 50: {ok(t['machines_p95_le_50ms'])}; "
        f"{m['in_service_mean_ms']} ms in the service, {m['server_cpu_ms_per_request']} ms CPU); "
        f"filtered 100-row reports page p50 {r['p50_ms']} ms / p95 {r['p95_ms']} ms (target ≤ 150: "
        f"{ok(t['reports_p95_le_150ms'])}; {r['in_service_mean_ms']} ms in the service, "
        f"{r['server_cpu_ms_per_request']} ms CPU; server on {r['server_cpu_share']} of a core); load average "
        f"{doc['load_average'][0]:.1f} → {doc['load_average'][1]:.1f}; server RSS {mem['VmRSS']:.0f} MB, peak {mem['VmHWM']:.0f} MB "
        f"(target < 2048: {ok(t['memory_lt_2gb'])}); snapshot load {doc['snapshot_load_s']} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", nargs="?", default="run", choices=["run", "publish"])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=1600)
    parser.add_argument("--root", help="publish: the data root to write")
    parser.add_argument("--fresh", action="store_true", help="re-publish the synthetic client")
    parser.add_argument("--json", default=str(OUT / "api_bench.json"))
    args = parser.parse_args()
    if args.command == "publish":
        print(json.dumps(publish(Path(args.root), args.samples)))
        return
    doc = run(args)
    write_result(args.json, doc)
    print(line(doc))


if __name__ == "__main__":
    main()
