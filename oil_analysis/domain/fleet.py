"""Classified reports → current status of each machine (one row per unit).

Rule (docs/CLASSIFICATION.md §Machine status):

* the current state of a component is its latest report, latest by (sampleDate, reportDate,
  sampleNumber) — a deterministic tie-break;
* paired components (left/right wheel, left/right final drive) are one component of the machine:
  the sides are merged under ``componentNameNormalized`` and the worse side represents the pair,
  so a pair is never counted twice;
* the machine takes the status of its worst component (one Anormal component makes an Anormal
  machine); ``machine_score`` is the sum of the merged components' severity scores and breaks
  ties between machines of the same status in ``priority``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .classify import RANK, STATUSES

MACHINE_STATUS_COLUMNS = [
    "client",
    "unitId",
    "machineName",
    "machineModel",
    "machine_status",
    "machine_score",
    "latest_sample_date",
    "total_components",
    "components_normal",
    "components_alerta",
    "components_anormal",
    "component_status",
    "priority",
    "limits_version",
]
_ORDER = ["unitId", "componentName", "sampleDate", "reportDate", "sampleNumber"]


@dataclass(frozen=True)
class FleetParams:
    """Parameters of the machine status."""

    # Merge the sides of paired components (same componentNameNormalized) into one component.
    merge_sides: bool = True
    # A component whose latest report is older than this many days before the unit's latest
    # sample is listed but does not count (None: every component counts).
    max_age_days: int | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def latest_reports(classified: pd.DataFrame) -> pd.DataFrame:
    """The latest report of every (unitId, componentName), deterministic on ties."""
    cols = [c for c in _ORDER if c in classified.columns]
    naive_dates = all(
        isinstance(classified[c].dtype, np.dtype) and classified[c].dtype.kind == "M"
        for c in ("sampleDate", "reportDate")
        if c in classified.columns
    )
    if cols != _ORDER or not naive_dates:
        # Sorted on the key columns alone, then the chosen rows taken: the wide table is never sorted.
        keys = (
            classified[cols].reset_index(drop=True).sort_values(cols, kind="mergesort", na_position="first")
        )
        last = ~keys.duplicated(["unitId", "componentName"], keep="last").to_numpy()
        return classified.iloc[keys.index.to_numpy()[last]].reset_index(drop=True)
    # The same order as that sort, from numbers: text keys by their sorted codes (missing: -1,
    # first), dates by their integer value (NaT is the smallest), one stable lexsort.
    unit, comp, number = (
        pd.factorize(classified[c], sort=True)[0] for c in ("unitId", "componentName", "sampleNumber")
    )
    sample_day, report_day = (classified[c].to_numpy().view(np.int64) for c in ("sampleDate", "reportDate"))
    order = np.lexsort((number, report_day, sample_day, comp, unit))
    u, c = unit[order], comp[order]
    last = np.r_[(u[1:] != u[:-1]) | (c[1:] != c[:-1]), True] if len(order) else np.zeros(0, dtype=bool)
    return classified.iloc[order[last]].reset_index(drop=True)


def _text(value: str) -> str:
    """``value`` as a JSON string, non-ASCII letters kept as they are (as the rest of the file)."""
    return json.dumps(value, ensure_ascii=False)


def _component_json(latest: pd.DataFrame) -> pd.Series:
    """JSON list per unit of {component, component_group, status, severity_score, sample_date,
    sampleNumber, counted}, ordered by component name."""
    d = latest.sort_values(["unitId", "componentName"], kind="mergesort")
    # One compartment per row, a few hundred rows: plain Python text, not a dozen Series additions.
    dates = d["sampleDate"].dt.strftime("%Y-%m-%d").fillna("").tolist()
    scores = np.char.mod("%.10g", d["severity_score"].to_numpy(float)).tolist()
    parts: dict[object, list[str]] = {}
    for unit, comp, group, status, score, day, number, counted in zip(
        d["unitId"].tolist(),
        d["componentName"].astype(str).tolist(),
        d["componentNameNormalized"].astype(str).tolist(),
        d["report_status"].astype(str).tolist(),
        scores,
        dates,
        d["sampleNumber"].astype(str).tolist(),
        d["_counted"].tolist(),
        strict=True,
    ):
        # Texts quoted as JSON strings: a lab's name may hold a quote or a backslash.
        parts.setdefault(unit, []).append(
            f'{{"component": {_text(comp)}, "component_group": {_text(group)}, "status": {_text(status)}, '
            f'"severity_score": {score}, "sample_date": "{day}", "sampleNumber": {_text(number)}, '
            f'"counted": {"true" if counted else "false"}}}'
        )
    return pd.Series({unit: "[" + ", ".join(frags) + "]" for unit, frags in parts.items()}, dtype=object)


# What the machine status reads of a report (the reports are wide: every essay, texts).
_STATUS_INPUTS = [
    *_ORDER,
    "client",
    "machineName",
    "machineModel",
    "componentNameNormalized",
    "report_status",
    "severity_score",
    "limits_version",
]


def machine_status_current(classified: pd.DataFrame, params: FleetParams | None = None) -> pd.DataFrame:
    """One row per unitId with the machine status (columns ``MACHINE_STATUS_COLUMNS``).

    ``priority`` sorts machines most urgent first when sorted descending:
    1000 × status rank (Normal 0, Alerta 1, Anormal 2) + machine_score (capped at 999).
    """
    params = params or FleetParams()
    if classified.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in MACHINE_STATUS_COLUMNS})
    latest = latest_reports(classified[[c for c in _STATUS_INPUTS if c in classified.columns]])
    latest["_rank"] = latest["report_status"].astype(str).map(RANK).astype(int)
    unit_last = latest.groupby("unitId")["sampleDate"].transform("max")
    counted = pd.Series(True, index=latest.index)
    if params.max_age_days is not None:
        counted = (unit_last - latest["sampleDate"]).dt.days <= params.max_age_days
    latest["_counted"] = counted.to_numpy()
    key = "componentNameNormalized" if params.merge_sides else "componentName"
    used = latest[latest["_counted"]]
    # Plain per-column reductions: pandas' named aggregation costs more than the reductions.
    by_comp = used.groupby(["unitId", key], sort=True)
    comp = pd.DataFrame({"rank": by_comp["_rank"].max(), "score": by_comp["severity_score"].max()})
    by_unit = comp.groupby(level="unitId")
    per_unit = pd.DataFrame(
        {
            "rank": by_unit["rank"].max(),
            "machine_score": by_unit["score"].sum(),
            "total_components": by_unit.size(),
        }
    )
    for k, name in enumerate(("components_normal", "components_alerta", "components_anormal")):
        per_unit[name] = (comp["rank"] == k).groupby(level="unitId").sum().astype(int)
    # The unit's identity columns come from its most recent report.
    ident = (
        latest.sort_values(
            ["sampleDate", "reportDate", "sampleNumber"], kind="mergesort", na_position="first"
        )
        .drop_duplicates("unitId", keep="last")
        .set_index("unitId")
    )
    out = ident[["client", "machineName", "machineModel"]].copy()
    out["latest_sample_date"] = latest.groupby("unitId")["sampleDate"].max()
    out = out.join(per_unit, how="left")
    out["rank"] = out["rank"].fillna(0).astype(int)
    for c in ("total_components", "components_normal", "components_alerta", "components_anormal"):
        out[c] = out[c].fillna(0).astype(int)
    out["machine_score"] = out["machine_score"].fillna(0.0).astype(float).round(6)
    out["machine_status"] = pd.array(
        np.asarray(STATUSES, dtype=object)[out["rank"].to_numpy()], dtype="string"
    )
    out["component_status"] = _component_json(latest).reindex(out.index).astype("string")
    out["priority"] = out["rank"] * 1000.0 + np.minimum(out["machine_score"], 999.0)
    if "limits_version" in latest:
        named: dict[object, set[str]] = {}
        for unit, v in zip(latest["unitId"].tolist(), latest["limits_version"].tolist(), strict=True):
            if not pd.isna(unit) and not pd.isna(v):
                named.setdefault(unit, set()).add(str(v))
        versions = pd.Series({u: ",".join(sorted(v)) for u, v in named.items()}, dtype=object)
        out["limits_version"] = versions.reindex(out.index).astype("string")
    else:
        out["limits_version"] = pd.array([pd.NA] * len(out), dtype="string")
    out = out.reset_index().rename(columns={"index": "unitId"})
    out = out.sort_values(["priority", "unitId"], ascending=[False, True], kind="mergesort")
    return out[MACHINE_STATUS_COLUMNS].reset_index(drop=True)


# -- triage ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TriageParams:
    """How the fleet report orders the machines to act on (docs/CLASSIFICATION.md §3).

    ``triage_priority = (grade points + evidence points) × recency``:

    * grade points: the graded action of the most urgent compartment (stop / plan / resample);
    * evidence points: per scoring essay of that compartment (at most ``max_essays``), plus
      ``confirm_points`` when the finding is confirmed (a rising trend of an essay also beyond its
      level limit, or wear metals and PQ / debris together);
    * recency: 1 for a sample at most ``full_weight_days`` old, falling linearly to ``min_recency``
      at ``freshness_days``; a machine whose latest sample is older than ``freshness_days`` is stale
      and listed apart, whatever its status.
    """

    freshness_days: int = 40
    grade_points: tuple[tuple[str, float], ...] = (("stop", 100.0), ("plan", 50.0), ("resample", 20.0))
    essay_points: float = 5.0
    max_essays: int = 4
    confirm_points: float = 10.0
    full_weight_days: int = 7
    min_recency: float = 0.5


TRIAGE_COLUMNS = [
    "unitId",
    "machineName",
    "machineModel",
    "machine_status",
    "latest_sample_date",
    "age_days",
    "stale",
    "component",
    "component_date",
    "action_grade",
    "action_text",
    "action_reason",
    "main_finding",
    "scoring_essays",
    "confirmed",
    "triage_priority",
]


def recency(age_days: int, params: TriageParams) -> float:
    """Weight of a finding by the age of its sample (1 when fresh, ``min_recency`` at the limit)."""
    if age_days <= params.full_weight_days:
        return 1.0
    span = max(params.freshness_days - params.full_weight_days, 1)
    return max(
        params.min_recency, 1.0 - (1.0 - params.min_recency) * (age_days - params.full_weight_days) / span
    )


def _confirmed(breaches: list[dict]) -> bool:
    scoring = [b for b in breaches if float(b.get("points") or 0) > 0]
    level = {b.get("essay") for b in scoring if b.get("kind") != "trend"}
    if any(b.get("kind") == "trend" and b.get("essay") in level for b in scoring):
        return True
    groups = {str(b.get("group")) for b in scoring}
    return "wear" in groups and bool(groups & {"particle", "visual"})


def triage(
    machines: pd.DataFrame,
    reports: pd.DataFrame,
    catalog,
    as_of: pd.Timestamp,
    params: TriageParams | None = None,
) -> pd.DataFrame:
    """One row per machine (columns ``TRIAGE_COLUMNS``), the machines to act on first.

    ``machines`` is machine_status_current, ``reports`` classified_reports (for the breaches of each
    compartment's latest report), ``as_of`` the report date. Rows: fresh non-Normal machines by
    ``triage_priority`` descending, then fresh Normal ones, then stale ones by latest sample date;
    ties by unitId.
    """
    from .advice.actions import graded_action
    from .advice.offline import machine_main_finding, parse_breaches, rank_components

    params = params or TriageParams()
    grade_points = dict(params.grade_points)
    as_of = pd.Timestamp(as_of).normalize()
    # Text columns converted in one call each (iterating an Arrow column costs per value).
    numbers = reports["sampleNumber"].astype(str).to_numpy(object).tolist()
    breaches_of = dict(zip(numbers, reports["breached_essays"].to_numpy(object).tolist(), strict=True))
    water = reports["countPreventedByWater"].tolist() if "countPreventedByWater" in reports else []
    water_of = dict(zip(numbers, water, strict=False))
    rows = []
    read = [
        "unitId",
        "machineName",
        "machineModel",
        "machine_status",
        "latest_sample_date",
        "component_status",
    ]
    # Only the columns read here: a record of every column (texts, advice) costs more than triage.
    for m in machines[[c for c in read if c in machines.columns]].to_dict("records"):
        last = pd.Timestamp(m["latest_sample_date"])
        age = int((as_of - last.normalize()).days) if pd.notna(last) else 10**6
        comps = []
        for c in json.loads(m.get("component_status") or "[]"):
            if not c.get("counted", True):
                continue
            number = str(c.get("sampleNumber"))
            comps.append(
                {
                    "component": c.get("component"),
                    "status": c.get("status"),
                    "sample_date": c.get("sample_date"),
                    "breaches": breaches_of.get(number, "[]"),
                    "context": {"countPreventedByWater": water_of.get(number)},
                }
            )
        status = str(m["machine_status"])
        stale = age > params.freshness_days
        # Stale and Normal machines are not ranked: no action, no main finding to compute.
        ranked = rank_components(comps, catalog) if status != "Normal" and not stale else []
        out = {
            "unitId": m["unitId"],
            "machineName": m.get("machineName"),
            "machineModel": m.get("machineModel"),
            "machine_status": status,
            "latest_sample_date": last,
            "age_days": age,
            "stale": stale,
            "component": "",
            "component_date": pd.NaT,
            "action_grade": "none",
            "action_text": graded_action("Normal", []).text,
            "action_reason": "",
            "main_finding": "",
            "scoring_essays": 0,
            "confirmed": False,
            "triage_priority": 0.0,
        }
        if ranked:
            c, _, _, _, action = ranked[0]
            breaches = [b for b in parse_breaches(c.get("breaches")) if float(b.get("points") or 0) > 0]
            essays = len({b.get("essay") for b in breaches})
            confirmed = _confirmed(breaches)
            comp_date = pd.Timestamp(c.get("sample_date")) if c.get("sample_date") else last
            comp_age = int((as_of - comp_date.normalize()).days) if pd.notna(comp_date) else age
            evidence = params.essay_points * min(essays, params.max_essays)
            evidence += params.confirm_points if confirmed else 0.0
            priority = (grade_points.get(action.grade, 0.0) + evidence) * recency(comp_age, params)
            out.update(
                component=str(c.get("component") or ""),
                component_date=comp_date,
                action_grade=action.grade,
                action_text=action.text,
                action_reason=action.reason,
                main_finding=machine_main_finding(comps, catalog, ranked),
                scoring_essays=essays,
                confirmed=confirmed,
                triage_priority=round(priority, 3),
            )
        rows.append(out)
    df = pd.DataFrame(rows, columns=TRIAGE_COLUMNS)
    if df.empty:
        return df
    df["_group"] = np.where(df["stale"], 2, np.where(df["machine_status"] != "Normal", 0, 1))
    df["_date"] = -pd.to_datetime(df["latest_sample_date"]).astype("int64")
    df = df.sort_values(
        ["_group", "triage_priority", "_date", "unitId"],
        ascending=[True, False, True, True],
        kind="mergesort",
    )
    return df.drop(columns=["_group", "_date"]).reset_index(drop=True)
