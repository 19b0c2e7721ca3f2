"""Inline SVG charts of the fleet report: plain markup, no script, no external reference.

Every text is escaped and every number formatted deterministically, so the same data gives the same
bytes. Charts are meant to be embedded in HTML (no ``xmlns`` needed there); ``standalone=True`` adds
the namespace for use as an image (a ``data:`` URI in the Dagster UI).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from html import escape

STATUS_COLORS = {"Normal": "#2e7d32", "Alerta": "#e6a100", "Anormal": "#c62828"}
LEVEL_COLORS = {"marginal": "#d4a000", "condemning": "#e65100", "critical": "#b71c1c"}
LEVEL_ES = {"marginal": "Marginal", "condemning": "Condenatorio", "critical": "Crítico"}
DIRECTION_ES = {"upper": "superior", "lower": "inferior"}
DIRECTION_SHORT_ES = {"upper": "sup.", "lower": "inf."}
# Upper limits long dashes, lower limits dots: the direction reads without colour.
DASH = {"upper": "7 4", "lower": "2 3"}
MONTHS_ES = ("ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sep", "oct", "nov", "dic")
SVG_NS = "http://www.w3.org/2000/svg"
FONT = "font-family:system-ui,sans-serif;font-size:11px"


@dataclass(frozen=True)
class Point:
    """One reading of a trend chart: sampling day, value, the report's status and a tooltip."""

    day: date
    value: float
    status: str = "Normal"
    tooltip: str = ""


@dataclass(frozen=True)
class LimitLine:
    """One horizontal limit: level (marginal / condemning / critical), direction (upper / lower)."""

    level: str
    direction: str
    value: float


def fmt(v: float) -> str:
    """A reading as people write it: integers without decimals, others with up to two (one from 100,
    none from 1000), trailing zeros dropped."""
    if v is None or not math.isfinite(v):
        return ""
    decimals = 0 if abs(v) >= 1000 or float(v).is_integer() else (1 if abs(v) >= 100 else 2)
    text = f"{v:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def month_es(d: date) -> str:
    return f"{MONTHS_ES[d.month - 1]} {d.year}"


def _c(v: float) -> str:
    """A coordinate with one decimal (keeps the markup short and stable)."""
    return f"{v:.1f}".rstrip("0").rstrip(".")


def nice_ticks(lo: float, hi: float, n: int = 4, min_step: float = 0.0) -> list[float]:
    """Round tick values covering [lo, hi] with about ``n`` intervals, at least ``min_step`` apart."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10)), key=lambda st: abs((hi - lo) / st - n))
    step = max(step, min_step)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, t = [], first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    return ticks


def _open(width: int, height: int, label: str, css_class: str, standalone: bool) -> str:
    ns = f' xmlns="{SVG_NS}"' if standalone else ""
    return (
        f'<svg{ns} class="{css_class}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(label)}" style="{FONT}"><title>{escape(label)}</title>'
    )


def _spread(ys: list[float], gap: float, top: float, bottom: float) -> list[float]:
    """Label positions at least ``gap`` apart, kept inside [top, bottom], order preserved."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    out = list(ys)
    prev = top - gap
    for i in order:
        out[i] = max(out[i], prev + gap)
        prev = out[i]
    overflow = prev - bottom
    if overflow > 0:
        for i in order:
            out[i] -= overflow
    return out


