"""Classification: boundary values of every level and direction, each signal kind, score and status."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from oil_analysis.domain.catalog import load_catalog
from oil_analysis.domain.classify import (
    CLASSIFIED_COLUMNS,
    ClassificationParams,
    classify_reports,
    find_breaches,
)
from oil_analysis.domain.limits import LIMIT_COLUMNS, LimitParams, compute_limits

CATALOG = load_catalog()
BREACH_KEYS = {"essay", "group", "value", "limit", "level", "direction", "kind", "points"}


def limit(
    essay: str,
    marginal: float,
    condemning: float,
    critical: float,
    direction: str = "upper",
    kind: str = "level",
    component: str = "motor",
    stratum: str = "ALL",
    comparison: str = "strict",
) -> dict:
    return {
        "client": "CDA",
        "machine": "camion",
        "component": component,
        "stratum": stratum,
        "essay": essay,
        "group": CATALOG.group(essay),
        "limit_method": CATALOG.table.at[essay, "limit_method"],
        "kind": kind,
        "direction": direction,
        "marginal": marginal,
        "condemning": condemning,
        "critical": critical,
        "baseline": np.nan,
        "sample_count": 100,
        "comparison": comparison,
        "version": "limits-test",
        "computed_at": pd.Timestamp("2025-01-01"),
    }


def limits(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=LIMIT_COLUMNS)


def samples(component: str = "motor", unit: str = "T_01", chained: bool = False, **essays) -> pd.DataFrame:
    n = len(next(iter(essays.values())))
    numbers = [f"S{unit}{component[:3]}{i:04d}" for i in range(n)]
    return pd.DataFrame(
        {
            "client": "CDA",
            "sampleNumber": numbers,
            "sampleDate": pd.date_range("2024-01-01", periods=n, freq="7D"),
            "unitId": unit,
            "machineName": "camion",
            "componentName": component,
            "componentNameNormalized": component,
            "oilHourRange": "LT_1000",
            "previousSampleNumber": [None, *numbers[:-1]] if chained else [None] * n,
            "daysSincePrevious": ([np.nan] + [7.0] * (n - 1)) if chained else [np.nan] * n,
            **{k: np.asarray(v, dtype=float) for k, v in essays.items()},
        }
    )


def breaches(classified: pd.DataFrame) -> list[list[dict]]:
    return [json.loads(t) for t in classified["breached_essays"]]


def levels(classified: pd.DataFrame, essay: str) -> list[str | None]:
    out = []
    for bs in breaches(classified):
        hit = [b for b in bs if b["essay"] == essay and b["kind"] == "level"]
        out.append(hit[0]["level"] if hit else None)
    return out


def test_upper_boundaries_under_the_strict_rule():
    lim = limits(limit("fe", 10, 20, 30))
    s = samples(fe=[9, 10, 10.5, 20, 20.5, 30, 30.5, np.nan])
    c = classify_reports(s, lim, CATALOG)
    assert levels(c, "fe") == [
        None,
        None,
        "marginal",
        "marginal",
        "condemning",
        "condemning",
        "critical",
        None,
    ]
    assert c["severity_score"].tolist() == [0, 0, 1, 1, 3, 3, 6, 0]


def test_lower_boundaries_under_the_strict_rule():
    lim = limits(limit("tbn", 5, 4, 3, direction="lower"))
    c = classify_reports(samples(tbn=[5.01, 5, 4.99, 4, 3.99, 3, 2.99]), lim, CATALOG)
    assert levels(c, "tbn") == [None, None, "marginal", "marginal", "condemning", "condemning", "critical"]
    assert {b["direction"] for bs in breaches(c) for b in bs} == {"lower"}


def test_inclusive_rule_is_read_from_the_limits():
    lim = limits(
        limit("fe", 10, 20, 30, comparison="inclusive"),
        limit("tbn", 5, 4, 3, "lower", comparison="inclusive"),
    )
    c = classify_reports(samples(fe=[9.99, 10, 20, 30], tbn=[5.01, 5, 4, 3]), lim, CATALOG)
    assert levels(c, "fe") == [None, "marginal", "condemning", "critical"]
    assert levels(c, "tbn") == [None, "marginal", "condemning", "critical"]
    mixed = limits(limit("fe", 10, 20, 30), limit("tbn", 5, 4, 3, "lower", comparison="inclusive"))
    with pytest.raises(ValueError, match="mix"):
        classify_reports(samples(fe=[1.0], tbn=[1.0]), mixed, CATALOG)


def test_flags_are_graded_trace_positive_excessive():
    lim = compute_limits(samples(water=[0.0] * 4, fe=[1.0] * 4), CATALOG)
    c = classify_reports(samples(water=[0, 1, 2, 3]), lim, CATALOG)
    assert levels(c, "water") == [None, "marginal", "condemning", "critical"]
    # Flag weight 3: T = 1 x 3, P = 3 x 3, E = 6 x 3.
    assert c["severity_score"].tolist() == [0, 3, 9, 18]
    assert c["report_status"].tolist() == ["Normal", "Normal", "Alerta", "Anormal"]


def test_visual_magnetic_code_levels():
    lim = compute_limits(samples(debris_magnetic=[0.0] * 3, fe=[1.0] * 3), CATALOG)
    c = classify_reports(samples(debris_magnetic=[np.nan, 0, 1, 2, 3]), lim, CATALOG)
    assert levels(c, "debris_magnetic") == [None, None, "marginal", "condemning", "critical"]
    assert c["severity_score"].tolist() == [0, 0, 1, 3, 6]
    assert breaches(c)[2][0]["group"] == "visual"


def test_lower_limit_of_viscosity_from_the_relative_band():
    history = samples(visc_100c=[9.5, 10.5] * 10 + [10.0])
    lim = compute_limits(history, CATALOG)
    c = classify_reports(samples(visc_100c=[10.0, 9.0, 8.99, 7.5, 6.99, 13.01]), lim, CATALOG)
    got = [[(b["level"], b["direction"]) for b in bs] for bs in breaches(c)]
    assert got == [
        [],
        [],
        [("marginal", "lower")],
        [("condemning", "lower")],
        [("critical", "lower")],
        [("critical", "upper")],
    ]


def test_trend_rule_against_the_previous_sample():
    lim = limits(limit("fe", 1000, 2000, 3000), limit("fe", 5, 10, 20, kind="trend"))
    s = samples(chained=True, fe=[10, 14, 30, 61, 40])  # changes: +4, +16, +31, -21
    c = classify_reports(s, lim, CATALOG)
    trend = [[b for b in bs if b["kind"] == "trend"] for bs in breaches(c)]
    assert [t[0]["level"] if t else None for t in trend] == [None, None, "condemning", "critical", None]
    assert trend[3][0]["value"] == 31 and trend[3][0]["limit"] == 20
    assert trend[3][0]["points"] == 6 * 0.5  # trend_weight 0.5
    # Too long since the previous sample: no trend.
    s.loc[3, "daysSincePrevious"] = 365
    c2 = classify_reports(s, lim, CATALOG)
    assert not [b for b in json.loads(c2["breached_essays"][3]) if b["kind"] == "trend"]
    # trend_weight 0 switches trends off.
    c3 = classify_reports(s, lim, CATALOG, ClassificationParams(trend_weight=0))
    assert c3["severity_score"].sum() == 0


def test_score_is_the_sum_of_the_breach_points_and_fields_are_complete():
    rng = np.random.default_rng(1)
    n = 300
    oil_hours = rng.uniform(10, 1000, n).round()
    history = samples(
        chained=True,
        fe=rng.poisson(5 + oil_hours / 25),
        cu=rng.poisson(5, n),
        si=rng.poisson(8, n),
        zn=rng.normal(1000, 50, n).round(),
        tbn=rng.normal(9, 1, n).round(1),
        water=rng.choice([0, 0, 0, 1, 2, 3], n),
        pq_index=rng.poisson(30, n),
        visc_100c=rng.normal(14, 1, n).round(2),
        debris_magnetic=rng.choice([0, 1, 2, np.nan], n),
    )
    history["oilMeter"] = oil_hours
    lim = compute_limits(history, CATALOG)
    c = classify_reports(history, lim, CATALOG)
    assert (c["severity_score"] > 0).sum() > 50
    assert {b["kind"] for bs in breaches(c) for b in bs} == {"level", "trend", "hours"}
    for score, broken, bs in zip(c["severity_score"], c["essays_broken"], breaches(c), strict=True):
        assert score == pytest.approx(sum(b["points"] for b in bs))
        assert broken == sum(1 for b in bs if b["points"] > 0)
        for b in bs:
            assert set(b) == BREACH_KEYS
            assert b["level"] in ("marginal", "condemning", "critical") and b["kind"] in (
                "level",
                "trend",
                "hours",
            )


def test_additives_are_recorded_with_zero_points():
    lim = limits(limit("zn", 1100, 1200, 1300), limit("zn", 900, 800, 700, "lower"))
    c = classify_reports(samples(zn=[1500, 500]), lim, CATALOG)
    assert c["severity_score"].tolist() == [0, 0]
    assert [bs[0]["level"] for bs in breaches(c)] == ["critical", "critical"]
    assert c["essays_broken"].tolist() == [0, 0]


def test_secondary_breaches_of_a_group_count_half():
    lim = limits(limit("fe", 10, 20, 30), limit("cu", 10, 20, 30), limit("pb", 10, 20, 30))
    c = classify_reports(samples(fe=[31], cu=[21], pb=[11]), lim, CATALOG)
    pts = {b["essay"]: b["points"] for b in breaches(c)[0]}
    assert pts == {"fe": 6.0, "cu": 1.5, "pb": 0.5}
    assert c["severity_score"][0] == 8.0
    assert c["wear_essays_broken"][0] == 3
    full = classify_reports(
        samples(fe=[31], cu=[21], pb=[11]), lim, CATALOG, ClassificationParams(secondary_factor=1)
    )
    assert full["severity_score"][0] == 10.0


def test_status_cut_offs():
    lim = limits(limit("fe", 10, 20, 30), limit("visc_100c", 15, 16, 17), limit("water", 0, 1, 2))
    s = samples(fe=[21, 31, 21, 31, 31, 0], visc_100c=[0, 0, 15.5, 16.5, 17.5, 0], water=[0, 0, 0, 0, 0, 1])
    c = classify_reports(s, lim, CATALOG)
    # condemning 3 | critical 6 | 3 + marginal 1 = 4 | 6 + 3 = 9 | 6 + 6 = 12 | trace water 3
    assert c["severity_score"].tolist() == [3, 6, 4, 9, 12, 3]
    assert c["report_status"].tolist() == ["Normal", "Alerta", "Alerta", "Alerta", "Anormal", "Normal"]
    tight = ClassificationParams(alerta_cut=3, anormal_cut=9)
    assert classify_reports(s, lim, CATALOG, tight)["report_status"].tolist() == [
        "Alerta",
        "Alerta",
        "Alerta",
        "Anormal",
        "Anormal",
        "Alerta",
    ]
    with pytest.raises(ValueError):
        classify_reports(s, lim, CATALOG, ClassificationParams(alerta_cut=11))


def test_output_keeps_rows_order_and_columns_and_handles_groups_without_limits():
    lim = limits(limit("fe", 10, 20, 30))
    s = pd.concat([samples(fe=[31, 5]), samples(component="transmision", fe=[500])], ignore_index=True)
    s = s.iloc[[2, 0, 1]].reset_index(drop=True)
    c = classify_reports(s, lim, CATALOG)
    assert list(c.columns) == [*s.columns, *CLASSIFIED_COLUMNS]
    assert c["sampleNumber"].tolist() == s["sampleNumber"].tolist()
    assert c["report_status"].tolist() == ["Normal", "Alerta", "Normal"]  # transmision has no limits
    assert set(c["limits_version"]) == {"limits-test"}


def test_oil_hour_stratum_limits_take_precedence_over_all():
    lim = limits(limit("fe", 10, 20, 30), limit("fe", 40, 50, 60, stratum="GE_1000"))
    s = samples(fe=[35, 35, 35])
    s["oilHourRange"] = ["LT_1000", "GE_1000", "UNKNOWN"]
    c = classify_reports(s, lim, CATALOG)
    assert levels(c, "fe") == ["critical", None, "critical"]


def test_limits_from_strata_end_to_end():
    history = samples(fe=list(range(1, 41)))
    history["oilHourRange"] = ["LT_1000"] * 20 + ["GE_1000"] * 20
    lim = compute_limits(history, CATALOG, LimitParams(oil_hour_strata=True, trend_groups=()))
    s = samples(fe=[25, 25])
    s["oilHourRange"] = ["LT_1000", "GE_1000"]
    assert levels(classify_reports(s, lim, CATALOG), "fe") == ["critical", None]


def test_find_breaches_is_sorted_by_row_then_points():
    lim = limits(limit("fe", 10, 20, 30), limit("visc_100c", 15, 16, 17))
    b = find_breaches(samples(fe=[11, 31], visc_100c=[17.5, 15.5]), lim, CATALOG)
    assert b["row"].tolist() == [0, 0, 1, 1]
    assert b["essay"].astype(str).tolist() == ["visc_100c", "fe", "fe", "visc_100c"]


def _hours_limits() -> pd.DataFrame:
    return limits(
        limit("fe", 50, 60, 70),
        limit("fe", 19, 20, 21, kind="hours", stratum="OH:0-210"),
        limit("fe", 60, 70, 80, kind="hours", stratum="OH:210-20000"),
    )


def test_oil_age_limits_apply_by_the_oil_hour_bin_of_the_sample():
    s = samples(fe=[25, 25, 25, 25, 25, 25, 22])
    s["oilMeter"] = [100.0, 300.0, 210.0, 0.0, np.nan, 25000.0, 209.0]
    c = classify_reports(s, _hours_limits(), CATALOG)
    hours = [[b for b in bs if b["kind"] == "hours"] for bs in breaches(c)]
    # 100 h: critical against the [0, 210) bin; 300 h and 210 h (bins are [lo, hi)): within limits;
    # 0 h, unknown and implausible meters (beyond the last bin): no oil-age judgement.
    assert [[(b["level"], b["limit"]) for b in h] for h in hours] == [
        [("critical", 21.0)],
        [],
        [],
        [],
        [],
        [],
        [("critical", 21.0)],
    ]
    assert c["severity_score"].tolist() == [6, 0, 0, 0, 0, 0, 6]
    assert c["report_status"].tolist()[0] == "Alerta"
    off = classify_reports(s, _hours_limits(), CATALOG, ClassificationParams(hours_weight=0.0))
    assert off["severity_score"].tolist() == [0] * 7


def test_a_reading_judged_on_level_and_oil_age_scores_once_the_higher():
    s = samples(fe=[65, 75])
    s["oilMeter"] = [100.0, 900.0]
    c = classify_reports(s, _hours_limits(), CATALOG)
    first, second = breaches(c)
    # 65 at 100 h: level condemning (3) and oil-age critical (6) -> 6 scores, the level is kept at 0.
    assert [(b["kind"], b["level"], b["points"]) for b in first] == [
        ("hours", "critical", 6.0),
        ("level", "condemning", 0.0),
    ]
    # 75 at 900 h: level critical (6) beats oil-age condemning (3).
    assert [(b["kind"], b["level"], b["points"]) for b in second] == [
        ("level", "critical", 6.0),
        ("hours", "condemning", 0.0),
    ]
    assert c["severity_score"].tolist() == [6, 6]
    assert c["essays_broken"].tolist() == [1, 1]


def test_contaminants_score_only_with_wear_or_particle_evidence():
    lim = limits(limit("si", 10, 20, 30), limit("fe", 10, 20, 30), limit("pq_index", 10, 20, 30))
    s = samples(si=[35, 35, 35], fe=[5, 15, 5], pq_index=[5, 5, 15])
    c = classify_reports(s, lim, CATALOG)
    si = [[b for b in bs if b["essay"] == "si"][0] for bs in breaches(c)]
    assert [b["level"] for b in si] == ["critical"] * 3  # always recorded
    # Alone: silicon is sealant or ambient drift, 0 points; with Fe or PQ it is dirt: 6 x 0.5 = 3.
    assert [b["points"] for b in si] == [0.0, 3.0, 3.0]
    assert c["severity_score"].tolist() == [0, 4, 4]
    plain = classify_reports(s, lim, CATALOG, ClassificationParams(corroboration=()))
    assert plain["severity_score"].tolist() == [3, 4, 4]


def test_classification_leaves_the_callers_limits_as_they_were():
    lim = limits(limit("fe", 10, 20, 30))
    before = lim.copy()
    classify_reports(samples(fe=[9, 25]), lim, CATALOG)
    pd.testing.assert_frame_equal(lim, before)  # no group-code column added, no value changed
