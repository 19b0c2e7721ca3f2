"""The fleet report of a 500-unit fleet: file size and render time (targets < 3 MB, < 1 s).

Generates the demo ALS client with ``--units`` units (about 25 samples each), runs the product's
reader, harmonizer, limits, classifier, machine status and offline advisor in-process, then times
``render_fleet_report`` alone (median of ``--repeat`` renders, wall and CPU time — the CPU figure
moves less on a loaded machine; the report date is the newest sample + 3 days). Prints
``report_bench: …``.

    uv run python bench/report_bench.py [--units 500] [--repeat 3] [--out bench/out/fleet_report_500.html]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from oil_analysis.demo.als import write_als_parquet  # noqa: E402
from oil_analysis.domain.catalog import load_catalog  # noqa: E402
from oil_analysis.domain.classify import ClassificationParams, classify_reports  # noqa: E402
from oil_analysis.domain.fleet import machine_status_current  # noqa: E402
from oil_analysis.domain.harmonize import harmonize  # noqa: E402
from oil_analysis.domain.labs.als import read_als_parquet  # noqa: E402
from oil_analysis.domain.limits import LimitParams, compute_limits  # noqa: E402
from oil_analysis.pipeline.advice import recommend_machines, recommend_reports  # noqa: E402
from oil_analysis.report import render_fleet_report  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--units", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=None, help="also write the page here")
    a = ap.parse_args(argv)
    catalog = load_catalog()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "muestrasAlsHistoricos.parquet"
        write_als_parquet(path, n_units=a.units, seed=11, n_samples=25 * a.units)
        read = read_als_parquet(str(path), catalog, "America/Santiago")
    silver, _, _ = harmonize([read.samples], "EMIN", as_of=pd.Timestamp("2100-01-01"))
    limits = compute_limits(silver, catalog, LimitParams())
    reports = classify_reports(silver, limits, catalog, ClassificationParams())
    reports, _ = recommend_reports(reports, None, "emin", None, catalog)
    machines, _ = recommend_machines(machine_status_current(reports), reports, None, "emin", None, catalog)
    as_of = pd.Timestamp(reports["sampleDate"].max()) + pd.Timedelta(days=3)
    times, cpu, html = [], [], ""
    for _ in range(a.repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        html = render_fleet_report("EMIN (500)", reports, machines, limits, catalog, as_of=as_of)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    size = len(html.encode("utf-8"))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(html, encoding="utf-8")
    todo = html.count("<tr data-unit=")
    print(
        f"report_bench: {machines['unitId'].nunique()} units, {len(reports):,} samples, "
        f"{todo} to act on: {size / 1e6:.2f} MB, render median {statistics.median(times):.2f} s wall "
        f"(min {min(times):.2f}, max {max(times):.2f}), {statistics.median(cpu):.2f} s CPU; "
        f"load {os.getloadavg()[0]:.1f}; targets < 3 MB, < 1 s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
