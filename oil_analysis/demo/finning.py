"""Demo workbooks in the exact raw format of the Finning (Cat S·O·S) lab export (client CDA).

One workbook per truck, written byte-for-byte in the layout the lab's exporter (Apache POI)
produces, because the readers must be tested against that layout and not against a tidy copy:

- sheet ``OIL`` with the real 294-column header in the real order, duplicated names included
  (``Si`` three times, ``Estado`` twice, ``Fe``/``Cu``/… twice); sheet ``COOLANT`` with its
  133-column header;
- header cells merged over rows 1-2, so **row 2 is empty**; data from row 3, newest sample first;
- every lab value written as **text** (``"40"``, ``"26.52"``, ``"6.730"``), dates as Excel date
  serials, meters as numbers; the sheet declares a 1x1 ``<dimension>`` like the lab's files
  (openpyxl in read-only mode needs ``reset_dimensions()``);
- duplicated element columns carry identical values; ``Estado`` (1st) is the verdict and the 2nd
  ``Estado`` is always ``Nuevo``;
- ``Fluid Weight`` mixes numbers (60, 30) and text (``10W``, ``15W-40``); ``Fluid Type`` is often
  empty and sometimes has a trailing space; W/A/F are letters (N/T/P/E); ``ISO`` mixes ISO 4406
  codes (``22/19/14``) with visual codes (``S-M``, ``G-NM1``, ``H2O``, ``S-M/G-NM1``, typos);
  when ``W=E`` every element and ``V100`` are empty; machine hours mostly increase but sometimes
  decrease or are missing.

Values are drawn from :mod:`oil_analysis.demo.profiles` (per compartment quantiles of the real
data) through a Gaussian copula: a unit/oil offset keeps additives stable between oil changes, an
oil-age term makes wear metals grow with the hours on the oil, and shared sample factors make
iron, PQ and the particle counts move together. Injected faults (:class:`Fault`) make some
compartments fail over their last samples; the lab verdict (``Estado``) and the ``Interpretacion``
text follow the generated values (ranked per compartment to the real verdict mix; water, fuel and
fault samples forced to action), so the verdict correlates with the faults roughly as in the real
data.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import ndtr, ndtri

from oil_analysis.demo.profiles import FINNING_ELEMENTS, PARTICLE_PACKAGES, Marginal, load_profiles

FAULT_KINDS = ("wear", "water", "fuel", "dust", "viscosity")

# Lab verdicts, in increasing severity; "Sin comentarios" is the lab's mislabelled-sample verdict.
NO_ACTION, MONITOR, ACTION, URGENT = (
    "No se requiere acción",
    "Monitorear Compartimento",
    "Acción requerida",
    "Se requiere acción urgente",
)
NO_COMMENT = "Sin comentarios"
LEVELS = (NO_ACTION, MONITOR, ACTION, URGENT)
MONITOR_I, ACTION_I, URGENT_I = 1, 2, 3  # indexes into LEVELS
_MISLABELLED = 4  # "forced" marker of a "Sin comentarios" sample

MOTOR = "MOTOR"
STEERING = "SISTEMA DE DIRECCION"
# Order in which the lab numbers the samples of one batch, and order of the rows in the export.
_NUMBERING_ORDER = (
    "MOTOR", "RUEDA DELANTERA IZQUIERDA", "RUEDA DELANTERA DERECHA", "MANDO FINAL TRASERO IZQUIERDO",
    "MANDO FINAL TRASERO DERECHO", "DIFERENCIAL TRASERO", "TRANSMISION", "CONVERTIDOR",
    "SISTEMA DE DIRECCION", "SISTEMA HIDRAULICO",
)  # fmt: skip
_ROW_ORDER = (
    "SISTEMA DE DIRECCION", "SISTEMA HIDRAULICO", "TRANSMISION", "MANDO FINAL TRASERO IZQUIERDO",
    "MANDO FINAL TRASERO DERECHO", "DIFERENCIAL TRASERO", "MOTOR", "RUEDA DELANTERA DERECHA",
    "RUEDA DELANTERA IZQUIERDA", "CONVERTIDOR",
)  # fmt: skip

_WEAR = ("Fe", "Cr", "Al", "Cu", "Pb", "Ni", "Ag", "Sn", "Ti", "V", "Mn")
_CONTAMINANT = ("Si", "K", "Na")
_ADDITIVE = ("Zn", "Ba", "B", "Ca", "Mo", "Mg", "P")
_MOTOR_ONLY = ("TBN", "ST", "OXI", "NIT", "SUL")
_COUNTS = ("4µ", "6µ", "10µ", "14µ", "18µ", "21µ", "38µ", "50µ", "70µ")
_FERRO = ("Cutting SD", "Fatigue SD", "Sliding SD", "Non Metallic SD", "Non Metallic", "Fatigue", "Fibers")
_DATE_COLS = {"Fecha de laboratorio", "Fecha de Toma de Muestra", "Distribution Date", "Created on"}
_NUMBER_COLS = {
    "Horas",
    "Meter on Fluid",
    "Estimacion de horas del fluido",
    "Component Meter",
    "Install Meter",
}
# ISO 4406 scale: code n covers counts per ml in (_ISO_BOUNDS[n-1], _ISO_BOUNDS[n]].
_ISO_BOUNDS = (
    0.0, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.3, 2.5, 5, 10, 20, 40, 80, 160, 320, 640, 1300, 2500,
    5000, 10_000, 20_000, 40_000, 80_000, 160_000, 320_000, 640_000, 1_300_000, 2_500_000,
)  # fmt: skip
_MAGNETIC = ("S-M", "G-M1", "S-M/G-M1", "G-M1/G-NM1", "P-M1", "G-M2")
_EXCEL_EPOCH = datetime(1899, 12, 30)
# Unit ids of the real trucks: never used for synthetic trucks, so demo and real data never mix.
_REAL_TRUCK_NUMBERS = frozenset({9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 24})


@dataclass(frozen=True)
class Fault:
    """A fault injected over the last ``n_samples`` samples of one compartment.

    ``kind`` is one of :data:`FAULT_KINDS`: ``wear`` (rising iron, PQ and magnetic debris),
    ``water`` (W flag T→P→E, ``H2O`` ISO code), ``fuel`` (F=P and viscosity drop; motor),
    ``dust`` (silicon and aluminium ingress, granular debris) and ``viscosity`` (oil out of grade).
    """

    component: str
    kind: str
    n_samples: int = 6

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")


@dataclass
class WorkbookSummary:
    """What one generated workbook contains (for the CLI report and the tests)."""

    path: Path
    unit_id: str
    model: str
    n_oil: int
    n_coolant: int
    faults: list[Fault]
    estado: dict[str, int] = field(default_factory=dict)
    first_sample: date | None = None
    last_sample: date | None = None


@dataclass
class _Sample:
    day: date
    comp: str
    batch: int
    cells: dict[str, Any] = field(default_factory=dict)
    level: str = NO_ACTION
    findings: list[str] = field(default_factory=list)
    fault: str | None = None
    fault_r: float = 0.0
    score: float = 0.0
    forced: int = -1  # level the sample must get (index into LEVELS), -1 if ranked by score


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def synthetic_truck_ids(n: int) -> list[str]:
    """``n`` realistic truck ids (``T-01``, ``T-02``…) that skip the ids of the real trucks."""
    ids, k = [], 0
    while len(ids) < n:
        k += 1
        if k not in _REAL_TRUCK_NUMBERS:
            ids.append(f"T-{k:02d}")
    return ids


def default_fault_plan(truck_index: int) -> list[Fault]:
    """Faults injected into the ``truck_index``-th truck of a generated client (cycle of 8)."""
    plan: list[list[Fault]] = [
        [Fault("MANDO FINAL TRASERO DERECHO", "wear", 6), Fault(MOTOR, "fuel", 4)],
        [Fault("TRANSMISION", "water", 5)],
        [Fault("DIFERENCIAL TRASERO", "dust", 6), Fault("SISTEMA HIDRAULICO", "viscosity", 3)],
        [],
        [Fault(MOTOR, "wear", 6)],
        [Fault("SISTEMA HIDRAULICO", "water", 4)],
        [],
        [Fault("RUEDA DELANTERA IZQUIERDA", "wear", 5), Fault("CONVERTIDOR", "dust", 4)],
    ]
    return list(plan[truck_index % len(plan)])


def generate_finning_client(
    out_dir: Path | str,
    n_trucks: int = 3,
    seed: int = 7,
    n_samples: int = 620,
    start: date = date(2020, 12, 23),
    end: date = date(2026, 1, 10),
) -> list[WorkbookSummary]:
    """Write ``n_trucks`` workbooks ``T-XX.xlsx`` into ``out_dir`` (the CDA bronze folder).

    Trucks get ids from :func:`synthetic_truck_ids`, one in five is a 789D, and faults follow
    :func:`default_fault_plan`. Deterministic for a given ``seed``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summaries = []
    for i, unit in enumerate(synthetic_truck_ids(n_trucks)):
        model = "789D" if i % 5 == 4 else "789C"
        summaries.append(
            write_finning_workbook(
                out / f"{unit}.xlsx",
                unit_id=unit,
                model=model,
                n_samples=n_samples,
                seed=seed,
                start=start,
                end=end,
                failures=default_fault_plan(i),
            )
        )
    return summaries


