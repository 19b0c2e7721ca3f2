"""Graded actions, main findings, triage order, freshness against the report date, Spanish agreement
of every generated text, and the demo fleet's calibration (pure functions; no Dagster)."""

from __future__ import annotations

import json
import re
from datetime import date

import pandas as pd
import pytest

from oil_analysis.domain import checks
from oil_analysis.domain.advice.actions import graded_action, stop_reasons
from oil_analysis.domain.advice.offline import (
    FINDINGS,
    explained_causes,
    machine_main_finding,
    main_finding,
    offline_machine_recommendation,
    offline_recommendation,
)
from oil_analysis.domain.advice.spanish import NOUNS, agreement_errors, count, det
from oil_analysis.domain.catalog import load_catalog
from oil_analysis.domain.fleet import TriageParams, machine_status_current, recency, triage
from oil_analysis.report import render_fleet_report
from oil_analysis.report.fleet_html import _environment
from oil_analysis.settings import get_settings

from .conftest import DEMO_BRONZE

CAT = load_catalog()
COMPONENTS = ("motor", "transmision", "mando final izquierdo", "sistema hidraulico", "rueda delantera")
LEVELS = ("marginal", "condemning", "critical")


def b(essay, level="condemning", direction="upper", kind="level", points=3.0, value=10.0, limit=5.0):
    return {
        "essay": essay,
        "group": CAT.group(essay),
        "value": value,
        "limit": limit,
        "level": level,
        "direction": direction,
        "kind": kind,
        "points": points,
    }


# -- graded actions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "breaches", "component", "grade"),
    [
        ("Anormal", [b("glycol", "condemning")], "motor", "stop"),
        ("Alerta", [b("glycol", "critical")], "motor", "stop"),
        ("Anormal", [b("glycol", "critical")], "transmision", "plan"),
        ("Alerta", [b("glycol", "marginal")], "motor", "resample"),
        ("Anormal", [b("fuel", "critical")], "motor", "stop"),
        ("Anormal", [b("fuel_pct", "condemning"), b("fe", "critical")], "motor", "plan"),
        ("Anormal", [b("fe", "critical"), b("pq_index", "critical")], "mando final", "stop"),
        ("Anormal", [b("fe", "critical"), b("pq_index", "condemning")], "mando final", "plan"),
        ("Anormal", [b("fe", "critical"), b("fe", "condemning", kind="trend")], "motor", "stop"),
        ("Anormal", [b("fe", "critical"), b("pq_index", "critical", kind="trend")], "motor", "stop"),
        ("Anormal", [b("fe", "critical"), b("fe", "marginal", kind="trend")], "motor", "plan"),
        ("Anormal", [b("fe", "critical"), b("cu", "critical", kind="trend")], "motor", "plan"),
        ("Anormal", [b("fe", "critical")], "motor", "plan"),
        ("Anormal", [b("visc_100c", "critical"), b("visc_40c", "critical")], "transmision", "plan"),
        ("Anormal", [b("water", "critical")], "sistema hidraulico", "plan"),
        ("Alerta", [b("fe", "condemning"), b("cu", "marginal")], "motor", "resample"),
        ("Normal", [b("fe", "marginal", points=1.0)], "motor", "none"),
        ("Normal", [b("glycol", "critical")], "motor", "none"),
    ],
)
def test_graded_action_rules(status, breaches, component, grade):
    assert graded_action(status, breaches, component).grade == grade


def test_stop_needs_scoring_evidence_and_windows_are_stated():
    zeroed = [b("fe", "critical"), b("pq_index", "critical", points=0.0)]
    assert stop_reasons(zeroed, "motor") == [], "a breach the classifier zeroed confirms nothing"
    plan_crit = graded_action("Anormal", [b("fe", "critical")], "motor")
    plan = graded_action("Anormal", [b("fe", "condemning"), b("cu", "condemning")], "motor")
    assert (plan_crit.days, plan.days) == (7, 14)
    assert "dentro de 7 días" in plan_crit.text and "dentro de 14 días" in plan.text
    assert graded_action("Alerta", [b("fe")], "motor").hours == 125


# -- main finding, causes -----------------------------------------------------------------------------


