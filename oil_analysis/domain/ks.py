"""The two-sample Kolmogorov–Smirnov test of the limits' drift trigger, without scipy.stats.

``scipy.stats`` costs 1.5–3 s to import on this machine kind, more than every drift test of a
monthly update together. :func:`ks_2samp` computes what ``scipy.stats.ks_2samp(x, y)`` returns
(two-sided, ``method='auto'``) for the samples the trigger tests: the statistic, and its exact
p-value for samples of at most 10,000 readings — the same lattice-path recursions as scipy 1.17
(Hodges; Viehmann's recursion for 1 − p), in the same floating-point operations, so the figures are
equal to the last bit (``oil_analysis_tests/test_ks.py`` compares them with scipy's).

The recursions run in Python: cheap for the trigger's usual samples (hundreds of old readings
against a few dozen new ones, ~1–10 ms), slow for large ones. So scipy itself is called where it
is the faster way to the same figures — samples with ``n1 × n2`` over ``MAX_NATIVE_WORK``, or
scipy.stats already imported — and where scipy would leave the exact method (more than 10,000
readings, or a recursion that overflows).
"""

from __future__ import annotations

import math
import sys

import numpy as np

MAX_EXACT_N = 10_000  # scipy's MAX_AUTO_N: 'auto' is exact up to this sample size
MAX_NATIVE_WORK = 100_000  # n1 × n2 bound of the Python recursions (≤ ~0.1 s per test)


def _prob_outside_square(n: int, h: int) -> float:
    """P(D_{n,n} >= h/n) (scipy's ``_compute_prob_outside_square``)."""
    p = 0.0
    k = int(np.floor(n / h))
    while k >= 0:
        p1 = 1.0
        for j in range(h):
            p1 = (n - k * h - j) * p1 / (n + k * h + j + 1)
        p = p1 * (1.0 - p)
        k -= 1
    return 2 * p


def _outer_prob_inside(m: int, n: int, g: int, h: int) -> float:
    """1 − the share of lattice paths staying strictly inside |x/m − y/n| < h / lcm(m, n)
    (scipy's ``_compute_outer_prob_inside_method``)."""
    if m < n:
        m, n = n, m
    mg, ng = m // g, n // g
    minj, maxj = 0, min(int(np.ceil(h / mg)), n + 1)
    curlen = maxj - minj
    a = [1.0] * min(2 * maxj + 2, n + 1)
    a[minj:maxj] = [0.0] * (maxj - minj)
    for i in range(1, m + 1):
        lastminj, lastlen = minj, curlen
        minj = min(max(int(np.floor((ng * i - h) / mg)) + 1, 0), n)
        maxj = min(int(np.ceil((ng * i + h) / mg)), n + 1)
        if maxj <= minj:
            return 1.0
        val = 0.0 if minj == 0 else 1.0
        shift = minj - lastminj
        for jj in range(maxj - minj):
            j = jj + minj
            val = (a[jj + shift] * i + val * j) / (i + j)
            a[jj] = val
        curlen = maxj - minj
        if lastlen > curlen:
            end = min(lastlen, len(a))  # a numpy slice assignment stops at the end of the array
            a[curlen:end] = [1.0] * (end - curlen)
    return a[maxj - minj - 1]


def _statistic(data1: np.ndarray, data2: np.ndarray) -> float:
    """scipy's raw two-sided statistic of two sorted samples: the largest gap between their ECDFs."""
    n1, n2 = len(data1), len(data2)
    data_all = np.concatenate([data1, data2])
    cddiffs = np.searchsorted(data1, data_all, side="right") / n1 - (
        np.searchsorted(data2, data_all, side="right") / n2
    )
    min_s = np.clip(-cddiffs[np.argmin(cddiffs)], 0, 1)
    max_s = cddiffs[np.argmax(cddiffs)]
    return min_s if min_s > max_s else max_s


def ks_statistic(x: np.ndarray, y: np.ndarray) -> float:
    """The statistic D of :func:`ks_2samp` (the same float), without its p-value: on the lattice of
    ``1 / lcm(n1, n2)`` up to ``MAX_EXACT_N`` readings as scipy's exact method gives it, raw above.
    Microseconds where the exact p-value can take milliseconds."""
    data1, data2 = np.sort(x), np.sort(y)
    n1, n2 = len(data1), len(data2)
    if min(n1, n2) == 0:
        raise ValueError("ks_2samp needs two non-empty samples")
    d = _statistic(data1, data2)
    if max(n1, n2) > MAX_EXACT_N:
        return float(d)
    lcm = (n1 // math.gcd(n1, n2)) * n2
    return float(int(np.round(d * lcm)) * 1.0 / lcm)


def exact_ks_2samp(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """scipy's exact two-sided ``(statistic, pvalue)``, computed here; None where scipy would not
    use the exact method (more than ``MAX_EXACT_N`` readings, or the recursion overflows)."""
    data1, data2 = np.sort(x), np.sort(y)
    n1, n2 = len(data1), len(data2)
    if min(n1, n2) == 0:
        raise ValueError("ks_2samp needs two non-empty samples")
    if max(n1, n2) > MAX_EXACT_N:
        return None
    d = _statistic(data1, data2)
    g = math.gcd(n1, n2)
    lcm = (n1 // g) * n2
    h = int(np.round(d * lcm))
    d = h * 1.0 / lcm
    if h == 0:
        return float(d), 1.0
    p = _prob_outside_square(n1, h) if n1 == n2 else _outer_prob_inside(n1, n2, g, h)
    if not 0 <= p <= 1:
        return None
    return float(d), float(np.clip(p, 0, 1))


def ks_2samp(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(statistic, pvalue)`` of scipy's two-sided two-sample KS test of ``x`` and ``y`` (no NaN):
    computed here for small samples while scipy.stats is not imported, by scipy otherwise."""
    if len(x) * len(y) <= MAX_NATIVE_WORK and "scipy.stats" not in sys.modules:
        exact = exact_ks_2samp(x, y)
        if exact is not None:
            return exact
    from scipy.stats import ks_2samp as scipy_ks_2samp

    res = scipy_ks_2samp(x, y)
    return float(res.statistic), float(res.pvalue)
