"""Spearman correlation per group, vectorized (no pandas groupby per essay).

The oil-hour limits (:func:`oil_analysis.domain.limits._hours_rows`) need, for every essay, the
Spearman rho of its readings with the oil hours within each group. pandas' ``groupby().rank()`` and
``groupby().corr()`` (an apply per group) cost ~25 ms per essay; here one sort per essay gives the
average ranks, and ``bincount`` sums give the Pearson correlation of the ranks.

The ranks are exactly pandas' (average of tied positions, 1-based within the group). The Pearson
step sums in another order than pandas' streaming (Welford) loop, so rho can differ in the last
bits: callers that compare rho with a threshold re-check the few values within ``NEAR`` of it with
:func:`spearman_by_group_exact`, so every decision is the one pandas would take.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NEAR = 1e-9


def group_average_ranks(g: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties share the mean of their positions) of ``v`` within each ``g``."""
    n = len(v)
    if n == 0:
        return np.empty(0)
    order = np.lexsort((v, g))
    gs, vs = g[order], v[order]
    idx = np.arange(n)
    new_group = np.r_[True, gs[1:] != gs[:-1]]
    new_run = new_group | np.r_[True, vs[1:] != vs[:-1]]
    group_first = np.maximum.accumulate(np.where(new_group, idx, 0))
    run_first = idx[new_run]
    run_last = np.r_[run_first[1:], n] - 1
    run = np.cumsum(new_run) - 1
    # positions a..b within the group (0-based) share rank (a + b) / 2 + 1: exact in binary floats.
    rank_sorted = (run_first[run] + run_last[run] - 2 * group_first) / 2.0 + 1.0
    out = np.empty(n)
    out[order] = rank_sorted
    return out


def spearman_by_group(g: np.ndarray, x: np.ndarray, y: np.ndarray, n_groups: int) -> np.ndarray:
    """Spearman rho of ``x`` and ``y`` (no NaN) in each group code ``0..n_groups-1``; NaN where a
    group has fewer than two readings or a constant rank."""
    rx, ry = group_average_ranks(g, x), group_average_ranks(g, y)
    count = np.bincount(g, minlength=n_groups).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = np.bincount(g, rx, n_groups) / count
        my = np.bincount(g, ry, n_groups) / count
        dx, dy = rx - mx[g], ry - my[g]
        sxx = np.bincount(g, dx * dx, n_groups)
        syy = np.bincount(g, dy * dy, n_groups)
        sxy = np.bincount(g, dx * dy, n_groups)
        divisor = np.sqrt(sxx * syy)
        rho = np.where(divisor > 0, sxy / divisor, np.nan)
    rho[count < 2] = np.nan
    return rho


def spearman_by_group_exact(g: np.ndarray, x: np.ndarray, y: np.ndarray) -> pd.Series:
    """The same through pandas (``groupby().rank()`` and ``groupby().corr()``), indexed by group."""
    frame = pd.DataFrame({"g": g, "v": x, "h": y})
    frame["rv"] = frame.groupby("g")["v"].rank()
    frame["rh"] = frame.groupby("g")["h"].rank()
    return frame.groupby("g")[["rv", "rh"]].corr().xs("rv", level=1)["rh"]