def trend_chart(
    points: Sequence[Point],
    limits: Sequence[LimitLine],
    title: str,
    unit: str = "",
    width: int = 550,
    height: int = 216,
) -> str:
    """Readings over time against their limits: one dashed line per limit (upper: long dashes,
    lower: dots; colour by level, labelled on the right), points coloured by report status."""
    left, right, top, bottom = 46, 140, 18, 24
    pw, ph = width - left - right, height - top - bottom
    pts = [p for p in points if p.value is not None and math.isfinite(p.value)]
    values = [p.value for p in pts] + [lim.value for lim in limits if math.isfinite(lim.value)]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (hi - lo) * 0.08 or max(abs(hi) * 0.1, 1.0)
    lo, hi = lo - pad, hi + pad
    if values and min(values) >= 0:
        lo = max(lo, 0.0)
    days = [p.day.toordinal() for p in pts] or [date(2000, 1, 1).toordinal()]
    d0, d1 = min(days), max(days)
    if d1 - d0 < 30:
        d0, d1 = d0 - 15, d1 + 15

    def x(day: int) -> float:
        return left + (day - d0) / (d1 - d0) * pw

    def y(v: float) -> float:
        return top + (hi - v) / (hi - lo) * ph

    out = [_open(width, height, title, "chart trend", False)]
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#cfd8dc"/>')
    # Integer readings (levels, codes, ppm) get integer ticks.
    whole = bool(values) and all(float(v).is_integer() for v in values)
    for t in nice_ticks(lo, hi, min_step=1.0 if whole else 0.0):
        if lo <= t <= hi:
            out.append(
                f'<line x1="{left}" x2="{left + pw}" y1="{_c(y(t))}" y2="{_c(y(t))}" stroke="#eceff1"/>'
                f'<text x="{left - 4}" y="{_c(y(t) + 4)}" text-anchor="end" fill="#546e7a">{fmt(t)}</text>'
            )
    if unit:
        out.append(f'<text x="4" y="11" fill="#546e7a">{escape(unit)}</text>')
    n_ticks = 4
    for i in range(n_ticks + 1):
        day = date.fromordinal(round(d0 + (d1 - d0) * i / n_ticks))
        anchor = "start" if i == 0 else ("end" if i == n_ticks else "middle")
        out.append(
            f'<text x="{_c(x(day.toordinal()))}" y="{height - 8}" text-anchor="{anchor}" '
            f'fill="#546e7a">{month_es(day)}</text>'
        )
    drawn = [lim for lim in limits if math.isfinite(lim.value)]
    label_y = _spread([y(lim.value) + 4 for lim in drawn], 11, top + 8, top + ph + 4)
    for lim, ly in zip(drawn, label_y, strict=True):
        color = LEVEL_COLORS.get(lim.level, "#616161")
        yy = _c(y(lim.value))
        name = f"{LEVEL_ES.get(lim.level, lim.level)} {DIRECTION_SHORT_ES.get(lim.direction, '')}"
        out.append(
            f'<line class="limit limit-{escape(lim.level)} limit-{escape(lim.direction)}" '
            f'data-level="{escape(lim.level)}" data-direction="{escape(lim.direction)}" '
            f'data-value="{fmt(lim.value)}" x1="{left}" x2="{left + pw}" y1="{yy}" y2="{yy}" '
            f'stroke="{color}" stroke-width="1.5" stroke-dasharray="{DASH.get(lim.direction, "4 2")}">'
            f"<title>Límite {escape(name)}: {fmt(lim.value)}</title></line>"
            f'<text x="{left + pw + 4}" y="{_c(ly)}" fill="{color}">{escape(name)} {fmt(lim.value)}</text>'
        )
    # Each point's coordinates as text once: the series line and its circle share them.
    at = [(_c(x(p.day.toordinal())), _c(y(p.value))) for p in pts]
    if len(pts) > 1:
        path = " ".join(f"{cx},{cy}" for cx, cy in at)
        out.append(
            f'<polyline class="series" points="{path}" fill="none" stroke="#455a64" stroke-width="1.2"/>'
        )
    for i, (p, (cx, cy)) in enumerate(zip(pts, at, strict=True)):
        r = 4.5 if i == len(pts) - 1 else 3
        color = STATUS_COLORS.get(p.status, "#455a64")
        tip = escape(p.tooltip or f"{p.day.isoformat()}: {fmt(p.value)}")
        out.append(
            f'<circle cx="{cx}" cy="{cy}" r="{r}" fill="{color}" '
            f'stroke="#fff" stroke-width="0.8"><title>{tip}</title></circle>'
        )
    out.append("</svg>")
    return "".join(out)


def status_months_chart(
    months: Sequence[tuple[str, dict[str, int]]],
    title: str,
    width: int = 600,
    height: int = 170,
    standalone: bool = False,
) -> str:
    """Stacked bars of report counts per month (Normal / Alerta / Anormal), with a legend."""
    left, right, top, bottom = 36, 8, 22, 22
    pw, ph = width - left - right, height - top - bottom
    totals = [sum(c.values()) for _, c in months]
    hi = max(totals, default=0) or 1
    ticks = nice_ticks(0, hi, 3)
    hi = max(hi, ticks[-1])
    out = [_open(width, height, title, "chart status-months", standalone)]
    for t in ticks:
        yy = top + ph - t / hi * ph
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{_c(yy)}" y2="{_c(yy)}" stroke="#eceff1"/>'
            f'<text x="{left - 4}" y="{_c(yy + 4)}" text-anchor="end" fill="#546e7a">{fmt(t)}</text>'
        )
    lx = left
    for status, color in STATUS_COLORS.items():
        out.append(
            f'<rect x="{lx}" y="4" width="10" height="10" fill="{color}"/>'
            f'<text x="{lx + 14}" y="13" fill="#37474f">{status}</text>'
        )
        lx += 80
    n = max(len(months), 1)
    slot = pw / n
    bar = max(slot * 0.75, 1.0)
    every = max(1, math.ceil(n / 8))
    for i, (label, counts) in enumerate(months):
        bx = left + i * slot + (slot - bar) / 2
        base = top + ph
        parts = []
        for status, color in STATUS_COLORS.items():
            h = counts.get(status, 0) / hi * ph
            if h > 0:
                base -= h
                parts.append(
                    f'<rect x="{_c(bx)}" y="{_c(base)}" width="{_c(bar)}" height="{_c(h)}" fill="{color}"/>'
                )
        tip = f"{label}: " + ", ".join(f"{s} {counts.get(s, 0)}" for s in STATUS_COLORS)
        out.append(f"<g><title>{escape(tip)}</title>{''.join(parts)}</g>")
        if i % every == 0:
            out.append(
                f'<text x="{_c(bx + bar / 2)}" y="{height - 6}" text-anchor="middle" '
                f'fill="#546e7a">{escape(label)}</text>'
            )
    out.append("</svg>")
    return "".join(out)


def status_bar(counts: dict[str, int], title: str, width: int = 600, height: int = 34) -> str:
    """One horizontal bar split by status, with the count written in each part."""
    total = sum(counts.values()) or 1
    out = [_open(width, height, title, "chart status-bar", False)]
    x0 = 0.0
    for status, color in STATUS_COLORS.items():
        n = counts.get(status, 0)
        w = n / total * width
        if n:
            out.append(
                f'<rect x="{_c(x0)}" y="4" width="{_c(w)}" height="26" fill="{color}">'
                f"<title>{status}: {n}</title></rect>"
            )
            if w > 60:
                out.append(
                    f'<text x="{_c(x0 + 6)}" y="21" fill="#fff" style="font-weight:600">{status} {n}</text>'
                )
        x0 += w
    out.append("</svg>")
    return "".join(out)


def data_uri(svg_text: str) -> str:
    """A standalone SVG as a ``data:`` URI (images in markdown metadata)."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg_text.encode()).decode()
