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

from ..catalog import Catalog

OFFLINE_VERSION = "offline-v1"
OFFLINE_MODEL = "offline-advisor"

LEVELS = ("marginal", "condemning", "critical")
LEVEL_RANK = {lv: i + 1 for i, lv in enumerate(LEVELS)}
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
    "soot": Finding(
        "soot",
        "hollín por combustión deficiente",
        "Revisar la combustión: filtro de aire, turbo, inyección y puesta a punto.",
        True,
    ),
}
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

ACTIONS = {
    "critical": (
        "Acción inmediata: detener el equipo en el menor plazo posible e inspeccionar antes de "
        "seguir operando.",
        "Cambiar aceite y filtros una vez corregida la causa.",
    ),
    "condemning": (
        "Programar la inspección en la próxima detención.",
        "Cambiar aceite y filtros una vez corregida la causa.",
    ),
    "marginal": ("Mantener en servicio con seguimiento.", ""),
}
FOLLOW_UP = {
    "critical": "Contramuestra a las 50 horas de la intervención.",
    "condemning": "Contramuestra a las 50 horas.",
    "marginal": "Nueva muestra a las 125 horas para confirmar la tendencia.",
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


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " y " + names[-1]


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
    for f in found.values():  # worst essay first, whatever the input order
        f.essays.sort(key=lambda e: (-rank[e][0], -rank[e][1], e))
    ranked = sorted(found.values(), key=lambda f: (-LEVEL_RANK[f.level], -f.points, ORDER.index(f.key)))
    return ranked, sorted(additives)


def _finding_sentence(f: _Found, catalog: Catalog) -> str:
    spec = FINDINGS[f.key]
    names = _join([_name(e, catalog) for e in f.essays[:3]])
    trend = ", en aumento respecto de la muestra anterior" if f.trend else ""
    head = f"{spec.label.capitalize()} ({names}, nivel {LEVEL_ES[f.level].lower()}{trend})."
    if f.key == "wear":
        sources = [WEAR_SOURCES[e] for e in f.essays if e in WEAR_SOURCES]
        where = f" Posible origen: {sources[0]}." if sources else ""
        return f"{head}{where} {spec.check}"
    return f"{head} {spec.check}"


def _additive_sentence(additives: list[str], catalog: Catalog) -> str:
    names = _join([_name(e, catalog) for e in additives])
    verb = "es un aditivo" if len(additives) == 1 else "son aditivos"
    return f"{names} {verb}: refleja la formulación del aceite y no indica falla."


def offline_recommendation(breaches, component: str | None, catalog: Catalog) -> str:
    """Deterministic Spanish recommendation for one report from its breaches.

    ``breaches`` is the ``breached_essays`` value (JSON text or list of dicts). The text names up to
    three findings (worst first), what to inspect, and one action whose urgency follows the worst
    level. Additive-only breaches keep the oil in service: no change, no intervention.
    """
    items = parse_breaches(breaches)
    comp = (str(component).strip() if component else "") or "Componente"
    found, additives = findings(items, catalog)
    if not found and not additives:
        return NORMAL_REPORT_TEXT
    if not found:
        names = _join([_name(e, catalog) for e in additives])
        return (
            f"{comp.capitalize()}: solo aditivos fuera de rango ({names}). Los aditivos describen la "
            "formulación del lubricante y no indican desgaste ni contaminación: mantener el aceite en "
            "servicio y el intervalo normal de muestreo. Verificar que los rellenos usen el aceite "
            "especificado."
        )
    for shown in range(MAX_FINDINGS, 0, -1):  # fewer findings until the text fits the word budget
        text = _compose(comp, found, additives, shown, catalog)
        if len(text.split()) <= MAX_WORDS:
            break
    return text


def _compose(comp: str, found: list[_Found], additives: list[str], n_shown: int, catalog: Catalog) -> str:
    worst = found[0].level
    shown = found[:n_shown]
    summary = _join([FINDINGS[f.key].label for f in shown])
    parts = [f"{comp.capitalize()} con {summary}; nivel más alto {LEVEL_ES[worst].lower()}."]
    parts += [_finding_sentence(f, catalog) for f in shown]
    if len(found) > n_shown:
        parts.append("Otros hallazgos: " + _join([FINDINGS[f.key].label for f in found[n_shown:]]) + ".")
    urgency, oil = ACTIONS[worst]
    parts.append(urgency)
    if oil and any(FINDINGS[f.key].changes_oil and f.level != "marginal" for f in found):
        parts.append(oil)
    if additives:
        parts.append(_additive_sentence(additives, catalog))
    parts.append(FOLLOW_UP[worst])
    return " ".join(parts)


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
STATUS_RANK = {"Anormal": 3, "Alerta": 2, "Normal": 1}


def offline_machine_recommendation(machine_status: str, components: list[Mapping], catalog: Catalog) -> str:
    """Deterministic machine-level text from the latest report of each compartment.

    ``components``: one mapping per compartment with ``component``, ``status`` and ``breaches``
    (its report's ``breached_essays``). Non-Normal compartments are ranked by status, weight and
    worst level; the text says which to attend first and what each shows.
    """
    flagged = []
    for c in components:
        status = str(c.get("status") or "Normal")
        if status == "Normal":
            continue
        found, _ = findings(parse_breaches(c.get("breaches")), catalog)
        level = found[0].level if found else "marginal"
        flagged.append((c, status, found, level))
    if str(machine_status) == "Normal" or not flagged:
        return NORMAL_MACHINE_TEXT
    flagged.sort(
        key=lambda t: (
            -STATUS_RANK.get(t[1], 0),
            -WEIGHT_RANK[component_weight(t[0].get("component"))],
            -LEVEL_RANK[t[3]],
            str(t[0].get("component")),
        )
    )
    n = len(flagged)
    parts = [f"Máquina en estado {machine_status}: {n} compartimento{'s' if n > 1 else ''} con hallazgos."]
    for i, (c, status, found, _level) in enumerate(flagged[:4], start=1):
        what = _join([FINDINGS[f.key].label for f in found[:2]]) if found else "solo aditivos fuera de rango"
        parts.append(
            f"Prioridad {i}: {c.get('component')} ({status}, peso {component_weight(c.get('component'))})"
            f", {what}."
        )
    if n > 4:
        parts.append(f"Otros {n - 4} compartimentos en seguimiento.")
    keys = [{f.key for f in t[2]} for t in flagged]
    common = set.intersection(*keys) if len(keys) > 1 else set()
    if common:
        label = FINDINGS[sorted(common, key=ORDER.index)[0]].label
        parts.append(
            f"El {label} aparece en varios compartimentos: buscar una causa común (operación, "
            "lavado, procedimiento de rellenos)."
        )
    worst = max((t[3] for t in flagged if t[2]), key=LEVEL_RANK.get, default="marginal")
    parts.append(ACTIONS[worst][0] + " Atender los compartimentos en el orden indicado.")
    parts.append(FOLLOW_UP[worst])
    return " ".join(parts)
