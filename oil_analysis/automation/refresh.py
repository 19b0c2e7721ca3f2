"""When are new Stewart limits worth it? The triggers of the limits refresh (pure, no dagster).

Limits are recomputed for a client only when one of these holds (else the current version stays):

* ``no_current_limits`` — nothing published yet;
* ``forced`` — an operator asked (run config / tag ``force_limits_refresh``);
* ``new_machine_component`` — silver has a machine type × component the current limits lack;
* ``sample_growth`` — silver grew by more than ``growth`` (10 %) since the current version;
* ``distribution_drift`` — for some essay, the samples newer than the current version differ from
  the ones it was computed on (scipy two-sample Kolmogorov–Smirnov, p < ``ks_alpha``), when both
  sides have at least ``ks_min_samples`` readings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pandas as pd


@dataclass(frozen=True)
class RefreshParams:
    growth: float = 0.10
    ks_alpha: float = 0.01
    ks_min_samples: int = 50
    # Essay groups tested for drift (flags and visual codes are levels, not distributions).
    ks_groups: tuple[str, ...] = ("wear", "contaminant", "physicochemical", "particle")

    @classmethod
    def from_env(cls) -> RefreshParams:
        return cls(
            growth=float(os.environ.get("OIL_LIMITS_GROWTH", cls.growth)),
            ks_alpha=float(os.environ.get("OIL_LIMITS_KS_ALPHA", cls.ks_alpha)),
            ks_min_samples=int(os.environ.get("OIL_LIMITS_KS_MIN_SAMPLES", cls.ks_min_samples)),
        )


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


def decide_refresh(
    silver: pd.DataFrame,
    current: pd.DataFrame | None,
    essays_by_group: dict[str, list[str]],
    params: RefreshParams | None = None,
    *,
    force: bool = False,
) -> RefreshDecision:
    """Decide whether to recompute the limits of one client (``current``: its published limits)."""
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
    old = silver[silver["sampleDate"] <= cutoff]
    new = silver[silver["sampleDate"] > cutoff]
    drifted = {}
    for group in params.ks_groups:
        for essay in essays_by_group.get(group, []):
            if essay not in silver:
                continue
            a, b = old[essay].dropna(), new[essay].dropna()
            if len(a) < params.ks_min_samples or len(b) < params.ks_min_samples:
                continue
            from scipy.stats import ks_2samp  # here, not at import: scipy.stats costs seconds

            p = float(ks_2samp(a.to_numpy(), b.to_numpy()).pvalue)
            if p < params.ks_alpha:
                drifted[essay] = p
    if drifted:
        reasons.append("distribution_drift")
        details["drifted_essays"] = {k: float(f"{v:.3g}") for k, v in sorted(drifted.items())}
    details["new_samples_since_version"] = int(len(new))
    if reasons:
        return RefreshDecision(True, reasons, details)
    why = [
        f"{len(new_pairs)} new machine/component",
        f"growth {(after - before) / max(before, 1):.1%} ≤ {params.growth:.0%}",
        "no essay drifted (KS)",
    ]
    return RefreshDecision(False, why, details)
