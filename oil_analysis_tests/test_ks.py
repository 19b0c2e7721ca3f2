"""The drift trigger's KS test gives scipy's figures to the last bit, without importing scipy.stats."""

import subprocess
import sys

import numpy as np
from scipy.stats import ks_2samp as scipy_ks_2samp

from oil_analysis.domain.ks import exact_ks_2samp, ks_2samp, ks_statistic


def test_exact_figures_equal_scipy_bit_for_bit():
    rng = np.random.default_rng(3)
    for t in range(600):
        n1, n2 = int(rng.integers(1, 400)), int(rng.integers(1, 120))
        if t % 7 == 0:
            n2 = n1  # the equal-size recursion
        x = np.round(rng.normal(0, 1, n1) * rng.integers(1, 20))  # rounded: many ties
        y = np.round(rng.normal(rng.random(), 1, n2) * rng.integers(1, 20))
        res = scipy_ks_2samp(x, y)
        assert exact_ks_2samp(x, y) == (float(res.statistic), float(res.pvalue))


def test_statistic_alone_equals_scipys_statistic():
    """The drift decision reads D first (the p-value only when some D is large enough): the same
    float as scipy's, on the exact method's lattice and above it (raw, asymptotic method)."""
    rng = np.random.default_rng(4)
    for _ in range(300):
        n1, n2 = int(rng.integers(1, 400)), int(rng.integers(1, 120))
        x = np.round(rng.normal(0, 1, n1) * rng.integers(1, 20))
        y = np.round(rng.normal(rng.random(), 1, n2) * rng.integers(1, 20))
        assert ks_statistic(x, y) == float(scipy_ks_2samp(x, y).statistic)
    x, y = rng.normal(0, 1, 12_000), rng.normal(0.2, 1, 50)
    assert ks_statistic(x, y) == float(scipy_ks_2samp(x, y).statistic)


def test_large_samples_are_left_to_scipy_with_the_same_answer():
    rng = np.random.default_rng(5)
    x, y = rng.normal(0, 1, 12_000), rng.normal(0.2, 1, 50)
    assert exact_ks_2samp(x, y) is None  # scipy's asymptotic method
    res = scipy_ks_2samp(x, y)
    assert ks_2samp(x, y) == (float(res.statistic), float(res.pvalue))


def test_drift_tests_do_not_import_scipy_stats():
    code = (
        "import sys, numpy as np, pandas as pd\n"
        "from oil_analysis.domain.refresh import drift_tests\n"
        "rng = np.random.default_rng(1)\n"
        "def frame(n, shift):\n"
        "    return pd.DataFrame({'machineName': 'm', 'componentNameNormalized': 'c',\n"
        "                         'Fe': rng.normal(shift, 1, n)})\n"
        "t = drift_tests(frame(300, 0), frame(40, 3), ['Fe'], 30, 0.01)\n"
        "assert len(t) == 1 and bool(t['drift'].iloc[0]), t\n"
        "assert 'scipy.stats' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