def write_finning_workbook(
    path: Path | str,
    unit_id: str,
    model: str = "789C",
    n_samples: int = 620,
    seed: int = 7,
    start: date = date(2020, 12, 23),
    end: date = date(2026, 1, 10),
    failures: Sequence[Fault] = (),
    serial: str | None = None,
) -> WorkbookSummary:
    """Write one truck's workbook (sheets ``OIL`` and ``COOLANT``) in the lab's exact format.

    ``n_samples`` oil samples are spread over ``start``..``end`` (monthly batches of all
    compartments plus mid-month motor samples). ``failures`` inject faults over the last samples
    of their compartments. The same arguments always give the same bytes.
    """
    profile = load_profiles()["finning"]
    rng = np.random.default_rng([seed, zlib.crc32(unit_id.encode())])
    gen = _TruckGenerator(profile, rng, unit_id, model, serial or _serial(rng), list(failures))
    oil = gen.oil_samples(n_samples, start, end)
    coolant = gen.coolant_samples(oil)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_xlsx(path, profile["oil_header"], oil, profile["coolant_header"], coolant, profile)
    return WorkbookSummary(
        path=path,
        unit_id=unit_id,
        model=model,
        n_oil=len(oil),
        n_coolant=len(coolant),
        faults=list(failures),
        estado=dict(Counter(s.cells["Estado"] for s in oil)),
        first_sample=min(s.day for s in oil),
        last_sample=max(s.day for s in oil),
    )


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


def _serial(rng: np.random.Generator) -> str:
    # "DMO" never starts a real Cat serial prefix, so a demo serial cannot be mistaken for a real one.
    return f"DMO{int(rng.integers(0, 100_000)):05d}"


