"""The offline advisor and the prompts: pure functions, no endpoint."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from oil_analysis.domain.advice import (
    FEW_SHOTS,
    NORMAL_MACHINE_TEXT,
    NORMAL_REPORT_TEXT,
    PROMPT_VERSION,
    SYSTEM_PROMPT,
    build_user_prompt,
    messages,
    offline_machine_recommendation,
    offline_recommendation,
)
from oil_analysis.domain.advice.prompts import TABLE_HEADER
from oil_analysis.domain.catalog import load_catalog
from oil_analysis.pipeline.advice import (
    MACHINE_COLUMNS,
    REPORT_COLUMNS,
    recommend_machines,
    recommend_reports,
)

from .llm_server import advisor_reports

CAT = load_catalog()
# Words that would mean "change the oil" or "intervene the component".
CHANGE_WORDS = ("cambi", "reemplaz", "drenar", "interven", "inspeccion", "detener", "reparar")


def breach(essay, level="condemning", direction="upper", value=10.0, limit=5.0, kind="level", points=3.0):
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


@pytest.mark.parametrize(
    ("breaches", "expected"),
    [
        ([breach("fe")], ["desgaste", "Hierro", "engranajes", "tapón magnético"]),
        ([breach("cu"), breach("pb")], ["desgaste", "Cobre", "Plomo", "bujes"]),
        ([breach("si"), breach("al")], ["ingreso de polvo", "Silicio", "admisión"]),
        ([breach("si")], ["silicio sin aluminio", "sellante"]),
        ([breach("na"), breach("water", value=2, limit=1)], ["refrigerante", "agua"]),
        ([breach("na")], ["sodio o potasio sin agua", "aceite de relleno"]),
        ([breach("water", value=2, limit=1)], ["agua", "respiraderos", "Cambiar aceite"]),
        ([breach("water_pct")], ["agua", "Cambiar aceite"]),
        ([breach("fuel_pct")], ["dilución por combustible", "inyectores", "Cambiar aceite"]),
        ([breach("glycol", value=2, limit=1)], ["refrigerante", "sistema de enfriamiento", "Cambiar aceite"]),
        ([breach("visc_100c", direction="upper")], ["viscosidad sobre el grado", "grado especificado"]),
        ([breach("visc_40c", direction="lower")], ["viscosidad bajo el grado", "dilución por combustible"]),
        ([breach("pq_index")], ["partículas ferrosas", "tapón magnético"]),
        ([breach("debris_magnetic", value=2, limit=1)], ["partículas ferrosas", "tapón magnético"]),
        ([breach("pc_14um")], ["limpieza", "diálisis"]),
        ([breach("oxidation")], ["degradación del aceite", "Oxidación", "temperatura de operación"]),
        ([breach("tbn", direction="lower")], ["degradación del aceite", "Número básico total"]),
        ([breach("soot")], ["hollín", "combustión"]),
    ],
)
def test_each_breach_group_yields_its_recommendation(breaches, expected):
    text = offline_recommendation(json.dumps(breaches), "motor", CAT, status="Anormal")
    for phrase in expected:
        assert phrase in text, (phrase, text)
    assert text.startswith("Motor")


@pytest.mark.parametrize("essay", CAT.of_group("additive"))
@pytest.mark.parametrize("level", ["marginal", "condemning", "critical"])
@pytest.mark.parametrize("direction", ["upper", "lower"])
def test_additive_only_breaches_never_recommend_a_change(essay, level, direction):
    text = offline_recommendation([breach(essay, level, direction, points=0.0)], "transmision", CAT)
    lowered = text.lower()
    assert not [w for w in CHANGE_WORDS if w in lowered], text
    assert "aditivo" in lowered and CAT.name_es(essay) in text
    assert "mantener el aceite en servicio" in lowered


def test_additives_beside_a_real_finding_are_information_only():
    mixed = [
        breach("zn", "critical", "lower", points=0.0),
        breach("fe", "marginal", points=1.0),
        breach("b", "critical", points=0.0),
    ]
    text = offline_recommendation(mixed, "motor", CAT, status="Alerta")
    assert "Cambiar aceite" not in text  # marginal wear: follow-up only, whatever the additives say
    assert "Boro y Zinc son aditivos" in text and "no indica falla" in text
    assert "nivel marginal" in text  # the critical additive levels do not set the urgency
    assert text.replace(
        " Boro y Zinc son aditivos: refleja la formulación del aceite y no indica falla.", ""
    ) == offline_recommendation([breach("fe", "marginal", points=1.0)], "motor", CAT, status="Alerta")


def test_action_follows_the_graded_rules():
    stop = offline_recommendation(
        [breach("fe", "critical", points=6.0), breach("pq_index", "critical")], "motor", CAT, "Anormal"
    )
    plan = offline_recommendation([breach("fe", "critical", points=6.0)], "motor", CAT, "Anormal")
    alerta = offline_recommendation([breach("water", "marginal", value=1, limit=0)], "motor", CAT, "Alerta")
    assert "Detener el equipo" in stop and "confirmado por el índice PQ" in stop and "50 horas" in stop
    assert "Detener" not in plan and "dentro de 7 días" in plan
    assert "nueva muestra dentro de 125 horas" in alerta and "Detener" not in alerta
    assert "Cambiar aceite" not in alerta


def test_offline_text_is_deterministic_short_and_order_free():
    every = [
        breach(e, "critical", "lower" if CAT.direction(e) == "lower" else "upper")
        for e in (
            "fe",
            "cu",
            "si",
            "water",
            "fuel",
            "glycol",
            "visc_100c",
            "pq_index",
            "oxidation",
            "soot",
            "pc_4um",
            "zn",
            "na",
        )
    ]
    a = offline_recommendation(every, "mando final izquierdo", CAT)
    b = offline_recommendation(list(reversed(every)), "mando final izquierdo", CAT)
    assert a == b
    assert len(a.split()) <= 150
    assert "Otros hallazgos" in a


def test_no_breach_gives_the_normal_text():
    assert offline_recommendation("[]", "motor", CAT) == NORMAL_REPORT_TEXT
    assert offline_recommendation(None, "motor", CAT) == NORMAL_REPORT_TEXT


def test_machine_text_ranks_compartments_by_status_and_weight():
    comps = [
        {"component": "mando final izquierdo", "status": "Anormal", "breaches": [breach("fe", "critical")]},
        {"component": "motor", "status": "Anormal", "breaches": [breach("si"), breach("fe")]},
        {"component": "transmision", "status": "Alerta", "breaches": [breach("water", value=2, limit=1)]},
        {"component": "diferencial", "status": "Normal", "breaches": []},
    ]
    text = offline_machine_recommendation("Anormal", comps, CAT)
    assert text.startswith("Máquina en estado Anormal: 3 compartimentos")
    assert (
        text.index("Prioridad 1: motor")
        < text.index("Prioridad 2: mando final")
        < text.index("Prioridad 3: transmision")
    )
    assert "diferencial" not in text and len(text.split()) <= 150
    assert offline_machine_recommendation("Normal", comps, CAT) == NORMAL_MACHINE_TEXT


# -- prompts ---------------------------------------------------------------------------------------


def _pair():
    df = advisor_reports(60)
    row = df.iloc[45].to_dict()
    prev = df.set_index("sampleNumber").loc[row["previousSampleNumber"]].to_dict()
    prev["sampleNumber"] = row["previousSampleNumber"]
    return row, prev


def test_user_prompt_carries_the_facts_and_the_trend_but_not_the_lab_comment():
    row, prev = _pair()
    row["fe"], prev["fe"] = 41.0, 30.0
    row["breached_essays"] = json.dumps([breach("fe", value=41.0, limit=18.0)])
    text = build_user_prompt(row, prev, CAT)
    for fact in (
        "Unidad: T_05",
        "Máquina: camion 793F",
        "Compartimento: motor",
        "Horas del aceite: 145 h",
        "Aceite: DELVAC 1300 15W-40",
        "Fecha de muestra: 2024-01-05",
        "Muestra anterior: 2024-01-01 (4 días antes)",
        "Estado del informe: Alerta (puntaje 7)",
    ):
        assert fact in text, fact
    assert "| Hierro (ppm) | nivel | 41 | 18 | Condenatorio | superior | 30 | +11 |" in text
    assert "COMENTARIO" not in text and "labComment" not in text
    assert "Aditivos fuera de rango" in text


def test_trend_breach_and_additives_are_shown_as_such():
    row, prev = _pair()
    row["breached_essays"] = json.dumps(
        [breach("si", kind="trend", value=7.0, limit=5.0), breach("zn", "marginal", "lower", points=0.0)]
    )
    text = build_user_prompt(row, None, CAT)
    assert "| Silicio (ppm) | tendencia | 7 | 5 | Condenatorio | superior | — | +7 |" in text
    assert "Muestra anterior: sin muestra anterior" in text
    assert "Zinc (marginal, inferior)" in text and "| Zinc" not in text


def test_few_shots_use_exactly_the_table_of_the_real_prompt():
    row, prev = _pair()
    real = build_user_prompt(row, prev, CAT).splitlines()
    assert len(FEW_SHOTS) == 3
    for user, answer in FEW_SHOTS:
        lines = user.splitlines()
        assert TABLE_HEADER in lines and TABLE_HEADER in real
        assert [ln.split(":")[0] for ln in lines if ":" in ln and not ln.startswith("|")] == [
            ln.split(":")[0] for ln in real if ":" in ln and not ln.startswith("|")
        ]
        assert len(answer.split()) <= 150
    msgs = messages("hola")
    assert msgs[0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert [m["role"] for m in msgs[1:]] == ["user", "assistant"] * 3 + ["user"]


def test_system_prompt_states_the_rules_and_the_version_tracks_it():
    for phrase in (
        "ingeniero mecánico",
        "equipos mineros",
        "aditivos",
        "nunca justifica un cambio de aceite",
        "150 palabras",
        "detener el equipo solo con refrigerante",
        "Nunca pidas detener el equipo fuera de esos casos",
        "hallazgo principal",
    ):
        assert phrase in SYSTEM_PROMPT
    assert PROMPT_VERSION.startswith("advice-v2-") and len(PROMPT_VERSION) == len("advice-v2-") + 8


def test_report_prompt_carries_the_graded_action_and_the_water_that_blocks_the_count():
    row = {
        "unitId": "T_01",
        "componentName": "motor",
        "report_status": "Anormal",
        "severity_score": 12.0,
        "countPreventedByWater": True,
        "breached_essays": json.dumps([breach("fe", "critical", points=6.0), breach("pq_index", "critical")]),
    }
    prompt = build_user_prompt(row, None, CAT)
    assert "Acción según reglas: Detener el equipo e inspeccionar antes de seguir operando." in prompt
    assert "confirmado por el índice PQ" in prompt
    assert "El agua de la muestra impidió el conteo de partículas." in prompt
    row["breached_essays"] = json.dumps([breach("fe", "critical", points=6.0)])
    assert "Acción según reglas: Planificar la intervención dentro de 7 días." in build_user_prompt(
        row, None, CAT
    )


# -- the orchestrator without an endpoint ----------------------------------------------------------


def test_offline_run_fills_every_report_and_is_reproducible():
    df = advisor_reports(40, normal_every=4)
    out, stats = recommend_reports(df, None, "cda", None, CAT)
    again, _ = recommend_reports(df, None, "cda", None, CAT)
    pd.testing.assert_frame_equal(out, again)
    assert list(out.columns[-len(REPORT_COLUMNS) :]) == list(REPORT_COLUMNS)
    assert out["ai_recommendation"].notna().all()
    normal = out["report_status"] == "Normal"
    assert (out.loc[normal, "ai_source"] == "normal").all()
    assert (out.loc[normal, "ai_recommendation"] == NORMAL_REPORT_TEXT).all()
    assert (out.loc[~normal, "ai_source"] == "offline").all()
    assert out["ai_generated_at"].dtype == "datetime64[us]" and out["ai_generated_at"].isna().all()
    assert stats["sources"] == {"llm": 0, "cache": 0, "fallback": 0, "offline": 30, "normal": 10}
    assert stats["calls"] == 0


def test_empty_frames_get_the_columns():
    out, stats = recommend_reports(advisor_reports(0), None, "cda", None, CAT)
    assert len(out) == 0 and set(REPORT_COLUMNS) <= set(out.columns) and stats["rows"] == 0


def test_machine_recommendations_from_component_status_or_from_the_reports():
    reports = advisor_reports(40)
    last = reports.drop_duplicates(["unitId", "componentName"], keep="last")
    status = []
    for unit, g in last.groupby("unitId", sort=True):
        comps = [
            {
                "component": r.componentName,
                "status": "Normal" if unit == "T_00" else r.report_status,
                "severity_score": r.severity_score,
                "sample_date": str(r.sampleDate.date()),
                "sampleNumber": r.sampleNumber,
            }
            for r in g.itertuples()
        ]
        status.append(
            {
                "client": "CDA",
                "unitId": unit,
                "machineName": "camion",
                "machineModel": "793F",
                "machine_status": "Normal" if unit == "T_00" else "Anormal",
                "machine_score": 10.0,
                "component_status": json.dumps(comps),
            }
        )
    machines = pd.DataFrame(status)
    out, stats = recommend_machines(machines, reports, None, "cda", None, CAT)
    assert list(out.columns[-len(MACHINE_COLUMNS) :]) == list(MACHINE_COLUMNS)
    assert out.loc[0, "machine_ai_source"] == "normal"
    assert out.loc[0, "machine_ai_recommendation"] == NORMAL_MACHINE_TEXT
    assert (out.loc[1:, "machine_ai_source"] == "offline").all()
    assert out.loc[1, "machine_ai_recommendation"].startswith("Máquina en estado Anormal: 4 compartimentos")
    derived, _ = recommend_machines(
        machines.drop(columns="component_status"), reports, None, "cda", None, CAT
    )
    assert derived.loc[1, "machine_ai_recommendation"] == out.loc[1, "machine_ai_recommendation"]
    assert stats["sources"]["offline"] == 9
