"""The product run the way users run it: CLI materialization, sensor-launched runs, CLI backfill.

    .venv/bin/python bench/orchestrated.py [--datasets demo,real11] [--intervals default,5]
                                           [--only cli,sensor,backfill,monthly] [--update-readme]

For each dataset (``demo``: the bundled demo files; ``real11``: the three real Finning workbooks of
``../shared/data/finning`` plus generated ones up to 11 trucks, as ``full_run.py``; both with the
demo ``emin`` files for the second client) it measures:

* **cli** — (a) wall time of ``dg launch --assets '*' --partition cda`` (what ``make materialize``
  runs; a new process, cold data root, instance at a temporary ``DAGSTER_HOME`` configured as
  ``make install`` does and initialised as after a first command such as ``make run``) against
  the in-process run of the same data in a child of this script
  (``materialize`` of every asset, ephemeral instance: the call alone, and the whole child with its
  imports). The acceptance ratio is CLI wall / in-process ``materialize``.
* **sensor** — (b) ``dg dev -w workspace.yaml`` (what ``make ui`` starts) with the local raw-file
  sensor running (``OIL_SENSORS_RUNNING=true``) and ``OIL_SENSOR_INTERVAL_S`` unset (default) or set;
  once the first sensor-launched runs are done, a new workbook is moved into ``bronze/cda/`` and the
  time until ``gold/cda/_manifest.json`` changes is taken, split into sensor wait (file → run
  created), queue (created → started) and run (started → ended).
* **backfill** — (c) ``python -m oil_analysis backfill`` (what ``make backfill`` runs) of every
  client on a cold data root with no UI running: the command starts a daemon for its duration.
* **monthly** — (d) the monthly update as users run it (``real11`` only, not in the default
  ``--only``): ``dg launch`` of cda on the workbooks cut at 2025-12-01 (``bench/monthly_bench.py``'s
  cut), then on the complete ones (same names, more rows), then again with nothing changed; each a
  new process on one data root and instance; wall and CPU of each, the update and the unchanged
  re-run as shares of the cold command.

Figures are from one run on a shared 2-core machine: compare the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import OUT, machine_info, markdown_table, write_result  # noqa: E402

BIN = Path(sys.executable).parent
DEMO = ROOT / "data" / "bronze"
README = ROOT / "bench" / "README.md"
BEGIN, END = "<!-- orchestrated:begin -->", "<!-- orchestrated:end -->"
INSTANCE_YAML = (ROOT / "dagster.yaml").read_text()


def cda_files(dataset: str) -> list[Path]:
    if dataset == "demo":
        return sorted((DEMO / "cda").glob("*.xlsx"))
    from full_run import workbooks

    return [Path(p) for p in workbooks(11)]


def make_root(path: Path, dataset: str) -> Path:
    """A cold data root: bronze/cda from the dataset, bronze/emin from the demo (copies: links out of
    the data root are never followed by the intake)."""
    shutil.rmtree(path, ignore_errors=True)
    for client, files in (("cda", cda_files(dataset)), ("emin", sorted((DEMO / "emin").glob("*.parquet")))):
        folder = path / "bronze" / client
        folder.mkdir(parents=True)
        for f in files:
            shutil.copy2(f.resolve(), folder / f.name)
    return path


def make_home(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    (path / "dagster.yaml").write_text(INSTANCE_YAML)
    return path


def init_home(home: Path) -> Path:
    """Create the instance's databases, as the first command on a ``DAGSTER_HOME`` does (``make run``
    before ``make materialize``): the CLI figure is a user's repeated command on a cold data root,
    not the one-off creation of the instance's schema (~1.5 s here)."""
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)
    return home


def env_for(root: Path, home: Path, **extra: str) -> dict:
    env = dict(os.environ, OIL_DATA_ROOT=str(root), DAGSTER_HOME=str(home), USE_S3="false")
    env.update(OIL_LLM_OFFLINE="true", **extra)
    return env


# -- (a) CLI materialization vs in-process ------------------------------------------------------