def _pick(rng: np.random.Generator, shares: dict[str, float]) -> str:
    keys = list(shares)
    p = np.asarray([shares[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _iso_code(count: float) -> int:
    for n in range(1, len(_ISO_BOUNDS)):
        if count <= _ISO_BOUNDS[n]:
            return n
    return len(_ISO_BOUNDS)


def _fmt_int(x: float) -> str:
    return str(max(0, int(round(x))))


def _fmt_v100(rng: np.random.Generator, v: float) -> str:
    # The lab reports 4 significant digits ("26.52", "6.730"), sometimes only one decimal.
    if rng.random() < 0.2:
        return f"{v:.1f}"
    return f"{v:.2f}" if v >= 10 else f"{v:.3f}"


class _TruckGenerator:
    def __init__(
        self,
        profile: dict[str, Any],
        rng: np.random.Generator,
        unit_id: str,
        model: str,
        serial: str,
        failures: list[Fault],
    ):
        self.p = profile
        self.rng = rng
        self.unit_id = unit_id
        self.model = model
        self.serial = serial
        self.failures = failures
        self.comps: dict[str, Any] = profile["components"]
        unknown = {f.component for f in failures} - set(self.comps)
        if unknown:
            raise ValueError(f"unknown compartments in failures: {sorted(unknown)}")
        self.marg = {
            c: {col: Marginal(s) for col, s in cp["columns"].items()} for c, cp in self.comps.items()
        }
        self.meter_marg = {c: Marginal(cp["meter_on_fluid"]) for c, cp in self.comps.items()}
        digits = "".join(ch for ch in unit_id if ch.isdigit())
        self.ordinal = int(digits) if digits else zlib.crc32(unit_id.encode()) % 100

    # ---- schedule -----------------------------------------------------------------------------

    def _schedule(self, n: int, start: date, end: date) -> list[tuple[date, str, int]]:
        """Monthly batches of every compartment plus motor-only samples between them."""
        rng = self.rng
        others = [c for c in self.comps if c not in (MOTOR, STEERING)]
        out: list[tuple[float, str, int]] = []
        t, b = 0.0, 0
        while len(out) < n:
            batch = [(t, MOTOR, b)]
            batch += [(t, c, b) for c in others if rng.random() < 0.97]
            if STEERING in self.comps and rng.random() < 0.33:
                batch.append((t, STEERING, b))
            out += batch
            gap = float(np.exp(rng.normal(0, 0.15)))
            if rng.random() < 0.03:  # a missed month
                gap *= 2.2
            if rng.random() < 0.7:  # mid-month motor sample
                out.append((t + gap * rng.uniform(0.35, 0.65), MOTOR, b + 1))
                b += 1
            t += gap
            b += 1
        out = sorted(out, key=lambda x: (x[0], x[2]))[:n]
        # Stretch the relative schedule over start..end (the last batch a few days before end).
        span = (end - start).days - int(rng.integers(0, 5))
        scale = span / max(out[-1][0], 1e-9)
        return [(start + timedelta(days=int(round(x * scale))), c, bb) for x, c, bb in out]

    # ---- oil samples --------------------------------------------------------------------------

    def oil_samples(self, n: int, start: date, end: date) -> list[_Sample]:
        rng, p = self.rng, self.p
        schedule = self._schedule(n, start, end)
        samples = [_Sample(day=d, comp=c, batch=b) for d, c, b in schedule]

        # Machine hours: one meter per date, mostly increasing, with the lab's typos.
        h0 = float(rng.integers(20_000, 90_000))
        rate = p["machine_hours_per_day"] * rng.uniform(0.9, 1.1)
        days = sorted({s.day for s in samples})
        hours = {d: round(h0 + rate * (d - start).days + rng.normal(0, 15)) for d in days}
        prev = None
        for d in days:
            if prev is not None and rng.random() < 0.007:
                hours[d] = hours[prev] - int(rng.integers(30, 400))  # decrease: entry error
            prev = d
        null_hours = {d for d in days if rng.random() < p["hours_null"]}

        # Lab dates per batch.
        lag_marg = Marginal({"q": p["lab_lag_days"], "zero": 0.0})
        dist_marg = Marginal({"q": p["distribution_lag_days"], "zero": 0.0})
        lab_day: dict[int, date] = {}
        for s in samples:
            if s.batch not in lab_day:
                lab_day[s.batch] = s.day + timedelta(days=int(round(float(lag_marg.ppf(rng.random())))))
            s.cells["Fecha de laboratorio"] = lab_day[s.batch]
        dist_time = {
            b: datetime.combine(d, datetime.min.time())
            + timedelta(days=float(dist_marg.ppf(rng.random())), seconds=int(rng.integers(0, 59)))
            for b, d in lab_day.items()
        }

        by_comp: dict[str, list[_Sample]] = defaultdict(list)
        for s in samples:
            by_comp[s.comp].append(s)
            s.cells["Horas"] = None if s.day in null_hours else float(hours[s.day])
            s.cells["Distribution Date"] = dist_time[s.batch]
        for comp, ss in by_comp.items():
            self._component_series(comp, ss, hours)
        self._apply_faults(by_comp)
        self._assign_verdicts(by_comp)
        self._fill_common(samples)
        self._number(samples)
        return samples

    def _component_series(self, comp: str, ss: list[_Sample], hours: dict[date, int]) -> None:
        rng, cp = self.rng, self.comps[comp]
        n = len(ss)
        marg = self.marg[comp]

        # Oil life: the oil is changed when it reaches about twice the median meter.
        mm = self.meter_marg[comp]
        life_med = 2.0 * float(mm.ppf(0.5 + mm.zero / 2))
        fluids = cp["fluids"]
        fluid_p = np.asarray([f[3] for f in fluids])
        fluid_idx = int(rng.choice(len(fluids), p=fluid_p / fluid_p.sum()))
        h_first = hours[ss[0].day]
        last_change = h_first - rng.uniform(0, life_med)
        life = life_med * float(np.exp(rng.normal(0, 0.2)))
        comp_install = h_first - rng.uniform(0, 20_000)
        comp_life = rng.uniform(15_000, 30_000)
        comp_serial = (
            f"DMO{int(rng.integers(0, 100_000)):05d}" if comp == MOTOR and rng.random() < 0.5 else None
        )

        meters = np.zeros(n)
        fluid_of = np.zeros(n, dtype=int)
        for i, s in enumerate(ss):
            h = hours[s.day]
            meter = max(0.0, h - last_change)
            if h - comp_install > comp_life:  # component replaced
                comp_install, comp_life = h - rng.uniform(0, 300), rng.uniform(15_000, 30_000)
                if comp_serial is not None:
                    comp_serial = f"DMO{int(rng.integers(0, 100_000)):05d}"
            next_gap = (hours[ss[i + 1].day] - h) if i + 1 < n else 0
            # Oil is changed at the sampling visit when it would exceed its life before the next one.
            changed = meter + max(next_gap, 0) > life
            s.cells["Fluido Cambiado"] = (
                "U" if rng.random() < cp["fluid_changed"].get("U", 0.0) else ("Y" if changed else "N")
            )
            meters[i] = meter
            fluid_of[i] = fluid_idx
            s.cells["Meter on Fluid"] = None if rng.random() < mm.null else float(round(meter))
            est = float(round(meter)) if rng.random() > 0.03 else 0.0
            s.cells["Estimacion de horas del fluido"] = est
            s.cells["Component Meter"] = (
                None if rng.random() < cp["component_meter_null"] else float(round(h - comp_install))
            )
            if comp_serial is not None and rng.random() < 0.5:
                s.cells["Component Serial Number"] = comp_serial
            brand, ftype, weight, _ = fluids[fluid_idx]
            s.cells["Fluid Brand"] = brand
            # Free text typed at the lab: often empty, sometimes with a trailing space (as in the profile).
            s.cells["Fluid Type"] = ftype
            s.cells["Fluid Weight"] = weight
            if changed:
                last_change = h + max(0, next_gap) * rng.uniform(0, 0.1)
                life = life_med * float(np.exp(rng.normal(0, 0.2)))
                if rng.random() < 0.25:
                    fluid_idx = int(rng.choice(len(fluids), p=fluid_p / fluid_p.sum()))

        # Latent factors (Gaussian copula). Weights are chosen so each z has unit variance.
        z_age = ndtri(np.clip([mm.cdf(m) for m in meters], 0.01, 0.99))
        f_wear = rng.normal(size=n)
        f_dirt = rng.normal(size=n)
        fluid_offsets: dict[int, dict[str, float]] = defaultdict(dict)

        def latent(col: str, group: str) -> np.ndarray:
            unit = rng.normal(0, 1)
            noise = rng.normal(size=n)
            if group == "wear":
                return 0.45 * unit + 0.5 * z_age + 0.35 * f_wear + 0.65 * noise
            if group == "dirt":
                return 0.45 * unit + 0.3 * z_age + 0.5 * f_dirt + 0.68 * noise
            if group == "additive":
                off = np.array([fluid_offsets[k].setdefault(col, rng.normal()) for k in fluid_of])
                return 0.45 * unit + 0.75 * off + 0.49 * noise
            if group == "age":
                return 0.4 * unit + 0.6 * z_age + 0.69 * noise
            if group == "age_down":
                return 0.4 * unit - 0.6 * z_age + 0.69 * noise
            if group == "visc":
                off = np.array([fluid_offsets[k].setdefault(col, rng.normal()) for k in fluid_of])
                return 0.5 * unit + 0.6 * off + 0.62 * noise
            return noise

        groups = {e: "wear" for e in _WEAR} | {"Si": "dirt", "Al": "dirt", "K": "dirt", "Na": "wear"}
        groups |= {e: "additive" for e in _ADDITIVE} | {"V100": "visc", "PQI": "wear", "TBN": "age_down"}
        groups |= {e: "age" for e in ("ST", "OXI", "NIT", "SUL")}
        u: dict[str, np.ndarray] = {}
        for col in (*FINNING_ELEMENTS, "V100", "PQI", *_MOTOR_ONLY):
            u[col] = ndtr(latent(col, groups.get(col, "noise")))
        # Particle counts share one cleanliness factor so the size classes stay consistent.
        z_clean = 0.5 * rng.normal() + 0.55 * f_dirt + 0.67 * rng.normal(size=n)

        # "Sin comentarios": a mislabelled bottle, whose values belong to another compartment.
        swap = rng.random(n) < 0.004
        other = [c for c in self.comps if c != comp]

        flags = cp["flags"]
        switch = date.fromisoformat(self.p["particle_switch_date"])
        pk = cp["particle_package"]
        for i, s in enumerate(ss):
            c = s.cells
            src = self.marg[other[int(rng.integers(len(other)))]] if swap[i] else marg
            if swap[i]:
                s.level, s.forced = NO_COMMENT, _MISLABELLED
            for col in FINNING_ELEMENTS:
                c[col] = float(src[col].ppf(u[col][i]))
            c["V100"] = float(src["V100"].ppf(u["V100"][i]))
            c["PQI"] = float(src["PQI"].ppf(u["PQI"][i]))
            for col in _MOTOR_ONLY:
                m = marg[col]
                c[col] = None if rng.random() < m.null else float(m.ppf(u[col][i]))
            if c.get("TBN") is not None and rng.random() < 0.4:
                c["Notas"] = _pick(rng, cp["notas"]) if cp["notas"] else None

            # Flags: letters, with the per-compartment null pattern of the real data.
            for f in ("W", "A", "F"):
                c[f] = _pick(rng, flags[f]) or None

            # Particle counts (one of two lab packages) or a visual/patch code in the ISO field.
            pkg = ""
            if s.day < switch:
                if rng.random() < pk["before_switch"].get("B", 0.0):
                    pkg = "B"
            else:
                r = rng.random()
                a, b = pk["after_switch"].get("A", 0.0), pk["after_switch"].get("B", 0.0)
                pkg = "A" if r < a else ("B" if r < a + b else "")
            s.cells["_pkg"] = pkg
            zc = z_clean[i]
            counts = {}
            prev = math.inf
            for col in _COUNTS:
                m = marg[col]
                if not m.q.any():
                    continue
                v = float(m.ppf(ndtr(zc + 0.25 * rng.normal())))
                prev = min(prev, v)
                counts[col] = prev
            s.cells["_counts"] = counts
            if pkg:
                self._write_counts(s, counts, pkg, marg)
            else:
                kind = _pick(rng, cp["iso_visual"]) if cp["iso_visual"] else ""
                if kind == "iso4406":
                    kind = self._iso_from_counts(counts)
                elif kind == "G-NM1" and rng.random() < 0.004:
                    kind = "GNM-1"  # a typo the lab makes now and then
                c["ISO"] = kind or None
                if kind and "/" not in kind and rng.random() < 0.005:
                    c["PC Rating"] = kind  # the patch code, now and then repeated in "PC Rating"

    def _iso_from_counts(self, counts: dict[str, float]) -> str | None:
        if not {"4µ", "6µ", "14µ"} <= counts.keys():
            return None
        return "/".join(str(_iso_code(counts[k])) for k in ("4µ", "6µ", "14µ"))

    def _write_counts(
        self, s: _Sample, counts: dict[str, float], pkg: str, marg: dict[str, Marginal]
    ) -> None:
        c, rng = s.cells, self.rng
        for col in PARTICLE_PACKAGES[pkg]:
            if col in counts:
                c[col] = counts[col]
        if pkg == "A":
            c["Total part/ml"] = counts.get("4µ", 0.0) * (
                1.0 if rng.random() < 0.98 else rng.uniform(1.0, 1.3)
            )
            for col in _FERRO:
                m = marg[col]
                # share of package-A samples that report this column
                share = (1.0 - m.null) / max(1e-9, 1.0 - marg["Total part/ml"].null)
                c[col] = float(m.ppf(rng.random())) if rng.random() < share else None
        c["ISO"] = self._iso_from_counts(counts)

    # ---- faults -------------------------------------------------------------------------------

    def _apply_faults(self, by_comp: dict[str, list[_Sample]]) -> None:
        rng = self.rng
        for fault in self.failures:
            ss = by_comp.get(fault.component, [])
            k = min(fault.n_samples, len(ss))
            q90 = {e: float(m.q[6]) for e, m in self.marg[fault.component].items()}
            for j, s in enumerate(ss[len(ss) - k :]):
                r = (j + 1) / k
                c = s.cells
                s.fault, s.fault_r = fault.kind, r
                if fault.kind == "wear":
                    # Additive ramps on top of the normal level, scaled to the compartment's p90,
                    # so the trend rises steadily whatever the oil age.
                    c["Fe"] += r * 4 * q90["Fe"]
                    for e in ("Cr", "Cu"):
                        c[e] += (r > 0.5) * int(rng.integers(1, 3))
                    c["PQI"] += r * 6 * q90["PQI"]
                    self._visual(s, "S-M" if r < 0.4 else ("G-M1" if rng.random() < 0.6 else "S-M/G-M1"))
                elif fault.kind == "water":
                    c["W"] = "T" if r <= 0.2 else ("P" if r < 1 else "E")
                    c["Na"] = c["Na"] + 5 * r
                    if c["W"] != "T":
                        self._visual(s, "H2O")
                elif fault.kind == "fuel":
                    c["F"] = "P" if r > 0.3 else "N"
                    c["V100"] *= 1 - 0.3 * r
                    if c.get("TBN") is not None:
                        c["TBN"] *= 1 - 0.3 * r
                elif fault.kind == "dust":
                    c["Si"] += r * 4 * q90["Si"]
                    c["Al"] += r * 3 * max(q90["Al"], 2.0)
                    c["Fe"] += r * q90["Fe"]
                    if c.get("_pkg"):
                        counts = {k2: v * (1 + 8 * r) for k2, v in c["_counts"].items()}
                        self._write_counts(s, counts, c["_pkg"], self.marg[s.comp])
                    else:
                        self._visual(s, "G-NM1" if r < 0.6 else "G-NM2")
                elif fault.kind == "viscosity":
                    c["V100"] *= 1.45  # topped up with a heavier grade

    def _visual(self, s: _Sample, code: str) -> None:
        # The lab reports the patch test instead of the counts when the sample is abnormal.
        for col in (*_COUNTS, "Total part/ml", *_FERRO):
            s.cells.pop(col, None)
        s.cells["_pkg"] = ""
        s.cells["ISO"] = code

    # ---- verdicts -----------------------------------------------------------------------------

    def _assign_verdicts(self, by_comp: dict[str, list[_Sample]]) -> None:
        rng = self.rng
        for comp, ss in by_comp.items():
            marg = self.marg[comp]
            target = self.comps[comp]["estado"]
            for s in ss:
                c = s.cells
                if c["W"] == "E":  # water prevents the analysis
                    for col in FINNING_ELEMENTS:
                        c[col] = None
                    c["V100"] = None
                self._score(s, marg)
            n = len(ss)
            free = [s for s in ss if s.forced < 0]
            forced_action = sum(1 for s in ss if s.forced in (ACTION_I, URGENT_I))
            forced_monitor = sum(1 for s in ss if s.forced == MONITOR_I)
            n_action = max(0, round((target.get(ACTION, 0) + target.get(URGENT, 0)) * n) - forced_action)
            n_monitor = max(0, round(target.get(MONITOR, 0) * n) - forced_monitor)
            free.sort(key=lambda s: -s.score)
            for i, s in enumerate(free):
                if i < n_action:
                    s.level = URGENT if rng.random() < 0.1 else ACTION
                elif i < n_action + n_monitor:
                    s.level = MONITOR
                else:
                    s.level = NO_ACTION
            for s in ss:
                if 0 <= s.forced < _MISLABELLED:
                    s.level = LEVELS[s.forced]
                s.cells["Estado"] = s.level
                s.cells["Interpretacion"] = _interpretation(rng, s, self.p)
                if s.cells["V100"] is not None:
                    s.cells["V100"] = _fmt_v100(rng, s.cells["V100"])

    def _score(self, s: _Sample, marg: dict[str, Marginal]) -> None:
        """Severity of a sample as the lab would see it, and the findings behind it."""
        c, rng = s.cells, self.rng
        score = 0.0
        findings: list[tuple[float, str]] = []
        for col in (*_WEAR, "Si", "Na", "K"):
            v = c.get(col)
            if v is None:
                continue
            z = float(ndtri(min(max(marg[col].cdf(v), 1e-4), 1 - 1e-4)))
            if z > 1.0 and v >= 2:
                score += (z - 1.0) * (1.5 if col in ("Fe", "Si", "Cu") else 1.0)
                findings.append((z, col))
        if c.get("PQI") is not None:
            z = float(ndtri(min(max(marg["PQI"].cdf(c["PQI"]), 1e-4), 1 - 1e-4)))
            if z > 1.3:
                score += z - 1.3
                findings.append((z, "PQI"))
        if c.get("V100") is not None:
            z = float(ndtri(min(max(marg["V100"].cdf(c["V100"]), 1e-4), 1 - 1e-4)))
            if abs(z) > 1.8:
                score += abs(z) - 1.8
                findings.append((abs(z), "V100+" if z > 0 else "V100-"))
        iso = c.get("ISO") or ""
        if any(m in iso for m in ("S-M", "G-M", "P-M")):
            score += 1.5
            findings.append((2.5, "MAG"))
        elif "NM2" in iso:
            score += 1.2
            findings.append((2.0, "NM"))
        elif "NM" in iso or iso == "O":
            score += 0.8
            findings.append((1.5, "NM"))
        if "H2O" in iso:
            score += 1.0
        s.score = score + rng.normal(0, 0.3)
        s.findings = [f for _, f in sorted(findings, reverse=True)]

        if s.forced == _MISLABELLED:
            return
        w, f = c.get("W"), c.get("F")
        level = -1
        if w == "E":
            level = URGENT_I if rng.random() < 0.33 else ACTION_I
        elif w == "P":
            level = URGENT_I if rng.random() < 0.1 else ACTION_I
        elif w == "T":
            level = MONITOR_I
        if f == "P":
            level = max(level, ACTION_I)
        if s.fault is not None:
            if s.fault_r <= 0.2:  # onset: only the first samples of a long ramp are "monitor"
                level = max(level, MONITOR_I)
            elif s.fault_r < 1:
                level = max(level, ACTION_I)
            else:
                level = max(level, URGENT_I if s.fault in ("fuel", "water", "wear") else ACTION_I)
        s.forced = level

    # ---- common columns and numbering ---------------------------------------------------------

    def _fill_common(self, samples: list[_Sample]) -> None:
        rng, p = self.rng, self.p
        const = p["constants"]
        for s in samples:
            c = s.cells
            c["Fecha de Toma de Muestra"] = s.day
            c["Model"] = self.model
            c["ID de equipo"] = self.unit_id
            c["No. de serie del equipo"] = self.serial
            c["Compartimento"] = s.comp
            for k in ("Meter Units", "Nombre del Distribuidor", "Nombre del Cliente", "Sitio de Trabajo", "UCID",
                      "Kidney Loop", "Sample Activity", "Install Meter"):  # fmt: skip
                c[k] = const[k]
            c["Filtro Cambiado"] = _pick(rng, p["filter_changed"]) or None
            c["No. de Etiqueta"] = _pick(rng, p["etiqueta"]) or None
            if rng.random() < p["created_on_share"]:
                c["Created on"] = s.day - timedelta(days=int(rng.integers(0, 6)))
            if rng.random() < 0.001:
                c["No. de Orden de Trabajo"] = ""  # an empty string, not an empty cell

    def _number(self, samples: list[_Sample]) -> None:
        """Synthetic lab numbers in the lab's pattern (see :func:`_lab_number`), unique across trucks."""
        per_day: Counter[date] = Counter()
        order = {c: i for i, c in enumerate(_NUMBERING_ORDER)}
        for s in sorted(
            samples, key=lambda s: (s.cells["Fecha de laboratorio"], s.batch, order.get(s.comp, 99))
        ):
            lab = s.cells["Fecha de laboratorio"]
            k = per_day[lab]
            per_day[lab] += 1
            seq = (self.ordinal % 30) * 100 + k
            s.cells["No. de control de laboratorio"] = _lab_number(lab, seq)

    # ---- coolant ------------------------------------------------------------------------------

    def coolant_samples(self, oil: list[_Sample]) -> list[_Sample]:
        """A coolant sample every ~4-5 months, taken with an oil batch."""
        rng, cp = self.rng, self.p["coolant"]
        full = {s.batch for s in oil if s.comp != MOTOR}  # batches with more than the motor
        batches: dict[int, _Sample] = {}
        for s in oil:
            if s.comp == MOTOR and s.batch in full and s.batch not in batches:
                batches[s.batch] = s
        every = 365.25 / max(cp["per_year"], 0.5)
        chosen: list[_Sample] = []
        last: date | None = None
        for b in sorted(batches, key=lambda b: batches[b].day):
            s = batches[b]
            if last is None or (s.day - last).days >= every * rng.uniform(0.8, 1.2):
                chosen.append(s)
                last = s.day
        cols = {k: Marginal(v) for k, v in cp["columns"].items() if "q" in v or "zero" in v}
        out = []
        coolant_install = None
        last_h = 0.0
        for src in chosen:
            s = _Sample(day=src.day, comp="REFRIGERANTE", batch=src.batch)
            c = s.cells
            for k in ("Fecha de laboratorio", "Distribution Date", "Horas", "Fecha de Toma de Muestra", "Model",
                      "ID de equipo", "No. de serie del equipo", "Meter Units", "Nombre del Distribuidor",
                      "Nombre del Cliente", "Sitio de Trabajo", "UCID", "Sample Activity", "Install Meter",
                      "Filtro Cambiado", "No. de Etiqueta"):  # fmt: skip
                c[k] = src.cells.get(k)
            c["Compartimento"] = "REFRIGERANTE"
            h = last_h = c["Horas"] or last_h
            if coolant_install is None:
                coolant_install = h - rng.uniform(2_000, 30_000)
            c["Meter on Fluid"] = None if rng.random() < 0.03 else float(round(h - coolant_install))
            c["Estimacion de horas del fluido"] = float(round(h - coolant_install + rng.uniform(0, 9_000)))
            c["Component Meter"] = (
                None
                if rng.random() < 0.07
                else float(round(h if rng.random() < 0.3 else h - coolant_install))
            )
            c["Fluido Cambiado"] = "Y" if rng.random() < 0.07 else ("U" if rng.random() < 0.07 else "N")
            brand, ftype, _ = cp["fluids"][
                int(rng.choice(len(cp["fluids"]), p=_norm([f[2] for f in cp["fluids"]])))
            ]
            c["Fluid Brand"], c["Fluid Type"] = brand, ftype
            gl = float(cols["GL"].ppf(rng.random()))
            fp = -(1.12 * gl - 19.5) + rng.normal(0, 0.6)
            bp = 104 + max(0.0, (gl - 45) * 0.5) + (rng.random() < 0.1) * rng.integers(-1, 3)
            c["GL"], c["FP"], c["BP"] = _fmt_int(gl), str(int(round(fp))), str(int(round(bp)))
            c["FP (°F)"] = str(int(round(fp * 9 / 5 + 32)))
            c["BP (°F)"] = str(int(round(bp * 9 / 5 + 32)))
            ph = float(cols["pH"].ppf(rng.random()))
            c["PH"] = c["pH"] = f"{ph:.1f}"
            c["CON"] = str(int(round(float(cols["CON"].ppf(rng.random())), -1)))
            c["NO2"] = "0"
            for k in ("Color", "App", "Odor", "Oil", "Foam", "PAmt"):
                c[k] = _pick(rng, cp["columns"][k]["cats"])
            if c["PAmt"] != "none":
                for k in ("PCol", "PApp", "PProp"):
                    cats = {v: w for v, w in cp["columns"][k]["cats"].items() if v}
                    c[k] = _pick(rng, cats)
            s.score = (c["PAmt"] != "none") * 2 + abs(ph - 7.9) + abs(gl - 37) / 5 + rng.normal(0, 0.3)
            if rng.random() < 0.1:
                coolant_install = h  # coolant replaced after this sample
            out.append(s)
        n_mon = round(cp["estado"].get(MONITOR, 0.25) * len(out))
        for i, s in enumerate(sorted(out, key=lambda s: -s.score)):
            s.level = MONITOR if i < n_mon else NO_ACTION
            s.cells["Estado"] = s.level
            s.cells["Interpretacion"] = _coolant_interpretation(rng, s)
        per_day: Counter[date] = Counter()
        for s in out:
            lab = s.cells["Fecha de laboratorio"]
            seq = 3000 + (self.ordinal % 30) * 10 + per_day[lab]
            per_day[lab] += 1
            s.cells["No. de control de laboratorio"] = _lab_number(lab, seq)
        return out


def _lab_number(lab: date, seq: int) -> str:
    # Lab pattern R999-5YDDD-9999: "5", the year digit and the day of year of the lab date, then a
    # sequence. "R140" is not the real lab's prefix, so demo numbers never collide with real ones.
    return f"R140-5{lab.year % 10}{lab.timetuple().tm_yday:03d}-{seq:04d}"


def _norm(w: Sequence[float]) -> np.ndarray:
    a = np.asarray(w, dtype=float)
    return a / a.sum()


# --------------------------------------------------------------------------------------------
# Interpretacion texts, in the lab's register (upper case, segments ending in "/")
# --------------------------------------------------------------------------------------------

_FINDING_TEXT = {
    "Fe": ("NIVEL DE HIERRO ALTO", "LEVE INCREMENTO EN NIVEL DE HIERRO"),
    "Cu": ("NIVEL DE COBRE ALTO", "LEVE INCREMENTO EN NIVEL DE COBRE"),
    "Pb": ("NIVEL DE PLOMO ALTO", "LEVE PRESENCIA DE PLOMO"),
    "Cr": ("NIVEL DE CROMO ALTO", "LEVE PRESENCIA DE CROMO"),
    "Al": ("NIVEL DE ALUMINIO ALTO", "LEVE INCREMENTO EN NIVEL DE ALUMINIO"),
    "Ni": ("NIVEL DE NIQUEL ALTO", "LEVE PRESENCIA DE NIQUEL"),
    "Si": ("NIVEL DE SILICIO ALTO, POSIBLE INGRESO DE POLVO", "LEVE INCREMENTO EN NIVEL DE SILICIO"),
    "Na": ("SODIO ELEVADO", "LEVE PRESENCIA DE SODIO"),
    "K": ("POTASIO ELEVADO", "LEVE PRESENCIA DE POTASIO"),
    "Ag": ("PRESENCIA DE PLATA", "LEVE PRESENCIA DE PLATA"),
    "Sn": ("NIVEL DE ESTAÑO ALTO", "LEVE PRESENCIA DE ESTAÑO"),
    "Ti": ("PRESENCIA DE TITANIO", "LEVE PRESENCIA DE TITANIO"),
    "V": ("PRESENCIA DE VANADIO", "LEVE PRESENCIA DE VANADIO"),
    "Mn": ("NIVEL DE MANGANESO ALTO", "LEVE PRESENCIA DE MANGANESO"),
    "PQI": ("INDICE PQ ALTO", "INDICE PQ EN AUMENTO"),
    "V100+": ("VISCOSIDAD ALTA PARA EL GRADO DE ACEITE INFORMADO", "VISCOSIDAD LEVEMENTE ALTA"),
    "V100-": ("VISCOSIDAD BAJA PARA EL GRADO DE ACEITE INFORMADO", "VISCOSIDAD LEVEMENTE BAJA"),
    "MAG": ("PRESENCIA DE PARTICULAS MAGNETICAS EN SUSPENSION", "PARTICULAS FINAS METALICAS EN SUSPENSION SON VISIBLES EN LA MUESTRA"),
    "NM": ("PERSISTE PRESENCIA DE PARTICULADO GRANULAR NO MAGNETICO VISIBLE EN LA MUESTRA", "LEVE PARTICULADO GRANULAR NO MAGNETICO ES VISIBLE EN ESTA MUESTRA"),
}  # fmt: skip
_FAULT_TEXT = {
    "wear": ["DENSIDAD FERROSA EN AUMENTO", "POSIBLE DESGASTE EN RODAMIENTOS Y ENGRANAJES", "CHEQUEAR PARTICULADO EN TAPON MAGNETICO"],
    "water": ["POSIBLE INGRESO DE AGUA POR SELLOS O RESPIRADEROS", "CHEQUEAR ORIGEN DEL INGRESO DE AGUA AL SISTEMA", "CAMBIAR ACEITE Y FILTROS"],
    "fuel": ["VISCOSIDAD EN DESCENSO POR DILUCION", "CHEQUEAR ESTADO DE INYECTORES Y LINEAS DE COMBUSTIBLE"],
    "dust": ["POSIBLE INGRESO DE POLVO AL SISTEMA", "REVISAR SISTEMA DE ADMISION, SELLOS Y RESPIRADEROS"],
    "viscosity": ["CORROBORAR EL GRADO Y TIPO DE ACEITE EN USO", "CHEQUEAR POSIBLE RELLENO CON OTRO TIPO DE LUBRICANTE"],
}  # fmt: skip
_OTHERS_OK = (
    "DEMAS LECTURAS ACEPTABLES",
    "OTRAS LECTURAS ACEPTABLES",
    "OTROS PARAMETROS SE ENCUENTRAN NORMALES",
)
_MONITOR_RECS = (
    "MANTENER EN OBSERVACION", "SEGUIMIENTO", "ENVIAR NUEVA MUESTRA PARA VERIFICAR TENDENCIAS",
    "CONTROLAR PROCESO DE MUESTREO", "CONTROLAR PARAMETROS OPERACIONALES", "REVISAR FILTROS DE ACEITE POR RESIDUOS",
)  # fmt: skip
_ACTION_RECS = (
    "MONITOREAR EN INTERVALOS CORTOS PARA EVALUAR LA TENDENCIA DEL PROCESO DE DESGASTE",
    "REALIZAR RECOMENDACIONES Y ENVIAR NUEVA MUESTRA PARA CONTROL", "ATENDER A LA BREVEDAD",
    "CHEQUEAR NIVEL DE ACEITE", "CHEQUEAR RUIDO O VIBRACION ANORMAL",
)  # fmt: skip
_NO_FINDING = ("POSIBLE CONTAMINACION EN LA TOMA DE MUESTRA", "LEVES GRANULOS NO MAGNETICOS VISIBLES")


def _choice(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _interpretation(rng: np.random.Generator, s: _Sample, profile: dict[str, Any]) -> str:
    c = s.cells
    if s.level == NO_COMMENT:
        return "LA MUESTRA PODRIA ESTAR MAL ROTULADA Y CORRESPONDER A OTRO COMPONENTE/ ENVIAR CONTRAMUESTRA A LA BREVEDAD/"
    if s.level == NO_ACTION:
        return _pick(rng, profile["normal_texts"])
    severe = s.level in (ACTION, URGENT)
    segs: list[str] = []
    if c.get("W") == "E":
        segs.append("CONTAMINACION EXCESIVA CON AGUA IMPIDE REALIZAR EL ANALISIS")
    elif c.get("W") == "P":
        segs.append(f"POSITIVA CONTAMINACION CON AGUA ({rng.uniform(0.2, 0.9):.1f}%)")
    elif c.get("W") == "T":
        segs.append("TRAZAS DE AGUA")
    if c.get("F") == "P":
        segs.append(f"CONTAMINACION CON COMBUSTIBLE SOBRE EL {int(rng.integers(2, 6))}%")
    for f in s.findings[: 3 if severe else 2]:
        segs.append(_FINDING_TEXT[f][0 if severe else 1])
    if s.fault is not None and severe:
        segs += _FAULT_TEXT[s.fault][:2]
    if not segs:
        segs.append(_choice(rng, _NO_FINDING))
    segs.append(_choice(rng, _OTHERS_OK))
    if severe:
        segs.append(_FAULT_TEXT[s.fault][-1] if s.fault else _choice(rng, _ACTION_RECS))
        segs.append("ATENDER EN FORMA INMEDIATA" if s.level == URGENT else _choice(rng, _ACTION_RECS))
    else:
        segs.append(_choice(rng, _MONITOR_RECS))
    return "/ ".join(dict.fromkeys(segs)) + "/"


def _coolant_interpretation(rng: np.random.Generator, s: _Sample) -> str:
    c = s.cells
    if s.level == NO_ACTION:
        return _choice(
            rng,
            (
                "RESULTADOS DE PRUEBAS SE ENCUENTRAN ACEPTABLES PARA ESTE TIPO DE REFRIGERANTE/",
                "RESULTADOS DE PRUEBAS NIVEL 1 SON ACEPTABLES PARA FLUIDO ELC OAT EN SISTEMA DE ENFRIAMIENTO/",
            ),
        )
    segs = []
    if c.get("PAmt") not in (None, "none"):
        kind = "MAGNETICO" if c.get("PProp") == "mag" else "NO MAGNETICO"
        segs.append(f"PRESENCIA DE LEVE PRECIPITADO {kind}")
    if float(c.get("GL") or 0) > 45:
        segs.append("CONCENTRACION DE GLICOL SOBRE LO RECOMENDADO")
    if float(c.get("pH") or 8) < 7.2:
        segs.append("PH BAJO, POSIBLE AGOTAMIENTO DE INHIBIDORES")
    segs += [
        "OTROS ELEMENTOS SE ENCUENTRAN NORMALES",
        "CHEQUEAR ESTADO DE LA BOMBA, TERMOSTATO",
        "MANTENER EN SEGUIMIENTO",
    ]
    return "/ ".join(segs) + "/"


# --------------------------------------------------------------------------------------------
# XLSX writer reproducing the lab exporter's package (inline strings, merged header, POI styles)
# --------------------------------------------------------------------------------------------


def _col_letter(i: int) -> str:
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(65 + r) + s
    return s


def _esc(text: str) -> str:
    # The exporter escapes markup and writes every non-ASCII character as a numeric reference.
    t = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return t.encode("ascii", "xmlcharrefreplace").decode("ascii")


def _excel_serial(v: date | datetime) -> float:
    if not isinstance(v, datetime):
        v = datetime(v.year, v.month, v.day)
    delta = v - _EXCEL_EPOCH
    return delta.days + delta.seconds / 86400


def _num(v: float) -> str:
    return repr(float(v))


def _cell_xml(ref: str, name: str, v: Any, style_header: bool = False) -> str:
    if v is None:
        return f'<c r="{ref}"></c>'
    if style_header:
        return f'<c r="{ref}" s="4" t="inlineStr"><is><t>{_esc(str(v))}</t></is></c>'
    if name in _DATE_COLS:
        return f'<c r="{ref}" s="1" t="n"><v>{_num(_excel_serial(v))}</v></c>'
    if isinstance(v, float | int) and not isinstance(v, bool):
        return f'<c r="{ref}" t="n"><v>{_num(v)}</v></c>'
    text = str(v)
    space = ' xml:space="preserve"' if text != text.strip() else ""
    return f'<c r="{ref}" t="inlineStr"><is><t{space}>{_esc(text)}</t></is></c>'


def _render(name: str, v: Any) -> Any:
    """Lab values are exported as text; meters, dates and numeric fluid weights stay typed."""
    if v is None or name in _DATE_COLS or name in _NUMBER_COLS or name == "Fluid Weight":
        return v
    if isinstance(v, float):
        if name == "TBN":
            return f"{v:.1f}"
        return _fmt_int(v)
    return v


def _sheet_xml(header: list[str], samples: list[_Sample], widths: list[float], tab_selected: bool) -> bytes:
    letters = [_col_letter(i) for i in range(len(header))]
    estado_second = [i for i, h in enumerate(header) if h == "Estado"][1]
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        '<dimension ref="A1"/><sheetViews><sheetView workbookViewId="0"'
        + (' tabSelected="true"' if tab_selected else "")
        + '/></sheetViews><sheetFormatPr defaultRowHeight="15.0"/><cols>'
    ]
    parts += [
        f'<col min="{i + 1}" max="{i + 1}" width="{w}" customWidth="true"/>' for i, w in enumerate(widths)
    ]
    parts.append("</cols><sheetData>\n")
    parts.append('<row r="1">\n')
    parts += [_cell_xml(f"{letters[i]}1", h, h, style_header=True) for i, h in enumerate(header)]
    parts.append("</row>\n")
    for r, s in enumerate(samples, start=3):
        rendered = {k: _render(k, v) for k, v in s.cells.items() if not k.startswith("_")}
        parts.append(f'<row r="{r}">\n')
        for i, name in enumerate(header):
            v = "Nuevo" if i == estado_second else rendered.get(name)
            parts.append(_cell_xml(f"{letters[i]}{r}", name, v))
        parts.append("</row>\n")
    parts.append("</sheetData><mergeCells>")
    parts += [f'<mergeCell ref="{x}1:{x}2"/>' for x in letters]
    parts.append(
        '</mergeCells><pageMargins bottom="0.75" footer="0.3" header="0.3" left="0.7" right="0.7" top="0.75"/>'
        "</worksheet>"
    )
    return "".join(parts).encode("utf-8")


_CONTENT_TYPES = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default ContentType="application/vnd.openxmlformats-package.relationships+xml" Extension="rels"/>
<Default ContentType="application/xml" Extension="xml"/>
<Override ContentType="application/vnd.openxmlformats-officedocument.extended-properties+xml" PartName="/docProps/app.xml"/>
<Override ContentType="application/vnd.openxmlformats-package.core-properties+xml" PartName="/docProps/core.xml"/>
<Override ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml" PartName="/xl/sharedStrings.xml"/>
<Override ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml" PartName="/xl/styles.xml"/>
<Override ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml" PartName="/xl/workbook.xml"/>
<Override ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml" PartName="/xl/worksheets/sheet1.xml"/>
<Override ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml" PartName="/xl/worksheets/sheet2.xml"/>
</Types>"""
_ROOT_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Target="xl/workbook.xml" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"/>
<Relationship Id="rId2" Target="docProps/app.xml" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/extended-properties"/>
<Relationship Id="rId3" Target="docProps/core.xml" Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties"/>
</Relationships>"""
_WB_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Target="sharedStrings.xml" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings"/>
<Relationship Id="rId2" Target="styles.xml" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles"/>
<Relationship Id="rId3" Target="worksheets/sheet1.xml" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet"/>
<Relationship Id="rId4" Target="worksheets/sheet2.xml" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet"/>
</Relationships>"""
_WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    '<workbookPr date1904="false"/><bookViews><workbookView activeTab="0"/></bookViews><sheets>'
    '<sheet name="OIL" r:id="rId3" sheetId="1"/><sheet name="COOLANT" r:id="rId4" sheetId="2"/></sheets></workbook>'
)
_STYLES = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><numFmts count="3">'
    '<numFmt numFmtId="164" formatCode="dd-MMM-yyyy"/><numFmt numFmtId="165" formatCode="HH:mm:ss"/>'
    '<numFmt numFmtId="166" formatCode="dd-MMM-yyyy HH:mm:ss"/></numFmts><fonts count="2"><font><sz val="11.0"/>'
    '<color indexed="8"/><name val="Calibri"/><family val="2"/><scheme val="minor"/></font><font><name val="Calibri"/>'
    '<sz val="11.0"/><b val="true"/></font></fonts><fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="darkGray"/></fill></fills><borders count="1"><border><left/><right/><top/>'
    '<bottom/><diagonal/></border></borders><cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" '
    'borderId="0"/></cellStyleXfs><cellXfs count="5"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="true"/>'
    '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="true"/>'
    '<xf numFmtId="166" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="true"/>'
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="true"/></cellXfs></styleSheet>'
)
_SHARED = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<sst count="0" uniqueCount="0" xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"/>'
)
_APP = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/extended-properties">'
    "<Application>Apache POI</Application></Properties>"
)


def _core(created: datetime) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
        f'<dcterms:created xsi:type="dcterms:W3CDTF">{created:%Y-%m-%dT%H:%M:%SZ}</dcterms:created>\n'
        "<dc:creator>Apache POI</dc:creator>\n</cp:coreProperties>"
    )


def _widths(header: list[str], samples: list[_Sample], n: int = 37) -> list[float]:
    """Column widths of the first ``n`` columns, sized to their content like the exporter does."""
    out = []
    for name in header[:n]:
        longest = max([len(name)] + [len(str(s.cells.get(name) or "")) for s in samples[:200]])
        out.append(min(255.0, round(longest * 1.1 + 2.5, 2)))
    return out


def _sort_rows(samples: list[_Sample]) -> list[_Sample]:
    # Newest first, then the lab's fixed compartment order inside a batch.
    order = {c: i for i, c in enumerate(_ROW_ORDER)}
    return sorted(
        samples,
        key=lambda s: (s.cells["Fecha de laboratorio"], s.day, -order.get(s.comp, 99)),
        reverse=True,
    )


def _write_xlsx(
    path: Path,
    oil_header: list[str],
    oil: list[_Sample],
    coolant_header: list[str],
    coolant: list[_Sample],
    profile: dict[str, Any],
) -> None:
    oil_rows, cool_rows = _sort_rows(oil), _sort_rows(coolant)
    last = max(s.cells["Distribution Date"] for s in oil)
    # Fixed "export" timestamp derived from the data, so the same data gives the same bytes.
    created = (last + timedelta(days=3)).replace(microsecond=0)
    stamp = (created.year, created.month, created.day, created.hour, created.minute, created.second // 2 * 2)
    files = [
        ("_rels/.rels", _ROOT_RELS.encode()),
        ("[Content_Types].xml", _CONTENT_TYPES.encode()),
        ("docProps/app.xml", _APP.encode()),
        ("docProps/core.xml", _core(created).encode()),
        ("xl/sharedStrings.xml", _SHARED.encode()),
        ("xl/styles.xml", _STYLES.encode()),
        ("xl/workbook.xml", _WORKBOOK.encode()),
        ("xl/_rels/workbook.xml.rels", _WB_RELS.encode()),
        ("xl/worksheets/sheet1.xml", _sheet_xml(oil_header, oil_rows, _widths(oil_header, oil_rows), True)),
        (
            "xl/worksheets/sheet2.xml",
            _sheet_xml(coolant_header, cool_rows, _widths(coolant_header, cool_rows), False),
        ),
    ]
    tmp = path.with_suffix(path.suffix + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    tmp.replace(path)
