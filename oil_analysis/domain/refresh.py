"""When are new Stewart limits worth it? The triggers of the limits refresh (pure, no dagster).

Limits are recomputed for a client only when one of these holds (else the current version stays):

* ``no_current_limits`` — nothing published yet;
* ``forced`` — an operator asked (run config / tag ``force_limits_refresh``);
* ``new_machine_component`` — silver has a machine type × component the current limits lack;
* ``sample_growth`` — silver grew by more than ``growth`` (10 %) since the current version;
* ``limits_age`` — the current limits were computed ``max_age_days`` (7) or more calendar days ago
  (UTC), the data product's original rule; counted in days so that a weekly schedule refreshes every
  week whatever second its run starts. Evaluated only when the caller gives the clock (``as_of``);
  limits published before the rule (no ``refreshed_at``) count as too old;
* ``distribution_drift`` — for some machine × component × essay, the readings newer than the
  current version differ from the ones it was computed on, both **significantly** and **by enough to
  matter**: a two-sample Kolmogorov–Smirnov test per group and essay (both sides with at least
  ``ks_min_samples`` readings), the p-values corrected for multiple testing with Benjamini–Hochberg
  over every test of the decision (false discovery rate ``ks_alpha``), and the KS statistic (the
  largest gap between the two empirical distributions) at least ``ks_min_effect``.

Why both: some fifty essays in every machine × component make hundreds of tests, and with that many
an uncorrected test at 1 % "drifts" almost every month; with thousands of readings, on the other
hand, a shift too small to move a percentile limit is still significant. Calibration on the real
workbooks replayed month by month, and on the same data with shuffled dates: docs/CLASSIFICATION.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..domain.ks import ks_2samp, ks_statistic

DRIFT_KEYS = ["machineName", "componentNameNormalized"]


@dataclass(frozen=True)
class RefreshParams:
    growth: float = 0.10
    # False discovery rate of the Benjamini–Hochberg correction over every KS test of one decision.
    ks_alpha: float = 0.01
    # Readings needed on each side (before / since the current version) of one group × essay test.
    ks_min_samples: int = 30
    # Effect size: the KS statistic D (largest gap between the two empirical CDFs) must reach this.
    ks_min_effect: float = 0.25
    # Essay groups tested for drift (flags and visual codes are levels, not distributions).
    ks_groups: tuple[str, ...] = ("wear", "contaminant", "physicochemical", "particle")
    max_age_days: int = 7


@dataclass
class RefreshDecision:
    refresh: bool
    reasons: list[str]
    details: dict = field(default_factory=dict)

    def summary(self) -> str:
        if self.refresh:
            return "recomputed: " + ", ".join(self.reasons)
        return "kept the current limits: no trigger held (" + "; ".join(self.reasons) + ")"


def samples_behind(limits: pd.DataFrame) -> int:
    """How many samples the current limits were computed on (largest group count per group)."""
    if limits.empty:
        return 0
    return int(limits.groupby(["machine", "component"])["sample_count"].max().sum())


def limits_age(refreshed_at, now, max_age_days: int) -> tuple[bool, dict]:
    """The age trigger: ``(too_old, details)``; ``refreshed_at`` None means unknown, hence too old."""
    now = pd.Timestamp(now)
    now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
    if refreshed_at is None or refreshed_at == "":
        return True, {"limits_refreshed_at": None, "limits_age_days": None}
    at = pd.Timestamp(refreshed_at)
    at = at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")
    days = int((now.normalize() - at.normalize()).days)
    return days >= max_age_days, {"limits_refreshed_at": at.isoformat(), "limits_age_days": days}


def decide_refresh(
    silver: pd.DataFrame,
    current: pd.DataFrame | None,
    essays_by_group: dict[str, list[str]],
    params: RefreshParams | None = None,
    *,
    force: bool = False,
    as_of=None,
    refreshed_at=None,
) -> RefreshDecision:
    """Decide whether to recompute the limits of one client (``current``: its published limits).

    ``as_of`` (the clock, UTC) turns on the age trigger; ``refreshed_at`` is when ``current`` was computed.
    """
    params = params or RefreshParams()
    if force:
        return RefreshDecision(True, ["forced"])
    if current is None or current.empty:
        return RefreshDecision(True, ["no_current_limits"])
    reasons: list[str] = []
    details: dict = {}
    have = set(map(tuple, current[["machine", "component"]].drop_duplicates().to_numpy()))
    now = set(map(tuple, silver[["machineName", "componentNameNormalized"]].drop_duplicates().to_numpy()))
    new_pairs = sorted(now - have)
    if new_pairs:
        reasons.append("new_machine_component")
        details["new_machine_components"] = [f"{m}/{c}" for m, c in new_pairs[:20]]
    before, after = samples_behind(current), len(silver)
    details["samples_at_version"], details["samples_now"] = before, after
    if before and (after - before) / before > params.growth:
        reasons.append("sample_growth")
        details["growth"] = round((after - before) / before, 4)
    cutoff = pd.to_datetime(current["computed_at"]).max()
    essays = [e for g in params.ks_groups for e in essays_by_group.get(g, []) if e in silver]
    # Only the columns the tests read (the split copies what it keeps).
    narrow = silver[[*DRIFT_KEYS, *essays]]
    newer = (silver["sampleDate"] > cutoff).to_numpy(bool)
    older = (silver["sampleDate"] <= cutoff).to_numpy(bool)
    tests = drift_tests(
        narrow[older],
        narrow[newer],
        essays,
        params.ks_min_samples,
        params.ks_alpha,
        min_effect=params.ks_min_effect,
    )
    large = tests["ks"] >= params.ks_min_effect
    drifted = tests[tests["drift"] & large]
    if len(tests):
        details["drift_tests"] = int(len(tests))
        details["drift_large"] = int(large.sum())
        if large.any():  # else no p-value was computed: no test could drift
            details["drift_significant"] = int(tests["drift"].sum())
    if len(drifted):
        reasons.append("distribution_drift")
        details["drifted"] = [
            f"{r.machine}/{r.component}/{r.essay}: D={r.ks:.2f}, q={r.q:.2g}"
            for r in drifted.sort_values("q", kind="mergesort").head(20).itertuples()
        ]
        details["drifted_essays"] = sorted(set(drifted["essay"]))
    details["new_samples_since_version"] = int(newer.sum())
    if as_of is not None:
        too_old, age = limits_age(refreshed_at, as_of, params.max_age_days)
        details.update(age)
        if too_old:
            reasons.append("limits_age")
    if reasons:
        return RefreshDecision(True, reasons, details)
    why = [
        f"{len(new_pairs)} new machine/component",
        f"growth {(after - before) / max(before, 1):.1%} ≤ {params.growth:.0%}",
        "no group × essay drifted (KS, Benjamini–Hochberg, effect size)",
    ]
    if as_of is not None:
        why.append(f"age {details['limits_age_days']} d < {params.max_age_days} d")
    return RefreshDecision(False, why, details)


def bh_qvalues(pvalues: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values): reject where q <= alpha."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p, kind="mergesort")
    q = p[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(q[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(q, 1.0)
    return out


def drift_tests(
    old: pd.DataFrame,
    new: pd.DataFrame,
    essays: list[str],
    min_samples: int,
    alpha: float | None = None,
    *,
    min_effect: float | None = None,
) -> pd.DataFrame:
    """One two-sample KS test per machine × component × essay with ``min_samples`` readings on each
    side: columns machine, component, essay, n_old, n_new, ks (statistic D), p, q (BH-adjusted) and
    drift (q <= ``alpha``; the default is RefreshParams().ks_alpha).

    ``min_effect``: the decision's effect size. When no test reaches it, no test can count as drift
    whatever its p-value, so the exact p-values (milliseconds each, the cost of the decision) are
    not computed: p and q are NaN and drift is False. When one does, every p-value is computed (the
    correction ranks them all), so the drift column is what it is without ``min_effect``."""
    alpha = RefreshParams.ks_alpha if alpha is None else alpha
    records, samples = [], []
    if len(new) and len(old) and essays:
        # Positions per group (no frame per group) and the essays as one array per side.
        new_at = new.groupby(DRIFT_KEYS, sort=True, observed=True).indices
        old_at = old.groupby(DRIFT_KEYS, sort=True, observed=True).indices
        olds = old[essays].to_numpy(float, na_value=np.nan)
        news = new[essays].to_numpy(float, na_value=np.nan)
        tested = [k for k, at in new_at.items() if len(at) >= min_samples and not any(map(pd.isna, k))]
        for key in sorted(tested):
            a_at = old_at.get(key)
            if a_at is None or len(a_at) < min_samples:
                continue
            a, b = olds[a_at], news[new_at[key]]
            for j, essay in enumerate(essays):
                x, y = a[:, j], b[:, j]
                x, y = x[~np.isnan(x)], y[~np.isnan(y)]
                if len(x) < min_samples or len(y) < min_samples:
                    continue
                records.append((key[0], key[1], essay, len(x), len(y), ks_statistic(x, y)))
                samples.append((x, y))
    tests = pd.DataFrame(records, columns=["machine", "component", "essay", "n_old", "n_new", "ks"])
    if min_effect is None or (tests["ks"] >= min_effect).any():
        # scipy's figures, without importing scipy.stats; the statistic is the one computed above.
        tests["p"] = np.array([ks_2samp(x, y)[1] for x, y in samples], dtype=float)
        tests["q"] = bh_qvalues(tests["p"].to_numpy(float))
        tests["drift"] = tests["q"] <= alpha
    else:
        tests["p"] = tests["q"] = np.nan
        tests["drift"] = False
    return tests
