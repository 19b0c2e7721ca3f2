"""Demo data in the raw format of the ALS laboratory (client EMIN): ``muestrasAlsHistoricos.parquet``.

One row per sample in the lab's wide **test-slot** layout (DOMAIN.md §1.3): identity columns
(``id``, ``sampleNumber``, ``equipment_*``, ``compartment_*``, ``collectionData_*``, ``program_*``,
``dateOfEntryIntoLaboratory``, ``validResult_evaluationDate``) followed by slots
``testResults_{N}_{suffix}`` for N = 0..39, suffixes ``test_translation_name``, ``resultValue``,
``test_translation_method``, ``test_testGroup_id``, ``test_testGroup_name``, ``test_valueType``,
``test_order`` and ``file``. A small ``Equipamiento.parquet`` lists the equipment.

What the readers must handle (all deliberate):

- **Slots are not columns of a fixed test.** The same test sits in different slots in different
  samples (the group order depends on the program, and some samples list the tests in entry
  order); trailing slots are empty (all-null); now and then a test is listed with a null value.
  ``test_order`` is the stable display order of a test; key on ``test_translation_name``.
- **Every ``resultValue`` is a string**, as the lab sends it:
  - decimal point or, for about a quarter of the samples, **decimal comma** (``"14,52"``);
  - **censored values**: ``"<1"`` (an element below detection, a few percent of the zeros; most
    zeros come as ``"0"``), ``"<0.05"`` (``Agua %`` not detected), ``">0.05"`` (``Agua %`` traces),
    ``"<10"`` (``Índice PQ`` below its range), ``"<1"`` (``Dilución por combustible`` not
    detected), ``"<0.1"`` (``Hollín`` below range), ``">100000"`` (particle counter saturated);
  - **negative numbers**: ``Punto de congelación`` (coolant, e.g. ``"-37"``) and
    ``Variación viscosidad 100°C`` (percent change against the nominal grade, e.g. ``"-4,2"``);
  - ``"-"``: a test that was not performed (rare).
- **Qualitative tests** (``test_valueType == "text"``):
  - flags ``Agua``, ``Combustible``, ``Glicol``: ``Negativo`` (0) · ``Trazas`` (1) ·
    ``Positivo`` (2) · ``Excesivo`` (3);
  - visual debris ``Partículas magnéticas``, ``Partículas no magnéticas``: ``Ausente`` (0) ·
    ``Leve`` (1) · ``Moderado`` (2) · ``Abundante`` (3);
  - ``Apariencia`` (coolant): ``Limpio`` / ``Turbio`` / ``Con sedimentos``.
- **Coolant samples are mixed in** (``compartment_name`` ``refrigerante`` and variants) with their
  own package: pH, ``Concentración de glicol`` (the antifreeze content, ~40 %, deliberately not
  the oil test ``Glicol %``), ``Punto de congelación``, ``Sólidos disueltos totales``, ``Nitritos``,
  ``Urea``, ``Apariencia`` and 14 elements (no Ni, Sn, Ti, V, Mn, Zn, Ba), with the high sodium and
  potassium of coolant additives.
- **Sample dates are UTC.** Until mid-2024 most are ``00:00Z`` (the date itself); afterwards most
  are local midnight in Chile, i.e. ``03:00Z`` or ``04:00Z``. Take the date in
  ``America/Santiago`` only for the latter, or the ``00:00Z`` dates shift to the day before.
- ``equipment_time`` is the equipment's *current* meter (one value per unit, repeated on every
  sample), not the hours at sampling; ``compartment_id`` is one number per unit and compartment.
- ``compartment_name`` keeps the lab's spellings: accents or not (``transmisión``/``transmision``),
  positions (``mando final derecho``), typos (``diferencial traser segundo puente``).

Element values come from the EMIN profile per (machine type, normalized component); viscosity,
PQ, TBN, oxidation and particle counts from the Finning profile of the closest compartment (the
EMIN reference holds elements only); viscosity follows the nominal grade of the oil reported.
"""

from __future__ import annotations

import math
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.special import ndtr, ndtri

from oil_analysis.demo.profiles import EMIN_ELEMENTS, Marginal, load_profiles

N_SLOTS = 40
SLOT_SUFFIXES = (
    "test_translation_name",
    "resultValue",
    "test_translation_method",
    "test_testGroup_id",
    "test_testGroup_name",
    "test_valueType",
    "test_order",
    "file",
)
FLAG_LEVELS = ("Negativo", "Trazas", "Positivo", "Excesivo")
VISUAL_LEVELS = ("Ausente", "Leve", "Moderado", "Abundante")
ALS_FAULT_KINDS = ("wear", "coolant_leak", "dust", "fuel", "water")
_SANTIAGO = ZoneInfo("America/Santiago")
_LOCAL_MIDNIGHT_FROM = date(2024, 7, 1)
# Share of compartments that run on another grade than the site's (wrong top-up).
WRONG_GRADE_SHARE = 0.02

