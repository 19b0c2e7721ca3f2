"""Full cold run of one client on real-format workbooks, against the python-calamine parse floor.

    uv run python bench/full_run.py [--trucks 11] [--repeat 3] [--json bench/out/full_run.json]

Workbooks: the three real Finning workbooks of ``../shared/data/finning`` (read in place, never
copied) plus generated workbooks in the exact Finning format (``oil_analysis.demo``) up to
``--trucks`` trucks (11 trucks ≈ 6,900 samples). Without the shared folder every truck is generated.

Two kinds of child process, alternated ``--repeat`` times so both see the same machine load:

* ``floor``: python-calamine reads the ``OIL`` sheet of every workbook into Python rows,
  sequentially — the least work that gets the data out of the files (the **parse floor**). The
  same child also times rows → a pandas DataFrame, and the rows read by two worker processes
  (the 2-core parallel parse).
* ``run``: every asset of the client partition materialized in-process (``materialize`` with an
  ephemeral instance) on a fresh data root (cold: nothing parsed before), AI off
  (``OIL_LLM_OFFLINE=true``). The figure compared with the floor is the ``materialize`` call;
  interpreter start and imports are timed apart. Per-asset compute times come from Dagster's
  ``STEP_SUCCESS`` events.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import OUT, fmt_spread, markdown_table, run_child, spread, write_result  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "finning"
CLIENT = "cda"
# The graph's order; assets added later by other issues are reported after these.
ASSETS = (
    "bronze_lab_files",
    "silver_harmonized",
    "stewart_limits",
    "classified_reports",
    "machine_status_current",
    "limit_quality",
)


def workbooks(trucks: int, out_dir: Path | None = None) -> list[Path]:
    """The real workbooks plus generated ones up to ``trucks`` (generated once, then reused)."""
    from oil_analysis.demo import generate_finning_client

    real = sorted(SHARED.glob("T-*.xlsx")) if SHARED.is_dir() else []
    real = real[:trucks]
    n_gen = trucks - len(real)
    folder = (out_dir or OUT / "full" / "generated") / f"trucks_{n_gen}"
    generated = sorted(folder.glob("T-*.xlsx"))
    if len(generated) != n_gen:
        folder.mkdir(parents=True, exist_ok=True)
        for old in generated:
            old.unlink()
        generate_finning_client(folder, n_gen, seed=11) if n_gen else None
        generated = sorted(folder.glob("T-*.xlsx"))
    return real + generated


def _cpu() -> float:
    """CPU seconds of this process and of its reaped children (the parse workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _oil_rows(path: str) -> int:
    from python_calamine import CalamineWorkbook

    rows = CalamineWorkbook.from_path(path).get_sheet_by_name("OIL").to_python(skip_empty_area=False)
    return len(rows) - 1


def floor(files: list[str]) -> dict:
    """The parse floor: python-calamine, OIL sheets, sequential; plus the pandas and 2-core variants."""
    import pandas as pd
    from python_calamine import CalamineWorkbook

    t, c = time.perf_counter(), _cpu()
    rows = sum(_oil_rows(f) for f in files)
    seq, seq_cpu = time.perf_counter() - t, _cpu() - c

    t = time.perf_counter()
    for f in files:
        data = CalamineWorkbook.from_path(f).get_sheet_by_name("OIL").to_python(skip_empty_area=False)
        pd.DataFrame(data[1:], columns=range(len(data[0])), dtype=object)
    seq_pandas = time.perf_counter() - t

    with ProcessPoolExecutor(max_workers=2) as pool:
        list(pool.map(len, [[]] * 2))  # workers started before the clock, as a warm pool would be
        t = time.perf_counter()
        par_rows = sum(pool.map(_oil_rows, files))
        par = time.perf_counter() - t
    assert par_rows == rows
    return {
        "files": len(files),
        "rows": rows,
        "seq_s": seq,
        "seq_cpu_s": seq_cpu,
        "seq_pandas_s": seq_pandas,
        "par2_s": par,
    }


def full_run(files: list[str]) -> dict:
    """Materialize every asset of the client in-process on a fresh data root; step times."""
    os.environ["OIL_LLM_OFFLINE"] = "true"
    t = time.perf_counter()
    from dagster import DagsterEventType, DagsterInstance, materialize

    from oil_analysis.definitions import all_assets, build_resources

    imports = time.perf_counter() - t
    with tempfile.TemporaryDirectory(prefix="oil-full-run-") as root:
        bronze = Path(root) / "bronze" / CLIENT
        bronze.mkdir(parents=True)
        for f in files:  # copies: symlinks out of the data root are never followed (safe intake)
            shutil.copyfile(f, bronze / Path(f).name)
        with DagsterInstance.ephemeral() as instance:
            t, c = time.perf_counter(), _cpu()
            result = materialize(
                all_assets, partition_key=CLIENT, instance=instance, resources=build_resources(root)
            )
            wall, cpu = time.perf_counter() - t, _cpu() - c
            logs = instance.all_logs(result.run_id)
        steps, starts = {}, {}
        for entry in logs:
            ev = entry.dagster_event
            if ev is None:
                continue
            if ev.event_type == DagsterEventType.STEP_START:
                starts[ev.step_key] = entry.timestamp
            elif ev.event_type == DagsterEventType.STEP_SUCCESS:
                steps[ev.step_key] = {
                    "compute_s": ev.event_specific_data.duration_ms / 1000,
                    "wall_s": entry.timestamp - starts.get(ev.step_key, entry.timestamp),
                }
        mats = {
            e.asset_key.path[-1]: e.step_materialization_data.materialization.metadata
            for e in result.get_asset_materialization_events()
        }
        samples = mats.get("silver_harmonized", {}).get("rows")
    return {
        "success": result.success,
        "imports_s": imports,
        "materialize_s": wall,
        "materialize_cpu_s": cpu,
        "steps": steps,
        "samples": samples.value if samples is not None else None,
    }


def run_full(trucks: int, repeat: int) -> dict:
    """Alternate floor and full-run children ``repeat`` times; medians and the ratio."""
    files = [str(p) for p in workbooks(trucks)]
    floors, runs = [], []
    for _ in range(repeat):
        f = run_child(["bench/full_run.py", "floor", "--trucks", str(trucks)])
        if f.returncode != 0:
            raise SystemExit(f"parse floor failed:\n{f.stderr_tail}")
        floors.append({**f.result, "process_wall_s": f.wall_s, "peak_rss_mb": f.peak_rss_mb})
        r = run_child(["bench/full_run.py", "run", "--trucks", str(trucks)], env={"OIL_LLM_OFFLINE": "true"})
        if r.returncode != 0 or not r.result.get("success"):
            raise SystemExit(f"full run failed:\n{r.stderr_tail}")
        runs.append({**r.result, "process_wall_s": r.wall_s, "peak_rss_mb": r.peak_rss_mb})
    floor_s = spread([f["seq_s"] for f in floors])
    assets = [a for a in ASSETS if a in runs[0]["steps"]] + sorted(set(runs[0]["steps"]) - set(ASSETS))
    run_s = spread([r["materialize_s"] for r in runs])
    return {
        "trucks": trucks,
        "files": files,
        "real_files": sum(1 for f in files if f.startswith(str(SHARED))),
        "samples": runs[0]["samples"],
        "oil_rows": floors[0]["rows"],
        "floor": {
            "seq": floor_s,
            "seq_cpu": spread([f["seq_cpu_s"] for f in floors]),
            "seq_pandas": spread([f["seq_pandas_s"] for f in floors]),
            "par2": spread([f["par2_s"] for f in floors]),
        },
        "run": {
            "materialize": run_s,
            "materialize_cpu": spread([r["materialize_cpu_s"] for r in runs]),
            "imports": spread([r["imports_s"] for r in runs]),
            "process_wall": spread([r["process_wall_s"] for r in runs]),
            "peak_rss_mb": spread([r["peak_rss_mb"] for r in runs]),
            "steps": {
                a: {
                    k: spread([r["steps"][a][k] for r in runs if a in r["steps"]])
                    for k in ("compute_s", "wall_s")
                }
                for a in assets
            },
        },
        # Ratio of medians, and the spread of the per-round ratios (each round: one floor, one run).
        "ratio": run_s["median"] / floor_s["median"],
        "ratio_rounds": spread([r["materialize_s"] / f["seq_s"] for f, r in zip(floors, runs, strict=True)]),
        # The same ratio in CPU seconds (parent + parse workers): less sensitive to other load.
        "cpu_ratio": spread([r["materialize_cpu_s"] for r in runs])["median"]
        / spread([f["seq_cpu_s"] for f in floors])["median"],
        "floors": floors,
        "runs": runs,
    }


def full_table(doc: dict) -> str:
    f, r = doc["floor"], doc["run"]
    rows = [
        ["parse floor: calamine, OIL sheets → rows, sequential", fmt_spread(f["seq"])],
        ["… rows → pandas DataFrame, sequential", fmt_spread(f["seq_pandas"])],
        ["… rows, 2 worker processes", fmt_spread(f["par2"])],
        [
            f"**full cold run: materialize, all {len(r['steps'])} assets**",
            f"**{fmt_spread(r['materialize'])}**",
        ],
        *[[f"step `{a}` (compute, STEP_SUCCESS)", fmt_spread(v["compute_s"])] for a, v in r["steps"].items()],
        ["interpreter + imports (dagster, pandas, project)", fmt_spread(r["imports"])],
        [
            "whole process (`/usr/bin/time`), peak RSS",
            f"{fmt_spread(r['process_wall'])}, {fmt_spread(r['peak_rss_mb'], 'MB', 0)}",
        ],
        [
            "CPU seconds: full run (incl. parse workers) / parse floor",
            f"{fmt_spread(r['materialize_cpu'])} / {fmt_spread(f['seq_cpu'])} = {doc['cpu_ratio']:.2f}×",
        ],
        [
            "**ratio full run / parse floor**",
            f"**{doc['ratio']:.2f}×** (per round {doc['ratio_rounds']['min']:.2f}–{doc['ratio_rounds']['max']:.2f})",
        ],
    ]
    head = (
        f"{doc['trucks']} workbooks ({doc['real_files']} real + {doc['trucks'] - doc['real_files']} generated), "
        f"{doc['oil_rows']:,} OIL rows → {doc['samples']:,} samples"
    )
    return head + "\n\n" + markdown_table(["what", "median (min–max)"], rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cmd", nargs="?", default="bench", choices=["bench", "floor", "run", "prepare"])
    ap.add_argument("--trucks", type=int, default=11)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--result", help=argparse.SUPPRESS)  # a child's result file (bench/common.py)
    a = ap.parse_args(argv)
    if a.cmd == "prepare":
        print("\n".join(str(p) for p in workbooks(a.trucks)))
        return 0
    files = [str(p) for p in workbooks(a.trucks)]
    if a.cmd == "floor":
        write_result(a.result, floor(files))
        return 0
    if a.cmd == "run":
        write_result(a.result, full_run(files))
        return 0
    doc = run_full(a.trucks, a.repeat)
    print(full_table(doc))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(doc, indent=2, default=str))
    write_result(a.result, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
