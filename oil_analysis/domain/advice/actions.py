"""Graded actions: what a report or a machine asks the fleet to do, and how soon.

Rules (docs/CLASSIFICATION.md §6, grounded in DOMAIN.md §4 and §7):

* ``stop`` — detener el equipo: only for evidence that a component is being damaged while it runs:
  coolant (glycol) in engine oil at the positive level or worse; fuel dilution at the critical
  level; a critical wear-metal level confirmed in the same sample by the PQ index at the critical
  level or by a rise of that metal (or of PQ) beyond its condemning trend limit.
* ``plan`` — every other Anormal report: plan the intervention within ``plan_days_critical`` days
  when a breach is critical, else within ``plan_days``.
* ``resample`` — Alerta: take a new sample within ``resample_hours`` operating hours (half the usual
  250 h interval), to confirm or clear the finding.
* ``none`` — Normal: keep the usual sampling interval.

The rules read the breaches only (plus the component name for "engine"), never a truck id or a date.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..limits import LEVEL_RANK

GRADES = ("none", "resample", "plan", "stop")
GRADE_RANK = {g: i for i, g in enumerate(GRADES)}
GRADE_ES = {
    "stop": "Detener",
    "plan": "Planificar intervención",
    "resample": "Remuestrear",
    "none": "Sin acción",
}
WEAR_ESSAYS = ("fe", "cr", "al", "cu", "pb", "ni", "ag", "sn", "ti", "v", "mn")
ENGINE_WORDS = ("motor", "engine")


@dataclass(frozen=True)
class ActionParams:
    """Windows of the graded actions."""

    plan_days_critical: int = 7
    plan_days: int = 14
    resample_hours: int = 125


@dataclass(frozen=True)
class Action:
    """A graded action: ``grade`` (none / resample / plan / stop), its Spanish text and the rule that
    chose it (``reason``, Spanish, empty for none)."""

    grade: str
    text: str
    reason: str = ""
    days: int | None = None
    hours: int | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def is_engine(component: str | None) -> bool:
    """True when the compartment is the engine (``motor``…)."""
    c = str(component or "").strip().lower()
    return c.startswith(ENGINE_WORDS)


def _lv(b: Mapping) -> int:
    return LEVEL_RANK.get(str(b.get("level")), 0)


def stop_reasons(breaches: Iterable[Mapping], component: str | None) -> list[str]:
    """The stop rules that hold for these breaches (Spanish, empty when none)."""
    items = [b for b in breaches if float(b.get("points") or 0) > 0]
    reasons = []
    glycol = [b for b in items if b.get("essay") in ("glycol", "glycol_pct") and _lv(b) >= 2]
    if glycol and is_engine(component):
        reasons.append("refrigerante (glicol) en el aceite del motor")
    if any(b.get("essay") in ("fuel", "fuel_pct") and _lv(b) == 3 for b in items):
        reasons.append("dilución por combustible en nivel crítico")
    wear_critical = [
        b for b in items if b.get("essay") in WEAR_ESSAYS and b.get("kind") != "trend" and _lv(b) == 3
    ]
    if wear_critical:
        pq = any(b.get("essay") == "pq_index" and b.get("kind") != "trend" and _lv(b) == 3 for b in items)
        critical_essays = {b.get("essay") for b in wear_critical}
        # The critical metal itself (or PQ) rising by at least its condemning trend limit.
        rising = any(
            b.get("kind") == "trend"
            and _lv(b) >= 2
            and (b.get("essay") in critical_essays or b.get("essay") == "pq_index")
            for b in items
        )
        if pq or rising:
            how = "el índice PQ" if pq else "una tendencia al alza"
            reasons.append(f"desgaste en nivel crítico confirmado por {how}")
    return reasons


def graded_action(
    status: str | None,
    breaches: Iterable[Mapping],
    component: str | None = None,
    params: ActionParams | None = None,
) -> Action:
    """The graded action of one report from its status and breaches (rules in the module doc)."""
    params = params or ActionParams()
    items = list(breaches)
    status = str(status or "Normal")
    reasons = stop_reasons(items, component) if status != "Normal" else []
    if reasons:
        return Action(
            "stop",
            "Detener el equipo e inspeccionar antes de seguir operando.",
            "; ".join(reasons),
        )
    if status == "Anormal":
        critical = any(_lv(b) == 3 and float(b.get("points") or 0) > 0 for b in items)
        days = params.plan_days_critical if critical else params.plan_days
        why = "un ensayo en nivel crítico" if critical else "puntaje Anormal sin nivel crítico"
        return Action("plan", f"Planificar la intervención dentro de {days} días.", why, days=days)
    if status == "Alerta":
        h = params.resample_hours
        return Action(
            "resample",
            f"Mantener en servicio y tomar una nueva muestra dentro de {h} horas de operación.",
            "estado Alerta",
            hours=h,
        )
    return Action("none", "Mantener el intervalo normal de muestreo.")


def worst_action(actions: Iterable[Action]) -> Action:
    """The most urgent of several actions (a machine takes that of its worst compartment)."""
    out = Action("none", "Mantener el intervalo normal de muestreo.")
    for a in actions:
        if GRADE_RANK[a.grade] > GRADE_RANK[out.grade] or (
            a.grade == out.grade == "plan" and (a.days or 99) < (out.days or 99)
        ):
            out = a
    return out