# Raw spellings of the machine families (the silver names are their lower-case ASCII forms).
FAMILY_NAMES = {
    "camion": "CAMIÓN",
    "excavadora": "EXCAVADORA",
    "bulldozer": "BULLDOZERS DE ORUGA",
    "pala": "PALA CARGADORA",
    "motoniveladora": "MOTONIVELADORA",
    "rodillo": "RODILLO",
    "trituradora": "TRITURADORA",
    "industrial": "INDUSTRIAL",
    "grua": "GRÚA",
    "camion articulado o dumper articulado": "CAMIÓN ARTICULADO O DUMPER ARTICULADO",
    "cargador frontal": "CARGADOR FRONTAL",
    "diesel": "DIESEL",
}
# Tag prefixes used on site per family (synthetic numbers are added).
_TAG_PREFIX = {
    "camion": ("CT", "CT", "CT", "CA", "CG", "CM", "CR"),
    "excavadora": ("EXC",),
    "bulldozer": ("BULL",),
    "pala": ("CF",),
    "motoniveladora": ("MOT",),
    "rodillo": ("RC",),
    "trituradora": ("PTA",),
    "industrial": ("PTA",),
    "grua": ("GR",),
    "camion articulado o dumper articulado": ("DUM",),
    "cargador frontal": ("CF",),
    "diesel": ("PTA",),
}
_PROGRAMS = {
    "camion": (101, "EMIN - CAMIONES"),
    "excavadora": (102, "EMIN - EQUIPOS MINA"),
    "bulldozer": (102, "EMIN - EQUIPOS MINA"),
    "pala": (102, "EMIN - EQUIPOS MINA"),
    "motoniveladora": (102, "EMIN - EQUIPOS MINA"),
}
_AUX_PROGRAM = (103, "EMIN - EQUIPOS AUXILIARES")
_MINING = frozenset({"excavadora", "bulldozer", "pala", "motoniveladora"})
# Compartments that come as a set on one machine: having one implies the others.
_SIBLINGS = (
    ("mando final derecho", "mando final izquierdo"),
    ("cubo reductor delantero derecho", "cubo reductor delantero izquierdo",
     "cubo reductor trasero derecho", "cubo reductor trasero izquierdo"),
    ("diferencial trasero primer puente", "diferencial trasero segundo puente"),
    ("tandem dh", "tandem lh"),
    ("cubo derecho", "cubo izquierdo"),
)  # fmt: skip
# Closest Finning compartment, for the tests the EMIN reference does not hold.
_FINNING_TWIN = {
    "motor": "MOTOR",
    "transmision": "TRANSMISION",
    "hidraulico": "SISTEMA HIDRAULICO",
    "aceite": "SISTEMA HIDRAULICO",
    "direccion": "SISTEMA DE DIRECCION",
    "mando final": "MANDO FINAL TRASERO IZQUIERDO",
    "mando de giro": "MANDO FINAL TRASERO DERECHO",
    "mando circulo reductor": "MANDO FINAL TRASERO DERECHO",
    "mando del circulo reductor": "MANDO FINAL TRASERO DERECHO",
    "mando rotacion": "MANDO FINAL TRASERO DERECHO",
    "motor de giro": "MANDO FINAL TRASERO DERECHO",
    "retardador": "CONVERTIDOR",
    "freno": "CONVERTIDOR",
    "damper": "CONVERTIDOR",
}
_DEFAULT_TWIN = "DIFERENCIAL TRASERO"


@dataclass(frozen=True)
class _Test:
    name: str
    method: str
    group_id: int
    group: str
    value_type: str
    order: int


def _tests() -> dict[str, _Test]:
    groups = {
        1: ("Metales de desgaste", [(e, "ASTM D5185") for e in EMIN_ELEMENTS[:11]]),
        2: (
            "Contaminantes",
            [(e, "ASTM D5185") for e in EMIN_ELEMENTS[11:14]]
            + [("Agua", "Crepitación"), ("Agua %", "ASTM D6304"), ("Combustible", "ASTM D3828"),
               ("Dilución por combustible", "ASTM D3524"), ("Glicol", "ASTM D2982")],
        ),
        3: ("Aditivos", [(e, "ASTM D5185") for e in EMIN_ELEMENTS[14:]]),
        4: (
            "Propiedades físico-químicas",
            [("Viscosidad 40°C", "ASTM D445"), ("Viscosidad 100°C", "ASTM D445"),
             ("Variación viscosidad 100°C", "Cálculo"), ("TBN", "ASTM D2896"),
             ("TAN colorimétrico", "ASTM D974"), ("Oxidación", "ASTM E2412"), ("Nitración", "ASTM E2412"),
             ("Sulfatación", "ASTM E2412"), ("Hollín", "ASTM E2412")],
        ),
        5: (
            "Conteo de partículas",
            [("ISO 4406 >4µm", "ISO 4406"), ("ISO 4406 >6µm", "ISO 4406"), ("ISO 4406 >14µm", "ISO 4406"),
             ("Partículas >4µm", "ISO 11500"), ("Partículas >6µm", "ISO 11500"), ("Partículas >14µm", "ISO 11500"),
             ("Índice PQ", "PQ90"), ("Partículas magnéticas", "Inspección visual de parche"),
             ("Partículas no magnéticas", "Inspección visual de parche")],
        ),
        6: (
            "Refrigerante",
            [("pH", "ASTM D1287"), ("Concentración de glicol", "ASTM D3321"), ("Punto de congelación", "ASTM D3321"),
             ("Sólidos disueltos totales", "Conductimetría"), ("Nitritos", "Tira reactiva"),
             ("Urea", "Espectrofotometría"), ("Apariencia", "Visual")],
        ),
    }  # fmt: skip
    text = {"Agua", "Combustible", "Glicol", "Partículas magnéticas", "Partículas no magnéticas",
            "Apariencia"}  # fmt: skip
    out, order = {}, 0
    for gid, (gname, tests) in groups.items():
        for name, method in tests:
            order += 10
            out[name] = _Test(name, method, gid, gname, "text" if name in text else "numeric", order)
    return out


