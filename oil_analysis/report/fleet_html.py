"""The fleet report of one client: one self-contained HTML page for fleet managers (Spanish).

Pure: classified reports, machine status and limits in, text out, rendered by the Jinja2 template
``templates/fleet_report.html.j2`` with autoescape on. The page has inline CSS and inline SVG only —
no script, no font, no image or link that a browser would fetch — so it can be mailed, archived or
opened offline; the same inputs (report date included) give the same bytes. Sections (each a
``<section id=…>``), triage first:

* header — report date, newest sample, a plain warning when the whole dataset is old, one line of
  counts;
* ``acciones`` — the machines to act on now (fresh samples only), by triage priority
  (:func:`oil_analysis.domain.fleet.triage`), each with its graded action and main finding;
* ``tendencias`` — one collapsible ``<details>`` per machine to act on: breaches, full
  recommendation and, for the most urgent ``max_units``, trend charts against the limits;
* ``sin-muestras`` — machines whose latest sample is older than the freshness limit, compact;
* ``resumen`` — machines and reports by status, reports per month;
* ``datos`` — limits version, catalog version, how to read the actions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from functools import cache

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from ..domain.advice.actions import GRADE_ES, ActionParams
from ..domain.advice.offline import offline_recommendation, parse_breaches, report_action
from ..domain.advice.spanish import count
from ..domain.catalog import Catalog
from ..domain.classify import STATUSES
from ..domain.fleet import TriageParams, latest_reports, triage
from . import svg

SECTIONS = ("acciones", "tendencias", "sin-muestras", "resumen", "datos")
# Catalog units written in English, as a Spanish reader expects them.
UNIT_ES = {"code": "código", "count/ml": "partículas/ml", "index": "índice", "level 0-3": "nivel 0-3"}
# Scales, not units: not repeated after every value.
UNITLESS = {"código", "índice", "nivel 0-3"}


@dataclass(frozen=True)
class ReportParams:
    """How much the report shows (keeps the page readable and small on large fleets)."""

    # Units with trend charts, most urgent first (every unit to act on gets its details).
    max_units: int = 20
    # Units whose details are open when the page loads.
    open_units: int = 3
    # Charts per compartment: its highest-scoring breached essays.
    max_essays: int = 4
    # Latest samples drawn per chart.
    history: int = 30
    # Months in the status-per-month chart.
    months: int = 24
    # A unit whose latest sample is older than this many days before the report date is stale.
    freshness_days: int = 40


def _day(v) -> str:
    if v is None or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
        return "—"
    try:
        return pd.Timestamp(v).strftime("%Y-%m-%d")
    except (ValueError, TypeError):
        return "—"


def _pylist(column: pd.Series) -> list:
    """A column as a Python list, values as ``tolist`` gives them, without its per-value iteration
    where it is slow: Arrow text converted in one call, dates as numpy values (a
    ``pd.Timestamp`` of either is the same)."""
    if isinstance(column.dtype, pd.StringDtype):
        return column.to_numpy(object).tolist()
    if column.dtype.kind == "M":
        return list(column.to_numpy())
    return column.tolist()


def _date_text(d: date) -> str:
    """``_day`` of a calendar date, without building a Timestamp (a chart labels thirty points)."""
    return d.isoformat() if d.year >= 1000 else _day(d)


def _text(v) -> str:
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
        return ""
    return str(v)


def _n(n: int) -> str:
    """An integer with Spanish thousands separators (1.234)."""
    return f"{n:,}".replace(",", ".")


def _badge(status: str) -> Markup:
    s = escape(_text(status))
    return Markup(f'<span class="badge st-{s}">{s}</span>')


def _essay_label(catalog: Catalog, essay: str) -> tuple[str, str]:
    """Spanish name and unit of an essay (the key itself when not in the catalog)."""
    labels = _LABELS.get(catalog.version)
    if labels is None:
        table = catalog.table
        labels = _LABELS[catalog.version] = {
            str(e): (str(name), UNIT_ES.get(str(unit), str(unit)))
            for e, name, unit in zip(table.index, table["name_es"], table["unit"], strict=True)
        }
    return labels.get(essay, (essay, ""))


# Essay labels per catalog version (a catalog is immutable for its version).
_LABELS: dict[str, dict[str, tuple[str, str]]] = {}


def status_by_month(reports: pd.DataFrame, months: int = 24) -> list[tuple[str, dict[str, int]]]:
    """Report counts per sampling month and status, the last ``months`` months with data
    (empty months inside the range included), oldest first: ``[("2025-01", {"Normal": n, …}), …]``."""
    if reports.empty:
        return []
    # Month numbers (year × 12 + month) counted per status with bincount: no crosstab.
    dates = pd.DatetimeIndex(pd.to_datetime(reports["sampleDate"]))
    dated = ~dates.isna()
    if not dated.any():
        return []
    month = (dates[dated].year * 12 + dates[dated].month - 1).to_numpy().astype(np.int64)
    status = reports["report_status"].astype(str).to_numpy()[dated]
    first, last = int(month.min()), int(month.max())
    start = max(first, last - months + 1)
    width = last - start + 1
    keep = month >= start
    counts = {s: np.bincount(month[keep & (status == s)] - start, minlength=width).tolist() for s in STATUSES}
    return [
        (f"{(start + k) // 12:04d}-{(start + k) % 12 + 1:02d}", {s: int(counts[s][k]) for s in STATUSES})
        for k in range(width)
    ]


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


def _limit_lines(
    limits: pd.DataFrame, groups: set[tuple[str, str]] | None = None
) -> dict[tuple[str, str, str], list[svg.LimitLine]]:
    """Level limits (all strata) per (machine, component, essay), upper then lower, by level;
    ``groups``: only those (machine, component) pairs (the charted ones)."""
    if limits.empty:
        return {}
    rows = limits[limits["kind"].astype(str) == "level"]
    if "stratum" in rows:
        rows = rows[rows["stratum"].astype(str) == "ALL"]
    # Plain tuples (machine, component, essay, direction, levels…): a few hundred limit rows.
    read = ["machine", "component", "essay", "direction", *svg.LEVEL_ES]
    records = list(zip(*(_pylist(rows[c]) for c in read), strict=True))
    if groups is not None:
        records = [r for r in records if (str(r[0]), str(r[1])) in groups]
    # As sort_values by machine, component, essay (ascending) and direction (descending), stable:
    # two stable sorts, the minor key first.
    records.sort(key=lambda r: r[3], reverse=True)
    records.sort(key=lambda r: (r[0], r[1], r[2]))
    out: dict[tuple[str, str, str], list[svg.LimitLine]] = {}
    for machine, component, essay, direction, *values in records:
        lines = out.setdefault((str(machine), str(component), str(essay)), [])
        for level, value in zip(svg.LEVEL_ES, values, strict=True):
            if value is not None and not pd.isna(value):
                lines.append(svg.LimitLine(level, str(direction), float(value)))
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


def _charts(
    latest: pd.Series,
    history: dict[str, list],
    by_essay: dict[str, list[dict]],
    lines: dict[tuple[str, str, str], list[svg.LimitLine]],
    catalog: Catalog,
    params: ReportParams,
) -> list[dict]:
    """Trend charts of the highest-scoring breached essays of one compartment."""
    key = (_text(latest["machineName"]), _text(latest["componentNameNormalized"]))
    out = []
    for essay in list(by_essay)[: params.max_essays]:
        name, unit = _essay_label(catalog, essay)
        values = history.get(essay, [])
        rows = [
            r
            for r in zip(history.get("sampleDate", []), history.get("sampleNumber", []),
                         history.get("report_status", []), values, strict=False)
            if r[3] is not None and r[3] is not pd.NA and not (isinstance(r[3], float) and math.isnan(r[3]))
        ]  # fmt: skip
        days = [
            (pd.Timestamp(day).date(), number, status, value)
            for day, number, status, value in rows[-params.history :]
        ]
        points = [
            svg.Point(
                d,
                float(value),
                str(status),
                f"{_date_text(d)} · {number} · {svg.fmt(float(value))} {unit} · {status}",
            )
            for d, number, status, value in days
        ]
        limit_lines = lines.get((*key, essay), [])
        title = f"{name} ({unit}) — {_text(latest['unitId'])} {_text(latest['componentName'])}"
        out.append(
            {
                "essay": essay,
                "svg": Markup(svg.trend_chart(points, limit_lines, title, unit)),
                "name": name,
                "unit": unit,
                "caption": "; ".join(_breach_text(b, unit) for b in by_essay[essay]),
                "has_limits": bool(limit_lines),
            }
        )
    return out


def _component(
    latest: pd.Series,
    history: dict[str, list] | None,
    lines: dict[tuple[str, str, str], list[svg.LimitLine]],
    catalog: Catalog,
    params: ReportParams,
) -> dict:
    """One compartment of a machine's details: its latest report, breaches and charts."""
    breaches = [b for b in parse_breaches(latest.get("breached_essays")) if b.get("points", 0) > 0]
    by_essay: dict[str, list[dict]] = {}
    for b in breaches:
        by_essay.setdefault(b["essay"], []).append(b)
    listed = []
    for essay, items in by_essay.items():
        name, unit = _essay_label(catalog, essay)
        listed.append(f"{name}: " + "; ".join(_breach_text(b, unit) for b in items))
    charts = _charts(latest, history, by_essay, lines, catalog, params) if history is not None else []
    shown = {c["essay"] for c in charts}
    others = [_essay_label(catalog, e)[0] for e in by_essay if e not in shown] if charts else []
    status = _text(latest["report_status"])
    rec = _text(latest.get("ai_recommendation"))
    if not rec:
        rec = offline_recommendation(
            latest.get("breached_essays"), latest.get("componentName"), catalog, status, latest
        )
    action = report_action(latest.get("breached_essays"), latest.get("componentName"), catalog, status)
    return {
        "component": _text(latest["componentName"]),
        "status": status,
        "score": svg.fmt(float(latest["severity_score"])),
        "sampleNumber": _text(latest["sampleNumber"]),
        "date": _day(latest["sampleDate"]),
        "action_label": GRADE_ES[action.grade],
        "breaches": listed,
        "recommendation": rec,
        "charts": charts,
        "others": ", ".join(others),
    }


@cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("oil_analysis.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["count"] = count
    env.globals["badge"] = _badge
    return env


def _legend() -> Markup:
    return Markup(
        "".join(
            f'<span class="key"><svg width="34" height="10"><line x1="0" x2="34" y1="5" y2="5" '
            f'stroke="{svg.LEVEL_COLORS[lv]}" stroke-width="2" stroke-dasharray="{svg.DASH[d]}"/></svg> '
            f"{escape(svg.LEVEL_ES[lv])} {escape(svg.DIRECTION_ES[d])}</span>"
            for d in ("upper", "lower")
            for lv in svg.LEVEL_ES
        )
    )


def _data_items(reports: pd.DataFrame, limits: pd.DataFrame, catalog: Catalog, as_of: pd.Timestamp):
    versions = set(reports["limits_version"].astype(str).unique()) if "limits_version" in reports else set()
    if "version" in limits:
        versions |= set(limits["version"].astype(str).unique())
    computed = _day(limits["computed_at"].max()) if "computed_at" in limits and len(limits) else "—"
    comparison = (
        sorted(set(limits["comparison"].astype(str).unique()))
        if "comparison" in limits and len(limits)
        else []
    )
    rule = (
        "estricta: un valor fuera de límite es mayor que el límite superior o menor que el inferior"
        if comparison == ["strict"]
        else "inclusiva: un valor igual al límite ya es fuera de límite"
        if comparison == ["inclusive"]
        else "—"
    )
    return [
        ("Fecha del informe", _day(as_of)),
        ("Muestra más reciente", _day(reports["sampleDate"].max()) if len(reports) else "—"),
        ("Versión de límites", ", ".join(sorted(versions)) or "—"),
        ("Límites calculados con datos hasta", computed),
        ("Comparación", rule),
        ("Catálogo de ensayos", catalog.version),
    ]


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
    (flat table); ``as_of``: the report date, against which every age is measured (the asset passes
    the run's date; default: the newest sample date — no wall clock, so the same inputs give the
    same bytes).
    """
    params = params or ReportParams()
    newest = pd.Timestamp(reports["sampleDate"].max()) if len(reports) else pd.NaT
    as_of_ts = pd.Timestamp(as_of).normalize() if as_of is not None else newest
    if pd.isna(as_of_ts):
        as_of_ts = pd.Timestamp("1970-01-01")
    dataset_age = int((as_of_ts - newest.normalize()).days) if pd.notna(newest) else 0
    dataset_stale = dataset_age > params.freshness_days
    # A whole dataset older than the freshness limit would leave every machine "stale" and nothing
    # to act on: the banner says the data is old, and the machines are triaged as of its newest
    # sample (ages shown still count from the report date).
    triage_date = newest.normalize() if dataset_stale else as_of_ts
    tri = triage(
        machines, reports, catalog, triage_date, TriageParams(freshness_days=params.freshness_days)
    ).set_index("unitId", drop=False)
    machine_rec = (
        dict(zip(machines["unitId"].astype(str), machines["machine_ai_recommendation"], strict=True))
        if "machine_ai_recommendation" in machines
        else {}
    )
    todo_rows = tri[~tri["stale"] & (tri["machine_status"] != "Normal")]
    stale_rows = tri[tri["stale"]]

    def machine_name(r) -> str:
        return " ".join(_text(r.get(c)) for c in ("machineName", "machineModel") if _text(r.get(c)))

    todo = []
    for r in todo_rows.to_dict("records"):
        comp_date = r["component_date"] if pd.notna(r["component_date"]) else r["latest_sample_date"]
        todo.append(
            {
                "unitId": _text(r["unitId"]),
                "machine": machine_name(r),
                "machine_status": r["machine_status"],
                "action_grade": r["action_grade"],
                "action_label": GRADE_ES[r["action_grade"]],
                "action_text": r["action_text"]
                + (f" Motivo: {r['action_reason']}." if r["action_grade"] == "stop" else ""),
                "main_finding": r["main_finding"],
                "component_date": _day(comp_date),
                "component_age": max(int((as_of_ts - pd.Timestamp(comp_date).normalize()).days), 0),
            }
        )
    charted = [t["unitId"] for t in todo[: params.max_units]]
    # Only the columns the details read: rows of the wide frame are slow to iterate.
    keep = [
        c
        for c in (
            "unitId",
            "machineName",
            "componentName",
            "componentNameNormalized",
            "sampleNumber",
            "sampleDate",
            "reportDate",
            "report_status",
            "severity_score",
            "breached_essays",
            "ai_recommendation",
            "countPreventedByWater",
        )
        if c in reports
    ]
    latest = latest_reports(reports[keep])
    flagged = latest[latest["report_status"].astype(str) != "Normal"]
    sort_cols = [c for c in ("sampleDate", "reportDate", "sampleNumber") if c in reports]
    charted_rows = flagged[flagged["unitId"].astype(str).isin(charted)]
    lines = _limit_lines(
        limits,
        set(
            zip(
                charted_rows["machineName"].map(_text),
                charted_rows["componentNameNormalized"].map(_text),
                strict=True,
            )
        ),
    )
    drawn = sorted(
        {str(x.get("essay")) for t in charted_rows["breached_essays"] for x in parse_breaches(t)}
        & set(reports)
    )
    # The history of the charted compartments only, each one contiguous (sorted by compartment,
    # then by date as before: a stable sort keeps the same order within a compartment).
    wanted = set(zip(_pylist(charted_rows["unitId"]), _pylist(charted_rows["componentName"]), strict=True))
    in_chart = np.fromiter(
        (
            k in wanted
            for k in zip(_pylist(reports["unitId"]), _pylist(reports["componentName"]), strict=True)
        ),
        dtype=bool,
        count=len(reports),
    )
    key_cols = ["unitId", "componentName"]
    cols = [*key_cols, "report_status", *sort_cols, *drawn]
    history = reports.loc[in_chart, cols].sort_values([*key_cols, *sort_cols], kind="mergesort")
    # Plain Python lists and dicts from here on: pandas indexing per row or chart costs milliseconds.
    units, comps = _pylist(history["unitId"]), _pylist(history["componentName"])
    columns = {c: _pylist(history[c]) for c in history.columns if c not in (*key_cols, "reportDate")}
    groups: dict[tuple, dict[str, list]] = {}
    start = 0
    for i in range(1, len(units) + 1):
        if i == len(units) or units[i] != units[start] or comps[i] != comps[start]:
            groups[(units[start], comps[start])] = {c: values[start:i] for c, values in columns.items()}
            start = i
    ordered = flagged.sort_values(
        ["severity_score", "componentName"], ascending=[False, True], kind="mergesort"
    ).to_dict("records")
    comps_of: dict[str, list[dict]] = {}
    for comp in ordered:
        comps_of.setdefault(str(comp["unitId"]), []).append(comp)
    units = []
    for i, t in enumerate(todo):
        unit = t["unitId"]
        blocks = []
        for comp in comps_of.get(unit, []):
            hist = groups.get((comp["unitId"], comp["componentName"]), {}) if unit in charted else None
            blocks.append(_component(comp, hist, lines, catalog, params))
        units.append(
            {
                **t,
                "open": i < params.open_units,
                "recommendation": _text(machine_rec.get(unit)),
                "components": blocks,
            }
        )
    stale = [
        {
            "unitId": _text(r["unitId"]),
            "latest": _day(r["latest_sample_date"]),
            "machine_status": _text(r["machine_status"]),
        }
        for r in stale_rows.to_dict("records")
    ]
    m_counts = {s: int((machines["machine_status"].astype(str) == s).sum()) for s in STATUSES}
    r_counts = {s: int((reports["report_status"].astype(str) == s).sum()) for s in STATUSES}
    n_m, n_r = max(len(machines), 1), max(len(reports), 1)
    months = status_by_month(reports, params.months)
    version = ", ".join(sorted(set(reports["limits_version"].astype(str).unique()))) if len(reports) else "—"
    actions = ActionParams()
    html = (
        _environment()
        .get_template("fleet_report.html.j2")
        .render(
            client=client_display_name,
            css=Markup(CSS),
            report_date=_day(as_of_ts),
            newest=_day(newest),
            first=_day(reports["sampleDate"].min()) if len(reports) else "—",
            version=version,
            n_machines=len(machines),
            n_reports=len(reports),
            dataset_stale=dataset_stale,
            dataset_age=dataset_age,
            freshness_days=params.freshness_days,
            counts=m_counts,
            n_stop=sum(t["action_grade"] == "stop" for t in todo),
            todo=todo,
            units=units,
            charted=len(charted),
            truncated=len(todo) > len(charted),
            history=params.history,
            legend=_legend(),
            stale=stale,
            statuses=[
                {
                    "status": s,
                    "machines": m_counts[s],
                    "machines_pct": f"{m_counts[s] / n_m:.0%}",
                    "reports": _n(r_counts[s]),
                    "reports_pct": f"{r_counts[s] / n_r:.0%}",
                }
                for s in STATUSES
            ],
            status_bar=Markup(svg.status_bar(m_counts, "Equipos por estado")),
            months=len(months),
            months_chart=Markup(svg.status_months_chart(months, "Informes por mes y estado")),
            data_items=_data_items(reports, limits, catalog, as_of_ts),
            plan_days_critical=actions.plan_days_critical,
            plan_days=actions.plan_days,
            resample_hours=actions.resample_hours,
        )
    )
    return html


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
.banner{background:#fff3e0;border-left:4px solid #e65100;padding:8px 12px}.headline{font-size:15px}
.action{display:inline-block;padding:1px 8px;border-radius:4px;font-weight:600;font-size:12px}
.act-stop{background:#b71c1c;color:#fff}.act-plan{background:#ffe0b2;color:#bf360c}
.act-resample{background:#fff8e1;color:#6d4c00}.act-none{background:#eceff1}.small{font-size:12px}
table.triage td{font-size:13px}details.unit{border-top:1px solid #eceff1;padding:4px 0}
details.unit>summary{cursor:pointer;padding:4px 0}ul.breaches{margin:2px 0 6px 18px;padding:0;font-size:12px}
.chip{display:inline-block;margin:2px;padding:1px 6px;border:1px solid #cfd8dc;border-radius:8px;font-size:12px}
.st-b-Anormal{border-color:#c62828}.st-b-Alerta{border-color:#e6a100}
@media print{.unit{break-inside:avoid}}
"""
