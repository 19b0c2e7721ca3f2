"""The Finning reader against the python-calamine parse floor, sequential, in one process.

    uv run python bench/reader_bench.py [--rounds 5] [--trucks 11] [--cut 2025-12-01]

Files: the workbooks of ``bench/monthly_bench.py`` (3 shared real trucks + generated ones up to
``--trucks``), cut at ``--cut`` (the cold run's files) and complete (the monthly re-send). Per round,
interleaved so both see the same machine load, in CPU seconds of this process:

* **floor**: python-calamine reads the ``OIL`` sheet of every file into Python rows;
* **reader**: ``read_finning_workbook`` of every file (XML guard, calamine, row digests, parse);
* **re-send**: ``read_finning_workbook`` of every complete file given the row cache of its cut
  version (the monthly update's parse: unchanged rows reused, new rows parsed), against the floor of
  the complete files: the originals (another writer than the cut copies: no row element's XML is
  the cut's, every row is read) and, as the monthly bench re-sends them, the complete files written
  by the cut's writer (the rows of the cut are not read again by python-calamine).

Prints the minimum and the median over ``--rounds`` (target of issues 14/16: reader ≤ 1.4× the
floor). Prints ``reader_bench: …``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from full_run import workbooks  # noqa: E402
from monthly_bench import complete_fleet, cut_fleet  # noqa: E402


def _floor(files: list[str]) -> float:
    from python_calamine import CalamineWorkbook

    t = time.process_time()
    for f in files:
        CalamineWorkbook.from_path(f).get_sheet_by_name("OIL").to_python(skip_empty_area=False)
    return time.process_time() - t


def _reader(files: list[str], previous: list | None = None) -> float:
    from oil_analysis.domain.labs.finning import read_finning_workbook

    caches = previous or [None] * len(files)
    t = time.process_time()
    for f, cache in zip(files, caches, strict=True):
        read_finning_workbook(f, previous=cache)
    return time.process_time() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--trucks", type=int, default=11)
    ap.add_argument("--cut", default="2025-12-01")
    a = ap.parse_args(argv)
    from oil_analysis.domain.labs.finning import read_finning_workbook

    full_paths = workbooks(a.trucks)
    cut_paths, _ = cut_fleet(full_paths, date.fromisoformat(a.cut))
    cut, full = [str(p) for p in cut_paths], [str(p) for p in full_paths]
    same = [str(p) for p in complete_fleet(full_paths)]
    caches = [read_finning_workbook(f).row_cache for f in cut]  # also warms the process up
    keys = ("floor", "reader", "floor_full", "resend", "floor_same", "resend_same")
    rows: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(a.rounds):
        rows["floor"].append(_floor(cut))
        rows["reader"].append(_reader(cut))
        rows["floor_full"].append(_floor(full))
        rows["resend"].append(_reader(full, caches))
        rows["floor_same"].append(_floor(same))
        rows["resend_same"].append(_reader(same, caches))

    def ratio(num: str, den: str, how) -> float:
        return how(rows[num]) / how(rows[den])

    med = statistics.median
    print(
        f"reader_bench: {len(cut)} workbooks, CPU s, {a.rounds} interleaved rounds (min / median): "
        f"cold files: floor {min(rows['floor']):.3f} / {med(rows['floor']):.3f}, reader "
        f"{min(rows['reader']):.3f} / {med(rows['reader']):.3f} = **{ratio('reader', 'floor', min):.2f}× / "
        f"{ratio('reader', 'floor', med):.2f}×** the floor (target ≤ 1.4×); re-sent complete files: floor "
        f"{min(rows['floor_full']):.3f} / {med(rows['floor_full']):.3f}, reader with the row cache "
        f"{min(rows['resend']):.3f} / {med(rows['resend']):.3f} = {ratio('resend', 'floor_full', min):.2f}× / "
        f"{ratio('resend', 'floor_full', med):.2f}×; re-sent by the cut's writer: floor "
        f"{min(rows['floor_same']):.3f} / {med(rows['floor_same']):.3f}, reader with the row cache "
        f"{min(rows['resend_same']):.3f} / {med(rows['resend_same']):.3f} = "
        f"{ratio('resend_same', 'floor_same', min):.2f}× / {ratio('resend_same', 'floor_same', med):.2f}×"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
