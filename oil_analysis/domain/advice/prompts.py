"""Prompts of the maintenance advisor: system prompt, few-shots and the user prompts.

A report prompt is built in two steps: :func:`report_inputs` extracts the facts the model sees
(a plain, JSON-able dict — also the cache key's input), :func:`render_report_prompt` turns them into
text. The few-shot examples are rendered by the same function from example facts, so their table is
exactly the table of the real prompt (the reference's examples and real prompts disagreed). The
lab's free text (``labComment``) is never read.

``PROMPT_VERSION`` carries a digest of the system prompt and the rendered few-shots: any edit to the
wording or the table format changes it, which invalidates the cache.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

import pandas as pd

from ..catalog import Catalog
from .actions import graded_action
from .offline import DIRECTION_ES, LEVEL_ES, LEVEL_RANK, component_weight, parse_breaches

PROMPT_SERIES = "advice-v2"

SYSTEM_PROMPT = """\
Eres un ingeniero mecánico especialista en equipos mineros (camiones de extracción, palas, cargadores, \
bulldozers, perforadoras) y en análisis de aceite usado. Recibes los datos de una muestra: equipo, \
compartimento, aceite y una tabla con los ensayos fuera de límite, su nivel (Marginal, Condenatorio, \
Crítico), el límite transgredido (superior o inferior) y el cambio respecto de la muestra anterior. \
Entrega un diagnóstico breve y una recomendación de mantenimiento concreta que un jefe de flota pueda \
ejecutar: qué revisar, qué hacer con el aceite y cuándo tomar la próxima muestra.
Reglas:
- Zinc, Bario, Boro, Calcio, Molibdeno, Magnesio y Fósforo son aditivos del aceite. Su variación \
describe la formulación del lubricante y nunca justifica un cambio de aceite ni una intervención del \
componente; a lo sumo sugiere verificar que los rellenos usen el aceite especificado.
- Usa solo los datos entregados; no inventes valores ni ensayos.
- Empieza por el hallazgo principal en una frase: qué, dónde y qué tan grave.
- La acción sigue reglas fijas y viene indicada en los datos ("Acción según reglas"): detener el equipo \
solo con refrigerante (glicol) positivo en el aceite del motor, dilución por combustible en nivel \
Crítico o desgaste en nivel Crítico confirmado por el índice PQ o por una tendencia al alza; otro \
informe Anormal, planificar la intervención dentro del plazo indicado; Alerta, mantener en servicio y \
tomar una nueva muestra dentro de las horas indicadas. Nunca pidas detener el equipo fuera de esos casos.
- Si el agua impidió el conteo de partículas, nombra el agua como hallazgo.
- Cuando recibas el resumen de una máquina completa, da una visión global: ordena las intervenciones \
según el estado y el peso de cada compartimento (motor y transmisión pesan más) y señala si hay una \
causa común.
- Responde en español, en texto corrido sin títulos, viñetas ni markdown, en 150 palabras o menos."""

TABLE_HEADER = "| ensayo | tipo | valor | límite | nivel | límite transgredido | muestra anterior | cambio |"
MACHINE_TABLE_HEADER = "| compartimento | peso | estado | puntaje | fecha | hallazgos principales |"
NONE = "—"


def fmt_num(x) -> str:
    """A reading for the prompt: no exponent, at most 4 significant digits below 1000."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return NONE
    x = float(x)
    if abs(x) >= 1000:
        return f"{x:.0f}"
    text = f"{x:.4g}"
    return text if "e" not in text else f"{x:.6f}".rstrip("0").rstrip(".")