def child_inprocess(root: str, result: str) -> None:
    """Child: every asset of cda in this process on ``root``, ephemeral instance."""
    os.environ["OIL_LLM_OFFLINE"] = "true"
    t = time.perf_counter()
    from dagster import DagsterInstance, materialize

    from oil_analysis.definitions import all_assets, build_resources

    imports = time.perf_counter() - t
    with DagsterInstance.ephemeral() as instance:
        t = time.perf_counter()
        res = materialize(all_assets, partition_key="cda", instance=instance, resources=build_resources(root))
        took = time.perf_counter() - t
    write_result(result, {"success": res.success, "imports_s": imports, "materialize_s": took})


def launch_cda(root: Path, home: Path, what: str = "dg launch") -> tuple[float, float]:
    """``dg launch`` of every asset of cda on ``root`` with the instance at ``home``: wall seconds, and
    CPU seconds of the CLI process and its children (parse workers), comparable under load."""
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(
        [str(BIN / "dg"), "launch", "--assets", "*", "--partition", "cda"],
        cwd=ROOT,
        env=env_for(root, home),
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise RuntimeError(f"{what} failed: {proc.stderr[-2000:]}")
    return wall, (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)


def bench_cli(dataset: str, work: Path) -> dict:
    root = make_root(work / "inproc", dataset)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        t = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, __file__, "--child-inprocess", str(root), "--result", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        child_wall = time.perf_counter() - t
        inproc = json.loads(out.read_text()) if out.exists() else {"success": False}
    if proc.returncode or not inproc["success"]:
        raise RuntimeError(f"in-process run failed: {proc.stderr[-2000:]}")
    root = make_root(work / "cli", dataset)
    home = init_home(make_home(work / "cli_home"))
    cli_wall, cli_cpu = launch_cda(root, home)
    return {
        "inprocess_materialize_s": inproc["materialize_s"],
        "inprocess_imports_s": inproc["imports_s"],
        "inprocess_child_wall_s": child_wall,
        "cli_wall_s": cli_wall,
        "cli_cpu_s": cli_cpu,
        "ratio_cli_to_materialize": cli_wall / inproc["materialize_s"],
        "ratio_cli_to_child": cli_wall / child_wall,
    }


# -- (b) file arrival → gold with the sensor ----------------------------------------------------


def _runs(home: Path):
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        return [(r, instance.get_run_record_by_id(r.run_id)) for r in instance.get_runs()]


def _settled(home: Path, root: Path) -> bool:
    from dagster import DagsterRunStatus

    finished = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
    runs = _runs(home)
    return (
        bool(runs)
        and all(r.status in finished for r, _ in runs)
        and all((root / f"gold/{c}/_manifest.json").exists() for c in ("cda", "emin"))
    )


def bench_sensor(dataset: str, work: Path, interval: str, timeout: float = 900) -> dict:
    from oil_analysis.demo.finning import write_finning_workbook
    from oil_analysis_tests.dagster_dev import dagster_dev

    root = make_root(work / f"sensor_{interval}", dataset)
    home = make_home(work / f"sensor_{interval}_home")
    staging = root / "_staging"
    staging.mkdir()
    new = staging / "T-97.xlsx"
    write_finning_workbook(new, unit_id="T-97", model="789C", seed=97)
    extra = {"OIL_SENSORS_RUNNING": "true"}
    if interval != "default":
        extra["OIL_SENSOR_INTERVAL_S"] = interval
    with dagster_dev(root, home, instance_yaml=INSTANCE_YAML, env=extra, ready_timeout=300):
        deadline = time.monotonic() + timeout
        while not _settled(home, root):  # the first ticks start one run per client
            if time.monotonic() > deadline:
                raise TimeoutError("the first sensor runs did not finish")
            time.sleep(1)
        before = (root / "gold/cda/_manifest.json").read_bytes()
        known = {r.run_id for r, _ in _runs(home)}
        target = root / "bronze" / "cda" / "arrivals" / new.name
        target.parent.mkdir()
        # A new file: written now (a file moved in keeps its old modification time, which the local
        # sensor's high-water mark would skip), then moved in whole so no tick sees half a file.
        os.utime(new)
        os.replace(new, target)
        t0 = time.time()
        while (root / "gold/cda/_manifest.json").read_bytes() == before:
            if time.monotonic() > deadline:
                raise TimeoutError("gold/cda/_manifest.json never changed")
            time.sleep(0.2)
        t1 = time.time()
        time.sleep(2)  # the run's end is recorded just after the publication
        new_runs = [(r, rec) for r, rec in _runs(home) if r.run_id not in known]
    out = {"interval": interval, "arrival_to_gold_s": t1 - t0, "new_runs": len(new_runs)}
    if new_runs:
        run, rec = min(new_runs, key=lambda x: x[1].create_timestamp.timestamp())
        created = rec.create_timestamp.timestamp()
        out.update(
            sensor_wait_s=created - t0,
            queued_s=(rec.start_time or created) - created,
            run_s=(rec.end_time or t1) - (rec.start_time or created),
            trigger=run.tags.get("oil/trigger"),
            status=run.status.value,
        )
    return out


# -- (c) CLI backfill of every client -----------------------------------------------------------


def bench_backfill(dataset: str, work: Path) -> dict:
    root = make_root(work / "backfill", dataset)
    home = make_home(work / "backfill_home")
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "oil_analysis", "backfill"],
        cwd=ROOT,
        env=env_for(root, home),
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t
    runs = {r.tags.get("dagster/partition"): (r, rec) for r, rec in _runs(home)}
    return {
        "returncode": proc.returncode,
        "wall_s": wall,
        "runs": {
            c: {"status": r.status.value, "run_s": (rec.end_time or 0) - (rec.start_time or 0)}
            for c, (r, rec) in sorted(runs.items())
        },
    }


