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
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .classify import STATUSES

RANK = {s: i for i, s in enumerate(STATUSES)}
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
    df = classified.sort_values(cols, kind="mergesort", na_position="first")
    return df.drop_duplicates(["unitId", "componentName"], keep="last").reset_index(drop=True)


def _component_json(latest: pd.DataFrame) -> pd.Series:
    """JSON list per unit of {component, component_group, status, severity_score, sample_date,
    sampleNumber, counted}, ordered by component name."""
    d = latest.sort_values(["unitId", "componentName"], kind="mergesort")
    date = d["sampleDate"].dt.strftime("%Y-%m-%d").fillna("")
    frag = (
        '{"component": "'
        + d["componentName"].astype(str)
        + '", "component_group": "'
        + d["componentNameNormalized"].astype(str)
        + '", "status": "'
        + d["report_status"].astype(str)
        + '", "severity_score": '
        + pd.Series(np.char.mod("%.10g", d["severity_score"].to_numpy(float)), index=d.index)
        + ', "sample_date": "'
        + date
        + '", "sampleNumber": "'
        + d["sampleNumber"].astype(str)
        + '", "counted": '
        + np.where(d["_counted"], "true", "false")
        + "}"
    )
    return "[" + frag.groupby(d["unitId"].to_numpy(), sort=True).agg(", ".join) + "]"


def machine_status_current(classified: pd.DataFrame, params: FleetParams | None = None) -> pd.DataFrame:
    """One row per unitId with the machine status (columns ``MACHINE_STATUS_COLUMNS``).

    ``priority`` sorts machines most urgent first when sorted descending:
    1000 × status rank (Normal 0, Alerta 1, Anormal 2) + machine_score (capped at 999).
    """
    params = params or FleetParams()
    if classified.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in MACHINE_STATUS_COLUMNS})
    latest = latest_reports(classified)
    latest["_rank"] = latest["report_status"].astype(str).map(RANK).astype(int)
    unit_last = latest.groupby("unitId")["sampleDate"].transform("max")
    counted = pd.Series(True, index=latest.index)
    if params.max_age_days is not None:
        counted = (unit_last - latest["sampleDate"]).dt.days <= params.max_age_days
    latest["_counted"] = counted.to_numpy()
    key = "componentNameNormalized" if params.merge_sides else "componentName"
    used = latest[latest["_counted"]]
    comp = used.groupby(["unitId", key], sort=True).agg(
        rank=("_rank", "max"), score=("severity_score", "max")
    )
    per_unit = comp.groupby(level="unitId").agg(
        rank=("rank", "max"),
        machine_score=("score", "sum"),
        total_components=("rank", "size"),
        components_normal=("rank", lambda r: int((r == 0).sum())),
        components_alerta=("rank", lambda r: int((r == 1).sum())),
        components_anormal=("rank", lambda r: int((r == 2).sum())),
    )
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
        versions = (
            latest.dropna(subset=["limits_version"])
            .groupby("unitId")["limits_version"]
            .agg(lambda v: ",".join(sorted(set(map(str, v)))))
        )
        out["limits_version"] = versions.reindex(out.index).astype("string")
    else:
        out["limits_version"] = pd.array([pd.NA] * len(out), dtype="string")
    out = out.reset_index().rename(columns={"index": "unitId"})
    out = out.sort_values(["priority", "unitId"], ascending=[False, True], kind="mergesort")
    return out[MACHINE_STATUS_COLUMNS].reset_index(drop=True)
