"""The vectorized per-group Spearman of the oil-hour limits agrees with pandas."""

import numpy as np
import pandas as pd

from oil_analysis.domain.rankcorr import (
    group_average_ranks,
    spearman_by_group,
    spearman_by_group_exact,
)


def test_ranks_are_pandas_average_ranks_bit_for_bit():
    rng = np.random.default_rng(7)
    for _ in range(100):
        n = int(rng.integers(1, 300))
        g = rng.integers(0, int(rng.integers(1, 9)), n)
        v = rng.integers(0, int(rng.integers(1, 20)), n).astype(float)  # many ties
        expected = pd.DataFrame({"g": g, "v": v}).groupby("g")["v"].rank().to_numpy()
        assert np.array_equal(group_average_ranks(g, v), expected)


def test_rho_matches_pandas_groupby_corr_including_degenerate_groups():
    rng = np.random.default_rng(11)
    for _ in range(100):
        n, k = int(rng.integers(1, 300)), int(rng.integers(1, 9))
        g = rng.integers(0, k, n)
        x = rng.integers(0, int(rng.integers(1, 25)), n).astype(float)
        y = np.round(rng.random(n) * 40)
        fast = spearman_by_group(g, x, y, k)
        exact = spearman_by_group_exact(g, x, y).reindex(range(k)).to_numpy()
        # NaN where pandas gives NaN (one reading, constant ranks, no reading), else equal to 1e-12.
        assert np.array_equal(np.isnan(fast), np.isnan(exact))
        assert np.allclose(fast, exact, rtol=0, atol=1e-12, equal_nan=True)


def test_constant_and_single_reading_groups_have_no_rho():
    g = np.array([0, 0, 0, 1, 2, 2])
    x = np.array([1.0, 1.0, 1.0, 5.0, 1.0, 2.0])
    y = np.array([1.0, 2.0, 3.0, 4.0, 1.0, 2.0])
    rho = spearman_by_group(g, x, y, 4)
    assert np.isnan(rho[0]) and np.isnan(rho[1]) and np.isnan(rho[3])
    assert rho[2] == 1.0