def fmt_change(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return NONE
    return ("+" if x > 0 else "") + fmt_num(x)


def _clean(v):
    """Row value → plain Python (None for every kind of missing)."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if hasattr(v, "item") and not isinstance(v, str | pd.Timestamp):
        v = v.item()
    return v


def _float(v) -> float | None:
    v = _clean(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else float(f"{f:.6g}")  # stable digits for the cache key


def _date(v) -> str | None:
    v = _clean(v)
    if v is None:
        return None
    try:
        return pd.Timestamp(v).strftime("%Y-%m-%d")
    except (ValueError, TypeError):
        return None


def _text(v) -> str | None:
    v = _clean(v)
    return None if v is None or not str(v).strip() else str(v).strip()


_LABELS: dict[tuple[str, str], str] = {}


def _essay_label(essay: str, catalog: Catalog) -> str:
    key = (catalog.version, essay)  # a few dozen essays, asked once per breach of every report
    label = _LABELS.get(key)
    if label is None:
        if essay not in catalog.table.index:
            label = essay
        else:
            name, unit = catalog.name_es(essay), catalog.unit(essay).replace("level", "nivel")
            label = name if name.endswith(unit) else f"{name} ({unit})"
        _LABELS[key] = label
    return label


def _is_additive(b: Mapping, catalog: Catalog) -> bool:
    essay = str(b.get("essay", ""))
    group = catalog.group(essay) if essay in catalog.table.index else str(b.get("group") or "")
    return group == "additive"


def report_inputs(report_row: Mapping, previous_row: Mapping | None, catalog: Catalog) -> dict:
    """The facts of one report the model sees (JSON-able; the cache key hashes exactly this).

    ``report_row`` is a classified report (silver columns + ``breached_essays``...), ``previous_row``
    the report of ``previousSampleNumber`` or ``None``. Breaches keep the classifier's order (worst
    first); each carries the previous sample's reading of its essay and the change since then.
    Additive breaches are listed apart, as information.
    """
    breaches, additives = [], []
    parsed = parse_breaches(report_row.get("breached_essays"))
    for b in parsed:
        essay = str(b.get("essay", ""))
        level, direction = str(b.get("level", "")), str(b.get("direction", "upper") or "upper")
        if _is_additive(b, catalog):
            additives.append(
                {
                    "essay": catalog.name_es(essay) if essay in catalog.table.index else essay,
                    "level": level,
                    "direction": direction,
                }
            )
            continue
        trend = b.get("kind") == "trend"
        current = _float(report_row.get(essay)) if essay in report_row else None
        previous = (
            _float(previous_row.get(essay)) if previous_row is not None and essay in previous_row else None
        )
        if trend:
            change = _float(b.get("value"))
        else:
            change = None if current is None or previous is None else _float(current - previous)
        breaches.append(
            {
                "essay": _essay_label(essay, catalog),
                "kind": "tendencia" if trend else "nivel",
                "value": _float(b.get("value")),
                "limit": _float(b.get("limit")),
                "level": level,
                "direction": direction,
                "previous": previous,
                "change": change,
            }
        )
    oil = " ".join(t for t in (_text(report_row.get("oilType")), _text(report_row.get("oilWeight"))) if t)
    prev_date = _date(previous_row.get("sampleDate")) if previous_row is not None else None
    sample_date = _date(report_row.get("sampleDate"))
    days = None
    if prev_date and sample_date:
        days = (pd.Timestamp(sample_date) - pd.Timestamp(prev_date)).days
    action = graded_action(
        _text(report_row.get("report_status")) or "Normal",
        parsed,  # read only, here and above
        _text(report_row.get("componentName")),
    )
    water = _clean(report_row.get("countPreventedByWater"))
    return {
        "unit": _text(report_row.get("unitId")),
        "machine": (_text(report_row.get("machineName")) or "").lower() or None,
        "model": (_text(report_row.get("machineModel")) or "").upper() or None,
        "component": (_text(report_row.get("componentName")) or "").lower() or None,
        "action": action.text + (f" Motivo: {action.reason}." if action.grade == "stop" else ""),
        "water_blocks_count": bool(water) if water is not None else False,
        "oil_hours": _float(report_row.get("oilMeter")),
        "oil": oil or None,
        "sample_date": sample_date,
        "previous_date": prev_date,
        "days_since_previous": days,
        "status": _text(report_row.get("report_status")),
        "score": _float(report_row.get("severity_score")),
        "breaches": breaches,
        "additives": additives,
    }


def _separator(header: str) -> str:
    return "|" + "---|" * (header.count(" | ") + 1)


def _or_none(v, suffix: str = "") -> str:
    return "sin dato" if v is None or v == "" else f"{v}{suffix}"


def render_report_prompt(inputs: Mapping) -> str:
    """The user prompt of one report, from :func:`report_inputs`."""
    prev = "sin muestra anterior"
    if inputs.get("previous_date"):
        prev = f"{inputs['previous_date']} ({inputs['days_since_previous']} días antes)"
    machine = " ".join(t for t in (inputs.get("machine"), inputs.get("model")) if t)
    lines = [
        "Analiza la siguiente muestra de aceite usado y entrega la recomendación de mantenimiento.",
        f"Unidad: {_or_none(inputs.get('unit'))}",
        f"Máquina: {_or_none(machine)}",
        f"Compartimento: {_or_none(inputs.get('component'))}",
        f"Horas del aceite: {_or_none(fmt_num(inputs['oil_hours']) if inputs.get('oil_hours') is not None else None, ' h')}",
        f"Aceite: {_or_none(inputs.get('oil'))}",
        f"Fecha de muestra: {_or_none(inputs.get('sample_date'))}",
        f"Muestra anterior: {prev}",
        f"Estado del informe: {_or_none(inputs.get('status'))} (puntaje {fmt_num(inputs.get('score'))})",
        f"Acción según reglas: {_or_none(inputs.get('action'))}",
    ]
    if inputs.get("water_blocks_count"):
        lines.append("El agua de la muestra impidió el conteo de partículas.")
    lines += ["Ensayos fuera de límite:"]
    if inputs.get("breaches"):
        lines += [TABLE_HEADER, _separator(TABLE_HEADER)]
        for b in inputs["breaches"]:
            lines.append(
                f"| {b['essay']} | {b['kind']} | {fmt_num(b['value'])} | {fmt_num(b['limit'])} | "
                f"{LEVEL_ES.get(b['level'], b['level'])} | {DIRECTION_ES.get(b['direction'], b['direction'])} | "
                f"{fmt_num(b['previous'])} | {fmt_change(b['change'])} |"
            )
    else:
        lines.append("ninguno (solo aditivos)")
    adds = inputs.get("additives") or []
    listed = ", ".join(
        f"{a['essay']} ({LEVEL_ES.get(a['level'], a['level']).lower()}, "
        f"{DIRECTION_ES.get(a['direction'], a['direction'])})"
        for a in adds
    )
    lines.append(
        "Aditivos fuera de rango (informativo: formulación del aceite, no justifican cambio de aceite "
        f"ni de componente): {listed or 'ninguno'}"
    )
    return "\n".join(lines)


def build_user_prompt(report_row: Mapping, previous_row: Mapping | None, catalog: Catalog) -> str:
    """The user prompt of one report (see :func:`report_inputs`)."""
    return render_report_prompt(report_inputs(report_row, previous_row, catalog))


# -- machine level --------------------------------------------------------------------------------


def component_findings(breaches, catalog: Catalog, limit: int = 3) -> list[str]:
    """The worst non-additive breaches of a report as short phrases (``Hierro Condenatorio superior``)."""
    items = [b for b in parse_breaches(breaches) if not _is_additive(b, catalog)]
    items.sort(key=lambda b: (-LEVEL_RANK.get(str(b.get("level")), 0), -float(b.get("points") or 0)))
    out = []
    for b in items:
        essay = str(b.get("essay", ""))
        name = catalog.name_es(essay) if essay in catalog.table.index else essay
        text = (
            f"{name} {LEVEL_ES.get(str(b.get('level')), b.get('level'))} "
            f"{DIRECTION_ES.get(str(b.get('direction') or 'upper'), '')}"
        ).strip()
        if b.get("kind") == "trend":
            text += " (tendencia)"
        if text not in out:
            out.append(text)
        if len(out) == limit:
            break
    return out


def machine_inputs(machine_row: Mapping, components: list[Mapping], catalog: Catalog) -> dict:
    """The facts of one machine the model sees. ``components``: one mapping per compartment with
    ``component``, ``status``, ``severity_score``, ``sample_date`` and ``breaches``."""
    flagged, normal = [], []
    for c in components:
        name = str(c.get("component") or "")
        if str(c.get("status") or "Normal") == "Normal":
            normal.append(name)
            continue
        flagged.append(
            {
                "component": name,
                "weight": component_weight(name),
                "status": str(c.get("status")),
                "score": _float(c.get("severity_score")),
                "sample_date": _date(c.get("sample_date")),
                "findings": component_findings(c.get("breaches"), catalog),
            }
        )
    rank = {"Anormal": 0, "Alerta": 1}
    flagged.sort(key=lambda c: (rank.get(c["status"], 2), -(c["score"] or 0.0), c["component"]))
    return {
        "unit": _text(machine_row.get("unitId")),
        "machine": (_text(machine_row.get("machineName")) or "").lower() or None,
        "model": (_text(machine_row.get("machineModel")) or "").upper() or None,
        "status": _text(machine_row.get("machine_status")),
        "score": _float(machine_row.get("machine_score")),
        "latest_sample_date": _date(machine_row.get("latest_sample_date")),
        "components": flagged,
        "normal_components": sorted(normal),
    }


def render_machine_prompt(inputs: Mapping) -> str:
    """The user prompt of one machine, from :func:`machine_inputs`."""
    machine = " ".join(t for t in (inputs.get("machine"), inputs.get("model")) if t)
    lines = [
        "Analiza el estado global de la siguiente máquina a partir del último informe de cada compartimento "
        "y entrega la recomendación de mantenimiento.",
        f"Unidad: {_or_none(inputs.get('unit'))}",
        f"Máquina: {_or_none(machine)}",
        f"Estado de la máquina: {_or_none(inputs.get('status'))} (puntaje {fmt_num(inputs.get('score'))})",
        f"Última muestra: {_or_none(inputs.get('latest_sample_date'))}",
        "Compartimentos con hallazgos:",
        MACHINE_TABLE_HEADER,
        _separator(MACHINE_TABLE_HEADER),
    ]
    for c in inputs.get("components") or []:
        lines.append(
            f"| {c['component']} | {c['weight']} | {c['status']} | {fmt_num(c['score'])} | "
            f"{_or_none(c['sample_date'])} | {'; '.join(c['findings']) or 'solo aditivos'} |"
        )
    lines.append(
        f"Compartimentos en estado Normal: {', '.join(inputs.get('normal_components') or []) or 'ninguno'}"
    )
    return "\n".join(lines)


# -- few-shot examples ---------------------------------------------------------------------------


def _b(essay, kind, value, limit, level, direction, previous, change) -> dict:
    return {
        "essay": essay,
        "kind": kind,
        "value": value,
        "limit": limit,
        "level": level,
        "direction": direction,
        "previous": previous,
        "change": change,
    }


_EXAMPLE_REPORTS = [
    (
        {
            "unit": "CAEX_12",
            "machine": "camion",
            "model": "830E",
            "component": "motor",
            "oil_hours": 310.0,
            "oil": "DELVAC 1300 15W-40",
            "sample_date": "2024-05-14",
            "previous_date": "2024-04-20",
            "days_since_previous": 24,
            "status": "Anormal",
            "score": 10.0,
            "action": "Planificar la intervención dentro de 14 días.",
            "water_blocks_count": False,
            "breaches": [
                _b("Silicio (ppm)", "nivel", 38.0, 22.0, "condemning", "upper", 12.0, 26.0),
                _b("Hierro (ppm)", "nivel", 64.0, 55.0, "condemning", "upper", 31.0, 33.0),
                _b("Aluminio (ppm)", "nivel", 9.0, 7.0, "marginal", "upper", 4.0, 5.0),
            ],
            "additives": [],
        },
        "Motor con ingreso de polvo y desgaste abrasivo en nivel condenatorio: el silicio subió de 12 a 38 ppm en 24 días y "
        "arrastra al hierro (64 ppm) y al aluminio, lo que apunta a camisas, anillos y pistones. Revisar el "
        "sistema de admisión: elementos del filtro de aire, indicador de restricción, mangueras y abrazaderas "
        "entre filtro y turbo, y sellos del múltiple. Planificar la intervención dentro de 14 días: corregida la "
        "entrada de polvo, cambiar aceite y filtros para retirar el abrasivo. Tomar una contramuestra a las 50 horas para "
        "confirmar que el silicio y el hierro bajan; si el hierro sigue subiendo, programar una boroscopía de "
        "cilindros.",
    ),
    (
        {
            "unit": "CF_03",
            "machine": "cargador",
            "model": "994K",
            "component": "transmision",
            "oil_hours": 1150.0,
            "oil": "TDTO 30",
            "sample_date": "2024-07-02",
            "previous_date": "2024-05-28",
            "days_since_previous": 35,
            "status": "Anormal",
            "score": 11.0,
            "action": "Planificar la intervención dentro de 14 días.",
            "water_blocks_count": False,
            "breaches": [
                _b("Agua (nivel 0-3)", "nivel", 2.0, 1.0, "condemning", "upper", 0.0, 2.0),
                _b("Índice PQ (index)", "tendencia", 55.0, 30.0, "condemning", "upper", 40.0, 55.0),
                _b("Viscosidad 40°C (cSt)", "nivel", 82.0, 88.0, "marginal", "lower", 95.0, -13.0),
            ],
            "additives": [{"essay": "Calcio", "level": "marginal", "direction": "lower"}],
        },
        "Contaminación con agua que ya afecta al lubricante: la viscosidad cayó 13 cSt y el índice PQ subió "
        "de 40 a 95, señal de partículas ferrosas por corrosión y pérdida de película. Planificar dentro de 14 "
        "días el cambio de aceite y filtros de la transmisión, sin esperar el intervalo. Buscar la vía de "
        "ingreso: respiradero, sellos de ejes, tapas de inspección, lavado a presión cerca del compartimento "
        "y enfriador de aceite. Inspeccionar el tapón magnético y la malla de succión para cuantificar las "
        "partículas. El calcio es un aditivo: su variación no requiere acción. Contramuestra a las 50 horas "
        "del cambio.",
    ),
    (
        {
            "unit": "CAEX_07",
            "machine": "camion",
            "model": "930E",
            "component": "motor",
            "oil_hours": 180.0,
            "oil": "RIMULA R4 15W-40",
            "sample_date": "2024-09-10",
            "previous_date": "2024-08-22",
            "days_since_previous": 19,
            "status": "Alerta",
            "score": 4.0,
            "action": "Mantener en servicio y tomar una nueva muestra dentro de 125 horas de operación.",
            "water_blocks_count": False,
            "breaches": [
                _b("Dilución por combustible %", "nivel", 2.2, 1.5, "condemning", "upper", 0.6, 1.6),
                _b("Viscosidad 100°C (cSt)", "nivel", 11.8, 12.5, "marginal", "lower", 14.1, -2.3),
            ],
            "additives": [
                {"essay": "Zinc", "level": "condemning", "direction": "lower"},
                {"essay": "Magnesio", "level": "marginal", "direction": "upper"},
            ],
        },
        "Dilución por combustible de 2,2 % (antes 0,6 %) con caída de la viscosidad a 11,8 cSt: el aceite "
        "pierde capacidad de carga y sube el riesgo de desgaste en metales de biela y bancada. Revisar "
        "inyectores (pulverización, retorno y sellos), bomba de transferencia y líneas de combustible, y "
        "verificar tiempos de ralentí prolongado. Cambiar el aceite una vez corregida la fuga. El zinc y el "
        "magnesio son aditivos: su variación refleja la formulación del aceite y no indica falla. Mantener en "
        "servicio y tomar una nueva muestra dentro de 125 horas para confirmar que la dilución no vuelve a subir.",
    ),
]

_EXAMPLE_MACHINE = (
    {
        "unit": "CAEX_12",
        "machine": "camion",
        "model": "830E",
        "status": "Anormal",
        "score": 7.0,
        "latest_sample_date": "2024-05-14",
        "components": [
            {
                "component": "motor",
                "weight": "alto",
                "status": "Anormal",
                "score": 10.0,
                "sample_date": "2024-05-14",
                "findings": ["Silicio Condenatorio superior", "Hierro Condenatorio superior"],
            },
            {
                "component": "mando final izquierdo",
                "weight": "bajo",
                "status": "Alerta",
                "score": 3.0,
                "sample_date": "2024-05-10",
                "findings": ["Silicio Marginal superior", "Hierro Marginal superior"],
            },
        ],
        "normal_components": ["diferencial", "mando final derecho", "transmision"],
    },
    "La prioridad es el motor: polvo y desgaste abrasivo en nivel condenatorio. Revisar la admisión de aire "
    "(filtros, indicador de restricción, mangueras y abrazaderas) y cambiar aceite y filtros en la próxima "
    "detención. El mando final izquierdo muestra el mismo patrón en nivel marginal, lo que sugiere una causa "
    "común de ingreso de polvo: revisar respiraderos y sellos y confirmar el procedimiento de rellenos y de "
    "toma de muestras. Transmisión y diferencial están normales. Contramuestra del motor a las 50 horas y del "
    "mando final en el próximo intervalo.",
)

FEW_SHOTS: list[tuple[str, str]] = [(render_report_prompt(f), a) for f, a in _EXAMPLE_REPORTS]
MACHINE_FEW_SHOTS: list[tuple[str, str]] = [(render_machine_prompt(_EXAMPLE_MACHINE[0]), _EXAMPLE_MACHINE[1])]


def _digest() -> str:
    parts = [SYSTEM_PROMPT] + [u + "\n" + a for u, a in FEW_SHOTS + MACHINE_FEW_SHOTS]
    return hashlib.sha256("\n\x1e".join(parts).encode()).hexdigest()[:8]


PROMPT_VERSION = f"{PROMPT_SERIES}-{_digest()}"


def messages(user_prompt: str, kind: str = "report") -> list[dict]:
    """Chat messages: system prompt, the few-shots of ``kind`` (report / machine), the user prompt."""
    shots = MACHINE_FEW_SHOTS if kind == "machine" else FEW_SHOTS
    out = [{"role": "system", "content": SYSTEM_PROMPT}]
    for user, assistant in shots:
        out += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    out.append({"role": "user", "content": user_prompt})
    return out
