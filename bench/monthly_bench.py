"""The monthly update: cumulative workbooks cut at a date, then complete, then an unchanged re-run.

    uv run python bench/monthly_bench.py [--trucks 11] [--cut 2025-12-01] [--repeat 3] [--check] [--steady] [--split] [--lab-originals]

A Finning lab re-sends each truck's cumulative workbook every month: the same file name with a few
more rows. Workbooks: the three shared real trucks (``../shared/data/finning``) plus generated ones
in the exact Finning format up to ``--trucks`` (the fleet of ``bench/full_run.py``). Each workbook is
cut at ``--cut`` with openpyxl (a copy holding only the rows sampled before the cut, on every
sheet; header and the other cells untouched) — the workbooks "as they stood" on that day.

In one process, in-process ``materialize`` of every asset of the client (ephemeral instance, AI off),
per round on a fresh data root:

1. **parse floor** — python-calamine reads the OIL sheet of every cut workbook into Python rows,
   sequentially (``bench/full_run.py floor``'s measure, here on the same files as the cold run);
2. **cold** — the cut workbooks, nothing parsed before;
3. **monthly update** — every workbook replaced by the complete one (same names, more rows), written
   by the same writer as the cut ones (openpyxl, every row kept), as one lab's exporter writes both
   months; ``--lab-originals`` uses the lab's own complete files instead (2–4× slower for calamine
   than openpyxl's rewrite of the same cells: that run measures a change of writer too);
4. **unchanged re-run** — nothing changed; the data files (silver, limits, gold, fleet report) must
   be byte-identical before and after;
5. **Dagster alone** — the same asset graph (assets, dependencies, partitions, asset checks) with
   steps that do nothing and an IO manager that stores nothing, on the same instance: the least any
   in-process run of every asset can take (``monthly_bench dagster: …``).

The process is warmed up once (one run on one small generated workbook) so every round sees the same
imported, initialised process. ``--check`` also rebuilds a copy of the updated root in full (silver from
every file, every report classified again with the limits in force) and compares the data files
with the monthly update's (incremental = full). ``--steady`` also measures the update as it runs
month after month: a data root that went through the workbooks as of a month before the cut, then
the cut ones, then takes the complete ones (a re-send of a re-send), beside a cold run of the cut
workbooks in the same round (``monthly_bench steady: …``). ``--split`` also measures, in two runs each, the CPU
of the bronze step alone and of the other assets, for the cold run and the update.

Targets (issue 16): update ≤ 0.5 × cold, unchanged ≤ 0.15 × cold, cold ≤ 2.0 × the parse floor.
Prints ``monthly_bench: …`` and ``monthly_bench dagster: …``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("OIL_LLM_OFFLINE", "true")

from common import OUT  # noqa: E402
from full_run import workbooks  # noqa: E402

CLIENT = "cda"
DATE_COLUMN = "Fecha de Toma de Muestra"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# The published files compared across the unchanged re-run (and with a full build under --check).
DATA_FILES = (
    "silver/harmonized/CDA.parquet",
    "silver/stewart_limits/cda/latest.json",
    "gold/cda/classified_reports.parquet",
    "gold/cda/machine_status_current.parquet",
    "gold/cda/limit_quality.parquet",
    "gold/cda/fleet_report.html",
)


def cut_workbook(src: Path, dst: Path, cut: date) -> tuple[int, int]:
    """Copy ``src`` to ``dst`` keeping only the rows sampled before ``cut`` on every sheet that has
    a sample-date column (rows without a date stay). Returns (rows kept, rows dropped)."""
    from openpyxl import load_workbook

    wb = load_workbook(src)
    kept = dropped = 0
    for ws in wb.worksheets:
        header = [c.value for c in ws[1]]
        if DATE_COLUMN not in header:
            continue
        col = header.index(DATE_COLUMN) + 1
        drop = []
        for r in range(2, ws.max_row + 1):
            v = ws.cell(r, col).value
            day = v.date() if isinstance(v, datetime) else v if isinstance(v, date) else None
            if day is not None and day >= cut:
                drop.append(r)
        kept += ws.max_row - 1 - len(drop)
        dropped += len(drop)
        # Contiguous runs, bottom first, so the row numbers still to delete do not move.
        runs: list[list[int]] = []
        for r in drop:
            if runs and r == runs[-1][1] + 1:
                runs[-1][1] = r
            else:
                runs.append([r, r])
        for lo, hi in reversed(runs):
            ws.delete_rows(lo, hi - lo + 1)
    dst.parent.mkdir(parents=True, exist_ok=True)
    wb.save(dst)
    return kept, dropped


def cut_fleet(files: list[Path], cut: date) -> tuple[list[Path], int]:
    """The fleet's workbooks cut at ``cut`` (made once, cached under bench/out/monthly/)."""
    folder = OUT / "monthly" / f"cut_{cut:%Y%m%d}_{len(files)}"
    stamp = folder / "done.json"
    if not stamp.exists():
        shutil.rmtree(folder, ignore_errors=True)
        dropped = sum(cut_workbook(f, folder / f.name, cut)[1] for f in files)
        stamp.write_text(json.dumps({"dropped": dropped}))
    return [folder / f.name for f in files], json.loads(stamp.read_text())["dropped"]


