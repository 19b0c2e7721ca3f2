"""The fleet report of one client: one self-contained HTML page for fleet managers (Spanish).

Pure: classified reports, machine status and limits in, text out. The page has inline CSS and inline
SVG only — no script, no font, no image or link that a browser would fetch — so it can be mailed,
archived or opened offline. Sections (each a ``<section id=…>``):

* ``resumen`` — machines and reports by status, units without recent samples, reports per month;
* ``acciones`` — machines needing action, most urgent first, with their recommendation;
* ``tendencias`` — for every compartment whose latest report is not Normal, the recent readings of
  its scoring breached essays against their marginal / condemning / critical limits;
* ``datos`` — limits version, catalog version, data freshness and how to read the charts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date
from html import escape

import pandas as pd

from ..domain.catalog import Catalog
from ..domain.fleet import latest_reports
from . import svg

STATUSES = ("Normal", "Alerta", "Anormal")
SECTIONS = ("resumen", "acciones", "tendencias", "datos")
# Catalog units written in English, as a Spanish reader expects them.
UNIT_ES = {"code": "código", "count/ml": "partículas/ml", "index": "índice", "level 0-3": "nivel 0-3"}
# Scales, not units: not repeated after every value.
UNITLESS = {"código", "índice", "nivel 0-3"}


@dataclass(frozen=True)
class ReportParams:
    """How much the report shows (keeps the page readable and small on large fleets)."""

    # Units with trend charts, most urgent first (the action table lists every unit).
    max_units: int = 20
    # Charts per compartment: its highest-scoring breached essays.
    max_essays: int = 4
    # Latest samples drawn per chart.
    history: int = 30
    # Months in the status-per-month chart.
    months: int = 24
    # A unit whose latest sample is older than this many days before ``as_of`` is listed as stale.
    freshness_days: int = 40


def _day(v) -> str:
    if v is None or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
        return "—"
    try:
        return pd.Timestamp(v).strftime("%Y-%m-%d")
    except (ValueError, TypeError):
        return "—"


def _text(v) -> str:
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v)


def _n(n: int) -> str:
    """An integer with Spanish thousands separators (1.234)."""
    return f"{n:,}".replace(",", ".")


def _badge(status: str) -> str:
    s = escape(_text(status))
    return f'<span class="badge st-{s}">{s}</span>'


def _essay_label(catalog: Catalog, essay: str) -> tuple[str, str]:
    """Spanish name and unit of an essay (the key itself when not in the catalog)."""
    if essay in catalog.table.index:
        unit = str(catalog.table.at[essay, "unit"])
        return str(catalog.table.at[essay, "name_es"]), UNIT_ES.get(unit, unit)
    return essay, ""


def status_by_month(reports: pd.DataFrame, months: int = 24) -> list[tuple[str, dict[str, int]]]:
    """Report counts per sampling month and status, the last ``months`` months with data
    (empty months inside the range included), oldest first: ``[("2025-01", {"Normal": n, …}), …]``."""
    if reports.empty:
        return []
    month = pd.to_datetime(reports["sampleDate"]).dt.to_period("M")
    counts = pd.crosstab(month, reports["report_status"].astype(str))
    full = pd.period_range(counts.index.min(), counts.index.max(), freq="M")[-months:]
    counts = counts.reindex(full, fill_value=0)
    return [(str(p), {s: int(row.get(s, 0)) for s in STATUSES}) for p, row in counts.iterrows()]


def status_over_time_markdown(reports: pd.DataFrame, months: int = 24, table_months: int = 12) -> str:
    """Markdown for the Dagster UI: a stacked-bar SVG (as a ``data:`` image, which the UI's markdown
    renders) of the reports per month and status, and a table of the latest months (text fallback)."""
    data = status_by_month(reports, months)
    if not data:
        return "_no reports_"
    chart = svg.status_months_chart(
        data, f"Reports per month by status (last {len(data)} months)", standalone=True
    )
    shares = [(c["Alerta"] + c["Anormal"]) / max(sum(c.values()), 1) for _, c in data]
    lines = [
        f"Reports per sampling month and status, {data[0][0]} → {data[-1][0]}:",
        "",
        f"![reports per month by status]({svg.data_uri(chart)})",
        "",
        "| month | Normal | Alerta | Anormal | non-Normal |",
        "|---|---|---|---|---|",
    ]
    for (label, c), share in list(zip(data, shares, strict=True))[-table_months:][::-1]:
        lines.append(f"| {label} | {c['Normal']} | {c['Alerta']} | {c['Anormal']} | {share:.0%} |")
    return "\n".join(lines)


def _limit_lines(limits: pd.DataFrame) -> dict[tuple[str, str, str], list[svg.LimitLine]]:
    """Level limits (all strata) per (machine, component, essay), upper then lower, by level."""
    if limits.empty:
        return {}
    rows = limits[limits["kind"].astype(str) == "level"]
    if "stratum" in rows:
        rows = rows[rows["stratum"].astype(str) == "ALL"]
    out: dict[tuple[str, str, str], list[svg.LimitLine]] = {}
    for r in rows.sort_values(
        ["machine", "component", "essay", "direction"], ascending=[1, 1, 1, 0]
    ).itertuples(index=False):
        lines = out.setdefault((str(r.machine), str(r.component), str(r.essay)), [])
        for level in svg.LEVEL_ES:
            value = getattr(r, level)
            if value is not None and not pd.isna(value):
                lines.append(svg.LimitLine(level, str(r.direction), float(value)))
    return out


def _breach_text(b: dict, unit: str) -> str:
    level = svg.LEVEL_ES.get(b.get("level", ""), b.get("level", ""))
    direction = svg.DIRECTION_ES.get(b.get("direction", ""), b.get("direction", ""))
    op = ">" if b.get("direction") == "upper" else "<"
    u = f" {unit}" if unit and unit not in UNITLESS else ""
    if b.get("kind") == "trend":
        return (
            f"{level} {direction} (tendencia): aumento de {svg.fmt(b['value'])}{u} desde la muestra "
            f"anterior {op} {svg.fmt(b['limit'])}{u}"
        )
    return f"{level} {direction}: {svg.fmt(b['value'])}{u} {op} límite {svg.fmt(b['limit'])}{u}"


def _component_block(
    latest: pd.Series,
    history: pd.DataFrame,
    lines: dict[tuple[str, str, str], list[svg.LimitLine]],
    catalog: Catalog,
    params: ReportParams,
) -> tuple[str, int]:
    """One compartment: its latest report, recommendation and trend charts; returns (html, charts)."""
    breaches = [b for b in json.loads(_text(latest.get("breached_essays")) or "[]") if b.get("points", 0) > 0]
    by_essay: dict[str, list[dict]] = {}
    for b in breaches:
        by_essay.setdefault(b["essay"], []).append(b)
    essays = list(by_essay)[: params.max_essays]
    head = (
        f"<h4>{escape(_text(latest['componentName']))} · {_badge(latest['report_status'])} · puntaje "
        f"{svg.fmt(float(latest['severity_score']))} · muestra {escape(_text(latest['sampleNumber']))} del "
        f"{_day(latest['sampleDate'])}</h4>"
    )
    parts = [f'<article class="component" data-status="{escape(_text(latest["report_status"]))}">', head]
    rec = _text(latest.get("ai_recommendation"))
    if rec:
        parts.append(f'<p class="recommendation"><strong>Recomendación:</strong> {escape(rec)}</p>')
    key = (_text(latest["machineName"]), _text(latest["componentNameNormalized"]))
    charts = 0
    parts.append('<div class="charts">')
    for essay in essays:
        name, unit = _essay_label(catalog, essay)
        series = (
            history[history[essay].notna()].tail(params.history) if essay in history else history.iloc[:0]
        )
        points = [
            svg.Point(
                pd.Timestamp(r.sampleDate).date(),
                float(getattr(r, essay)),
                str(r.report_status),
                f"{_day(r.sampleDate)} · {r.sampleNumber} · {svg.fmt(float(getattr(r, essay)))} {unit} · "
                f"{r.report_status}",
            )
            for r in series.itertuples(index=False)
        ]
        limit_lines = lines.get((*key, essay), [])
        title = f"{name} ({unit}) — {_text(latest['unitId'])} {_text(latest['componentName'])}"
        caption = "; ".join(_breach_text(b, unit) for b in by_essay[essay])
        note = "" if limit_lines else " <em>(sin límites de nivel para este ensayo)</em>"
        parts.append(
            f'<figure class="trend" data-essay="{escape(essay)}">'
            f"{svg.trend_chart(points, limit_lines, title, unit)}"
            f"<figcaption><strong>{escape(name)}</strong>{f' ({escape(unit)})' if unit else ''}: "
            f"{escape(caption)}{note}</figcaption></figure>"
        )
        charts += 1
    parts.append("</div>")
    rest = len(by_essay) - len(essays)
    if rest > 0:
        others = ", ".join(_essay_label(catalog, e)[0] for e in list(by_essay)[len(essays) :])
        parts.append(f'<p class="muted">Otros ensayos fuera de límite: {escape(others)}.</p>')
    parts.append("</article>")
    return "".join(parts), charts


def _summary(reports: pd.DataFrame, machines: pd.DataFrame, as_of: pd.Timestamp, params: ReportParams) -> str:
    m_counts = {s: int((machines["machine_status"].astype(str) == s).sum()) for s in STATUSES}
    r_counts = {s: int((reports["report_status"].astype(str) == s).sum()) for s in STATUSES}
    n_m, n_r = max(len(machines), 1), max(len(reports), 1)
    rows = "".join(
        f"<tr><td>{_badge(s)}</td><td>{m_counts[s]}</td><td>{m_counts[s] / n_m:.0%}</td>"
        f"<td>{_n(r_counts[s])}</td><td>{r_counts[s] / n_r:.0%}</td></tr>"
        for s in STATUSES
    )
    stale = machines[(as_of - pd.to_datetime(machines["latest_sample_date"])).dt.days > params.freshness_days]
    stale_text = (
        f"{len(stale)} equipo(s) sin muestras en los últimos {params.freshness_days} días: "
        + ", ".join(escape(_text(u)) for u in sorted(stale["unitId"].astype(str)))
        if len(stale)
        else f"Todos los equipos tienen muestras en los últimos {params.freshness_days} días."
    )
    months = status_by_month(reports, params.months)
    return (
        '<section id="resumen"><h2>Resumen de la flota</h2>'
        f"<p>{_n(len(machines))} equipos · {_n(len(reports))} informes · período "
        f"{_day(reports['sampleDate'].min())} a {_day(reports['sampleDate'].max())}</p>"
        + "<h3>Equipos por estado</h3>"
        + svg.status_bar(m_counts, "Equipos por estado")
        + "<table><thead><tr><th>Estado</th><th>Equipos</th><th>%</th><th>Informes</th><th>%</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        f'<p class="freshness">{stale_text}</p>'
        f"<h3>Informes por mes y estado (últimos {len(months)} meses)</h3>"
        + svg.status_months_chart(months, "Informes por mes y estado")
        + "</section>"
    )


def _actions(machines: pd.DataFrame, as_of: pd.Timestamp, charted: set[str]) -> str:
    todo = machines[machines["machine_status"].astype(str) != "Normal"]
    if todo.empty:
        return '<section id="acciones"><h2>Equipos que requieren acción</h2><p>Ningún equipo requiere acción.</p></section>'
    rows = []
    for i, r in enumerate(todo.itertuples(index=False), 1):
        days = (as_of - pd.Timestamp(r.latest_sample_date)).days
        machine = " ".join(_text(v) for v in (r.machineName, getattr(r, "machineModel", None)) if _text(v))
        unit = escape(_text(r.unitId))
        link = f'<a href="#unit-{unit}">{unit}</a>' if _text(r.unitId) in charted else unit
        rows.append(
            f'<tr data-unit="{unit}"><td>{i}</td><td>{link}</td>'
            f"<td>{escape(machine)}</td><td>{_badge(r.machine_status)}</td><td>{svg.fmt(float(r.machine_score))}</td>"
            f"<td>{int(r.components_anormal)} / {int(r.components_alerta)}</td>"
            f"<td>{_day(r.latest_sample_date)} <span class=muted>(hace {days} d)</span></td>"
            f'<td class="recommendation">{escape(_text(getattr(r, "machine_ai_recommendation", "")))}</td></tr>'
        )
    return (
        f'<section id="acciones"><h2>Equipos que requieren acción ({len(todo)})</h2>'
        "<p>Ordenados por prioridad: primero Anormal, luego Alerta; dentro de cada estado, el mayor puntaje.</p>"
        "<table><thead><tr><th>#</th><th>Equipo</th><th>Máquina</th><th>Estado</th><th>Puntaje</th>"
        "<th>Compartimentos Anormal / Alerta</th><th>Última muestra</th><th>Recomendación</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _trends(
    reports: pd.DataFrame,
    machines: pd.DataFrame,
    limits: pd.DataFrame,
    catalog: Catalog,
    params: ReportParams,
) -> tuple[str, list[str], int]:
    latest = latest_reports(reports)
    flagged = latest[latest["report_status"].astype(str) != "Normal"]
    order = [u for u in machines["unitId"].astype(str) if u in set(flagged["unitId"].astype(str))]
    shown = order[: params.max_units]
    lines = _limit_lines(limits)
    sort_cols = [c for c in ("sampleDate", "reportDate", "sampleNumber") if c in reports]
    history = reports[reports["unitId"].astype(str).isin(shown)].sort_values(sort_cols, kind="mergesort")
    groups = dict(list(history.groupby(["unitId", "componentName"], sort=False)))
    legend = "".join(
        f'<span class="key"><svg width="34" height="10"><line x1="0" x2="34" y1="5" y2="5" '
        f'stroke="{svg.LEVEL_COLORS[lv]}" stroke-width="2" stroke-dasharray="{svg.DASH[d]}"/></svg> '
        f"{svg.LEVEL_ES[lv]} {svg.DIRECTION_ES[d]}</span>"
        for d in ("upper", "lower")
        for lv in svg.LEVEL_ES
    )
    parts = [
        '<section id="tendencias"><h2>Tendencias de ensayos fuera de límite</h2>',
        f"<p>Compartimentos cuyo último informe no es Normal: últimas {params.history} muestras de los "
        f"ensayos que suman puntaje (hasta {params.max_essays} por compartimento) frente a sus límites. "
        "Puntos coloreados por el estado del informe; el último punto es el más grande.</p>",
        f'<p class="legend">{legend}</p>',
    ]
    if not shown:
        parts.append("<p>Ningún compartimento tiene hallazgos en su último informe.</p>")
    ident = machines.set_index(machines["unitId"].astype(str))
    n_charts = 0
    for unit in shown:
        m = ident.loc[unit]
        comps = flagged[flagged["unitId"].astype(str) == unit].sort_values(
            ["severity_score", "componentName"], ascending=[False, True], kind="mergesort"
        )
        machine = " ".join(_text(m.get(c)) for c in ("machineName", "machineModel") if _text(m.get(c)))
        parts.append(
            f'<section class="unit" id="unit-{escape(unit)}"><h3>{escape(unit)} — {escape(machine)} · '
            f"{_badge(m['machine_status'])}</h3>"
        )
        for _, comp in comps.iterrows():
            hist = groups.get((comp["unitId"], comp["componentName"]), history.iloc[:0])
            block, n = _component_block(comp, hist, lines, catalog, params)
            parts.append(block)
            n_charts += n
        parts.append("</section>")
    if len(order) > len(shown):
        parts.append(
            f'<p class="muted truncated">Gráficos de {len(shown)} de {len(order)} equipos con hallazgos (los '
            "más prioritarios); el resto figura en la tabla de equipos que requieren acción.</p>"
        )
    parts.append("</section>")
    return "".join(parts), shown, n_charts


def _data(reports: pd.DataFrame, limits: pd.DataFrame, catalog: Catalog, as_of: pd.Timestamp) -> str:
    versions = set(reports["limits_version"].astype(str)) if "limits_version" in reports else set()
    if "version" in limits:
        versions |= set(limits["version"].astype(str))
    computed = _day(limits["computed_at"].max()) if "computed_at" in limits and len(limits) else "—"
    comparison = (
        sorted(set(limits["comparison"].astype(str))) if "comparison" in limits and len(limits) else []
    )
    rule = (
        "estricta: un valor fuera de límite es mayor que el límite superior o menor que el inferior"
        if comparison == ["strict"]
        else "inclusiva: un valor igual al límite ya es fuera de límite"
        if comparison == ["inclusive"]
        else "—"
    )
    items = [
        ("Datos al", _day(as_of)),
        ("Muestra más reciente", _day(reports["sampleDate"].max()) if len(reports) else "—"),
        ("Versión de límites", ", ".join(sorted(versions)) or "—"),
        ("Límites calculados con datos hasta", computed),
        ("Comparación", rule),
        ("Catálogo de ensayos", catalog.version),
    ]
    dl = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items)
    return (
        '<section id="datos"><h2>Datos y límites</h2>'
        f"<dl>{dl}</dl>"
        "<p>Límites estadísticos (Stewart) de la propia historia del cliente por máquina, compartimento y "
        "ensayo: marginal, condenatorio y crítico (percentiles 90 / 95 / 98 hacia arriba, 10 / 5 / 2 hacia "
        "abajo; la viscosidad, una banda de ±10 / 20 / 30 % alrededor de la mediana). Un informe es Alerta "
        "o Anormal según el puntaje de sus ensayos fuera de límite; los aditivos se informan pero no suman "
        "puntaje.</p></section>"
    )


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1200px;
padding:16px 24px;color:#263238;background:#fff;font-size:14px;line-height:1.4}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;border-bottom:2px solid #eceff1;padding-bottom:4px;
margin-top:28px}h3{font-size:15px;margin:18px 0 6px}h4{font-size:14px;margin:10px 0 4px}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #e0e0e0;padding:4px 8px;text-align:left;
vertical-align:top}th{background:#f5f5f5}td.recommendation{max-width:520px;font-size:13px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;font-weight:600}
.st-Normal{background:#2e7d32}.st-Alerta{background:#e6a100}.st-Anormal{background:#c62828}
.meta{color:#546e7a}.muted{color:#78909c}.unit{border-top:1px solid #eceff1;margin-top:12px}
.component{margin:6px 0 14px 12px}.charts{display:flex;flex-wrap:wrap;gap:8px}
figure.trend{margin:0;border:1px solid #eceff1;padding:4px;width:560px;box-sizing:border-box}
figcaption{font-size:12px;color:#37474f;padding:2px 4px}p.recommendation{font-size:13px;max-width:1000px}
.legend .key{display:inline-block;margin-right:14px;font-size:12px}dt{font-weight:600;float:left;clear:left;
width:260px}dd{margin:0 0 4px 270px}svg{max-width:100%;height:auto}
@media print{.unit{break-inside:avoid}}
"""


