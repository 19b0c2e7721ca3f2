"""Machine status: latest report per component, sides merged, worst component, deterministic ties."""

from __future__ import annotations

import json

import pandas as pd

from oil_analysis.domain.fleet import MACHINE_STATUS_COLUMNS, FleetParams, machine_status_current

SCORE = {"Normal": 0.0, "Alerta": 5.0, "Anormal": 12.0}


def report(
    unit: str,
    component: str,
    status: str,
    date: str,
    number: str,
    *,
    group: str | None = None,
    report_date: str | None = None,
    score: float | None = None,
) -> dict:
    return {
        "client": "CDA",
        "unitId": unit,
        "machineName": "camion",
        "machineModel": "789C",
        "componentName": component,
        "componentNameNormalized": group or component,
        "sampleNumber": number,
        "sampleDate": pd.Timestamp(date),
        "reportDate": pd.Timestamp(report_date or date) + pd.Timedelta(days=9),
        "report_status": status,
        "severity_score": SCORE[status] if score is None else score,
        "limits_version": "limits-abc",
    }


def frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def one(result: pd.DataFrame, unit: str) -> pd.Series:
    return result.set_index("unitId").loc[unit]


def test_left_and_right_sides_are_one_component():
    wheels = "rueda delantera"
    c = frame(
        report("T_01", "rueda delantera derecha", "Alerta", "2025-01-10", "A1", group=wheels),
        report("T_01", "rueda delantera izquierda", "Alerta", "2025-01-10", "A2", group=wheels),
        report("T_01", "motor", "Normal", "2025-01-12", "A3"),
    )
    m = one(machine_status_current(c), "T_01")
    assert m["total_components"] == 2 and m["components_alerta"] == 1 and m["components_normal"] == 1
    assert m["machine_status"] == "Alerta"
    assert m["machine_score"] == 5.0  # the pair counts once
    listed = json.loads(m["component_status"])
    assert [x["component"] for x in listed] == [
        "motor",
        "rueda delantera derecha",
        "rueda delantera izquierda",
    ]
    unmerged = one(machine_status_current(c, FleetParams(merge_sides=False)), "T_01")
    assert unmerged["total_components"] == 3 and unmerged["components_alerta"] == 2


def test_one_anormal_component_makes_the_machine_anormal():
    comps = ["motor", "transmision", "convertidor", "hidraulico", "direccion", "diferencial trasero"]
    c = frame(
        *[report("T_02", comp, "Normal", "2025-02-01", f"B{i}") for i, comp in enumerate(comps)],
        report(
            "T_02",
            "mando final trasero izquierdo",
            "Anormal",
            "2025-02-01",
            "B9",
            group="mando final trasero",
        ),
    )
    m = one(machine_status_current(c), "T_02")
    assert m["machine_status"] == "Anormal"
    assert m["components_anormal"] == 1 and m["components_normal"] == 6


def test_latest_report_wins_and_ties_break_on_report_date_then_sample_number():
    c = frame(
        report("T_03", "motor", "Anormal", "2025-01-01", "C1"),
        report("T_03", "motor", "Normal", "2025-03-01", "C2"),  # later sample: wins over C1
        report("T_03", "transmision", "Anormal", "2025-03-05", "C3", report_date="2025-03-06"),
        report("T_03", "transmision", "Normal", "2025-03-05", "C4", report_date="2025-03-05"),
        report("T_03", "convertidor", "Normal", "2025-03-07", "C6"),
        report("T_03", "convertidor", "Alerta", "2025-03-07", "C5"),
    )
    for order in (c, c.iloc[::-1]):
        m = one(machine_status_current(order.reset_index(drop=True)), "T_03")
        listed = {x["component"]: x for x in json.loads(m["component_status"])}
        assert listed["motor"]["sampleNumber"] == "C2"
        assert listed["transmision"]["sampleNumber"] == "C3"  # later report date
        assert listed["convertidor"]["sampleNumber"] == "C6"  # same dates: higher sample number
        assert m["machine_status"] == "Anormal"
        assert m["latest_sample_date"] == pd.Timestamp("2025-03-07")


def test_priority_orders_machines_by_status_then_score():
    c = frame(
        report("T_10", "motor", "Alerta", "2025-01-01", "D1", score=8),
        report("T_11", "motor", "Anormal", "2025-01-01", "D2", score=10),
        report("T_12", "motor", "Normal", "2025-01-01", "D3", score=2),
        report("T_13", "motor", "Alerta", "2025-01-01", "D4", score=5),
        report("T_13", "transmision", "Alerta", "2025-01-01", "D5", score=6),
    )
    out = machine_status_current(c)
    assert list(out.columns) == MACHINE_STATUS_COLUMNS
    assert out["unitId"].tolist() == ["T_11", "T_13", "T_10", "T_12"]
    assert out["priority"].is_monotonic_decreasing
    assert one(out, "T_13")["machine_score"] == 11.0
    assert set(out["limits_version"]) == {"limits-abc"}


def test_stale_components_are_listed_but_not_counted():
    c = frame(
        report("T_20", "motor", "Normal", "2025-06-01", "E1"),
        report("T_20", "transmision", "Anormal", "2023-01-01", "E2"),
    )
    assert one(machine_status_current(c), "T_20")["machine_status"] == "Anormal"
    m = one(machine_status_current(c, FleetParams(max_age_days=365)), "T_20")
    assert m["machine_status"] == "Normal" and m["total_components"] == 1
    counted = {x["component"]: x["counted"] for x in json.loads(m["component_status"])}
    assert counted == {"motor": True, "transmision": False}


def test_empty_input():
    empty = frame(report("T_01", "motor", "Normal", "2025-01-01", "X")).iloc[0:0]
    assert machine_status_current(empty).empty


def test_component_status_is_valid_json_whatever_the_names_hold():
    """A lab's names may hold quotes, backslashes or accents: the list stays valid JSON, names intact."""
    odd = 'mando final "izq" \\ tracción'
    c = frame(
        report("T_09", odd, "Alerta", "2025-03-01", 'N"1'),
        report("T_09", "motor", "Normal", "2025-03-01", "N2"),
    )
    listed = json.loads(one(machine_status_current(c), "T_09")["component_status"])
    assert [(x["component"], x["sampleNumber"]) for x in listed] == [(odd, 'N"1'), ("motor", "N2")]
    assert "tracción" in one(machine_status_current(c), "T_09")["component_status"]  # not \u-escaped