# -- (d) the monthly update with the CLI ----------------------------------------------------------


def bench_monthly(dataset: str, work: Path) -> dict:
    """``dg launch`` of cda: the cut workbooks (cold), the complete ones (the monthly update), then
    nothing changed; one data root and instance, a new process each."""
    from datetime import date

    import monthly_bench

    files = cda_files(dataset)
    cut, _ = monthly_bench.cut_fleet(files, date(2025, 12, 1))
    full = monthly_bench.complete_fleet(files)
    root = work / "monthly"
    shutil.rmtree(root, ignore_errors=True)
    home = init_home(make_home(work / "monthly_home"))
    out: dict = {}
    for name, batch in (("cold", cut), ("update", full), ("unchanged", None)):
        if batch is not None:
            monthly_bench.put(batch, root)
        out[f"{name}_s"], out[f"{name}_cpu_s"] = launch_cda(root, home, f"dg launch ({name})")
    out["update_share"] = out["update_s"] / out["cold_s"]
    out["unchanged_share"] = out["unchanged_s"] / out["cold_s"]
    return out


# -- report -------------------------------------------------------------------------------------


def table(results: dict) -> str:
    rows = []
    for dataset, r in results["datasets"].items():
        label = {"demo": "demo (3 workbooks)", "real11": "11 trucks (3 real + 8 generated)"}[dataset]
        if "cli" in r:
            c = r["cli"]
            cpu = f" (CPU {c['cli_cpu_s']:.1f} s)" if "cli_cpu_s" in c else ""
            rows.append(
                [
                    f"{label}: CLI materialization of cda (`dg launch`, cold data root, initialised instance)",
                    f"{c['cli_wall_s']:.1f} s{cpu}; in-process `materialize` {c['inprocess_materialize_s']:.1f} s "
                    f"(child with imports {c['inprocess_child_wall_s']:.1f} s)",
                    f"**{c['ratio_cli_to_materialize']:.2f}×** the in-process run "
                    f"({c['ratio_cli_to_child']:.2f}× the child)",
                ]
            )
        for s in r.get("sensor", []):
            name = "default (15 s)" if s["interval"] == "default" else f"{s['interval']} s"
            detail = (
                f"file → run created (sensor tick) {s.get('sensor_wait_s', float('nan')):.1f} s, created → "
                f"started (dequeue, run worker process and imports) {s.get('queued_s', float('nan')):.1f} s, "
                f"started → gold {s.get('run_s', float('nan')):.1f} s"
            )
            rows.append(
                [
                    f"{label}: new workbook in bronze/cda/ → new gold/cda/_manifest.json, interval {name}",
                    f"**{s['arrival_to_gold_s']:.1f} s**",
                    detail,
                ]
            )
        if "monthly" in r:
            mo = r["monthly"]
            rows.append(
                [
                    f"{label}: monthly update with the CLI (`dg launch` of cda: workbooks cut at "
                    "2025-12-01, then complete, then unchanged; one data root and instance)",
                    f"cold {mo['cold_s']:.1f} s, update {mo['update_s']:.1f} s, unchanged {mo['unchanged_s']:.1f} s",
                    f"update **{mo['update_share']:.2f}×** cold (CPU {mo['update_cpu_s'] / mo['cold_cpu_s']:.2f}×), "
                    f"unchanged **{mo['unchanged_share']:.2f}×** (CPU {mo['unchanged_cpu_s'] / mo['cold_cpu_s']:.2f}×)",
                ]
            )
        if "backfill" in r:
            b = r["backfill"]
            runs = ", ".join(f"{c} {v['status']} {v['run_s']:.1f} s" for c, v in b["runs"].items())
            rows.append(
                [
                    f"{label}: CLI backfill of every client (`make backfill`, cold, daemon started by it)",
                    f"{b['wall_s']:.1f} s (exit {b['returncode']})",
                    runs,
                ]
            )
    m = results["machine"]
    head = (
        f"Machine: {m['cpu']}, {m['cores']} cores; dagster {m['dagster']}. {m['date']}; load average at "
        f"start {m['load_avg_1m']}, at the end {results['load_end']}. One run of each (a shared, loaded "
        "machine: compare ratios)."
    )
    return head + "\n\n" + markdown_table(["measure", "figure", "detail"], rows)


