"""The offline advisor: deterministic, rule-based Spanish recommendations from the breaches.

It runs when no LLM is configured (``make run`` on a fresh machine) and stands in for the LLM when a
call fails (``ai_source = "fallback"``). Each breach is mapped to a *finding* (wear, dust ingress,
water, fuel dilution, coolant, viscosity out of grade, particles/magnetic debris, oil degradation,
soot); the text names the worst findings, says what to check, and gives one action whose urgency
follows the worst level. Additive essays describe the oil formulation: they are mentioned as
information only and never lead to an oil change or a component intervention.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd

from ..catalog import Catalog
from ..classify import RANK
from ..limits import LEVEL_RANK
from .actions import GRADE_ES, GRADE_RANK, Action, graded_action, worst_action
from .causes import FINDING_CAUSE
from .spanish import capitalize, count, det, verb
from .spanish import join as _join

OFFLINE_VERSION = "offline-v2"
OFFLINE_MODEL = "offline-advisor"

LEVEL_ES = {"marginal": "Marginal", "condemning": "Condenatorio", "critical": "Crítico"}
DIRECTION_ES = {"upper": "superior", "lower": "inferior"}

NORMAL_REPORT_TEXT = (
    "Sin anomalías: todos los ensayos dentro de los límites. Mantener el aceite en servicio y el "
    "intervalo normal de muestreo."
)
NORMAL_MACHINE_TEXT = (
    "Sin anomalías: el último informe de cada compartimento está en estado Normal. Continuar con el "
    "plan de mantenimiento y el intervalo normal de muestreo."
)

# At most this many findings are described, fewer when the text would exceed MAX_WORDS.
MAX_FINDINGS = 3
MAX_WORDS = 150


def parse_breaches(value) -> list[dict]:
    """``breached_essays`` as a list of dicts, whatever its storage form (JSON text, list, null)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, str):
        value = json.loads(value or "[]")
    try:
        return [dict(b) for b in value]
    except TypeError:  # pd.NA and other scalars
        return []


@dataclass(frozen=True)
class Finding:
    key: str
    label: str  # short noun phrase: "desgaste", "ingreso de polvo"...
    check: str  # what to inspect, one sentence
    changes_oil: bool  # at condemning level or worse the oil itself must go


FINDINGS = {
    "wear": Finding(
        "wear",
        "desgaste",
        "Revisar el tapón magnético y los filtros en busca de partículas; si el metal sigue subiendo, "
        "inspeccionar el componente.",
        False,
    ),
    "dust": Finding(
        "dust",
        "ingreso de polvo",
        "Revisar el sistema de admisión y sellado: filtros y respiraderos, mangueras y abrazaderas, sellos "
        "y tapas; confirmar también el procedimiento de toma de muestra.",
        True,
    ),
    "water": Finding(
        "water",
        "contaminación con agua",
        "Buscar la vía de ingreso de agua: respiraderos, sellos, tapas, lavado a presión y enfriador de aceite.",
        True,
    ),
    "fuel": Finding(
        "fuel",
        "dilución por combustible",
        "Revisar inyectores y sus sellos, bomba y líneas de combustible, y el tiempo en ralentí.",
        True,
    ),
    "coolant": Finding(
        "coolant",
        "ingreso de refrigerante",
        "Hacer prueba de presión del sistema de enfriamiento: enfriador de aceite, empaquetaduras, sellos de "
        "camisas y culata.",
        True,
    ),
    "viscosity_high": Finding(
        "viscosity_high",
        "viscosidad sobre el grado",
        "Verificar que los rellenos usen el grado especificado y descartar oxidación u hollín.",
        True,
    ),
    "viscosity_low": Finding(
        "viscosity_low",
        "viscosidad bajo el grado",
        "Verificar que los rellenos usen el grado especificado y descartar dilución por combustible.",
        True,
    ),
    "debris": Finding(
        "debris",
        "partículas ferrosas",
        "Inspeccionar el tapón magnético, la malla de succión y los filtros; cuantificar las partículas.",
        False,
    ),
    "cleanliness": Finding(
        "cleanliness",
        "aceite fuera de limpieza",
        "Revisar el estado de los filtros y los respiraderos; filtrar el aceite (diálisis) si no mejora.",
        False,
    ),
    "degradation": Finding(
        "degradation",
        "degradación del aceite",
        "Revisar la temperatura de operación y el intervalo de cambio; la oxidación acelera el desgaste.",
        True,
    ),
    "silicon": Finding(
        "silicon",
        "silicio sin aluminio",
        "Sin aluminio asociado es más probable un sellante de silicona o antiespumante que polvo: "
        "confirmar en la próxima muestra y revisar el procedimiento de toma de muestra.",
        False,
    ),
    "salts": Finding(
        "salts",
        "sodio o potasio sin agua",
        "Sin agua ni glicol no indica refrigerante: puede venir del aceite de relleno o del ambiente; "
        "confirmar en la próxima muestra.",
        False,
    ),
    "soot": Finding(
        "soot",
        "hollín por combustión deficiente",
        "Revisar la combustión: filtro de aire, turbo, inyección y puesta a punto.",
        True,
    ),
}
# Findings of one process: metal shedding (wear metals, PQ / magnetic debris, particle counts).
WEAR_FAMILY = ("wear", "debris", "cleanliness")
# Fixed order among findings of the same level and points: causes before consequences.
ORDER = (
    "coolant",
    "fuel",
    "water",
    "dust",
    "wear",
    "debris",
    "viscosity_low",
    "viscosity_high",
    "soot",
    "degradation",
    "cleanliness",
    "silicon",
    "salts",
)

