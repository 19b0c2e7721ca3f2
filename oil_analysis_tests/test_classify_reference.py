"""The vectorized classifier gives the answers of a slow, obviously correct one.

The reference below is written from the rules of docs/CLASSIFICATION.md §2 (and the parameter
comments of ``ClassificationParams``), one sample and one limit row at a time, in plain Python: no
code of ``classify.py`` is used, only its parameter values and the limits table. It classifies a
2,000-sample slice of a generated 100,000-sample client (``bench/scale.py``); the product classifies
the whole client. Every breach (essay, level, direction, kind, points), every severity score and
every status must agree.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oil_analysis.domain.catalog import load_catalog
from oil_analysis.domain.classify import ClassificationParams, classify_reports
from oil_analysis.domain.limits import compute_limits

ROOT = Path(__file__).resolve().parents[1]
LEVELS = ("marginal", "condemning", "critical")
SLICE = 2_000


def _scale_module():
    spec = importlib.util.spec_from_file_location("bench_scale", ROOT / "bench" / "scale.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_scale", module)
    spec.loader.exec_module(module)
    return module


def _missing(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _beyond(value: float, limit: float, direction: str, strict: bool) -> bool:
    if _missing(value) or _missing(limit):
        return False
    if direction == "upper":
        return value > limit if strict else value >= limit
    return value < limit if strict else value <= limit


def _weight(params: ClassificationParams, essay: str, group: str, kind: str) -> float:
    essays, groups = dict(params.essay_weights), dict(params.group_weights)
    w = essays[essay] if essay in essays else groups.get(group, 1.0)
    if kind == "trend":
        w *= params.trend_weight
    if kind == "hours":
        w *= params.hours_weight
    return w


def _hours_bin(stratum: str) -> tuple[float, float] | None:
    m = re.fullmatch(r"OH:([0-9.e+]+)-([0-9.e+]+)", stratum)
    return (float(m.group(1)), float(m.group(2))) if m else None


def reference_classify(
    sample: dict,
    previous: dict | None,
    limit_rows: list[dict],
    groups: dict[str, str],
    params: ClassificationParams,
    strict: bool,
) -> tuple[list[dict], float, str]:
    """One sample: its breaches, severity score and status, by the documented rules."""
    # Level rows: the row of the sample's oil-hour range when there is one, else the ALL row.
    level_rows: dict[tuple[str, str], dict] = {}
    for row in limit_rows:
        if row["kind"] == "level" and row["stratum"] == "ALL":
            level_rows.setdefault((row["essay"], row["direction"]), row)
    for row in limit_rows:
        own = row["kind"] == "level" and row["stratum"] == sample.get("oilHourRange")
        if own and not _missing(row["marginal"]):
            level_rows[(row["essay"], row["direction"])] = row

    breaches = []
    for row in limit_rows:
        essay, kind, direction = row["essay"], row["kind"], row["direction"]
        if essay not in sample:
            continue
        if kind == "level":
            if level_rows.get((essay, direction)) is not row:
                continue
            value = sample[essay]
        elif kind == "trend":
            if params.trend_weight == 0 or previous is None:
                continue
            days = sample.get("daysSincePrevious")
            if not _missing(days) and days > params.trend_max_days:
                continue
            if _missing(sample[essay]) or _missing(previous[essay]):
                continue
            value = sample[essay] - previous[essay]
        elif kind == "hours":
            if params.hours_weight == 0:
                continue
            hours, bounds = sample.get("oilMeter"), _hours_bin(row["stratum"])
            if _missing(hours) or hours <= 0 or bounds is None or not (bounds[0] <= hours < bounds[1]):
                continue
            value = sample[essay]
        else:
            continue
        level = 0
        for i, name in enumerate(LEVELS):  # the highest limit the reading is beyond
            if _beyond(value, row[name], direction, strict):
                level = i + 1
        if level:
            group = groups[essay]
            points = params.level_points[level - 1] * _weight(params, essay, group, kind)
            breaches.append(
                {
                    "essay": essay,
                    "group": group,
                    "level": LEVELS[level - 1],
                    "direction": direction,
                    "kind": kind,
                    "points": points,
                }
            )

    # A reading judged against the whole history and against its oil age: only the higher scores
    # (equal points: the kind first in alphabetical order keeps them).
    same_reading = defaultdict(list)
    for b in breaches:
        if b["kind"] in ("level", "hours"):
            same_reading[(b["essay"], b["direction"])].append(b)
    for judged in same_reading.values():
        judged.sort(key=lambda b: (-b["points"], b["kind"]))
        for b in judged[1:]:
            b["points"] = 0.0

    # Corroboration: a group scores only next to a scoring breach of a supporting group.
    for target, supports in params.corroboration:
        if not any(b["group"] in supports and b["points"] > 0 for b in breaches):
            for b in breaches:
                if b["group"] == target:
                    b["points"] = 0.0

    # Secondary findings: after the highest-scoring breach of a group (or of the sample), the others
    # count secondary_factor of their points (ties: kind, then essay, alphabetical).
    scopes = defaultdict(list)
    for b in breaches:
        scopes[b["group"] if params.secondary_scope == "group" else ""].append(b)
    for members in scopes.values():
        members.sort(key=lambda b: (-b["points"], b["kind"], b["essay"]))
        for b in members[1:]:
            b["points"] *= params.secondary_factor

    score = sum(b["points"] for b in breaches)
    if score >= params.anormal_cut:
        status = "Anormal"
    elif score >= params.alerta_cut:
        status = "Alerta"
    else:
        status = "Normal"
    return breaches, score, status


def _key(b: dict) -> tuple:
    return (b["essay"], b["level"], b["direction"], b["kind"], round(float(b["points"]), 9))


@pytest.fixture(scope="module")
def generated():
    scale = _scale_module()
    catalog = load_catalog()
    silver = scale.generate_silver(100_000, seed=3)
    limits = compute_limits(silver, catalog, computed_at=silver["sampleDate"].max())
    reports = classify_reports(silver, limits, catalog)
    return silver, limits, reports, catalog


def test_vectorized_classification_equals_the_reference(generated):
    silver, limits, reports, catalog = generated
    params = ClassificationParams()
    rng = np.random.default_rng(11)
    # Half a random slice, half a random slice of the flagged samples (where the rules interact).
    flagged = np.flatnonzero(reports["report_status"].to_numpy(dtype=object) != "Normal")
    chosen = np.union1d(
        rng.choice(len(silver), SLICE // 2, replace=False), rng.choice(flagged, SLICE // 2, replace=False)
    )
    assert len(chosen) >= SLICE * 0.9

    records = dict(zip(chosen, silver.iloc[chosen].to_dict("records"), strict=True))
    wanted = set(silver["previousSampleNumber"].iloc[chosen].dropna())
    before = silver[silver["sampleNumber"].isin(wanted)]
    by_number = dict(zip(before["sampleNumber"], before.to_dict("records"), strict=True))
    limit_rows = defaultdict(list)
    for row in limits.to_dict("records"):
        limit_rows[(str(row["client"]), str(row["machine"]), str(row["component"]))].append(row)
    rules = set(limits["comparison"])
    assert len(rules) == 1
    strict = rules.pop() == "strict"
    groups = catalog.table["group"].astype(str).to_dict()

    seen = defaultdict(set)
    for i in chosen:
        sample = records[i]
        prev = sample["previousSampleNumber"]
        previous = None if _missing(prev) else by_number.get(prev)
        key = (str(sample["client"]), str(sample["machineName"]), str(sample["componentNameNormalized"]))
        expected, score, status = reference_classify(
            sample, previous, limit_rows.get(key, []), groups, params, strict
        )
        got = json.loads(reports["breached_essays"].iat[i])
        where = f"sample {sample['sampleNumber']} (row {i})"
        assert sorted(map(_key, got)) == sorted(map(_key, expected)), where
        assert [b["points"] for b in got] == sorted((b["points"] for b in got), reverse=True), where
        assert reports["severity_score"].iat[i] == pytest.approx(score, abs=1e-9), where
        assert reports["report_status"].iat[i] == status, where
        for b in expected:
            seen["kind"].add(b["kind"])
            seen["direction"].add(b["direction"])
            seen["level"].add(b["level"])
            base = params.level_points[LEVELS.index(b["level"])]
            full = base * _weight(params, b["essay"], b["group"], b["kind"])
            if b["points"] == 0 and full > 0:
                seen["zeroed"].add(b["group"] if b["group"] == "contaminant" else b["kind"])
            elif 0 < b["points"] < full:
                seen["secondary"].add(b["group"])
        seen["status"].add(status)

    # The slice exercises every rule, or the comparison proves little.
    assert seen["kind"] >= {"level", "trend", "hours"}
    assert seen["direction"] == {"upper", "lower"}
    assert seen["level"] == set(LEVELS)
    assert seen["status"] == {"Normal", "Alerta", "Anormal"}
    assert "contaminant" in seen["zeroed"], "no breach left without corroboration"
    assert seen["zeroed"] & {"level", "hours"}, "no reading judged twice"
    assert seen["secondary"], "no secondary finding"