@pytest.mark.parametrize("essay", [e for e in CAT.essays if CAT.group(e) != "additive"])
@pytest.mark.parametrize("component", COMPONENTS)
def test_main_finding_is_one_short_line(essay, component):
    direction = "lower" if CAT.direction(essay) == "lower" else "upper"
    text = main_finding([b(essay, "critical", direction), b("fe", "marginal", points=1.0)], component, CAT)
    assert text.startswith(component.capitalize() + ":") and text.endswith(".")
    assert "nivel crítico" in text, text
    assert len(text.split()) <= 20, text
    assert "\n" not in text


def test_water_preventing_the_count_is_named():
    water = {"countPreventedByWater": True}
    assert "el agua impidió el conteo de partículas" in main_finding([b("water")], "transmision", CAT, water)
    assert "water" in explained_causes([b("pq_index")], "transmision", CAT, water)
    text = offline_recommendation([b("pq_index")], "transmision", CAT, "Alerta", water)
    assert "agua" in text.split(".")[0], "water is the main finding"


def test_machine_main_finding_counts_the_other_compartments():
    comps = [
        {"component": "motor", "status": "Anormal", "breaches": [b("fe", "critical")]},
        {"component": "transmision", "status": "Alerta", "breaches": [b("visc_100c")]},
        {"component": "diferencial", "status": "Alerta", "breaches": [b("cu")]},
        {"component": "direccion", "status": "Normal", "breaches": []},
    ]
    text = machine_main_finding(comps, CAT)
    assert text.startswith("Motor: desgaste") and "Otros 2 compartimentos con hallazgos." in text
    assert "Otro compartimento con hallazgos." in machine_main_finding(comps[:2], CAT)
    assert len(text.split()) <= 20


# -- Spanish agreement ----------------------------------------------------------------------------------


def test_the_checker_catches_the_known_errors():
    for wrong in (
        "El viscosidad sobre el grado aparece en varios compartimentos",
        "El partículas ferrosas aparece",
        "Otros 1 compartimentos en seguimiento",
        "para los 1 equipo más prioritarios",
        "hace 1 días",
        "2 compartimento",
        "Las partículas ferrosas aparece en varios",
    ):
        assert agreement_errors(wrong), wrong
    for right in (
        "La viscosidad sobre el grado aparece",
        "Las partículas ferrosas aparecen",
        "Otro compartimento en seguimiento",
        "Otros 2 compartimentos",
        "hace 1 día",
        "0 equipos",
        "Las partículas ferrosas aparecen en varios",
    ):
        assert not agreement_errors(right), right


def test_nouns_and_counts_agree():
    for noun in NOUNS.values():
        for n in range(0, 4):
            for other in (False, True):
                text = count(n, noun.singular, other=other)
                assert not agreement_errors(text), text
        for kind in ("def", "indef", "other", "this"):
            assert not agreement_errors(det(kind, noun.singular)), det(kind, noun.singular)
            assert not agreement_errors(det(kind, noun.plural)), det(kind, noun.plural)
    assert det("def", "viscosidad sobre el grado", capital=True) == "La viscosidad sobre el grado"
    assert det("def", "partículas ferrosas") == "las partículas ferrosas"
    assert count(1, "compartimento", other=True) == "otro compartimento"
    assert count(2, "compartimento", other=True) == "otros 2 compartimentos"
    assert count(3, "muestra", other=True) == "otras 3 muestras"


def _all_advice_texts() -> list[str]:
    texts = []
    for essay in CAT.essays:
        directions = ("upper", "lower") if CAT.direction(essay) == "both" else (
            ("lower",) if CAT.direction(essay) == "lower" else ("upper",)
        )  # fmt: skip
        for direction in directions:
            for level in LEVELS:
                for component in COMPONENTS:
                    for status in ("Alerta", "Anormal"):
                        one = [b(essay, level, direction)]
                        texts.append(offline_recommendation(one, component, CAT, status))
                        texts.append(main_finding(one, component, CAT))
                    # every finding beside another one and beside itself in another compartment
    keys = list(FINDINGS)
    essay_of = {
        "wear": "fe", "dust": "si", "water": "water", "fuel": "fuel", "coolant": "glycol",
        "viscosity_high": "visc_100c", "viscosity_low": "visc_40c", "debris": "pq_index",
        "cleanliness": "iso_4um", "degradation": "oxidation", "silicon": "si", "salts": "na", "soot": "soot",
    }  # fmt: skip
    for key in keys:
        e = essay_of[key]
        direction = "lower" if key == "viscosity_low" else "upper"
        for n in range(1, 7):
            comps = [
                {
                    "component": f"compartimento {i}",
                    "status": "Alerta",
                    "breaches": [b(e, direction=direction)],
                }
                for i in range(n)
            ]
            texts.append(offline_machine_recommendation("Alerta", comps, CAT))
            texts.append(machine_main_finding(comps, CAT))
    return texts