ESSAY_FINDING = {
    "si": "dust",
    "water": "water",
    "water_pct": "water",
    "fuel": "fuel",
    "fuel_pct": "fuel",
    "glycol": "coolant",
    "glycol_pct": "coolant",
    "na": "coolant",
    "k": "coolant",
    "oxidation": "degradation",
    "nitration": "degradation",
    "sulfation": "degradation",
    "tan": "degradation",
    "tbn": "degradation",
    "soot": "soot",
    "pq_index": "debris",
    "debris_magnetic": "debris",
    "ferro_cutting": "debris",
    "ferro_fatigue": "debris",
    "ferro_sliding": "debris",
    "fatigue": "debris",
}
GROUP_FINDING = {
    "wear": "wear",
    "particle": "cleanliness",
    "visual": "debris",
    "contaminant": "dust",
    "physicochemical": "degradation",
    "flag": "water",
}

# Typical sources of each wear metal, named in the wear sentence.
WEAR_SOURCES = {
    "fe": "engranajes, camisas y ejes",
    "cr": "anillos y rodamientos",
    "al": "pistones, bombas y carcasas",
    "cu": "bujes, enfriador y arandelas de bronce",
    "pb": "metales de biela y bancada",
    "sn": "metales de biela y bancada",
    "ni": "válvulas y rodamientos",
    "ag": "bujes plateados",
    "ti": "aleaciones de alta resistencia",
    "v": "aceros aleados",
    "mn": "aceros aleados",
}


def _name(essay: str, catalog: Catalog) -> str:
    return catalog.name_es(essay) if essay in catalog.table.index else essay


def _group(breach: Mapping, catalog: Catalog) -> str:
    essay = str(breach.get("essay", ""))
    return catalog.group(essay) if essay in catalog.table.index else str(breach.get("group") or "")


def finding_of(breach: Mapping, catalog: Catalog) -> str | None:
    """The finding a breach points to; ``None`` for additives (they never make a finding)."""
    essay = str(breach.get("essay", ""))
    group = _group(breach, catalog)
    if group == "additive":
        return None
    if essay in ("visc_100c", "visc_40c"):
        return "viscosity_low" if breach.get("direction") == "lower" else "viscosity_high"
    return ESSAY_FINDING.get(essay) or GROUP_FINDING.get(group, "degradation")


