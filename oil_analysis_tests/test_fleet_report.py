"""The fleet report (pure): given classified reports, machine status and limits, this HTML page.

Sections present, limit lines drawn (upper and lower), Spanish labels, every text escaped, nothing a
browser would fetch; and, on the demo data through the asset, a failing unit with its trend chart.
"""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from datetime import date

import pandas as pd
import pytest
from dagster import AssetSelection, DagsterInstance, materialize

from oil_analysis.domain.catalog import load_catalog
from oil_analysis.domain.fleet import machine_status_current
from oil_analysis.report import (
    ReportParams,
    render_fleet_report,
    status_by_month,
    status_over_time_markdown,
)
from oil_analysis.report.svg import LimitLine, Point, fmt, nice_ticks, trend_chart
from oil_analysis.storage.layout import fleet_report_path

VERSION = "limits-0123456789abcdef"
FE_LIMITS = {"marginal": 20.0, "condemning": 30.0, "critical": 40.0}
VISC_UPPER = {"marginal": 16.0, "condemning": 17.5, "critical": 19.0}
VISC_LOWER = {"marginal": 13.0, "condemning": 11.5, "critical": 10.0}


def limit_row(machine, component, essay, group, direction, levels, kind="level") -> dict:
    return {
        "client": "CDA",
        "machine": machine,
        "component": component,
        "stratum": "ALL",
        "essay": essay,
        "group": group,
        "limit_method": "percentile",
        "kind": kind,
        "direction": direction,
        "baseline": float("nan"),
        "sample_count": 40,
        "comparison": "strict",
        "version": VERSION,
        "computed_at": pd.Timestamp("2025-06-01"),
        **levels,
    }


LIMITS = pd.DataFrame(
    [
        limit_row("camion", "motor", "fe", "wear", "upper", FE_LIMITS),
        limit_row(
            "camion",
            "motor",
            "fe",
            "wear",
            "upper",
            {"marginal": 5, "condemning": 8, "critical": 12},
            "trend",
        ),
        limit_row("camion", "motor", "visc_100c", "physicochemical", "upper", VISC_UPPER),
        limit_row("camion", "motor", "visc_100c", "physicochemical", "lower", VISC_LOWER),
    ]
)


def breach(essay, group, level, direction, value, limit, points, kind="level") -> dict:
    return {
        "essay": essay,
        "group": group,
        "level": level,
        "direction": direction,
        "kind": kind,
        "value": value,
        "limit": limit,
        "points": points,
    }


def report(unit, n, day, fe, visc, status="Normal", breaches=(), rec="Sin acciones.", score=0.0) -> dict:
    return {
        "client": "CDA",
        "unitId": unit,
        "machineName": "camion",
        "machineModel": "789C",
        "componentName": "motor",
        "componentNameNormalized": "motor",
        "sampleNumber": f"{unit}-{n:03d}",
        "sampleDate": pd.Timestamp(day),
        "reportDate": pd.Timestamp(day) + pd.Timedelta(days=5),
        "fe": fe,
        "visc_100c": visc,
        "breached_essays": json.dumps(list(breaches)),
        "severity_score": score,
        "report_status": status,
        "limits_version": VERSION,
        "ai_recommendation": rec,
    }