def test_every_advice_text_agrees():
    texts = _all_advice_texts()
    assert len(texts) > 1000
    errors = {t: agreement_errors(t) for t in texts if agreement_errors(t)}
    assert not errors, list(errors.items())[:5]
    joined = "\n".join(texts)
    for wrong in ("El viscosidad", "El partículas", "Otros 1 ", "otros 1 "):
        assert wrong not in joined, wrong
    assert "La viscosidad sobre el grado aparece en varios compartimentos" in joined
    assert not re.search(r"Las partículas ferrosas aparece\b", joined)


# -- the report template ---------------------------------------------------------------------------------


def report(unit, n, day, status="Normal", breaches=(), component="motor") -> dict:
    return {
        "client": "EMIN",
        "unitId": unit,
        "machineName": "camion",
        "machineModel": "930E",
        "componentName": component,
        "componentNameNormalized": component,
        "sampleNumber": f"{unit}-{component[:3]}-{n:03d}",
        "sampleDate": pd.Timestamp(day),
        "reportDate": pd.Timestamp(day),
        "fe": 10.0,
        "breached_essays": json.dumps(list(breaches)),
        "severity_score": sum(x["points"] for x in breaches),
        "report_status": status,
        "limits_version": "limits-x",
        "countPreventedByWater": False,
    }


def fleet(n_todo: int, n_stale: int, n_normal: int = 1) -> pd.DataFrame:
    rows = []
    for i in range(n_todo):
        rows.append(report(f"A{i}", 1, "2025-06-10", "Anormal", [b("fe", "critical", points=6.0)] * 2))
        rows.append(report(f"A{i}", 2, "2025-06-10", "Alerta", [b("visc_100c")], "transmision"))
    for i in range(n_stale):
        rows.append(report(f"S{i}", 1, "2025-03-01", "Anormal", [b("glycol", "critical", points=18.0)]))
    for i in range(n_normal):
        rows.append(report(f"N{i}", 1, "2025-06-12"))
    return pd.DataFrame(rows)