def _level(breach: Mapping) -> str:
    lv = str(breach.get("level", "marginal"))
    return lv if lv in LEVEL_RANK else "marginal"


@dataclass
class _Found:
    key: str
    level: str
    points: float
    essays: list[str]
    trend: bool


def findings(breaches: Iterable[Mapping], catalog: Catalog) -> tuple[list[_Found], list[str]]:
    """Findings sorted worst first (level, points, fixed order) and the additive essays breached."""
    found: dict[str, _Found] = {}
    additives: list[str] = []
    rank: dict[str, tuple[int, float]] = {}
    breaches = list(breaches)
    # The explanation names what scores; breaches the classifier zeroed (uncorroborated silicon,
    # zero-weight counts, the weaker of a level/oil-age pair) are named only when nothing scores.
    scoring = [b for b in breaches if float(b.get("points") or 0) > 0 and finding_of(b, catalog)]
    if scoring:
        breaches = scoring + [b for b in breaches if finding_of(b, catalog) is None]
    for b in breaches:
        essay = str(b.get("essay", ""))
        key = finding_of(b, catalog)
        if key is None:
            if essay not in additives:
                additives.append(essay)
            continue
        f = found.setdefault(key, _Found(key, "marginal", 0.0, [], False))
        if LEVEL_RANK[_level(b)] > LEVEL_RANK[f.level]:
            f.level = _level(b)
        f.points += float(b.get("points") or 0.0)
        f.trend |= b.get("kind") == "trend"
        if essay not in f.essays:
            f.essays.append(essay)
        rank[essay] = max(rank.get(essay, (0, 0.0)), (LEVEL_RANK[_level(b)], float(b.get("points") or 0.0)))
    _attribute_contaminants(found, {str(b.get("essay")) for b in breaches})
    for f in found.values():  # worst essay first, whatever the input order
        f.essays.sort(key=lambda e: (-rank[e][0], -rank[e][1], e))
    ranked = sorted(found.values(), key=lambda f: (-LEVEL_RANK[f.level], -f.points, ORDER.index(f.key)))
    if ranked and ranked[0].level != "marginal":
        # A marginal limit is the group's P90: one reading in ten passes it by construction. Next to
        # a condemning or critical finding, a marginal one is named only when it describes the same
        # process (metal shedding shows in the wear metals, PQ and debris together); a marginal
        # viscosity or degradation beside it is noise, not an explanation.
        ranked = [f for f in ranked if f.level != "marginal" or f.key in WEAR_FAMILY]
    return ranked, sorted(additives)


def _attribute_contaminants(found: dict[str, _Found], essays: set[str]) -> None:
    """Silicon is dust only with aluminium (dirt is silica and alumina); alone it is more often a
    silicone sealant or antifoam. Sodium and potassium point at coolant only with water or glycol;
    alone they may come from the make-up oil or the environment. Otherwise they are findings
    without a cause (DOMAIN.md §7: the lab puts silicon down to sealants)."""
    dust = found.get("dust")
    if dust is not None and "si" in dust.essays and "al" not in essays:
        dust.essays.remove("si")
        _move(found, dust, "silicon", ["si"])
    coolant = found.get("coolant")
    salts = [e for e in ("na", "k") if coolant is not None and e in coolant.essays]
    if salts and not (essays & {"water", "water_pct", "glycol", "glycol_pct"}):
        for e in salts:
            coolant.essays.remove(e)
        _move(found, coolant, "salts", salts)


def _move(found: dict[str, _Found], src: _Found, key: str, essays: list[str]) -> None:
    """Give ``essays`` of finding ``src`` to finding ``key`` (dropping ``src`` when it is left empty)."""
    found[key] = _Found(key, src.level, src.points if not src.essays else 0.0, essays, src.trend)
    if not src.essays:
        del found[src.key]


# Water in the sample keeps the lab from counting particles (ISO code "H2O", DOMAIN §1.1).
WATER_BLOCKS_COUNT = "el agua impidió el conteo de partículas"
MAX_MAIN_WORDS = 20