def report(results: dict, a: argparse.Namespace, line: str) -> None:
    """After each measurement: print it, write the JSON and (``--update-readme``) the README table,
    so an interrupted bench keeps what it measured."""
    print(line, flush=True)
    results["load_end"] = round(os.getloadavg()[0], 2)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(results, indent=2, default=str))
    if a.update_readme:
        text = README.read_text()
        block = f"{BEGIN}\n{table(results)}\n{END}"
        if BEGIN in text:
            text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
        else:
            text = text.rstrip("\n") + "\n\n## Orchestrated runs (`bench/orchestrated.py`)\n\n" + block + "\n"
        README.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="demo,real11")
    ap.add_argument("--intervals", default="default,5")
    ap.add_argument("--only", default="cli,sensor,backfill")
    ap.add_argument("--json", default=str(OUT / "orchestrated.json"))
    ap.add_argument("--update-readme", action="store_true")
    ap.add_argument("--child-inprocess")
    ap.add_argument("--result")
    a = ap.parse_args()
    if a.child_inprocess:
        child_inprocess(a.child_inprocess, a.result)
        return 0
    only = set(a.only.split(","))
    results = {"machine": machine_info(), "datasets": {}}
    work = Path(tempfile.mkdtemp(prefix="oil-orchestrated-"))
    try:
        for dataset in a.datasets.split(","):
            r = results["datasets"][dataset] = {}
            if "cli" in only:
                r["cli"] = bench_cli(dataset, work)
                report(results, a, f"{dataset} cli {json.dumps(r['cli'])}")
            if "sensor" in only:
                r["sensor"] = []
                for interval in a.intervals.split(","):
                    r["sensor"].append(bench_sensor(dataset, work, interval))
                    report(results, a, f"{dataset} sensor {json.dumps(r['sensor'][-1])}")
            if "monthly" in only and dataset == "real11":
                r["monthly"] = bench_monthly(dataset, work)
                report(results, a, f"{dataset} monthly {json.dumps(r['monthly'])}")
            if "backfill" in only:
                r["backfill"] = bench_backfill(dataset, work)
                report(results, a, f"{dataset} backfill {json.dumps(r['backfill'])}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
