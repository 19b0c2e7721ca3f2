"""Data-quality checks of silver, limits and gold: pure functions returning a :class:`CheckOutcome`.

The Dagster asset checks (``assets/checks.py``) wrap these; the gold assets also run the gold
checks before returning, so a failing check stops the publish and the previous gold stays.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .catalog import Catalog
from .classify import RANK, ClassificationParams
from .quality import breaches_frame

REQUIRED_SILVER = [
    "client",
    "sampleNumber",
    "sampleDate",
    "unitId",
    "machineName",
    "componentName",
    "componentNameNormalized",
]


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)
    warn_only: bool = False


def _examples(values, n: int = 10) -> list[str]:
    return [str(v) for v in list(values)[:n]]


# -- silver ---------------------------------------------------------------------------------------
def unique_sample_numbers(silver: pd.DataFrame) -> CheckOutcome:
    dup = silver["sampleNumber"][silver["sampleNumber"].duplicated()]
    return CheckOutcome(
        "unique_sample_number",
        dup.empty,
        "sampleNumber is unique",
        {"duplicates": int(len(dup)), "examples": _examples(dup.unique())},
    )


def dates_valid(silver: pd.DataFrame, as_of: pd.Timestamp | None = None) -> CheckOutcome:
    as_of = (as_of or pd.Timestamp.now(tz="UTC").tz_localize(None)).normalize()
    missing = silver["sampleDate"].isna()
    future = silver["sampleDate"] > as_of + pd.Timedelta(days=1)  # harmonize's tolerance (time zones)
    bad = silver.loc[missing | future, "sampleNumber"]
    return CheckOutcome(
        "dates_valid",
        bad.empty,
        "sampleDate present and not after the run day + 1",
        {"missing": int(missing.sum()), "future": int(future.sum()), "examples": _examples(bad)},
    )


def essays_in_physical_range(silver: pd.DataFrame, catalog: Catalog) -> CheckOutcome:
    table = catalog.table[catalog.table.index.isin(silver.columns)]
    essays = list(table.index)
    # One array of every essay column (a column that is not numeric is compared as numbers); float
    # columns, silver's type, in one copy.
    if len(essays) and all(pd.api.types.is_float_dtype(t) for t in silver.dtypes[essays]):
        values = silver[essays].to_numpy(float, na_value=np.nan)
    else:
        values = (
            np.column_stack(
                [pd.to_numeric(silver[e], errors="coerce").to_numpy(float, na_value=np.nan) for e in essays]
            )
            if len(essays)
            else np.zeros((len(silver), 0))
        )
    with np.errstate(invalid="ignore"):
        bad = (values < table["min_value"].to_numpy(float)) | (values > table["max_value"].to_numpy(float))
    counts = bad.sum(axis=0)
    out_of_range = {e: int(n) for e, n in zip(essays, counts, strict=True) if n}
    return CheckOutcome(
        "essays_in_physical_range",
        not out_of_range,
        "essay values within the catalog's physical range",
        {"out_of_range": out_of_range},
    )


def component_hours_within_machine_hours(silver: pd.DataFrame) -> CheckOutcome:
    bad = silver["componentHours"] > silver["machineHours"]
    return CheckOutcome(
        "component_hours_le_machine_hours",
        not bad.any(),
        "componentHours <= machineHours (warning: lab meters are often inconsistent)",
        {"violations": int(bad.sum()), "examples": _examples(silver.loc[bad, "sampleNumber"])},
        warn_only=True,
    )


def required_columns(silver: pd.DataFrame, catalog: Catalog) -> CheckOutcome:
    missing = [c for c in REQUIRED_SILVER + catalog.essays if c not in silver.columns]
    nulls = {
        c: int(silver[c].isna().sum()) for c in REQUIRED_SILVER if c in silver and silver[c].isna().any()
    }
    return CheckOutcome(
        "required_columns",
        not missing and not nulls,
        "required columns present and filled",
        {"missing": missing, "nulls": nulls},
    )


def freshness(silver: pd.DataFrame, max_days: int, as_of: pd.Timestamp | None = None) -> CheckOutcome:
    """The newest sample is at most ``max_days`` old on the report date ``as_of`` (default: today,
    UTC); warn-only."""
    as_of = (as_of or pd.Timestamp.now(tz="UTC").tz_localize(None)).normalize()
    newest = silver["sampleDate"].max() if len(silver) else pd.NaT
    age = int((as_of - newest).days) if pd.notna(newest) else None
    ok = age is not None and age <= max_days
    return CheckOutcome(
        "fresh_samples",
        ok,
        f"newest sample at most {max_days} days old",
        {
            "newest_sample": str(newest.date()) if pd.notna(newest) else None,
            "report_date": str(as_of.date()),
            "age_days": age,
            "max_days": max_days,
        },
        warn_only=True,
    )


def silver_checks(
    silver: pd.DataFrame, catalog: Catalog, freshness_days: int, as_of: pd.Timestamp | None = None
) -> list[CheckOutcome]:
    return [
        unique_sample_numbers(silver),
        dates_valid(silver, as_of),
        essays_in_physical_range(silver, catalog),
        component_hours_within_machine_hours(silver),
        required_columns(silver, catalog),
        freshness(silver, freshness_days, as_of),
    ]


# -- limits ---------------------------------------------------------------------------------------
def limits_monotone(limits: pd.DataFrame) -> CheckOutcome:
    up = limits["direction"] == "upper"
    ok_up = (limits["marginal"] < limits["condemning"]) & (limits["condemning"] < limits["critical"])
    ok_low = (limits["marginal"] > limits["condemning"]) & (limits["condemning"] > limits["critical"])
    bad = limits[~np.where(up, ok_up, ok_low)]
    return CheckOutcome(
        "limits_monotone",
        bad.empty,
        "upper: marginal < condemning < critical; lower: reversed",
        {
            "violations": int(len(bad)),
            "examples": _examples(bad[["component", "essay", "direction"]].astype(str).agg("/".join, axis=1)),
        },
    )


def limits_sample_count(limits: pd.DataFrame, min_samples: int) -> CheckOutcome:
    stat = limits["limit_method"].isin(["percentile", "relative"]) & (limits["kind"] == "level")
    bad = limits[stat & (limits["sample_count"] < min_samples)]
    return CheckOutcome(
        "limits_sample_count",
        bad.empty,
        f"statistical limits rest on >= {min_samples} readings",
        {"violations": int(len(bad)), "min_samples": min_samples},
    )


# -- gold -----------------------------------------------------------------------------------------
def every_sample_classified_once(reports: pd.DataFrame, silver: pd.DataFrame) -> CheckOutcome:
    r, s = reports["sampleNumber"], silver["sampleNumber"]
    known, wanted = set(r.to_numpy(object)), set(s.to_numpy(object))
    missing = sorted(wanted - known)
    extra = sorted(known - wanted)
    dup = int(r.duplicated().sum())
    return CheckOutcome(
        "every_sample_classified_once",
        not missing and not extra and dup == 0,
        "one report per silver sample",
        {
            "missing": len(missing),
            "extra": len(extra),
            "duplicates": dup,
            "examples": _examples(missing + extra),
        },
    )


def status_consistent_with_score(reports: pd.DataFrame, params: ClassificationParams) -> CheckOutcome:
    score = reports["severity_score"]
    expected = np.where(
        score >= params.anormal_cut, "Anormal", np.where(score >= params.alerta_cut, "Alerta", "Normal")
    )
    bad = reports["report_status"].to_numpy() != expected
    # The breach lists parsed by Arrow's JSON reader (one pass over the column), summed per report.
    b = breaches_frame(reports[["breached_essays"]])
    points = (
        np.bincount(b["row"].to_numpy(int), weights=b["points"].to_numpy(float), minlength=len(reports))
        if len(b)
        else np.zeros(len(reports))
    )
    untraceable = ~np.isclose(points, score.to_numpy(float))
    return CheckOutcome(
        "status_consistent_with_score",
        not bad.any() and not untraceable.any(),
        "report_status follows the score cut-offs; score = sum of breach points",
        {
            "status_mismatches": int(bad.sum()),
            "score_not_sum_of_points": int(untraceable.sum()),
            "examples": _examples(reports.loc[bad | untraceable, "sampleNumber"]),
        },
    )


def recommendation_present(reports: pd.DataFrame) -> CheckOutcome:
    if "ai_recommendation" not in reports:
        return CheckOutcome(
            "recommendation_present",
            False,
            "a recommendation for every non-Normal report",
            {"error": "column ai_recommendation missing"},
        )
    text = reports["ai_recommendation"].astype("string").str.strip()
    bad = (reports["report_status"] != "Normal") & (text.isna() | (text == ""))
    return CheckOutcome(
        "recommendation_present",
        not bad.any(),
        "a recommendation for every non-Normal report",
        {"missing": int(bad.sum()), "examples": _examples(reports.loc[bad, "sampleNumber"])},
    )


def machine_status_consistent(machines: pd.DataFrame, reports: pd.DataFrame) -> CheckOutcome:
    """The machine status equals the worst status among its counted components' latest reports."""
    worst, listed = {}, []
    for unit, text in zip(machines["unitId"], machines["component_status"], strict=True):
        comps = json.loads(text)  # parsed once for both checks
        listed += comps
        worst[unit] = max((RANK[c["status"]] for c in comps if c.get("counted", True)), default=0)
    keys = ["unitId", "componentName", "sampleDate", "reportDate", "sampleNumber"]
    order = reports[[*keys, "report_status"]].sort_values(keys, kind="mergesort")
    latest = order.drop_duplicates(["unitId", "componentName"], keep="last")
    numbers = latest["sampleNumber"].to_numpy(object).tolist()
    statuses = latest["report_status"].to_numpy(object).tolist()
    status_of = dict(zip(numbers, statuses, strict=True))
    counts = Counter(numbers)
    listed_ok = True
    for c in listed:
        number = c["sampleNumber"]
        if number not in status_of:
            listed_ok = False
        elif counts[number] > 1:  # the latest of two compartments: ambiguous, as a lookup would be
            raise ValueError(f"sample {number} is the latest report of {counts[number]} compartments")
        elif status_of[number] != c["status"]:
            listed_ok = False
    got = machines.set_index("unitId")["machine_status"].map(RANK)
    bad = [u for u, r in got.items() if worst.get(u) != r]
    missing_units = sorted(set(reports["unitId"].unique()) - set(machines["unitId"].unique()))
    return CheckOutcome(
        "machine_status_consistent",
        not bad and listed_ok and not missing_units,
        "machine status = worst latest component report; components list their latest report",
        {
            "mismatched_units": bad[:20],
            "components_consistent": listed_ok,
            "units_missing": missing_units[:20],
        },
    )