def _water_blocks(context: Mapping | None) -> bool:
    v = context.get("countPreventedByWater") if context is not None else None
    return v is not None and v is not pd.NA and bool(v)


def _found_with_context(items: list[dict], catalog: Catalog, context: Mapping | None):
    found, additives = findings(items, catalog)
    if _water_blocks(context) and not any(f.key == "water" for f in found):
        # No water essay breached but the lab could not count particles because of water: the
        # water is the finding (the lab writes "contaminación con agua impide realizar…").
        found.insert(0, _Found("water", "condemning", 0.0, [], False))
    return found, additives


def _essays_text(f: _Found, catalog: Catalog, n: int) -> str:
    return _join([_name(e, catalog) for e in f.essays[:n]])


def main_finding(breaches, component: str | None, catalog: Catalog, context: Mapping | None = None) -> str:
    """One line, at most 20 words: what (the worst finding and its essays), where (the compartment)
    and how bad (its level, rising or not). Empty when nothing is out of limits."""
    found, additives = _found_with_context(parse_breaches(breaches), catalog, context)
    comp = (str(component).strip() if component else "") or "compartimento"
    if not found:
        return f"{capitalize(comp)}: solo aditivos fuera de rango." if additives else ""
    return main_finding_from(comp, found, catalog, context)


def _finding_sentence(f: _Found, catalog: Catalog, context: Mapping | None) -> str:
    spec = FINDINGS[f.key]
    if f.key == "wear":
        sources = [WEAR_SOURCES[e] for e in f.essays if e in WEAR_SOURCES]
        where = f"Posible origen: {sources[0]}. " if sources else ""
        return f"{where}{spec.check}"
    if f.key == "water" and _water_blocks(context):
        return f"{capitalize(WATER_BLOCKS_COUNT)}. {spec.check}"
    return spec.check


def _additive_sentence(additives: list[str], catalog: Catalog) -> str:
    names = _join([_name(e, catalog) for e in additives])
    verb = "es un aditivo" if len(additives) == 1 else "son aditivos"
    return f"{names} {verb}: refleja la formulación del aceite y no indica falla."


def _status_of(found: list[_Found]) -> str:
    """Stand-in status when the caller gives none: the worst level decides."""
    worst = found[0].level if found else "marginal"
    return {"critical": "Anormal", "condemning": "Alerta"}.get(worst, "Alerta")


def report_action(breaches, component: str | None, catalog: Catalog, status: str | None = None) -> Action:
    """The graded action of one report (see :mod:`.actions`)."""
    items = parse_breaches(breaches)
    if status is None:
        status = _status_of(findings(items, catalog)[0]) if items else "Normal"
    return graded_action(status, items, component)


def explained_causes(
    breaches, component: str | None, catalog: Catalog, context: Mapping | None = None
) -> set[str]:
    """The causes (:data:`.causes.CAUSES`) the recommendation of this report names."""
    found, _ = _found_with_context(parse_breaches(breaches), catalog, context)
    return {FINDING_CAUSE[f.key] for f in found[:MAX_FINDINGS] if f.key in FINDING_CAUSE}


def offline_recommendation(
    breaches,
    component: str | None,
    catalog: Catalog,
    status: str | None = None,
    context: Mapping | None = None,
) -> str:
    """Deterministic Spanish recommendation for one report from its breaches.

    ``breaches`` is the ``breached_essays`` value (JSON text or list of dicts), ``status`` the
    report status (None: inferred from the worst level), ``context`` other fields of the report
    (``countPreventedByWater``). The text starts with the main finding (what, where, how bad), then
    the graded action, what to inspect for up to three findings and the follow-up. Additive-only
    breaches keep the oil in service: no change, no intervention.
    """
    items = parse_breaches(breaches)
    comp = (str(component).strip() if component else "") or "Componente"
    found, additives = _found_with_context(items, catalog, context)
    if not found and not additives:
        return NORMAL_REPORT_TEXT
    if not found:
        names = _join([_name(e, catalog) for e in additives])
        return (
            f"{capitalize(comp)}: solo aditivos fuera de rango ({names}). Los aditivos describen la "
            "formulación del lubricante y no indican desgaste ni contaminación: mantener el aceite en "
            "servicio y el intervalo normal de muestreo. Verificar que los rellenos usen el aceite "
            "especificado."
        )
    if status is None:
        status = _status_of(found)
    action = graded_action(status, items, comp)
    for shown in range(MAX_FINDINGS, 0, -1):  # fewer findings until the text fits the word budget
        text = _compose(comp, found, additives, shown, catalog, action, context)
        if len(text.split()) <= MAX_WORDS:
            break
    return text