def render_fleet_report(
    client_display_name: str,
    reports: pd.DataFrame,
    machines: pd.DataFrame,
    limits: pd.DataFrame,
    catalog: Catalog,
    as_of: date | pd.Timestamp | str | None = None,
    params: ReportParams | None = None,
) -> str:
    """The fleet report of one client as one self-contained HTML page (Spanish).

    ``reports``: classified_reports; ``machines``: machine_status_current; ``limits``: stewart_limits
    (flat table); ``as_of``: the date the data stands at (default: the newest sample date — no wall
    clock, so the same inputs give the same bytes).
    """
    params = params or ReportParams()
    as_of_ts = pd.Timestamp(as_of) if as_of is not None else pd.Timestamp(reports["sampleDate"].max())
    machines = machines.sort_values(["priority", "unitId"], ascending=[False, True], kind="mergesort")
    version = ", ".join(sorted(set(reports["limits_version"].astype(str)))) if len(reports) else "—"
    trends, charted, n_charts = _trends(reports, machines, limits, catalog, params)
    name = escape(client_display_name)
    return (
        '<!DOCTYPE html><html lang="es"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>Informe de flota — {name}</title><style>{CSS}</style></head><body>"
        f'<header><h1>Informe de flota — {name}</h1><p class="meta">Datos al {_day(as_of_ts)} · '
        f"versión de límites {escape(version)} · {len(machines)} equipos, {len(charted)} con gráficos de "
        f"tendencia ({n_charts} gráficos)</p></header>"
        + _summary(reports, machines, as_of_ts, params)
        + _actions(machines, as_of_ts, set(charted))
        + trends
        + _data(reports, limits, catalog, as_of_ts)
        + "</body></html>\n"
    )