def blocking_failures(outcomes: list[CheckOutcome]) -> list[CheckOutcome]:
    return [o for o in outcomes if not o.passed and not o.warn_only]


# Every check with what it asserts (its description in the Dagster UI) and whether a failure only
# warns (warn_only: the output is published anyway, severity WARN, not blocking).
CHECK_SPECS: dict[str, tuple[str, bool]] = {
    "unique_sample_number": ("sampleNumber is unique in silver (the key of a sample).", False),
    "dates_valid": ("sampleDate is present and not after the run day + 1.", False),
    "essays_in_physical_range": ("Every essay value lies within the catalog's physical range.", False),
    "component_hours_le_machine_hours": (
        "Warning only: componentHours <= machineHours (lab meters are often inconsistent).",
        True,
    ),
    "required_columns": ("The required silver columns are present and filled.", False),
    "fresh_samples": (
        "Warning only: the client's newest sample is at most OIL_FRESHNESS_DAYS old (report date).",
        True,
    ),
    "limits_monotone": (
        "Upper limits: marginal < condemning < critical; lower limits: the reverse.",
        False,
    ),
    "limits_sample_count": ("Statistical limits rest on enough readings per group.", False),
    "every_sample_classified_once": ("One classified report per silver sample, none extra.", False),
    "status_consistent_with_score": (
        "report_status follows the score cut-offs; the score is the sum of the breach points.",
        False,
    ),
    "recommendation_present": ("A recommendation for every non-Normal report.", False),
    "machine_status_consistent": (
        "Machine status = its worst latest component report; components list their latest report.",
        False,
    ),
}