def _compose(
    comp: str,
    found: list[_Found],
    additives: list[str],
    n_shown: int,
    catalog: Catalog,
    action: Action,
    context: Mapping | None,
) -> str:
    shown = found[:n_shown]
    parts = [main_finding_from(comp, found, catalog, context)]
    if action.grade == "stop":
        parts.append(f"{action.text[:-1]}: {action.reason}.")
    else:
        parts.append(action.text)
    parts += [_finding_sentence(f, catalog, context) for f in shown]
    rest = [f for f in found[n_shown:]]
    if rest:
        parts.append("Otros hallazgos: " + _join([FINDINGS[f.key].label for f in rest]) + ".")
    if action.grade in ("stop", "plan") and any(
        FINDINGS[f.key].changes_oil and f.level != "marginal" for f in found
    ):
        parts.append("Cambiar aceite y filtros una vez corregida la causa.")
    if additives:
        parts.append(_additive_sentence(additives, catalog))
    parts.append(FOLLOW_UP[action.grade])
    return " ".join(p for p in parts if p)


def main_finding_from(comp: str, found: list[_Found], catalog: Catalog, context: Mapping | None) -> str:
    """:func:`main_finding` from findings already computed."""
    f = found[0]
    label = FINDINGS[f.key].label
    trend = ", en aumento" if f.trend else ""
    extra = f", {WATER_BLOCKS_COUNT}" if f.key == "water" and _water_blocks(context) else ""
    head = capitalize(comp)
    for n in (2, 1, 0):
        names = _essays_text(f, catalog, n) if n and f.essays else ""
        what = f"{label} — {names}" if names else label
        text = f"{head}: {what}, nivel {LEVEL_ES[f.level].lower()}{trend}{extra}"
        if len(found) > 1:
            text += f"; {count(len(found) - 1, 'hallazgo', other=True)}"
        if len(text.split()) <= MAX_MAIN_WORDS:
            return text + "."
        extra = ""
    return f"{head}: {label}, nivel {LEVEL_ES[f.level].lower()}."


FOLLOW_UP = {
    "stop": "Contramuestra a las 50 horas de la intervención.",
    "plan": "Contramuestra a las 50 horas de la intervención.",
    "resample": "Si la nueva muestra confirma el hallazgo, planificar la intervención.",
    "none": "Mantener el intervalo normal de muestreo.",
}


# -- machine level ----------------------------------------------------------------------------------

# Component weights of the machine view (DOMAIN.md §4.3, v2.3+): engine and transmission first.
HIGH_WEIGHT = ("motor", "transmision")
MEDIUM_WEIGHT = ("convertidor", "diferencial")


def component_weight(component: str) -> str:
    """``alto`` / ``medio`` / ``bajo``: how much a compartment weighs in the machine view."""
    c = str(component or "").lower()
    if c.startswith(HIGH_WEIGHT):
        return "alto"
    if c.startswith(MEDIUM_WEIGHT):
        return "medio"
    return "bajo"


WEIGHT_RANK = {"alto": 3, "medio": 2, "bajo": 1}