def fleet(
    recommendation: str = "Detener el equipo e inspeccionar el motor.",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """T_01: motor iron rising through its limits and viscosity below its lower limits (Anormal);
    T_02: always Normal."""
    days = pd.date_range("2025-01-01", periods=6, freq="MS") + pd.Timedelta(days=4)
    rows = [report("T_01", i, d, 10.0 + i, 14.0) for i, d in enumerate(days[:-1])]
    rows.append(
        report(
            "T_01",
            9,
            days[-1],
            45.0,
            9.5,
            "Anormal",
            [
                breach("fe", "wear", "critical", "upper", 45.0, 40.0, 6.0),
                breach("visc_100c", "physicochemical", "critical", "lower", 9.5, 10.0, 6.0),
                breach("fe", "wear", "critical", "upper", 31.0, 12.0, 3.0, kind="trend"),
                breach("zn", "additive", "marginal", "lower", 900.0, 1000.0, 0.0),
            ],
            'Motor con desgaste: revisar <filtros> & "sellos".',
            15.0,
        )
    )
    rows += [report("T_02", i, d, 8.0, 14.2) for i, d in enumerate(days)]
    reports = pd.DataFrame(rows)
    machines = machine_status_current(reports)
    machines["machine_ai_recommendation"] = [
        recommendation if s != "Normal" else "Sin acciones." for s in machines["machine_status"]
    ]
    return reports, machines


def render(name: str = "Minera Carmen de Andacollo", **kw) -> str:
    reports, machines = fleet(**kw)
    return render_fleet_report(name, reports, machines, LIMITS, load_catalog(), as_of=date(2025, 6, 20))


def svgs(html: str) -> list[ET.Element]:
    """Every inline SVG of the page, parsed as XML (so each one is well-formed)."""
    return [ET.fromstring(s) for s in re.findall(r"<svg\b.*?</svg>", html, flags=re.S)]


def test_every_section_is_present_in_order():
    html = render()
    assert html.startswith("<!DOCTYPE html>") and '<html lang="es">' in html
    sections = ("acciones", "tendencias", "sin-muestras", "resumen", "datos")
    positions = [html.index(f'<section id="{s}">') for s in sections]
    assert positions == sorted(positions), "triage first"
    assert 'id="unit-T_01"' in html and 'id="unit-T_02"' not in html, "only units with findings get details"
    actions = html[positions[0] : positions[1]]
    assert 'data-unit="T_01"' in actions and 'data-unit="T_02"' not in actions
    assert "Motor: desgaste — Hierro, nivel crítico, en aumento." in actions, "main finding"
    assert 'data-grade="stop"' in actions and "confirmado por una tendencia al alza" in actions
    details = html[positions[1] : positions[2]]
    assert "Detener el equipo e inspeccionar el motor." in details, "full recommendation in the details"
    data = html[positions[4] :]
    assert VERSION in data and "2025-06-20" in data and "2025-06-05" in data


def test_trend_charts_draw_upper_and_lower_limits_of_the_breached_essays():
    html = render()
    figures = re.findall(r'<figure class="trend" data-essay="([^"]+)"', html)
    assert figures == ["fe", "visc_100c"], "scoring breaches only (not the additive), one chart per essay"
    charts = [s for s in svgs(html) if "trend" in s.get("class", "")]
    assert len(charts) == 2
    fe, visc = charts
    lines = {
        (ln.get("data-level"), ln.get("data-direction")): float(ln.get("data-value"))
        for ln in fe.iter("line")
        if "limit" in (ln.get("class") or "")
    }
    assert lines == {(lv, "upper"): v for lv, v in FE_LIMITS.items()}, "level limits, not the trend ones"
    visc_lines = {
        (ln.get("data-level"), ln.get("data-direction")): float(ln.get("data-value"))
        for ln in visc.iter("line")
        if "limit" in (ln.get("class") or "")
    }
    assert visc_lines == {
        **{(lv, "upper"): v for lv, v in VISC_UPPER.items()},
        **{(lv, "lower"): v for lv, v in VISC_LOWER.items()},
    }
    assert len(list(fe.iter("circle"))) == 6, "every sample of the compartment is a point"


def test_labels_are_in_spanish():
    html = render()
    for text in (
        "Informe de flota — Minera Carmen de Andacollo",
        "Resumen de la flota",
        "Equipos a atender ahora (1)",
        "Equipos sin muestras recientes (0)",
        "Detalle por equipo",
        "Datos y límites",
        "remuestrear",
        "Versión de límites",
        "Informe al 2025-06-20",
        "Recomendación",
        "Crítico superior: 45 ppm &gt; límite 40 ppm",
        "Crítico inferior: 9.5 cSt &lt; límite 10 cSt",
        "(tendencia)",
        "Condenatorio inf.",
        "Marginal sup.",
        "Hierro",
        "Viscosidad 100°C",
        "Equipos por estado",
        "Informes por mes y estado",
    ):
        assert text in html, text


def test_every_text_is_escaped():
    html = render(name='<script>alert("x")</script> & Co', recommendation="Revisar <b>todo</b> & más")
    assert "<script" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Co" in html
    assert "Revisar &lt;b&gt;todo&lt;/b&gt; &amp; más" in html
    assert "revisar &lt;filtros&gt; &amp; &#34;sellos&#34;." in html
    svgs(html)  # still well-formed


def test_nothing_for_a_browser_to_fetch():
    html = render()
    assert not re.search(r"https?://", html)
    for fetching in ("<script", "<img", "<link", "<iframe", "src=", "url(", "@import", "@font-face"):
        assert fetching not in html, fetching
    assert "xmlns" not in html, "inline SVG needs no namespace URL"


def test_same_inputs_same_bytes():
    assert render() == render()


def test_a_fleet_without_findings_needs_no_action():
    reports, machines = fleet()
    reports = reports[reports["unitId"] == "T_02"]
    machines = machines[machines["unitId"] == "T_02"]
    html = render_fleet_report("EMIN", reports, machines, LIMITS, load_catalog())
    assert "Ningún equipo requiere acción." in html
    assert "Ningún compartimento tiene hallazgos en su último informe." in html
    assert "Informe al 2025-06-05" in html, "the report date defaults to the newest sample"


def test_charts_of_the_most_urgent_units_only():
    reports, machines = fleet()
    more = reports[reports["unitId"] == "T_01"].assign(
        unitId="T_03", sampleNumber=lambda d: "T_03" + d["sampleNumber"].str[4:]
    )
    reports = pd.concat([reports, more], ignore_index=True)
    machines = machine_status_current(reports)
    html = render_fleet_report(
        "X", reports, machines, LIMITS, load_catalog(), params=ReportParams(max_units=1)
    )
    assert html.count('<details class="unit"') == 2, "every unit to act on has its details"
    assert html.count('<figure class="trend"') == 2, "charts of the first unit only"
    assert "Gráficos de 1 de 2 equipos con hallazgos" in html
    assert 'data-unit="T_03"' in html, "the action table still lists every unit"


def test_status_by_month_fills_empty_months():
    reports, _ = fleet()
    reports = reports[reports["sampleDate"] != reports["sampleDate"].sort_values().unique()[2]]
    months = status_by_month(reports)
    assert [m for m, _ in months] == ["2025-01", "2025-02", "2025-03", "2025-04", "2025-05", "2025-06"]
    assert months[2][1] == {"Normal": 0, "Alerta": 0, "Anormal": 0}
    assert months[-1][1] == {"Normal": 1, "Alerta": 0, "Anormal": 1}
    assert [m for m, _ in status_by_month(reports, months=2)] == ["2025-05", "2025-06"]


def test_status_over_time_markdown_embeds_a_standalone_svg():
    reports, _ = fleet()
    md = status_over_time_markdown(reports)
    uri = re.search(r"!\[[^\]]*\]\((data:image/svg\+xml;base64,[A-Za-z0-9+/=]+)\)", md)
    assert uri, md[:200]
    svg = ET.fromstring(base64.b64decode(uri.group(1).split(",", 1)[1]))
    assert svg.tag == "{http://www.w3.org/2000/svg}svg", "an image needs its namespace"
    assert "| 2025-06 | 1 | 0 | 1 | 50% |" in md


def test_trend_chart_geometry():
    points = [Point(date(2025, 1, 1), 10.0), Point(date(2025, 3, 1), 50.0, "Anormal")]
    limits = [LimitLine("marginal", "upper", 20.0), LimitLine("critical", "upper", 40.0)]
    svg = ET.fromstring(trend_chart(points, limits, "Hierro <motor>", "ppm"))
    y = {ln.get("data-level"): float(ln.get("y1")) for ln in svg.iter("line") if ln.get("data-level")}
    assert y["critical"] < y["marginal"], "a higher limit is drawn higher"
    circles = list(svg.iter("circle"))
    assert float(circles[1].get("cy")) < y["critical"] and float(circles[0].get("cy")) > y["marginal"]
    assert svg.find("title").text == "Hierro <motor>"


def test_number_format_and_ticks():
    assert [fmt(v) for v in (45.0, 9.5, 12.95, 0.123, 1234.5, -0.0, float("nan"))] == [
        "45",
        "9.5",
        "12.95",
        "0.12",
        "1234",
        "0",
        "",
    ]
    assert nice_ticks(0, 48) == [0, 10, 20, 30, 40]
    assert nice_ticks(0, 3.2, min_step=1) == [0, 1, 2, 3], "levels 0-3 get whole ticks"


def test_demo_data_report_shows_a_failing_unit_with_trends_and_limits(demo_root):
    from oil_analysis.definitions import all_assets, build_resources

    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            all_assets,
            selection=AssetSelection.assets("fleet_report").upstream(),
            partition_key="cda",
            instance=instance,
            resources=build_resources(str(demo_root)),
        )
        assert result.success
        meta = {
            e.asset_key.path[-1]: e.step_materialization_data.materialization.metadata
            for e in result.get_asset_materialization_events()
        }
    html = (demo_root / fleet_report_path("cda")).read_text()
    assert meta["fleet_report"]["machines_needing_action"].value >= 1
    assert meta["fleet_report"]["trend_charts"].value >= 1
    unit = re.search(r'<details class="unit" id="unit-([^"]+)" open><summary>.*?(Anormal|Alerta)', html)
    assert unit, "a failing unit with its own details, open"
    section = html[unit.start() : html.index("</details>", unit.start())]
    assert '<figure class="trend"' in section and 'class="limit limit-' in section
    assert not re.search(r"https?://", html)
    assert "status_over_time" in meta["classified_reports"]
    from oil_analysis.__main__ import summarize
    from oil_analysis.storage.filesystem import Storage

    summary = "\n".join(summarize(Storage.local(str(demo_root)), "cda"))
    assert f"fleet report       {demo_root / fleet_report_path('cda')}" in summary, summary


@pytest.mark.parametrize("bad", [None, float("inf")])
def test_unreadable_values_are_not_drawn(bad):
    svg = trend_chart([Point(date(2025, 1, 1), 1.0), Point(date(2025, 2, 1), bad)], [], "x")
    assert len(list(ET.fromstring(svg).iter("circle"))) == 1
