"""The limits refresh decision: each trigger, the skip, and a forced refresh."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from oil_analysis.domain.refresh import (
    RefreshParams,
    bh_qvalues,
    decide_refresh,
    drift_tests,
    samples_behind,
)
from oil_analysis.pipeline.limits import refresh_params

GROUPS = {"wear": ["fe"], "contaminant": ["si"]}


def silver(
    n: int,
    start: str = "2024-01-01",
    fe_mean: float = 10.0,
    seed: int = 0,
    machine: str = "camion",
    component: str = "motor",
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "sampleDate": pd.date_range(start, periods=n, freq="D"),
            "machineName": machine,
            "componentNameNormalized": component,
            "fe": rng.normal(fe_mean, 2.0, n).round(),
            "si": rng.normal(8, 1, n).round(),
        }
    )


def limits_of(s: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "machine": ["camion"],
            "component": ["motor"],
            "sample_count": [len(s)],
            "computed_at": [s["sampleDate"].max()],
        }
    )


def test_no_current_limits_and_forced_always_refresh():
    s = silver(100)
    assert decide_refresh(s, None, GROUPS).reasons == ["no_current_limits"]
    d = decide_refresh(s, limits_of(s), GROUPS, force=True)
    assert d.refresh and d.reasons == ["forced"]


def test_skip_when_nothing_changed_records_why():
    s = silver(200)
    d = decide_refresh(s, limits_of(s), GROUPS)
    assert not d.refresh
    assert "no trigger held" in d.summary() and "growth 0.0%" in d.summary()


def test_new_machine_or_component_triggers():
    s = silver(200)
    grown = pd.concat([s, silver(3, "2025-01-01", component="transmision")])
    d = decide_refresh(grown, limits_of(s), GROUPS)
    assert d.refresh and d.reasons == ["new_machine_component"]
    assert d.details["new_machine_components"] == ["camion/transmision"]


@pytest.mark.parametrize(("extra", "expected"), [(20, False), (21, True)])
def test_sample_growth_over_ten_percent(extra, expected):
    s = silver(200)
    grown = pd.concat([s, silver(extra, "2024-07-20", seed=1)])
    d = decide_refresh(grown, limits_of(s), GROUPS, RefreshParams(ks_min_samples=10_000))
    assert d.refresh is expected
    assert ("sample_growth" in d.reasons) is expected


def test_distribution_drift_by_ks():
    s = silver(400)
    drifted = pd.concat([s, silver(60, "2025-03-01", fe_mean=25.0, seed=2)])
    params = RefreshParams(growth=10.0)  # growth alone would not trigger
    d = decide_refresh(drifted, limits_of(s), GROUPS, params)
    assert d.refresh and d.reasons == ["distribution_drift"]
    assert list(d.details["drifted_essays"]) == ["fe"]
    same = pd.concat([s, silver(60, "2025-03-01", seed=3)])
    assert not decide_refresh(same, limits_of(s), GROUPS, params).refresh


def test_ks_needs_minimum_sample_size():
    s = silver(400)
    few = pd.concat([s, silver(20, "2025-03-01", fe_mean=40.0, seed=4)])
    assert not decide_refresh(
        few, limits_of(s), GROUPS, RefreshParams(growth=10.0, ks_min_samples=50)
    ).refresh


def test_samples_behind_counts_each_group_once():
    lim = pd.DataFrame(
        {"machine": ["a", "a", "b"], "component": ["x", "x", "y"], "sample_count": [90, 100, 7]}
    )
    assert samples_behind(lim) == 107


# -- the age trigger (the clock is injected) ------------------------------------------------------

NOW = pd.Timestamp("2026-11-30 06:00:05", tz="UTC")  # a Monday, the weekly schedule's tick


@pytest.mark.parametrize(
    ("refreshed_at", "age", "expected"),
    [
        ("2026-11-24T06:00:40+00:00", 6, False),
        # Last Monday's run started 35 s later than this one: still a week, still refreshed.
        ("2026-11-23T06:00:40+00:00", 7, True),
        ("2026-11-01T00:00:00+00:00", 29, True),
        ("2026-11-30T05:59:00+00:00", 0, False),
    ],
)
def test_limits_older_than_the_max_age_are_recomputed(refreshed_at, age, expected):
    s = silver(200)
    d = decide_refresh(s, limits_of(s), GROUPS, as_of=NOW, refreshed_at=refreshed_at)
    assert d.refresh is expected and ("limits_age" in d.reasons) is expected
    assert d.details["limits_age_days"] == age
    if expected:
        assert d.summary() == "recomputed: limits_age"
    else:
        assert f"age {age} d < 7 d" in d.summary()


def test_max_age_is_configurable_and_unknown_age_counts_as_too_old(monkeypatch):
    s = silver(200)
    monkeypatch.setenv("OIL_LIMITS_MAX_AGE_DAYS", "30")
    params = refresh_params()
    assert params.max_age_days == 30
    d = decide_refresh(s, limits_of(s), GROUPS, params, as_of=NOW, refreshed_at="2026-11-01T00:00:00Z")
    assert not d.refresh and d.details["limits_age_days"] == 29
    # A pointer written before the rule has no refreshed_at: the age is unknown, so recompute once.
    d = decide_refresh(s, limits_of(s), GROUPS, params, as_of=NOW, refreshed_at=None)
    assert d.refresh and d.reasons == ["limits_age"] and d.details["limits_age_days"] is None
    # Without a clock (pure callers), the age is not a trigger.
    assert not decide_refresh(s, limits_of(s), GROUPS, params).refresh


def many_groups(n: int, start: str, seed: int, shift: dict | None = None) -> pd.DataFrame:
    """8 machine × component groups × 20 essays of skewed (lognormal) readings; ``shift`` multiplies
    the readings of {(component, essay): factor}."""
    rng = np.random.default_rng(seed)
    parts = []
    for g in range(8):
        frame = {
            "sampleDate": pd.date_range(start, periods=n, freq="D"),
            "machineName": "camion",
            "componentNameNormalized": f"comp{g}",
        }
        for e in range(20):
            factor = (shift or {}).get((f"comp{g}", f"e{e}"), 1.0)
            frame[f"e{e}"] = (rng.lognormal(2.0, 0.5, n) * factor).round(1)
        parts.append(pd.DataFrame(frame))
    return pd.concat(parts, ignore_index=True)


MANY = {"wear": [f"e{e}" for e in range(20)]}


def many_limits(s: pd.DataFrame) -> pd.DataFrame:
    pairs = s[["machineName", "componentNameNormalized"]].drop_duplicates()
    return pd.DataFrame(
        {
            "machine": pairs["machineName"].to_numpy(),
            "component": pairs["componentNameNormalized"].to_numpy(),
            "sample_count": len(s) // len(pairs),
            "computed_at": s["sampleDate"].max(),
        }
    )


def test_resample_from_the_same_distribution_is_not_drift_over_many_tests():
    """160 tests of re-samples: without a correction some p-values fall below 1 % by chance; the
    corrected trigger stays quiet on every seed."""
    params = RefreshParams(growth=10.0)
    uncorrected = 0
    for seed in range(10):
        s = many_groups(200, "2023-01-01", seed)
        same = pd.concat([s, many_groups(60, "2024-01-01", 100 + seed)], ignore_index=True)
        d = decide_refresh(same, many_limits(s), MANY, params)
        assert not d.refresh, d.details
        assert d.details["drift_tests"] == 160
        tests = drift_tests(s, same[same["sampleDate"] > s["sampleDate"].max()], MANY["wear"], 30)
        uncorrected += int((tests["p"] < 0.01).sum())
    assert uncorrected > 0  # the multiple-testing problem the correction solves is real here


def test_real_shift_in_one_group_and_essay_is_detected_and_named():
    s = many_groups(200, "2023-01-01", 1)
    shifted = many_groups(60, "2024-01-01", 2, shift={("comp3", "e7"): 1.6})
    d = decide_refresh(
        pd.concat([s, shifted], ignore_index=True), many_limits(s), MANY, RefreshParams(growth=10.0)
    )
    assert d.refresh and d.reasons == ["distribution_drift"]
    assert d.details["drifted_essays"] == ["e7"]
    assert d.details["drifted"][0].startswith("camion/comp3/e7: D=")


def test_significant_but_tiny_shift_is_not_drift():
    """With thousands of readings a 10 % shift is significant, but it is below the effect size."""
    s = many_groups(3000, "2010-01-01", 1).query("componentNameNormalized == 'comp0'")
    tiny = many_groups(3000, "2020-01-01", 2, shift={("comp0", "e0"): 1.10}).query(
        "componentNameNormalized == 'comp0'"
    )
    both = pd.concat([s, tiny], ignore_index=True)
    params = RefreshParams(growth=10.0)
    tests = drift_tests(s, tiny, MANY["wear"], 30)
    e0 = tests.set_index("essay").loc["e0"]
    assert e0["drift"] and e0["ks"] < params.ks_min_effect
    assert not decide_refresh(both, many_limits(s), MANY, params).refresh


def test_p_values_are_computed_only_when_some_test_is_large_enough():
    """No test reaching the effect size: no test can drift, the exact p-values are skipped (NaN)
    and the decision is the same; one large test: every p-value, equal to those without the option."""
    s = many_groups(200, "2023-01-01", 1)
    same = many_groups(60, "2024-01-01", 2)
    shifted = many_groups(60, "2024-01-01", 2, shift={("comp3", "e7"): 1.6})
    for new, drifts in ((same, False), (shifted, True)):
        every = drift_tests(s, new, MANY["wear"], 30)
        lazy = drift_tests(s, new, MANY["wear"], 30, min_effect=0.25)
        pd.testing.assert_frame_equal(
            every[["machine", "component", "essay", "ks"]], lazy[["machine", "component", "essay", "ks"]]
        )
        if drifts:
            pd.testing.assert_frame_equal(every, lazy)
        else:
            assert not (every["ks"] >= 0.25).any() and lazy["p"].isna().all() and not lazy["drift"].any()
        assert bool((lazy["drift"] & (lazy["ks"] >= 0.25)).any()) == drifts
        d = decide_refresh(
            pd.concat([s, new], ignore_index=True), many_limits(s), MANY, RefreshParams(growth=10.0)
        )
        assert d.refresh == drifts and d.details["drift_tests"] == len(every)
        assert ("drift_significant" in d.details) == drifts


def test_bh_qvalues_match_the_step_up_rule():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.2])
    q = bh_qvalues(p)
    # sorted p: 0.005 0.01 0.03 0.04 0.2 → p·m/rank: 0.025 0.025 0.05 0.05 0.2 (monotone from the top)
    np.testing.assert_allclose(q, [0.025, 0.05, 0.05, 0.025, 0.2])