def complete_fleet(files: list[Path]) -> list[Path]:
    """The complete workbooks written by the same writer as the cut ones (openpyxl, every row kept).

    The lab's exporter writes both months' files; the cut copies are openpyxl's. The originals
    (``--lab-originals``) are 2–4× slower for calamine to read than openpyxl's rewrite of the same
    cells, which would charge the update for a change of writer rather than for its work."""
    return cut_fleet(files, date.max)[0]


def parse_floor(files: list[Path]) -> float:
    from python_calamine import CalamineWorkbook

    t = time.perf_counter()
    for f in files:
        CalamineWorkbook.from_path(str(f)).get_sheet_by_name("OIL").to_python(skip_empty_area=False)
    return time.perf_counter() - t


def put(files: list[Path], root: Path) -> None:
    """Place workbooks under bronze/cda/ (a copy: a re-sent workbook is a new file of the same name)."""
    bronze = root / "bronze" / CLIENT
    bronze.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copyfile(f, bronze / f.name)


def _cpu() -> float:
    """CPU seconds of this process and its reaped children (the parse workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


CPU: dict[str, float] = {}


def materialize_once(
    root: Path, instance, run_config: dict | None = None, selection=None
) -> tuple[float, dict]:
    """One in-process run of every asset (or of ``selection``) with ``run_config`` (default: quiet
    logs); wall seconds (CPU seconds in ``CPU['last']``)."""
    from dagster import materialize

    from oil_analysis.definitions import all_assets, build_resources

    t, c = time.perf_counter(), _cpu()
    result = materialize(
        all_assets,
        partition_key=CLIENT,
        instance=instance,
        resources=build_resources(str(root)),
        run_config=run_config or QUIET,
        **({"selection": selection} if selection is not None else {}),
    )
    wall = time.perf_counter() - t
    CPU["last"] = _cpu() - c
    assert result.success
    meta = {
        e.asset_key.path[-1]: {
            k: v.value for k, v in e.step_materialization_data.materialization.metadata.items()
        }
        for e in result.get_asset_materialization_events()
    }
    return wall, meta


def noop_graph():
    """The product's asset graph — same assets, dependencies, partitions and asset checks — with
    bodies that do nothing and an IO manager that stores nothing: what Dagster itself costs for one
    run of it, the least any run of every asset can take in-process."""
    from dagster import (
        AssetCheckResult,
        AssetIn,
        AssetsDefinition,
        IOManager,
        Output,
        asset,
        io_manager,
    )

    from oil_analysis.definitions import all_assets

    class Nothing(IOManager):
        def handle_output(self, context, obj) -> None:
            pass

        def load_input(self, context):
            return None

    out = []
    for a in all_assets:
        if not isinstance(a, AssetsDefinition):
            continue
        key = next(iter(a.keys))
        names = [k.path[-1] for k in sorted(a.dependency_keys)]
        checks = [spec.name for spec in a.check_specs]

        def run(checks=checks):
            yield Output(None)
            for name in checks:
                yield AssetCheckResult(check_name=name, passed=True)

        # Dagster reads an asset's inputs from its function's parameters: one named per dependency.
        scope: dict = {"run": run}
        exec(f"def {key.path[-1]}({', '.join(names)}):\n    yield from run()", scope)
        out.append(
            asset(
                key=key,
                ins={n: AssetIn(key=k) for n, k in zip(names, sorted(a.dependency_keys), strict=True)},
                partitions_def=a.partitions_def,
                check_specs=list(a.check_specs),
                io_manager_key="nothing",
            )(scope[key.path[-1]])
        )
    return out, {"nothing": io_manager(lambda _: Nothing())}


def dagster_floor(instance) -> float:
    """Wall seconds of one in-process run of :func:`noop_graph` (one partition, same instance)."""
    from dagster import materialize

    assets, resources = noop_graph()
    t = time.perf_counter()
    assert materialize(
        assets, partition_key=CLIENT, instance=instance, resources=resources, run_config=QUIET
    ).success
    return time.perf_counter() - t


def digests(root: Path) -> dict[str, str]:
    return {p: hashlib.sha256((root / p).read_bytes()).hexdigest() for p in DATA_FILES if (root / p).exists()}


def full_rebuild_equal(root: Path, other: Path, instance) -> dict[str, bool]:
    """Rebuild a copy of ``root`` in full — silver from every file, every report classified again
    with the limits in force — and compare its data files with the incremental ones."""
    shutil.copytree(root, other)
    for p in DATA_FILES:
        if p.startswith("gold/"):
            (other / p).unlink(missing_ok=True)
    shutil.rmtree(other / "silver" / "_state", ignore_errors=True)
    config = {**QUIET, "ops": {"silver_harmonized": {"config": {"full_rebuild": True}}}}
    materialize_once(other, instance, config)
    mine, theirs = digests(root), digests(other)
    return {p: mine.get(p) == theirs.get(p) for p in DATA_FILES}


def one_round(cut_files: list[Path], full_files: list[Path], check: bool) -> dict:
    from dagster import DagsterInstance

    c = _cpu()
    floor = parse_floor(cut_files)
    floor_cpu = _cpu() - c
    floor_update = parse_floor(full_files)
    with tempfile.TemporaryDirectory(prefix="oil-monthly-") as tmp, DagsterInstance.ephemeral() as instance:
        root = Path(tmp) / "root"
        put(cut_files, root)
        cold, m_cold = materialize_once(root, instance)
        cold_cpu = CPU["last"]
        put(full_files, root)
        update, m_update = materialize_once(root, instance)
        update_cpu = CPU["last"]
        before = digests(root)
        unchanged, m_same = materialize_once(root, instance)
        unchanged_cpu = CPU["last"]
        identical = digests(root) == before
        noop = dagster_floor(instance)
        full_equal = None
        if check:
            full_equal = full_rebuild_equal(root, Path(tmp) / "full", instance)
    return {
        "floor_s": floor,
        "floor_update_s": floor_update,
        "cold_s": cold,
        "update_s": update,
        "unchanged_s": unchanged,
        "floor_cpu_s": floor_cpu,
        "cold_cpu_s": cold_cpu,
        "update_cpu_s": update_cpu,
        "unchanged_cpu_s": unchanged_cpu,
        "dagster_floor_s": noop,
        "unchanged_identical": identical,
        "incremental_equals_full": full_equal,
        "samples_cold": m_cold["silver_harmonized"]["rows"],
        "samples_update": m_update["silver_harmonized"]["rows"],
        "update_limits": m_update["stewart_limits"].get("refresh_decision"),
        "update_classified": m_update["classified_reports"].get("classified_this_run"),
        "unchanged_steps": {
            k: v.get("unchanged") for k, v in m_same.items() if isinstance(v, dict) and "unchanged" in v
        },
    }


def steady_round(early_files: list[Path], cut_files: list[Path], full_files: list[Path], check: bool) -> dict:
    """The monthly update as it runs month after month: a data root that has lived through one
    update already (the workbooks as of a month before the cut, then as of the cut), then the
    complete workbooks — a re-send of a re-send, its row caches those a re-send left. Measured
    beside a cold run of the cut workbooks on a fresh root, in the same minute; ``check``: the
    data files after the second update compared with a full rebuild."""
    from dagster import DagsterInstance

    with tempfile.TemporaryDirectory(prefix="oil-monthly-") as tmp, DagsterInstance.ephemeral() as instance:
        cold_root, root = Path(tmp) / "cold", Path(tmp) / "root"
        put(cut_files, cold_root)
        cold, _ = materialize_once(cold_root, instance)
        put(early_files, root)
        materialize_once(root, instance)
        put(cut_files, root)
        first, meta_first = materialize_once(root, instance)
        put(full_files, root)
        second, meta = materialize_once(root, instance)
        full_equal = full_rebuild_equal(root, Path(tmp) / "full", instance) if check else None
    return {
        "cold_s": cold,
        "first_update_s": first,
        "second_update_s": second,
        "samples": meta["silver_harmonized"]["rows"],
        "limits": [m["stewart_limits"].get("refresh_decision") for m in (meta_first, meta)],
        "classified": [m["classified_reports"].get("classified_this_run") for m in (meta_first, meta)],
        "incremental_equals_full": full_equal,
    }


def split_round(cut_files: list[Path], full_files: list[Path]) -> dict[str, float]:
    """CPU seconds of the bronze step alone, then of the other assets, for the cold run and the
    monthly update (two runs each: every run pays Dagster's run start once more)."""
    from dagster import AssetSelection, DagsterInstance

    bronze = AssetSelection.assets("bronze_lab_files")
    out = {}
    with tempfile.TemporaryDirectory(prefix="oil-monthly-") as tmp, DagsterInstance.ephemeral() as instance:
        root = Path(tmp) / "root"
        for name, files in (("cold", cut_files), ("update", full_files)):
            put(files, root)
            materialize_once(root, instance, selection=bronze)
            out[f"{name}_bronze_cpu_s"] = CPU["last"]
            materialize_once(root, instance, selection=AssetSelection.all() - bronze)
            out[f"{name}_rest_cpu_s"] = CPU["last"]
    return out


def warm_up() -> None:
    """One run on one small generated workbook: imports and Dagster's first-run costs paid once."""
    from dagster import DagsterInstance

    from oil_analysis.demo import write_finning_workbook

    with tempfile.TemporaryDirectory(prefix="oil-warm-") as tmp, DagsterInstance.ephemeral() as instance:
        root = Path(tmp)
        write_finning_workbook(root / "bronze" / CLIENT / "T-WARM.xlsx", unit_id="T-WARM", n_samples=120)
        materialize_once(root, instance)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trucks", type=int, default=11)
    ap.add_argument("--cut", default="2025-12-01")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--check", action="store_true", help="also compare with a full build (incremental = full)"
    )
    ap.add_argument(
        "--split",
        action="store_true",
        help="also measure the CPU of the bronze step and of the other assets apart (cold and update)",
    )
    ap.add_argument(
        "--steady",
        action="store_true",
        help="also measure the update month after month: a month before the cut, the cut, then complete",
    )
    ap.add_argument(
        "--lab-originals",
        action="store_true",
        help="the update reads the lab's original complete workbooks (default: the same writer as the cut)",
    )
    ap.add_argument("--json")
    ap.add_argument("--result", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    originals = workbooks(a.trucks)
    cut = date.fromisoformat(a.cut)
    cut_files, dropped = cut_fleet(originals, cut)
    full_files = originals if a.lab_originals else complete_fleet(originals)
    warm_up()
    rounds = [one_round(cut_files, full_files, a.check) for _ in range(a.repeat)]

    def med(k: str) -> float:
        return statistics.median(r[k] for r in rounds)

    cold, update, same, floor = med("cold_s"), med("update_s"), med("unchanged_s"), med("floor_s")
    noop = med("dagster_floor_s")
    doc = {
        "trucks": a.trucks,
        "cut": a.cut,
        "rows_after_cut": dropped,
        "rounds": rounds,
        "cold_s": cold,
        "update_s": update,
        "unchanged_s": same,
        "floor_s": floor,
        "update_share": update / cold,
        "unchanged_share": same / cold,
        "cold_over_floor": cold / floor,
        "dagster_floor_s": noop,
        "floor_update_s": med("floor_update_s"),
        "update_files": "lab originals" if a.lab_originals else "same writer as the cut",
    }
    cpu = {k: med(f"{k}_cpu_s") for k in ("floor", "cold", "update", "unchanged")}
    doc["cpu"] = cpu
    r0 = rounds[0]
    identical = all(r["unchanged_identical"] for r in rounds)
    check = ""
    if a.check:
        ok = all(all(r["incremental_equals_full"].values()) for r in rounds)
        check = f"; data files of the update = a full rebuild: {'yes' if ok else 'NO ' + str(r0['incremental_equals_full'])}"
    print(
        f"monthly_bench: {a.trucks} workbooks ({sum(1 for f in originals if 'shared' in str(f))} real) cut at "
        f"{a.cut} ({r0['samples_cold']:,} samples) then complete (+{r0['samples_update'] - r0['samples_cold']} "
        f"samples; {doc['update_files']}, their calamine floor {doc['floor_update_s']:.2f} s), median of {a.repeat}: cold {cold:.2f} s = {cold / floor:.2f}× the calamine parse floor "
        f"{floor:.2f} s (target ≤ 2.0×); monthly update {update:.2f} s = {update / cold:.2f}× cold (target ≤ 0.5); "
        f"unchanged re-run {same:.2f} s = {same / cold:.2f}× cold (target ≤ 0.15), outputs byte-identical: "
        f"{'yes' if identical else 'NO'}; in CPU seconds (incl. parse workers): cold {cpu['cold']:.2f} = "
        f"{cpu['cold'] / cpu['floor']:.2f}× floor, update {cpu['update'] / cpu['cold']:.2f}×, unchanged "
        f"{cpu['unchanged'] / cpu['cold']:.2f}×; update limits: {r0['update_limits']}{check}"
    )
    # The three targets together ask for an unchanged re-run of at most 0.15 × 2.0 = 0.30× the
    # parse floor; Dagster's own cost for one run of the graph is measured beside it.
    print(
        f"monthly_bench dagster: the same graph with no-op steps (Dagster alone, same instance) "
        f"{noop:.2f} s = {noop / floor:.2f}× the parse floor = {noop / cold:.2f}× cold; the unchanged "
        f"re-run is {same / noop:.2f}× it; cold ≤ 2.0× floor and unchanged ≤ 0.15× cold together "
        f"require an unchanged re-run ≤ {0.3 * floor:.2f} s (0.30× floor)"
    )
    if a.steady:
        early = date(cut.year - (cut.month == 1), (cut.month - 2) % 12 + 1, 1)
        early_files, _ = cut_fleet(originals, early)
        steady = [steady_round(early_files, cut_files, full_files, a.check) for _ in range(a.repeat)]
        doc["steady"] = steady
        ratios = [r["second_update_s"] / r["cold_s"] for r in steady]
        firsts = [r["first_update_s"] / r["cold_s"] for r in steady]
        print(
            f"monthly_bench steady: workbooks as of {early} → {a.cut} → complete, median of {a.repeat}: "
            f"the second monthly update (a re-send of a re-send) "
            f"{statistics.median(r['second_update_s'] for r in steady):.2f} s = "
            f"{statistics.median(ratios):.2f}× a cold run of the cut workbooks in the same round "
            f"({statistics.median(r['cold_s'] for r in steady):.2f} s; per round "
            f"{', '.join(f'{x:.2f}' for x in ratios)}); the first ({early} → {a.cut}) "
            f"{statistics.median(firsts):.2f}×"
            + (
                "; data files after the second update = a full rebuild: "
                + ("yes" if all(all(r["incremental_equals_full"].values()) for r in steady) else "NO")
                if a.check
                else ""
            )
        )
    if a.split:
        parts = split_round(cut_files, full_files)
        doc["split"] = parts
        print(
            "monthly_bench split (CPU s, bronze step / other assets, each a run of its own): cold "
            f"{parts['cold_bronze_cpu_s']:.2f} / {parts['cold_rest_cpu_s']:.2f}, update "
            f"{parts['update_bronze_cpu_s']:.2f} / {parts['update_rest_cpu_s']:.2f}"
        )
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(doc, indent=2, default=str))
    if a.result:
        Path(a.result).write_text(json.dumps(doc, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
