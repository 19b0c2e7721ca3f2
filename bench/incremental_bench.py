"""Adding one workbook to a client that already has ten (targets: ≤ 2 s of asset compute and ≤ 15 % of
a cold full run of the same eleven, measured in the same run).

Inputs: the three shared real workbooks (../shared/data/finning, when present) plus generated ones in
the exact Finning format, up to ten; then one more generated workbook arrives. In-process, AI off.
Prints ``incremental_bench: ...``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OIL_LLM_OFFLINE", "true")

from dagster import DagsterInstance, materialize  # noqa: E402

from oil_analysis.definitions import all_assets, build_resources  # noqa: E402
from oil_analysis.demo import generate_finning_client  # noqa: E402

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
SHARED = ROOT.parent / "shared" / "data" / "finning"


def run(root: Path, instance) -> tuple[float, float]:
    """(wall seconds, summed asset compute seconds from STEP_SUCCESS events) of one partition run."""
    start = time.perf_counter()
    result = materialize(
        all_assets,
        partition_key="cda",
        instance=instance,
        resources=build_resources(str(root)),
        run_config=QUIET,
    )
    wall = time.perf_counter() - start
    assert result.success
    compute = (
        sum(
            e.event_specific_data.duration_ms
            for e in result.all_events
            if e.event_type_value == "STEP_SUCCESS"
        )
        / 1000
    )
    return wall, compute


def one_round(workdir: Path) -> dict:
    gen = workdir / "generated"
    real = sorted(SHARED.glob("T-*.xlsx")) if SHARED.is_dir() else []
    generate_finning_client(gen, n_trucks=11 - len(real), seed=11)
    generated = sorted(gen.glob("*.xlsx"))
    base, extra = [*real, *generated[:-1]], generated[-1]
    inc_root, cold_root = workdir / "inc", workdir / "cold"
    for root, files in ((inc_root, base), (cold_root, [*base, extra])):
        (root / "bronze/cda").mkdir(parents=True)
        for f in files:
            shutil.copy(f, root / "bronze/cda" / f.name)
    with DagsterInstance.ephemeral() as instance:
        run(inc_root, instance)  # the ten already processed
        shutil.copy(extra, inc_root / "bronze/cda" / extra.name)
        inc_wall, inc_compute = run(inc_root, instance)
    with DagsterInstance.ephemeral() as instance:
        cold_wall, cold_compute = run(cold_root, instance)
    return {
        "inc_wall": inc_wall,
        "inc_compute": inc_compute,
        "cold_wall": cold_wall,
        "cold_compute": cold_compute,
        "real": len(real),
    }


def main() -> int:
    rounds = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as tmp:
            rounds.append(one_round(Path(tmp)))
    med = {
        k: statistics.median(r[k] for r in rounds)
        for k in ("inc_wall", "inc_compute", "cold_wall", "cold_compute")
    }
    share = med["inc_compute"] / med["cold_compute"]
    print(
        f"incremental_bench: 10 workbooks ({rounds[0]['real']} real) processed, 1 added, median of 3: "
        f"asset compute {med['inc_compute']:.2f} s (target ≤ 2 s), cold full run of 11 {med['cold_compute']:.2f} s "
        f"compute / {med['cold_wall']:.2f} s wall, share {share:.0%} (target ≤ 15 %); "
        f"incremental wall {med['inc_wall']:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
