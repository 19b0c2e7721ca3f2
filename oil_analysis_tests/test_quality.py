"""Limit quality and lab agreement figures on tiny hand-built examples."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from oil_analysis.domain.quality import (
    agreement,
    breaches_frame,
    lab_ordinal,
    limit_quality,
    roc_auc,
    spearman,
)

LIMITS = pd.DataFrame(
    {
        "client": "CDA",
        "machine": "camion",
        "component": "motor",
        "stratum": "ALL",
        "essay": ["fe", "water"],
        "direction": "upper",
        "kind": "level",
        "marginal": [10.0, 0.0],
        "condemning": [20.0, 1.0],
        "critical": [30.0, 2.0],
        "version": "limits-x",
    }
)


def breach(essay: str, level: str, points: float, value: float = 1.0) -> dict:
    return {
        "essay": essay,
        "group": "wear" if essay == "fe" else "flag",
        "value": value,
        "limit": 0.0,
        "level": level,
        "direction": "upper",
        "kind": "level",
        "points": points,
    }


def classified() -> pd.DataFrame:
    bs = [
        [],
        [breach("fe", "marginal", 1)],
        [breach("fe", "marginal", 1)],
        [breach("fe", "condemning", 3), breach("water", "marginal", 2)],
        [breach("fe", "critical", 6), breach("water", "condemning", 2)],
        [breach("water", "critical", 12)],
        [],
    ]
    return pd.DataFrame(
        {
            "client": "CDA",
            "machineName": "camion",
            "componentNameNormalized": "motor",
            "severity_score": [0.0, 1.0, 2.0, 5.0, 8.0, 12.0, 0.0],
            "report_status": ["Normal", "Normal", "Normal", "Alerta", "Alerta", "Anormal", "Normal"],
            "labVerdict": [
                "No se requiere acción",
                "NO SE REQUIERE ACCION",
                "Monitorear Compartimento",
                "Acción requerida",
                "No se requiere acción",
                "Se requiere acción urgente",
                "Sin comentarios",
            ],
            "fe": [5.0, 11, 12, 21, 31, np.nan, 1],
            "water": [0.0, 0, 0, 1, 2, 3, 0],
            "breached_essays": [json.dumps(b) for b in bs],
        }
    )


def test_lab_ordinal_is_accent_and_case_insensitive():
    got = lab_ordinal(classified()["labVerdict"]).tolist()
    assert got[:6] == [0, 0, 1, 2, 0, 3] and math.isnan(got[6])


def test_agreement_figures_by_hand():
    a = agreement(classified())
    # 'Sin comentarios' is dropped: 6 samples, positives (action/urgent) at scores 5 and 12.
    assert a["n"] == 6 and a["n_action"] == 2
    # Pairs (positive, negative): 5 beats 0, 1, 2 but not 8; 12 beats all four -> 7 / 8.
    assert a["roc_auc_action"] == pytest.approx(7 / 8)
    # Score ranks 1..6; lab ranks (0,0,1,2,0,3) -> (2,2,4,5,2,6): r = 10.5 / sqrt(17.5 * 15.5).
    assert a["spearman"] == pytest.approx(10.5 / math.sqrt(17.5 * 15.5))
    assert a["flag_rate"] == pytest.approx(3 / 6)
    assert a["recall"] == 1.0 and a["precision"] == pytest.approx(2 / 3)
    assert a["anormal_count"] == 1 and a["anormal_precision"] == 1.0 and a["anormal_recall"] == 0.5
    assert a["confusion"]["Alerta"] == {"0": 1, "1": 0, "2": 1, "3": 0}


def test_auc_and_spearman_edge_cases():
    assert roc_auc([1, 1, 1], [True, False, False]) == 0.5  # ties count one half
    assert math.isnan(roc_auc([1, 2], [False, False]))
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_breaches_frame_explodes_with_row_positions():
    b = breaches_frame(classified())
    assert b["row"].tolist() == [1, 2, 3, 3, 4, 4, 5]
    assert b["essay"].tolist() == ["fe", "fe", "fe", "water", "fe", "water", "water"]


def test_limit_quality_shares_and_summary():
    table, summary = limit_quality(classified(), LIMITS)
    fe = table.set_index("essay").loc["fe"]
    # fe measured in 6 of 7 reports: marginal in 2, condemning in 1, critical in 1.
    assert fe["samples"] == 7 and fe["measured"] == 6
    assert fe["share_marginal"] == pytest.approx(2 / 6)
    assert fe["share_condemning"] == pytest.approx(1 / 6)
    assert fe["share_critical"] == pytest.approx(1 / 6)
    assert fe["share_breached"] == pytest.approx(4 / 6)
    water = table.set_index("essay").loc["water"]
    assert water["measured"] == 7 and water["share_critical"] == pytest.approx(1 / 7)
    assert summary["flag_rate"] == pytest.approx(3 / 7)
    assert summary["status_share"]["Anormal"] == pytest.approx(1 / 7)
    assert summary["limits_version"] == ["limits-x"]
    assert summary["agreement"]["roc_auc_action"] == pytest.approx(7 / 8)


def test_no_lab_verdict_means_no_agreement():
    _, summary = limit_quality(classified().drop(columns="labVerdict"), LIMITS)
    assert summary["agreement"] is None


def test_limit_quality_lists_oil_age_limits_once_per_essay():
    hours = LIMITS.iloc[[0, 0]].assign(kind="hours", stratum=["OH:0-400", "OH:400-20000"])
    c = classified()
    bs = [json.loads(t) for t in c["breached_essays"]]
    bs[1] = [*bs[1], {**breach("fe", "condemning", 0.0), "kind": "hours"}]
    c["breached_essays"] = [json.dumps(b) for b in bs]
    table, _ = limit_quality(c, pd.concat([LIMITS, hours], ignore_index=True))
    row = table[(table["essay"] == "fe") & (table["kind"] == "hours")]
    assert len(row) == 1
    assert row["share_condemning"].iloc[0] == pytest.approx(1 / 6)  # 1 of the 6 Fe readings
    assert len(table[table["kind"] == "level"]) == 2


def test_top_breached_counts_every_breach_of_the_non_normal_reports():
    from oil_analysis.pipeline.gold import top_breached

    def b(essay: str) -> dict:
        return {"essay": essay, "group": "wear", "value": 1.0, "limit": 0.5, "level": "marginal",
                "direction": "upper", "kind": "level", "points": 1.0}  # fmt: skip

    reports = pd.DataFrame(
        {
            "report_status": ["Alerta", "Normal", "Anormal", "Alerta"],
            "breached_essays": [
                json.dumps([b("fe"), b("cu")]),
                json.dumps([b("si")]),  # a Normal report: not counted
                json.dumps([b("cu"), b("fe"), b("al")]),
                "[]",
            ],
        }
    )
    assert top_breached(reports) == {"cu": 2, "fe": 2, "al": 1}
    assert top_breached(reports, n=1) == {"cu": 2}
    assert top_breached(reports.iloc[:0]) == {}
