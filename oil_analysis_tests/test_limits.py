"""Stewart limits: percentiles against hand-computed values on small frames."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from oil_analysis.domain.catalog import load_catalog
from oil_analysis.domain.limits import (
    LIMIT_COLUMNS,
    REFERENCE_V2_LIMITS,
    LimitParams,
    compute_limits,
    limits_to_nested,
    limits_version,
)

CATALOG = load_catalog()


def silver(values: dict[str, list], component: str = "motor", unit: str = "T_01", **extra) -> pd.DataFrame:
    """A one-group silver frame: one sample per position, chained as previous samples."""
    n = len(next(iter(values.values())))
    numbers = [f"{unit}-{component}-{i:03d}" for i in range(n)]
    frame = pd.DataFrame(
        {
            "client": "CDA",
            "sampleNumber": numbers,
            "sampleDate": pd.date_range("2024-01-01", periods=n, freq="7D"),
            "unitId": unit,
            "machineName": "camion",
            "componentName": component,
            "componentNameNormalized": component,
            "oilHourRange": "LT_1000",
            "previousSampleNumber": [None, *numbers[:-1]],
            "daysSincePrevious": [np.nan] + [7.0] * (n - 1),
            **{k: np.asarray(v, dtype=float) for k, v in values.items()},
        }
    )
    for k, v in extra.items():
        frame[k] = v
    return frame


def row(limits: pd.DataFrame, essay: str, direction: str = "upper", kind: str = "level", **keys) -> pd.Series:
    sel = limits[(limits["essay"] == essay) & (limits["direction"] == direction) & (limits["kind"] == kind)]
    for k, v in keys.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, sel
    return sel.iloc[0]


def triple(r: pd.Series) -> tuple[float, float, float]:
    return float(r["marginal"]), float(r["condemning"]), float(r["critical"])


def test_upper_percentiles_hand_computed_rounded_up_and_forced_apart():
    # 1..20, linear interpolation: P90 = 18.1 -> 19, P95 = 19.05 -> 20, P98 = 19.62 -> 20 -> forced 21.
    limits = compute_limits(silver({"fe": list(range(1, 21))}), CATALOG)
    r = row(limits, "fe")
    assert triple(r) == (19.0, 20.0, 21.0)
    assert r["sample_count"] == 20
    assert r["limit_method"] == "percentile" and r["group"] == "wear" and r["comparison"] == "strict"
    assert list(limits.columns) == LIMIT_COLUMNS


def test_lower_percentiles_hand_computed_rounded_down_to_resolution():
    # TBN (direction lower, unit mg KOH/g -> 2 decimals): P10 = 2.9, P5 = 1.95, P2 = 1.38.
    limits = compute_limits(silver({"tbn": list(range(1, 21))}), CATALOG)
    r = row(limits, "tbn", "lower")
    assert triple(r) == pytest.approx((2.9, 1.95, 1.38))
    assert not (limits["essay"].eq("tbn") & limits["direction"].eq("upper")).any()


def test_direction_both_yields_an_upper_and_a_lower_row():
    limits = compute_limits(silver({"zn": list(range(1001, 1021))}), CATALOG)
    up, low = row(limits, "zn", "upper"), row(limits, "zn", "lower")
    assert up["marginal"] < up["condemning"] < up["critical"]
    assert low["marginal"] > low["condemning"] > low["critical"]
    # P10 of 1001..1020 = 1002.9 -> floor 1002; P5 = 1001.95 -> 1001; P2 = 1001.38 -> 1001 -> forced 1000.
    assert triple(low) == (1002.0, 1001.0, 1000.0)


def test_min_samples_and_min_distinct_rules():
    assert compute_limits(silver({"fe": list(range(1, 20))}), CATALOG).query("essay == 'fe'").empty  # 19 < 20
    few_distinct = [1, 2, 3] * 7  # 21 samples, 3 distinct values < 4
    assert compute_limits(silver({"fe": few_distinct}), CATALOG).query("essay == 'fe'").empty
    ok = compute_limits(silver({"fe": [1, 2, 3] * 7}), CATALOG, LimitParams(min_distinct=3))
    assert not ok.query("essay == 'fe'").empty


def test_zeros_are_kept_by_default_and_excluded_on_request():
    values = [0] * 15 + [1, 2, 3, 4, 5]
    # Kept: P90 = 3.1 -> 4, P95 = 4.05 -> 5, P98 = 4.62 -> 5 -> forced 6.
    kept = compute_limits(silver({"cr": values}), CATALOG)
    assert triple(row(kept, "cr")) == (4.0, 5.0, 6.0)
    # Excluded (5 non-zero readings): P90 = 4.6 -> 5, P95 = 4.8 -> 5 -> 6, P98 = 4.92 -> 5 -> 7.
    excl = compute_limits(silver({"cr": values}), CATALOG, LimitParams(exclude_zeros=True, min_samples=5))
    assert triple(row(excl, "cr")) == (5.0, 6.0, 7.0)
    assert row(excl, "cr")["sample_count"] == 5
    # Excluding zeros leaves 5 readings: below the default minimum of 20.
    assert (
        compute_limits(silver({"cr": values}), CATALOG, LimitParams(exclude_zeros=True))
        .query("essay == 'cr'")
        .empty
    )


def test_monotone_forcing_when_percentiles_coincide():
    upper = compute_limits(silver({"fe": [1, 2, 3] + [5] * 17}), CATALOG)
    assert triple(row(upper, "fe")) == (5.0, 6.0, 7.0)
    lower = compute_limits(silver({"tbn": [5] * 17 + [7, 8, 9]}), CATALOG)
    assert triple(row(lower, "tbn", "lower")) == pytest.approx((5.0, 4.99, 4.98))


def test_strict_rule_keeps_history_beyond_limits_at_most_10_5_2_percent():
    rng = np.random.default_rng(7)
    values = np.where(rng.random(400) < 0.6, 0, rng.poisson(3, 400))  # sparse integer essay with ties
    limits = compute_limits(silver({"pb": values}), CATALOG)
    m, c, k = triple(row(limits, "pb"))
    assert (values > m).mean() <= 0.10 and (values > c).mean() <= 0.05 and (values > k).mean() <= 0.02


def test_relative_band_for_viscosity_around_the_group_median():
    values = [9.5, 10.5] * 10 + [10.0]  # median 10
    limits = compute_limits(silver({"visc_100c": values}), CATALOG)
    up, low = row(limits, "visc_100c", "upper"), row(limits, "visc_100c", "lower")
    assert triple(up) == pytest.approx((11.0, 12.0, 13.0))
    assert triple(low) == pytest.approx((9.0, 8.0, 7.0))
    assert up["limit_method"] == "relative" and up["baseline"] == pytest.approx(10.0)


def test_flag_and_code_essays_get_fixed_levels_in_every_group():
    frame = pd.concat(
        [
            silver({"water": [0] * 5, "debris_magnetic": [np.nan] * 5, "fe": [1] * 5}, component="motor"),
            silver({"water": [0] * 5, "debris_magnetic": [1] * 5, "fe": [1] * 5}, component="transmision"),
        ],
        ignore_index=True,
    )
    limits = compute_limits(frame, CATALOG)
    for comp in ("motor", "transmision"):
        w = row(limits, "water", component=comp)
        assert triple(w) == (0.0, 1.0, 2.0) and w["limit_method"] == "flag"
        d = row(limits, "debris_magnetic", component=comp)
        assert triple(d) == (0.0, 1.0, 2.0) and d["limit_method"] == "code"
    assert row(limits, "debris_magnetic", component="motor")["sample_count"] == 0


def test_trend_limits_are_percentiles_of_increases_since_previous_sample():
    # Increments 1..25 between consecutive samples: P95 = 23.8 -> 24, P98 = 24.52 -> 25, P99.5 = 24.88 -> 26.
    values = np.concatenate([[100.0], 100 + np.cumsum(np.arange(1, 26))])
    limits = compute_limits(silver({"fe": values}), CATALOG)
    t = row(limits, "fe", kind="trend")
    assert triple(t) == (24.0, 25.0, 26.0)
    assert t["sample_count"] == 25
    # A gap longer than trend_max_days breaks the chain.
    gap = silver({"fe": values})
    gap["daysSincePrevious"] = 200.0
    assert compute_limits(gap, CATALOG).query("kind == 'trend'").empty


def test_oil_hour_strata_add_rows_per_range_and_keep_all():
    frame = silver({"fe": list(range(1, 41))})
    frame["oilHourRange"] = ["LT_1000"] * 20 + ["GE_1000"] * 20
    limits = compute_limits(frame, CATALOG, LimitParams(oil_hour_strata=True, trend_groups=()))
    fe = limits[(limits["essay"] == "fe")]
    assert set(fe["stratum"]) == {"ALL", "LT_1000", "GE_1000"}
    assert triple(row(fe, "fe", stratum="LT_1000")) == (19.0, 20.0, 21.0)
    assert triple(row(fe, "fe", stratum="GE_1000")) == (39.0, 40.0, 41.0)
    assert set(compute_limits(frame, CATALOG)["stratum"]) == {"ALL"}


def test_groups_are_client_machine_component():
    a = silver({"fe": list(range(1, 21))}, component="motor")
    b = silver({"fe": list(range(101, 121))}, component="transmision")
    c = silver({"fe": list(range(1, 21))}, component="motor").assign(client="EMIN")
    limits = compute_limits(pd.concat([a, b, c], ignore_index=True), CATALOG)
    assert triple(row(limits, "fe", component="transmision")) == (119.0, 120.0, 121.0)
    assert len(limits[(limits["essay"] == "fe") & (limits["kind"] == "level")]) == 3
    only = compute_limits(pd.concat([a, c], ignore_index=True), CATALOG, client="EMIN")
    assert set(only["client"]) == {"EMIN"}


def test_reference_v2_rules():
    # v2.0: zeros removed, at least 4 distinct values (zeros included) and 3 non-zero readings,
    # rounded up, forced +1, inclusive comparison, no lower limits.
    limits = compute_limits(
        silver({"cr": [0] * 15 + [1, 2, 3, 4, 5], "zn": list(range(1, 21))}), CATALOG, REFERENCE_V2_LIMITS
    )
    assert triple(row(limits, "cr")) == (5.0, 6.0, 7.0)
    assert set(limits["direction"]) == {"upper"} and set(limits["comparison"]) == {"inclusive"}
    assert set(limits["essay"]) == {"cr", "zn"}


def test_limits_version_is_deterministic_and_sensitive():
    frame = silver({"fe": list(range(1, 21)), "cu": list(range(20))})
    v = limits_version(frame, LimitParams(), CATALOG)
    shuffled = frame.sample(frac=1.0, random_state=3)
    assert limits_version(shuffled, LimitParams(), CATALOG) == v
    assert limits_version(frame.copy(), LimitParams(), CATALOG) == v
    assert limits_version(frame, LimitParams(min_samples=10), CATALOG) != v
    assert limits_version(frame, dataclasses.replace(LimitParams(), comparison="inclusive"), CATALOG) != v
    changed = frame.copy()
    changed.loc[3, "fe"] = 99.0
    assert limits_version(changed, LimitParams(), CATALOG) != v
    limits = compute_limits(frame, CATALOG)
    assert set(limits["version"]) == {v}


def test_limits_to_nested():
    fe_values = np.concatenate([[100.0], 100 + np.cumsum(np.arange(1, 26))])
    limits = compute_limits(silver({"fe": fe_values, "zn": list(range(1001, 1027))}), CATALOG)
    nested = limits_to_nested(limits)
    fe = nested["CDA"]["camion"]["motor"]["fe"]
    assert fe["upper"]["ALL"]["sample_count"] == 26
    assert fe["trend_upper"]["ALL"]["marginal"] == 24.0
    assert set(nested["CDA"]["camion"]["motor"]["zn"]) == {"upper", "lower"}


def test_from_dict_and_bad_comparison():
    p = LimitParams.from_dict(
        {"upper_percentiles": [80, 90, 95], "relative_bands": {"visc_100c": [0.1, 0.2, 0.3]}}
    )
    assert p.upper_percentiles == (80, 90, 95) and p.relative_bands == (("visc_100c", (0.1, 0.2, 0.3)),)
    with pytest.raises(ValueError):
        LimitParams.from_dict({"nope": 1})
    with pytest.raises(ValueError):
        compute_limits(silver({"fe": list(range(1, 21))}), CATALOG, LimitParams(comparison="loose"))


def _aging() -> pd.DataFrame:
    """81 motor samples at 10..810 oil hours; Fe accumulates with the hours, Cu does not."""
    i = np.arange(81)
    return silver({"fe": i + 1.0, "cu": (i * 37) % 81 + 0.0}, oilMeter=10.0 * (i + 1))


def test_oil_age_limits_per_quartile_bin_for_essays_that_accumulate_with_oil_hours():
    limits = compute_limits(_aging(), CATALOG, LimitParams(trend_groups=()))
    hours = limits[limits["kind"] == "hours"]
    # Fe: rho = 1 -> one row per oil-hour quartile [0, 210) [210, 410) [410, 610) [610, 20000).
    assert set(hours["essay"]) == {"fe"}  # Cu is uncorrelated with the oil hours (rho ~ 0)
    assert list(hours["stratum"]) == ["OH:0-210", "OH:210-410", "OH:410-610", "OH:610-20000"]
    assert set(hours["direction"]) == {"upper"} and set(hours["limit_method"]) == {"percentile"}
    # First bin: Fe 1..20 -> P90 18.1 -> 19, P95 19.05 -> 20, P98 19.62 -> 20 forced to 21.
    assert triple(row(hours, "fe", kind="hours", stratum="OH:0-210")) == (19.0, 20.0, 21.0)
    assert list(hours["sample_count"]) == [20, 20, 20, 21]
    # The whole-history level row is still there.
    assert triple(row(limits, "fe", stratum="ALL")) == (73.0, 77.0, 80.0)


def test_oil_age_limits_ignore_implausible_meters_and_can_be_switched_off():
    base = compute_limits(_aging(), CATALOG, LimitParams(trend_groups=()))
    odd = _aging()
    extra = odd.iloc[:6].copy()
    extra["sampleNumber"] = [f"X{i}" for i in range(6)]
    extra["oilMeter"] = [0.0, np.nan, 20000.0, 50000.0, -5.0, 1e6]  # unknown or implausible meters
    extra["fe"] = 999.0
    odd = pd.concat([odd, extra], ignore_index=True)
    hours = compute_limits(odd, CATALOG, LimitParams(trend_groups=())).query("kind == 'hours'")
    cols = ["stratum", "essay", "marginal", "condemning", "critical", "sample_count"]
    assert (
        hours[cols].reset_index(drop=True).equals(base.query("kind == 'hours'")[cols].reset_index(drop=True))
    )
    assert compute_limits(_aging(), CATALOG, LimitParams(hours_bins=0)).query("kind == 'hours'").empty
    # A correlation threshold above 1 keeps every essay on the whole-history limits only.
    assert (
        compute_limits(_aging(), CATALOG, LimitParams(hours_min_correlation=1.01))
        .query("kind == 'hours'")
        .empty
    )
    # Too few readings per bin (min_samples 20 x 4 bins): no oil-age rows.
    small = compute_limits(_aging().iloc[:60], CATALOG, LimitParams(trend_groups=()))
    assert small.query("kind == 'hours'").empty


def test_oil_age_limits_change_the_version_and_nest_under_hours_upper():
    frame = _aging()
    v = limits_version(frame, LimitParams(), CATALOG)
    moved = frame.copy()
    moved.loc[5, "oilMeter"] = 777.0
    assert limits_version(moved, LimitParams(), CATALOG) != v
    assert limits_version(frame, LimitParams(hours_bins=3), CATALOG) != v
    nested = limits_to_nested(compute_limits(frame, CATALOG))
    assert set(nested["CDA"]["camion"]["motor"]["fe"]["hours_upper"]) == {
        "OH:0-210",
        "OH:210-410",
        "OH:410-610",
        "OH:610-20000",
    }