TESTS = _tests()
# The coolant ICP package has no Ni, Sn, Ti, V, Mn, Zn, Ba (as in the EMIN reference).
_COOLANT_ELEMENTS = tuple(e for e in EMIN_ELEMENTS if e not in {"Níquel", "Estaño", "Titanio", "Vanadio",
                                                                "Manganeso", "Zinc", "Bario"})  # fmt: skip
# Motor tests taken from the Finning motor profile: (Finning column, scale, oil-age loading).
_MOTOR_TESTS = {
    "TBN": ("TBN", 1.0, -0.6),
    "Oxidación": ("OXI", 1.0, 0.6),
    "Nitración": ("NIT", 1.0, 0.6),
    "Sulfatación": ("SUL", 1.0, 0.6),
    "Hollín": ("ST", 0.01, 0.6),  # Finning reports soot ×100; ALS in %
}
# Compartments of mining machines that get particle counts and the patch test.
_COUNTED = frozenset({"hidraulico", "transmision", "direccion", "mando final", "mando de giro"})


@dataclass
class AlsSummary:
    """What the generated ALS files contain."""

    samples_path: Path
    equipment_path: Path
    n_units: int
    n_samples: int
    n_coolant: int
    #: (equipment_tag, compartment_name, kind) of every injected fault
    faults: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class _Unit:
    equipment_id: int
    tag: str
    serial: str
    family: str  # silver machine type key (e.g. "camion")
    maker: str
    model: str
    hours: float
    hours_late: float | None
    components: list[tuple[str, str, int]]  # (raw name, normalized, compartment_id)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def generate_emin_client(
    out_dir: Path | str, n_units: int = 200, seed: int = 7, n_samples: int = 5000
) -> AlsSummary:
    """Write ``muestrasAlsHistoricos.parquet`` and ``Equipamiento.parquet`` into ``out_dir``."""
    out = Path(out_dir)
    return write_als_parquet(
        out / "muestrasAlsHistoricos.parquet",
        n_units=n_units,
        seed=seed,
        n_samples=n_samples,
        equipment_path=out / "Equipamiento.parquet",
    )


