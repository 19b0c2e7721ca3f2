"""Calibration of the limits drift trigger: the real workbooks replayed month by month.

    uv run python bench/drift_calibration.py [--start 2022-01] [--shuffles 20] [--markdown]

Silver of the shared Finning workbooks (``../shared/data/finning``, 3 trucks) is cut at every month
end (cumulative: every sample taken up to that day), as if the lab's cumulative workbooks had been
processed that day. At each month end the refresh decision (``decide_refresh``) runs against the
limits in force; when it says "recompute", the limits of that cut become the limits in force. The
first limits are computed at the month end before ``--start``.

Three replays:

* **real order** — the workbooks as they are: how often, and for which reason, the limits would be
  recomputed; the drift trigger's share is what the drift test finds in real data;
* **shuffled dates** (``--shuffles`` times) — the same samples with their sample dates permuted at
  random across the fleet: no distribution can drift over time, so every month the drift trigger
  fires is a false alarm. Reported: the false-alarm rate per month (target ≤ 5 %);
* **old test** — the previous trigger (one pooled KS test per essay at p < 0.01, no correction, no
  effect size) on the same replays, for comparison.

Prints one markdown table (``--markdown``: the rows for docs/CLASSIFICATION.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from oil_analysis.domain.catalog import load_catalog  # noqa: E402
from oil_analysis.domain.harmonize import harmonize  # noqa: E402
from oil_analysis.domain.labs import read_finning_workbook  # noqa: E402
from oil_analysis.domain.limits import compute_limits  # noqa: E402
from oil_analysis.domain.refresh import RefreshParams, decide_refresh, drift_tests  # noqa: E402
from oil_analysis.pipeline.limits import refresh_params  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "finning"


def shared_silver() -> pd.DataFrame:
    """Silver of the shared workbooks (a full harmonize of the three real trucks)."""
    files = sorted(SHARED.glob("T-*.xlsx"))
    if not files:
        raise SystemExit(f"no workbooks under {SHARED}")
    samples = [read_finning_workbook(str(f)).samples.assign(sourceFile=f.name) for f in files]
    silver, _, _ = harmonize(samples, "cda")
    return silver


def old_trigger(silver: pd.DataFrame, cutoff: pd.Timestamp, essays: list[str]) -> bool:
    """The previous drift test: pooled KS per essay, p < 0.01, ≥ 50 readings a side, no correction."""
    from scipy.stats import ks_2samp

    old, new = silver[silver["sampleDate"] <= cutoff], silver[silver["sampleDate"] > cutoff]
    for e in essays:
        a, b = old[e].dropna(), new[e].dropna()
        if len(a) >= 50 and len(b) >= 50 and ks_2samp(a.to_numpy(), b.to_numpy()).pvalue < 0.01:
            return True
    return False


def replay(silver: pd.DataFrame, months: pd.DatetimeIndex, params: RefreshParams) -> dict:
    """Month-by-month replay: per month the decision's reasons, with the old test's answer beside."""
    catalog = load_catalog()
    groups = {g: catalog.of_group(g) for g in set(catalog.table["group"])}
    tested = [e for g in params.ks_groups for e in groups.get(g, []) if e in silver]
    first = months[0] - pd.offsets.MonthEnd(1)
    cut = silver[silver["sampleDate"] <= first]
    current = compute_limits(cut, catalog, computed_at=cut["sampleDate"].max())
    rows = []
    for month_end in months:
        cut = silver[silver["sampleDate"] <= month_end]
        d = decide_refresh(cut, current, groups, params)
        cutoff = pd.to_datetime(current["computed_at"]).max()
        # Every p-value, also in months where no test is large enough to count (the decision skips
        # them then): the "significant after BH, any effect" column.
        every = drift_tests(
            cut[cut["sampleDate"] <= cutoff],
            cut[cut["sampleDate"] > cutoff],
            tested,
            params.ks_min_samples,
            params.ks_alpha,
        )
        rows.append(
            {
                "month": month_end.strftime("%Y-%m"),
                "refresh": d.refresh,
                "drift": "distribution_drift" in d.reasons,
                "growth": "sample_growth" in d.reasons,
                "new_pair": "new_machine_component" in d.reasons,
                "old_drift": old_trigger(cut, cutoff, tested),
                "tests": d.details.get("drift_tests", 0),
                "significant": int(every["drift"].sum()),
            }
        )
        if d.refresh:
            current = compute_limits(cut, catalog, computed_at=cut["sampleDate"].max())
    return {"months": rows}


def shuffled(silver: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The same samples with their sample dates permuted across the whole fleet."""
    rng = np.random.default_rng(seed)
    out = silver.copy()
    out["sampleDate"] = out["sampleDate"].to_numpy()[rng.permutation(len(out))]
    return out


def rates(rows: list[dict]) -> dict:
    n = len(rows)
    out = {k: sum(r[k] for r in rows) / n for k in ("refresh", "drift", "growth", "new_pair", "old_drift")}
    out["bh_only"] = sum(r["significant"] > 0 for r in rows) / n
    out["tests"] = sum(r["tests"] for r in rows) / n
    out["tested_months"] = sum(r["tests"] > 0 for r in rows) / n
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--start", default="2022-01", help="first month replayed (limits start the month before)")
    ap.add_argument("--shuffles", type=int, default=20)
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args(argv)
    params = refresh_params()
    silver = shared_silver()
    last = silver["sampleDate"].max()
    months = pd.date_range(pd.Timestamp(a.start) + pd.offsets.MonthEnd(0), last, freq="ME")
    real = replay(silver, months, params)["months"]
    shuf = [r for s in range(a.shuffles) for r in replay(shuffled(silver, s), months, params)["months"]]
    rr, rs = rates(real), rates(shuf)
    print(
        f"drift_calibration: {len(silver):,} samples of {silver['unitId'].nunique()} trucks, "
        f"{len(months)} month ends {months[0]:%Y-%m}…{months[-1]:%Y-%m}; params {params}"
    )
    if not a.markdown:
        for r in real:
            print(r)
    header = (
        "| replay | months | limits recomputed | by drift (this trigger) | significant after BH, any effect "
        "| months with ≥ 1 test / tests per month | by growth | by new machine/component "
        "| old drift test (pooled, p < 0.01, no correction) |"
    )
    print(header)
    print("|" + "---|" * 9)
    for name, rows, r in (
        ("real order", real, rr),
        (f"shuffled dates ({a.shuffles} replays): false alarms", shuf, rs),
    ):
        print(
            f"| {name} | {len(rows)} | {r['refresh']:.0%} | **{r['drift']:.1%}** | {r['bh_only']:.1%} "
            f"| {r['tested_months']:.0%} / {r['tests']:.1f} | {r['growth']:.0%} "
            f"| {r['new_pair']:.0%} | {r['old_drift']:.0%} |"
        )
    drift_months = [r["month"] for r in real if r["drift"]]
    print(f"real order: drift months {drift_months}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