def rank_components(components: list[Mapping], catalog: Catalog) -> list[tuple]:
    """Non-Normal compartments, most urgent first: (component mapping, status, findings, worst
    level, action), by action grade, status, weight, worst level, name."""
    flagged = []
    for c in components:
        status = str(c.get("status") or "Normal")
        if status == "Normal":
            continue
        items = parse_breaches(c.get("breaches"))
        found, _ = _found_with_context(items, catalog, c.get("context"))
        level = found[0].level if found else "marginal"
        action = graded_action(status, items, c.get("component"))
        flagged.append((c, status, found, level, action))
    flagged.sort(
        key=lambda t: (
            -GRADE_RANK[t[4].grade],
            -RANK.get(t[1], -1),
            -WEIGHT_RANK[component_weight(t[0].get("component"))],
            -LEVEL_RANK[t[3]],
            str(t[0].get("component")),
        )
    )
    return flagged


def machine_main_finding(
    components: list[Mapping], catalog: Catalog, ranked: list[tuple] | None = None
) -> str:
    """The main finding of a machine: that of its most urgent compartment, plus how many others
    have findings (at most 20 words). Empty when every compartment is Normal. ``ranked``: the
    :func:`rank_components` of ``components`` when already computed."""
    flagged = ranked if ranked is not None else rank_components(components, catalog)
    if not flagged:
        return ""
    c, _, found, _, _ = flagged[0]
    comp = str(c.get("component") or "compartimento")
    if not found:
        head = f"{capitalize(comp)}: solo aditivos fuera de rango."
    else:
        head = main_finding_from(comp, found[:1], catalog, c.get("context"))
    more = len(flagged) - 1
    if more:
        tail = f" {capitalize(count(more, 'compartimento', other=True))} con hallazgos."
        if len((head + tail).split()) <= MAX_MAIN_WORDS:
            return head + tail
    return head


def machine_action(machine_status: str, components: list[Mapping], catalog: Catalog) -> Action:
    """The graded action of a machine: that of its most urgent compartment."""
    if str(machine_status) == "Normal":
        return graded_action("Normal", [])
    return worst_action(t[4] for t in rank_components(components, catalog))


def offline_machine_recommendation(machine_status: str, components: list[Mapping], catalog: Catalog) -> str:
    """Deterministic machine-level text from the latest report of each compartment.

    ``components``: one mapping per compartment with ``component``, ``status`` and ``breaches``
    (its report's ``breached_essays``), optionally ``context``. Non-Normal compartments are ranked
    by graded action, status, weight and worst level; the text gives the machine's main finding and
    action, then which compartments to attend first and what each shows.
    """
    flagged = rank_components(components, catalog)
    if str(machine_status) == "Normal" or not flagged:
        return NORMAL_MACHINE_TEXT
    n = len(flagged)
    action = worst_action(t[4] for t in flagged)
    parts = [
        f"Máquina en estado {machine_status}: {count(n, 'compartimento')} con "
        f"{'hallazgo' if n == 1 else 'hallazgos'}."
    ]
    if action.grade == "stop":
        parts.append(f"{action.text[:-1]}: {action.reason}.")
    else:
        parts.append(action.text)
    for i, (c, status, found, _level, act) in enumerate(flagged[:4], start=1):
        what = _join([FINDINGS[f.key].label for f in found[:2]]) if found else "solo aditivos fuera de rango"
        parts.append(
            f"Prioridad {i}: {c.get('component')} ({status}, peso {component_weight(c.get('component'))})"
            f", {what}: {GRADE_ES[act.grade].lower()}."
        )
    if n > 4:
        parts.append(f"{capitalize(count(n - 4, 'compartimento', other=True))} en seguimiento.")
    keys = [{f.key for f in t[2]} for t in flagged]
    common = set.intersection(*keys) if len(keys) > 1 else set()
    if common:
        label = FINDINGS[sorted(common, key=ORDER.index)[0]].label
        parts.append(
            f"{det('def', label, capital=True)} {verb('aparece', label)} en varios compartimentos: buscar una causa común "
            "(operación, lavado, procedimiento de rellenos)."
        )
    parts.append("Atender los compartimentos en el orden indicado.")
    parts.append(FOLLOW_UP[action.grade])
    return " ".join(parts)