def write_als_parquet(
    path: Path | str,
    n_units: int = 200,
    seed: int = 7,
    n_samples: int = 5000,
    start: date = date(2023, 4, 3),
    end: date = date(2025, 10, 25),
    n_faults: int = 6,
    equipment_path: Path | str | None = None,
) -> AlsSummary:
    """Write the ALS sample export (wide test-slot layout) for ``n_units`` synthetic units.

    About ``n_samples`` samples over ``start``..``end``, coolant included; ``n_faults`` units get a
    fault over the last samples of one compartment. ``equipment_path`` (default: an
    ``Equipamiento.parquet`` next to ``path``) receives the equipment list. Same seed → same bytes.
    """
    profile = load_profiles()
    rng = np.random.default_rng([seed, zlib.crc32(b"als")])
    gen = _AlsGenerator(profile, rng)
    units = gen.fleet(n_units)
    samples, faults = gen.samples(units, n_samples, start, end, n_faults)
    path = Path(path)
    equipment_path = Path(equipment_path) if equipment_path else path.with_name("Equipamiento.parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    equipment_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(_samples_table(samples), path, compression="zstd")
    pq.write_table(_equipment_table(units), equipment_path, compression="zstd")
    return AlsSummary(
        samples_path=path,
        equipment_path=equipment_path,
        n_units=len(units),
        n_samples=len(samples),
        n_coolant=sum(1 for s in samples if s["_norm"] == "refrigerante"),
        faults=faults,
    )


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, shares: dict[str, float]) -> str:
    keys = list(shares)
    p = np.asarray([shares[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _nominal_v100(grade: str, norm: str) -> float:
    """Nominal viscosity at 100 °C (cSt) of an oil grade as the lab receives it."""
    g = grade.upper().replace(" ", "")
    table = (
        ("85W140", 27.0), ("80W140", 26.0), ("15W40", 14.5), ("10W40", 14.0), ("10W30", 10.5),
        ("0W16", 7.0), ("75W90", 15.0), ("80W90", 15.5), ("85W90", 16.0), ("70W90", 15.0),
        ("75W85", 11.0), ("80W85", 11.5), ("XFD60", 24.0), ("SAE60", 24.0), ("HD50", 18.5), ("SAE50", 18.5),
        ("50W", 18.5), ("HD30", 11.3), ("SAE30", 11.3), ("SAE10W", 6.5), ("HD10", 6.5), ("10W", 6.5),
        ("20W", 8.5), ("80W", 9.0), ("ATF", 7.3), ("424", 9.3), ("DTE25", 6.8), ("HV46", 7.8), ("46", 6.8),
        ("68", 8.7), ("220", 19.0), ("1340", 14.0),
    )  # fmt: skip
    for key, v in table:
        if key in g:
            return v
    return {"motor": 14.5, "transmision": 11.0, "hidraulico": 6.8, "direccion": 6.8}.get(norm, 15.0)


def _mix(*terms: tuple[float, Any]) -> Any:
    """Weighted sum of standard normal terms, rescaled to unit variance."""
    return sum(w * x for w, x in terms) / math.sqrt(sum(w * w for w, _ in terms))


def _fmt(value: float, decimals: int, comma: bool) -> str:
    text = f"{value:.{decimals}f}"
    return text.replace(".", ",") if comma and decimals else text


def _iso_code(count: float) -> int:
    bounds = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.3, 2.5, 5, 10, 20, 40, 80, 160, 320, 640, 1300,
              2500, 5000, 10_000, 20_000, 40_000, 80_000, 160_000, 320_000, 640_000, 1_300_000, 2_500_000)  # fmt: skip
    for n, b in enumerate(bounds[1:], start=1):
        if count <= b:
            return n
    return len(bounds)


class _AlsGenerator:
    def __init__(self, profile: dict[str, Any], rng: np.random.Generator):
        self.e = profile["emin"]
        self.f = profile["finning"]["components"]
        self.rng = rng
        self._marg_cache: dict[tuple[str, str], dict[str, Marginal]] = {}
        self._fin_cache: dict[str, dict[str, Marginal]] = {}
        self._grades: dict[tuple[str, str], str] = {}

    # ---- fleet --------------------------------------------------------------------------------

    def fleet(self, n_units: int) -> list[_Unit]:
        rng, types = self.rng, self.e["machine_types"]
        total = sum(t["units"] for t in types.values())
        # Largest-remainder allocation of the units over the machine types of the real fleet.
        quotas = {k: n_units * t["units"] / total for k, t in types.items()}
        counts = {k: int(q) for k, q in quotas.items()}
        for k in sorted(quotas, key=lambda k: (-(quotas[k] - counts[k]), k))[
            : n_units - sum(counts.values())
        ]:
            counts[k] += 1
        units: list[_Unit] = []
        used_numbers: dict[str, set[int]] = defaultdict(set)
        comp_id = 3_100_000 + int(rng.integers(0, 50_000))
        for family in sorted(counts, key=lambda k: -types[k]["units"]):
            t = types[family]
            mm = t["makers_models"]
            weights = np.asarray([m[2] for m in mm], dtype=float)
            hours_marg = Marginal({"q": t["machine_hours"], "zero": 0.0})
            for _ in range(counts[family]):
                maker, model, _n = mm[int(rng.choice(len(mm), p=weights / weights.sum()))]
                prefixes = _TAG_PREFIX.get(family, ("EQ",))
                prefix = prefixes[int(rng.integers(len(prefixes)))]
                # Synthetic numbers from 501 up never collide with the real site numbering.
                num = int(rng.integers(501, 999))
                while num in used_numbers[prefix]:
                    num = int(rng.integers(501, 999))
                used_numbers[prefix].add(num)
                components = []
                for norm, cinfo in t["components"].items():
                    if norm != "motor" and rng.random() >= cinfo["unit_share"]:
                        continue
                    name = _pick(rng, cinfo["names"])
                    names = next((list(s) for s in _SIBLINGS if name in s), [name])
                    if "diferencial trasero segundo puente" in names and rng.random() < 0.03:
                        names[names.index("diferencial trasero segundo puente")] = (
                            "diferencial traser segundo puente"
                        )
                    for nm in names:
                        comp_id += int(rng.integers(1, 4))
                        components.append((nm, norm, comp_id))
                hours = float(round(float(hours_marg.ppf(rng.random()))))
                units.append(
                    _Unit(
                        equipment_id=40_000 + len(units) * 7 + int(rng.integers(0, 7)),
                        tag=f"{prefix}-{num:03d}",
                        serial=f"DMO{int(rng.integers(0, 10**7)):07d}",
                        family=family,
                        maker=str(maker).upper(),
                        model=str(model),
                        hours=hours,
                        # A few units get their meter updated during the period (2 values).
                        hours_late=hours + float(rng.integers(200, 2000)) if rng.random() < 0.02 else None,
                        components=components,
                    )
                )
        return units

    # ---- marginals ----------------------------------------------------------------------------

    def _elements(self, family: str, norm: str) -> dict[str, Marginal]:
        key = (family, norm)
        if key not in self._marg_cache:
            essays = self.e["essays"]
            summary = essays.get(f"{family}|{norm}") or essays.get(norm) or essays["*"]
            self._marg_cache[key] = {el: Marginal(summary[el]) for el in EMIN_ELEMENTS}
        return self._marg_cache[key]

    def _site_grade(self, family: str, norm: str, oil: dict[str, Any]) -> str:
        """The grade the site specifies for this machine type and compartment (drawn once)."""
        key = (family, norm)
        if key not in self._grades:
            rng = np.random.default_rng(zlib.crc32(f"{family}|{norm}".encode()))
            grades = {k: v for k, v in oil["types"].items() if k not in ("Coolant", "-")} or oil["types"]
            self._grades[key] = _pick(rng, grades)
        return self._grades[key]

    def _finning(self, norm: str) -> dict[str, Marginal]:
        twin = _FINNING_TWIN.get(norm, _DEFAULT_TWIN)
        if twin not in self._fin_cache:
            self._fin_cache[twin] = {c: Marginal(s) for c, s in self.f[twin]["columns"].items()}
        return self._fin_cache[twin]

    # ---- samples ------------------------------------------------------------------------------

    def samples(
        self, units: list[_Unit], n_samples: int, start: date, end: date, n_faults: int
    ) -> tuple[list[dict[str, Any]], list[tuple[str, str, str]]]:
        rng = self.rng
        span = (end - start).days
        gap_marg = Marginal({"q": self.e["days_between"], "zero": 0.0})
        spu = {
            (u.family, norm): self.e["machine_types"][u.family]["components"][norm]["samples_per_unit"]
            for u in units
            for _, norm, _ in u.components
        }
        expected = sum(spu[(u.family, n)] for u in units for _, n, _ in u.components)
        scale = n_samples / max(expected, 1.0)

        plan: list[tuple[_Unit, str, str, int, list[date]]] = []
        for u in units:
            # Visits: the unit enters the programme at some point and is sampled every few weeks.
            first = start + timedelta(days=int(rng.uniform(0, 0.35) * span))
            visits = [first]
            while True:
                gap = float(gap_marg.ppf(rng.uniform(0.05, 0.75)))
                nxt = visits[-1] + timedelta(days=max(7, int(gap)))
                if nxt > end:
                    break
                visits.append(nxt)
            for raw, norm, cid in u.components:
                want = max(1, int(rng.poisson(spu[(u.family, norm)] * scale)))
                k = min(want, len(visits))
                idx = np.sort(rng.choice(len(visits), size=k, replace=False))
                plan.append((u, raw, norm, cid, [visits[i] for i in idx]))

        faults = self._fault_plan(plan, n_faults)
        rows: list[dict[str, Any]] = []
        for u, raw, norm, cid, days in plan:
            kind = faults.get((u.tag, raw))
            rows += self._series(u, raw, norm, cid, days, kind)
        rows.sort(key=lambda r: (r["collectionData_dateSampled"], r["equipment_tag"], r["compartment_name"]))
        self._identify(rows)
        fault_list = sorted((tag, raw, kind) for (tag, raw), kind in faults.items())
        return rows, fault_list

    def _fault_plan(
        self, plan: list[tuple[_Unit, str, str, int, list[date]]], n: int
    ) -> dict[tuple[str, str], str]:
        """Pick ``n`` unit compartments with a long enough history and give each a fault kind."""
        # (kind, machine families, normalized compartments), cycled when n is larger.
        specs = (
            ("wear", _MINING, ("mando final", "mando de giro")),
            ("coolant_leak", frozenset({"camion"}), ("motor",)),
            ("dust", _MINING, ("mando final", "transmision", "hidraulico")),
            ("fuel", frozenset({"camion"}), ("motor",)),
            ("water", _MINING, ("hidraulico", "transmision")),
            ("wear", frozenset({"camion"}), ("transmision", "diferencial")),
        )
        out: dict[tuple[str, str], str] = {}
        used_units: set[str] = set()
        candidates = [p for p in plan if len(p[4]) >= 5]
        order = [int(i) for i in self.rng.permutation(len(candidates))]
        for i in range(n):
            kind, families, norms = specs[i % len(specs)]
            for j in order:
                u, raw, norm, _, _ = candidates[j]
                if u.tag not in used_units and u.family in families and norm in norms:
                    out[(u.tag, raw)] = kind
                    used_units.add(u.tag)
                    break
        return out

    def _series(
        self, u: _Unit, raw: str, norm: str, cid: int, days: list[date], fault: str | None
    ) -> list[dict[str, Any]]:
        rng = self.rng
        n = len(days)
        coolant = norm == "refrigerante"
        oil = self.e["oil"].get(norm, self.e["oil"]["motor"])
        brand = _pick(rng, oil["brands"])
        # A site specifies one oil grade per machine type and compartment; a few compartments run on
        # another grade (a wrong top-up), the lab's "viscosidad alta para un SAE-30" cases.
        grade = self._site_grade(u.family, norm, oil)
        if rng.random() < WRONG_GRADE_SHARE:
            grade = _pick(rng, oil["types"])
        if not coolant and grade in ("Coolant", "-") and rng.random() < 0.5:
            grade = _pick(rng, oil["types"])
        nominal = _nominal_v100(grade, norm)
        meter_marg = Marginal(oil["meter"])
        el = self._elements(u.family, norm)
        fin = self._finning(norm)

        meters = np.array([float(meter_marg.ppf(rng.random())) for _ in range(n)])
        z_age = ndtri(np.clip([meter_marg.cdf(m) for m in meters], 0.02, 0.98))
        f_wear, f_dirt = rng.normal(size=n), rng.normal(size=n)
        # The compartment's own level (shared by its essays) and each essay's: in the real EMIN
        # values about 55-65 % of an element's variance lies between compartments (intra-class
        # correlation) and elements correlate ~0.26 (ranks); both concentrate the exceedances on a
        # few compartments, as in the real fleet, instead of spreading them over every unit.
        g_unit = rng.normal()
        wear = set(EMIN_ELEMENTS[:11]) | {"Sodio"}
        dirt = {"Silicio", "Aluminio", "Potasio"}
        u_el: dict[str, np.ndarray] = {}
        for e in EMIN_ELEMENTS:
            unit_off, noise = rng.normal(), rng.normal(size=n)
            if e in wear:
                z = _mix((0.6, unit_off), (0.35, g_unit), (0.3, z_age), (0.25, f_wear), (0.5, noise))
            elif e in dirt:
                z = _mix((0.6, unit_off), (0.35, g_unit), (0.2, z_age), (0.3, f_dirt), (0.5, noise))
            else:  # additives: fixed by the oil in use
                z = 0.85 * unit_off + 0.53 * noise
            u_el[e] = ndtr(z)
        z_clean = _mix((0.6, rng.normal()), (0.3, f_dirt), (0.5, rng.normal(size=n)))
        # PQ follows the wear metals in part; each degradation test has its own level per engine.
        pq_off = _mix((0.5, g_unit), (0.6, rng.normal()))
        motor_off = {t: rng.normal() for t in _MOTOR_TESTS}
        visc_off = rng.normal(0, 0.02)

        family_program = _PROGRAMS.get(u.family, _AUX_PROGRAM)
        mining = u.family in _MINING
        rows = []
        for i, day in enumerate(days):
            r = (i - (n - 4) + 1) / 4 if fault and i >= n - 4 else 0.0  # fault ramp over the last 4
            values: dict[str, Any] = {}
            comma = rng.random() < 0.25
            if coolant:
                for e in _COOLANT_ELEMENTS:
                    values[e] = float(el[e].ppf(u_el[e][i]))
                gl = float(np.clip(rng.normal(40, 5), 25, 60))
                values["pH"] = _fmt(float(np.clip(rng.normal(8.1, 0.45), 6.5, 10)), 1, comma)
                values["Concentración de glicol"] = str(int(round(gl)))
                values["Punto de congelación"] = str(-int(round(1.12 * gl - 19.5 + rng.normal(0, 0.7))))
                values["Sólidos disueltos totales"] = str(int(round(rng.lognormal(math.log(2400), 0.25), -1)))
                values["Nitritos"] = str(int(round(rng.lognormal(math.log(900), 0.4), -1)))
                if rng.random() < 0.6:
                    values["Urea"] = str(int(rng.integers(0, 30)))
                values["Apariencia"] = _pick(rng, {"Limpio": 0.9, "Turbio": 0.07, "Con sedimentos": 0.03})
            else:
                for e in EMIN_ELEMENTS:
                    values[e] = float(el[e].ppf(u_el[e][i]))
                v100 = nominal * math.exp(visc_off + rng.normal(0, 0.025))
                values["Agua"] = "Trazas" if rng.random() < 0.01 else "Negativo"
                pq_z = _mix((0.6, pq_off), (0.35, z_age[i]), (0.4, f_wear[i]), (0.45, rng.normal()))
                pq_val = float(fin["PQI"].ppf(ndtr(pq_z)))
                if norm == "motor":
                    values["Combustible"] = "Trazas" if rng.random() < 0.01 else "Negativo"
                    values["Glicol"] = "Negativo"
                    for test, (col, scale, age) in _MOTOR_TESTS.items():
                        rank = ndtr(_mix((0.6, motor_off[test]), (age, z_age[i]), (0.5, rng.normal())))
                        values[test] = float(fin[col].ppf(rank)) * scale
                    if mining:  # mining programmes add PQ and fuel dilution to the engine package
                        values["Índice PQ"] = pq_val
                        values["Dilución por combustible"] = 0.0
                else:
                    values["Índice PQ"] = pq_val
                    if mining and norm in _COUNTED:
                        counts, prev = {}, math.inf
                        for col in ("4µ", "6µ", "14µ"):
                            prev = min(prev, float(fin[col].ppf(ndtr(z_clean[i] + 0.25 * rng.normal()))))
                            counts[col] = prev
                        values["_counts"] = counts
                        values["Agua %"] = "<0.05"
                        values["Partículas magnéticas"] = "Leve" if rng.random() < 0.04 else "Ausente"
                        values["Partículas no magnéticas"] = _pick(
                            rng, {"Ausente": 0.9, "Leve": 0.09, "Moderado": 0.01}
                        )
                    if norm == "hidraulico":
                        values["TAN colorimétrico"] = float(np.clip(rng.normal(0.6, 0.2), 0.05, 2))
                values["_v100"] = v100
                values["_nominal"] = nominal
            if fault and r > 0:
                self._apply_fault(values, fault, r, el)
            if not coolant:
                self._finish_oil(values, comma, family_program)
            self._format_elements(values)
            slots = self._slots(values, family_program[0])
            tz_local = (
                day >= _LOCAL_MIDNIGHT_FROM and rng.random() < self.e["local_midnight_share"]["after_2024_07"]
            )
            sampled = (
                datetime(day.year, day.month, day.day, tzinfo=_SANTIAGO).astimezone(UTC)
                if tz_local
                else datetime(day.year, day.month, day.day, tzinfo=UTC)
            )
            entry = sampled + timedelta(
                days=int(rng.integers(2, 12)), seconds=int(rng.integers(11 * 3600, 22 * 3600))
            )
            late = u.hours_late is not None and day > days[len(days) // 2]
            fluid_time = None if rng.random() < oil["meter"]["null"] else float(round(meters[i]))
            evaluated = entry + timedelta(seconds=int(rng.integers(43_200, 518_400)))
            rows.append(
                {
                    "_norm": norm,
                    "equipment_id": u.equipment_id,
                    "equipment_serial": u.serial,
                    "equipment_tag": u.tag,
                    "equipment_family_name": FAMILY_NAMES.get(u.family, u.family.upper()),
                    "equipment_maker_name": u.maker,
                    "equipment_model": u.model,
                    "equipment_time": u.hours_late if late else u.hours,
                    "compartment_name": raw,
                    "compartment_id": cid,
                    "collectionData_dateSampled": sampled,
                    "collectionData_fluidTime": fluid_time,
                    "collectionData_oil_manufacturer_name": brand,
                    "collectionData_oil_viscosity_name": grade,
                    "program_id": family_program[0],
                    "program_name": family_program[1],
                    "dateOfEntryIntoLaboratory": entry,
                    "validResult_evaluationDate": evaluated,
                    "_slots": slots,
                }
            )
        return rows

    def _apply_fault(self, v: dict[str, Any], kind: str, r: float, el: dict[str, Marginal]) -> None:
        rng = self.rng
        q90 = {e: max(float(m.q[6]), 1.0) for e, m in el.items()}
        if kind == "wear":
            v["Hierro"] += r * 4 * q90["Hierro"]
            v["Cromo"] += r * 2
            if "Índice PQ" in v:
                v["Índice PQ"] = v["Índice PQ"] + r * 300
            if "Partículas magnéticas" in v:
                v["Partículas magnéticas"] = VISUAL_LEVELS[min(3, 1 + int(r * 2.5))]
        elif kind == "coolant_leak":
            v["Sodio"] += r * 6 * q90["Sodio"] + 20 * r
            v["Potasio"] += r * 4 * q90["Potasio"] + 10 * r
            v["Boro"] += r * 2 * q90["Boro"]
            v["Glicol"] = FLAG_LEVELS[min(3, int(round(r * 2.5)))]
            v["Agua"] = "Trazas" if r < 0.75 else "Positivo"
        elif kind == "dust":
            v["Silicio"] += r * 4 * q90["Silicio"]
            v["Aluminio"] += r * 2 * q90["Aluminio"]
            v["Hierro"] += r * q90["Hierro"]
            if "_counts" in v:
                v["_counts"] = {k: c * (1 + 12 * r) for k, c in v["_counts"].items()}
        elif kind == "fuel":
            v["_v100"] *= 1 - 0.3 * r
            v["Combustible"] = "Trazas" if r < 0.5 else "Positivo"
            v["Dilución por combustible"] = 6 * r + rng.uniform(0, 1)
            if "TBN" in v:
                v["TBN"] *= 1 - 0.3 * r
        elif kind == "water":
            v["Agua"] = FLAG_LEVELS[min(3, 1 + int(r * 2.2))]
            v["Agua %"] = 0.3 + 1.5 * r
            v["Sodio"] += 5 * r

    def _finish_oil(self, v: dict[str, Any], comma: bool, program: tuple[int, str]) -> None:
        """Format the oil tests as the lab sends them (strings, censored forms, decimal commas)."""
        rng = self.rng
        v100, nominal = v.pop("_v100"), v.pop("_nominal")
        v["Viscosidad 100°C"] = _fmt(v100, 2, comma)
        if program[0] != 101 or rng.random() < 0.3:
            v["Viscosidad 40°C"] = _fmt(v100 * (3.5 + 0.35 * v100), 1, comma)
        if program[0] == 102:
            # Change against the nominal grade, signed (the reference cleaning strips the "-").
            v["Variación viscosidad 100°C"] = _fmt((v100 / nominal - 1) * 100, 1, comma)
        if "Índice PQ" in v:
            p = v["Índice PQ"]
            v["Índice PQ"] = "<10" if p < 10 else str(int(round(p)))
        for t, dec in (
            ("TBN", 1),
            ("Oxidación", 0),
            ("Nitración", 0),
            ("Sulfatación", 0),
            ("TAN colorimétrico", 2),
        ):
            if t in v:
                v[t] = _fmt(max(v[t], 0.0), dec, comma)
        if "Hollín" in v:
            v["Hollín"] = "<0.1" if v["Hollín"] < 0.1 else _fmt(v["Hollín"], 2, comma)
        if "Dilución por combustible" in v:
            d = v["Dilución por combustible"]
            v["Dilución por combustible"] = "<1" if d < 1 else _fmt(d, 1, comma)
        if "Agua %" in v and not isinstance(v["Agua %"], str):
            v["Agua %"] = _fmt(v["Agua %"], 2, comma)
        elif v.get("Agua") == "Trazas" and "Agua %" in v:
            v["Agua %"] = ">0.05"
        counts = v.pop("_counts", None)
        if counts:
            for size, col in (("4µm", "4µ"), ("6µm", "6µ"), ("14µm", "14µ")):
                c = counts[col]
                v[f"ISO 4406 >{size}"] = str(_iso_code(c))
                v[f"Partículas >{size}"] = ">100000" if c > 100_000 else str(int(round(c)))

    def _format_elements(self, v: dict[str, Any]) -> None:
        rng = self.rng
        for e in EMIN_ELEMENTS:
            if e in v and not isinstance(v[e], str):
                x = int(round(max(v[e], 0.0)))
                # Most zeros come as "0"; now and then the lab writes the detection limit instead.
                v[e] = "<1" if x == 0 and rng.random() < 0.02 else str(x)

    def _slots(self, values: dict[str, Any], program_id: int) -> list[tuple[_Test, str | None, str | None]]:
        rng = self.rng
        tests = [TESTS[k] for k in values if not k.startswith("_")]
        # The group order depends on the programme; within a group, the display order.
        group_order = {101: (1, 2, 3, 4, 5, 6), 102: (4, 1, 3, 2, 5, 6), 103: (1, 3, 2, 4, 5, 6)}[program_id]
        tests.sort(key=lambda t: (group_order.index(t.group_id), t.order))
        if rng.random() < 0.15:  # listed in entry order
            tests = [tests[i] for i in rng.permutation(len(tests))]
        out = []
        for t in tests:
            value = values[t.name]
            if rng.random() < 0.002:
                value = "-"  # not performed
            elif rng.random() < 0.005:
                value = None  # requested, not reported
            file = None
            if t.name == "Partículas magnéticas" and value not in ("Ausente", None):
                file = f"parche_{int(rng.integers(10**7, 10**8))}.jpg"
            out.append((t, value, file))
        return out[:N_SLOTS]

    def _identify(self, rows: list[dict[str, Any]]) -> None:
        """Sample numbers (10 digits, ``YY10`` + sequence of the kit) and record ids."""
        rng = self.rng
        seq = int(rng.integers(10_000, 30_000))
        for r in rows:
            entry: datetime = r["dateOfEntryIntoLaboratory"]
            yy = entry.year % 100 - (1 if rng.random() < 0.08 else 0)  # kits issued the year before
            seq += int(rng.integers(1, 40))
            r["sampleNumber"] = f"{yy:02d}10{seq % 1_000_000:06d}"
            r["id"] = f"{int(rng.integers(0, 2**63)):016x}{int(rng.integers(0, 2**31)):08x}"
            r["externalCode"] = f"OT-{int(rng.integers(100_000, 999_999))}" if rng.random() < 0.6 else None


# --------------------------------------------------------------------------------------------
# Arrow tables
# --------------------------------------------------------------------------------------------

_ID_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("id", pa.string()),
    ("sampleNumber", pa.string()),
    ("externalCode", pa.string()),
    ("equipment_id", pa.int64()),
    ("equipment_serial", pa.string()),
    ("equipment_tag", pa.string()),
    ("equipment_family_name", pa.string()),
    ("equipment_maker_name", pa.string()),
    ("equipment_model", pa.string()),
    ("equipment_time", pa.float64()),
    ("compartment_name", pa.string()),
    ("compartment_id", pa.int64()),
    ("collectionData_dateSampled", pa.timestamp("ns", tz="UTC")),
    ("collectionData_fluidTime", pa.float64()),
    ("collectionData_oil_manufacturer_name", pa.string()),
    ("collectionData_oil_viscosity_name", pa.string()),
    ("program_id", pa.int64()),
    ("program_name", pa.string()),
    ("dateOfEntryIntoLaboratory", pa.timestamp("ns", tz="UTC")),
    ("validResult_evaluationDate", pa.timestamp("ns", tz="UTC")),
)


def _samples_table(rows: list[dict[str, Any]]) -> pa.Table:
    columns: dict[str, list[Any]] = {name: [r[name] for r in rows] for name, _ in _ID_COLUMNS}
    fields = [pa.field(name, typ) for name, typ in _ID_COLUMNS]
    # json_normalize-style slots: numbers inside a slot become floats (NaN where the slot is empty).
    slot_types = {
        "test_translation_name": pa.string(),
        "resultValue": pa.string(),
        "test_translation_method": pa.string(),
        "test_testGroup_id": pa.float64(),
        "test_testGroup_name": pa.string(),
        "test_valueType": pa.string(),
        "test_order": pa.float64(),
        "file": pa.string(),
    }
    for n in range(N_SLOTS):
        cols: dict[str, list[Any]] = {s: [] for s in SLOT_SUFFIXES}
        for r in rows:
            slot = r["_slots"][n] if n < len(r["_slots"]) else None
            if slot is None:
                for s in SLOT_SUFFIXES:
                    cols[s].append(None)
                continue
            t, value, file = slot
            cols["test_translation_name"].append(t.name)
            cols["resultValue"].append(value)
            cols["test_translation_method"].append(t.method)
            cols["test_testGroup_id"].append(float(t.group_id))
            cols["test_testGroup_name"].append(t.group)
            cols["test_valueType"].append(t.value_type)
            cols["test_order"].append(float(t.order))
            cols["file"].append(file)
        for s in SLOT_SUFFIXES:
            name = f"testResults_{n}_{s}"
            columns[name] = cols[s]
            fields.append(pa.field(name, slot_types[s]))
    schema = pa.schema(fields)
    return pa.Table.from_pydict(columns, schema=schema)


def _equipment_table(units: Sequence[_Unit]) -> pa.Table:
    return pa.Table.from_pydict(
        {
            "equipment_id": [u.equipment_id for u in units],
            "equipment_tag": [u.tag for u in units],
            "equipment_serial": [u.serial for u in units],
            "equipment_family_name": [FAMILY_NAMES.get(u.family, u.family.upper()) for u in units],
            "equipment_maker_name": [u.maker for u in units],
            "equipment_model": [u.model for u in units],
            "equipment_time": [u.hours_late or u.hours for u in units],
            "site": ["Área Mina"] * len(units),
        },
        schema=pa.schema(
            [
                ("equipment_id", pa.int64()),
                ("equipment_tag", pa.string()),
                ("equipment_serial", pa.string()),
                ("equipment_family_name", pa.string()),
                ("equipment_maker_name", pa.string()),
                ("equipment_model", pa.string()),
                ("equipment_time", pa.float64()),
                ("site", pa.string()),
            ]
        ),
    )