def visible(html: str) -> str:
    text = re.sub(r"<style>.*?</style>|<svg\b.*?</svg>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text))


def test_report_template_is_jinja2_with_autoescape():
    env = _environment()
    assert env.autoescape is True
    assert env.list_templates() == ["fleet_report.html.j2"]


@pytest.mark.parametrize("n_todo", [0, 1, 2, 3])
@pytest.mark.parametrize("n_stale", [0, 1, 2])
def test_every_report_text_agrees(n_todo, n_stale):
    reports = fleet(n_todo, n_stale)
    machines = machine_status_current(reports)
    for as_of in (date(2025, 6, 14), date(2025, 6, 11), date(2026, 1, 1)):
        html = render_fleet_report("EMIN", reports, machines, pd.DataFrame(), CAT, as_of=as_of)
        text = visible(html)
        assert not agreement_errors(text), agreement_errors(text)
        assert f"Equipos a atender ahora ({n_todo})" in text


def test_freshness_is_measured_against_the_report_date():
    reports = fleet(1, 1)
    machines = machine_status_current(reports)
    html = render_fleet_report("EMIN", reports, machines, pd.DataFrame(), CAT, as_of=date(2025, 6, 14))
    text = visible(html)
    assert "Informe al 2025-06-14" in text and "hace 4 días" in text
    assert "Datos antiguos" not in text
    stale = html[html.index('<section id="sin-muestras">') :]
    assert 'data-unit="S0"' in stale and "S0 · 2025-03-01 (Anormal)" in stale
    actions = html[html.index('<section id="acciones">') : html.index('<section id="tendencias">')]
    assert 'data-unit="S0"' not in actions, "a stale machine is not in the list to act on now"
    old = visible(render_fleet_report("EMIN", reports, machines, pd.DataFrame(), CAT, as_of=date(2026, 1, 1)))
    assert "Datos antiguos: la muestra más reciente es del 2025-06-12, 203 días antes" in old
    assert "Equipos a atender ahora (1)" in old and "hace 205 días" in old, "triaged as of the newest sample"
    assert "S0 · 2025-03-01 (Anormal)" in old
    silver = pd.DataFrame({"sampleDate": [pd.Timestamp("2025-06-12")]})
    fresh = checks.freshness(silver, 40, pd.Timestamp("2025-06-14"))
    late = checks.freshness(silver, 40, pd.Timestamp("2026-01-01"))
    assert fresh.passed and fresh.metadata["age_days"] == 2 and fresh.metadata["report_date"] == "2025-06-14"
    assert not late.passed and late.metadata["age_days"] == 203


def test_report_date_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("OIL_REPORT_DATE", "2025-02-03")
    assert get_settings().report_date() == date(2025, 2, 3)
    monkeypatch.setenv("OIL_REPORT_DATE", "3 feb")
    with pytest.raises(ValueError, match="OIL_REPORT_DATE"):
        get_settings().report_date()


def test_same_inputs_and_date_same_bytes():
    reports = fleet(3, 2)
    machines = machine_status_current(reports)
    args = ("EMIN", reports, machines, pd.DataFrame(), CAT)
    assert render_fleet_report(*args, as_of=date(2025, 6, 14)) == render_fleet_report(
        *args, as_of=date(2025, 6, 14)
    )


# -- triage --------------------------------------------------------------------------------------------


def test_triage_orders_by_action_evidence_and_recency():
    rows = [
        report("OLD", 1, "2025-04-08", "Anormal", [b("fe", "critical", points=6.0), b("cu", "critical", points=6.0)]),
        report("PLAN", 1, "2025-06-12", "Anormal", [b("fe", "critical", points=6.0), b("cu", "condemning")]),
        report("STOP", 1, "2025-06-01", "Anormal", [b("glycol", "critical", points=18.0)]),
        report("ALERTA", 1, "2025-06-13", "Alerta", [b("fe", "critical", points=6.0)]),
        report("WEAK", 1, "2025-05-20", "Anormal", [b("cu", "critical", points=6.0), b("pb", "condemning")]),
        report("NORMAL", 1, "2025-06-13"),
    ]  # fmt: skip
    reports = pd.DataFrame(rows)
    tri = triage(machine_status_current(reports), reports, CAT, pd.Timestamp("2025-06-14"))
    assert list(tri["unitId"]) == ["STOP", "PLAN", "WEAK", "ALERTA", "NORMAL", "OLD"]
    assert tri.set_index("unitId").loc["OLD", "stale"], "67 days old: listed apart, not first"
    assert list(tri["action_grade"][:4]) == ["stop", "plan", "plan", "resample"]
    p = TriageParams()
    assert recency(3, p) == 1.0 and recency(40, p) == p.min_recency and 0.5 < recency(20, p) < 1.0


# -- the demo fleet ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emin_demo():
    from oil_analysis.domain.classify import ClassificationParams, classify_reports
    from oil_analysis.domain.harmonize import harmonize
    from oil_analysis.domain.labs.als import read_als_parquet
    from oil_analysis.domain.limits import LimitParams, compute_limits

    read = read_als_parquet(
        str(DEMO_BRONZE / "emin" / "muestrasAlsHistoricos.parquet"), CAT, "America/Santiago"
    )
    silver, _, _ = harmonize([read.samples], "EMIN", as_of=pd.Timestamp("2100-01-01"))
    reports = classify_reports(
        silver, compute_limits(silver, CAT, LimitParams()), CAT, ClassificationParams()
    )
    return reports, machine_status_current(reports)


def test_demo_emin_is_as_calm_as_the_real_fleet(emin_demo):
    reports, machines = emin_demo
    flagged = (reports["report_status"] != "Normal").mean()
    anormal = (machines["machine_status"] == "Anormal").mean()
    assert 0.08 <= flagged <= 0.20, flagged
    assert anormal <= 0.15, anormal
    assert (machines["machine_status"] == "Anormal").sum() >= 3, "a few clearly failing units remain"


def test_demo_stop_advice_only_where_the_rules_say(emin_demo):
    reports, _ = emin_demo
    stops = 0
    for r in reports[reports["report_status"] != "Normal"].to_dict("records"):
        breaches = json.loads(r["breached_essays"])
        action = graded_action(r["report_status"], breaches, r["componentName"])
        text = offline_recommendation(breaches, r["componentName"], CAT, r["report_status"], r)
        assert ("Detener el equipo" in text) == (action.grade == "stop"), text
        if action.grade == "stop":
            stops += 1
            assert stop_reasons(breaches, r["componentName"]), r["sampleNumber"]
    flagged = int((reports["report_status"] != "Normal").sum())
    assert 0 < stops < 0.2 * flagged, (stops, flagged)
