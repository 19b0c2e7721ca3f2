"""Summary statistics of the real lab data that drive the demo generators.

The generators must run without the real files (they are never part of the project), so the
statistics are derived once by :func:`derive_profiles` and shipped as ``profiles.json`` next to
this module. Only aggregates are kept: shares of categories, null and zero shares, and a handful of
quantiles of the non-zero values, rounded to 3 significant digits. No raw row, sample number,
serial or unit id of the real data is stored.

Regenerate after the real data changes (needs ``../shared/data``)::

    uv run python -m oil_analysis.demo.profiles --shared ../shared/data

Sources
- Finning: the ``OIL`` and ``COOLANT`` sheets of the CDA workbooks (one per truck); statistics per
  raw ``Compartimento``.
- ALS: the harmonized EMIN silver reference (21 elements only); statistics per
  (machine type, normalized component). The raw ALS test-slot layout itself is not in that file:
  the generator rebuilds it from DOMAIN.md §1.3.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

PROFILE_VERSION = 1

#: Quantile levels stored for every numeric column (of the non-zero, non-null values).
QUANTILE_LEVELS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98, 0.995)

#: Element columns of the Finning OIL sheet (first occurrence; later duplicates hold the same value).
FINNING_ELEMENTS = (
    "Fe", "Cr", "Al", "Cu", "Pb", "Ni", "Ag", "Sn", "Ti", "V", "Mn",
    "Si", "K", "Na", "Zn", "Ba", "B", "Ca", "Mo", "Mg", "P",
)  # fmt: skip
#: Other numeric Finning OIL columns that carry values in the real files.
FINNING_EXTRA_NUMERIC = (
    "V100", "PQI", "TBN", "ST", "OXI", "NIT", "SUL",
    "4µ", "6µ", "10µ", "14µ", "18µ", "21µ", "38µ", "50µ", "70µ",
    "Total part/ml", "Cutting SD", "Fatigue SD", "Sliding SD", "Non Metallic SD", "Non Metallic",
    "Fatigue", "Fibers",
)  # fmt: skip
#: Particle-count packages of the Finning lab: which size classes each one reports.
PARTICLE_PACKAGES = {
    # Ferrography package (newer): cumulative counts plus severity indices.
    "A": ("4µ", "6µ", "14µ", "21µ", "38µ", "70µ", "Total part/ml", "Cutting SD", "Fatigue SD",
          "Sliding SD", "Non Metallic SD", "Non Metallic", "Fatigue", "Fibers"),
    # Optical counter package (older): finer size classes, no ferrography.
    "B": ("4µ", "6µ", "10µ", "14µ", "18µ", "21µ", "38µ", "50µ"),
}  # fmt: skip

EMIN_ELEMENTS = (
    "Hierro", "Cromo", "Aluminio", "Cobre", "Plomo", "Níquel", "Plata", "Estaño", "Titanio",
    "Vanadio", "Manganeso", "Silicio", "Potasio", "Sodio", "Zinc", "Bario", "Boro", "Calcio",
    "Molibdeno", "Magnesio", "Fósforo",
)  # fmt: skip

_ISO4406 = re.compile(r"^\d{1,2}/\d{1,2}/\d{1,2}$")


# --------------------------------------------------------------------------------------------
# Loading the shipped profile and sampling from it
# --------------------------------------------------------------------------------------------


@cache
def load_profiles() -> dict[str, Any]:
    """The shipped profile (``profiles.json``), parsed once."""
    raw = resources.files("oil_analysis.demo").joinpath("profiles.json").read_text(encoding="utf-8")
    return json.loads(raw)


class Marginal:
    """A one-dimensional distribution rebuilt from a stored summary.

    ``zero`` is the share of exact zeros among non-null values and ``q`` the quantiles (at
    :data:`QUANTILE_LEVELS`) of the non-zero values. :meth:`ppf` maps a uniform ``u`` to a value:
    ``u < zero`` gives 0, the rest is interpolated between the quantile knots (in log space, as
    lab values are right-skewed), with a mild linear extrapolation in the tails.
    """

    def __init__(self, summary: dict[str, Any]):
        self.null = float(summary.get("null", 0.0))
        self.zero = float(summary.get("zero", 0.0))
        q = np.asarray(summary.get("q") or [0.0] * len(QUANTILE_LEVELS), dtype=float)
        q = np.maximum.accumulate(q)
        self.levels = np.asarray(QUANTILE_LEVELS)
        self.q = q
        self.log = bool(np.all(q > 0))
        self._knots = np.log(q) if self.log else q

    def ppf(self, u: np.ndarray | float) -> np.ndarray:
        """Inverse CDF over all non-null values (zeros included)."""
        u = np.clip(np.asarray(u, dtype=float), 1e-6, 1 - 1e-6)
        out = np.zeros_like(u)
        nz = u >= self.zero
        if self.zero < 1:
            v = (u[nz] - self.zero) / (1 - self.zero)
            lv, k = self.levels, self._knots
            # Tails: linear continuation of the first/last segment, capped to stay plausible.
            lo_slope = (k[1] - k[0]) / (lv[1] - lv[0])
            hi_slope = (k[-1] - k[-2]) / (lv[-1] - lv[-2])
            x = np.interp(v, lv, k)
            x = np.where(v < lv[0], k[0] - lo_slope * np.minimum(lv[0] - v, 0.01), x)
            x = np.where(v > lv[-1], k[-1] + hi_slope * np.minimum(v - lv[-1], 0.005), x)
            out[nz] = np.exp(x) if self.log else np.maximum(x, 0.0)
        return out

    def cdf(self, x: float) -> float:
        """Approximate CDF (used to turn a value such as an oil age into a rank)."""
        if x <= 0:
            return self.zero / 2
        k = math.log(x) if self.log else x
        v = float(np.interp(k, self._knots, self.levels))
        return self.zero + (1 - self.zero) * v


# --------------------------------------------------------------------------------------------
# Derivation from the real files (needs ../shared/data; run once, result is shipped)
# --------------------------------------------------------------------------------------------


def _sig(x: float, digits: int = 3) -> float:
    """Round to ``digits`` significant digits (keeps the profile coarse on purpose)."""
    if x == 0 or not math.isfinite(x):
        return 0.0
    return float(f"{x:.{digits}g}")


def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or str(v) in ("NaT", "nan")


def _shares(values: Iterable[Any], min_share: float = 0.0, digits: int = 4) -> dict[str, float]:
    """Category shares, null counted as ``""``; categories rarer than ``min_share`` dropped."""
    counts = Counter("" if _is_null(v) else str(v) for v in values)
    total = sum(counts.values()) or 1
    return {
        k: round(n / total, digits)
        for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if n / total >= min_share
    }


def _numeric_summary(values: Sequence[Any], min_nonzero: int = 5) -> dict[str, Any]:
    """Null share, zero share and quantiles of the non-zero values of one column."""
    n = len(values)
    nums = []
    for v in values:
        if _is_null(v):
            continue
        try:
            nums.append(float(str(v).replace(",", ".")))
        except ValueError:
            continue
    out: dict[str, Any] = {"null": round(1 - len(nums) / n, 4) if n else 1.0, "n": len(nums)}
    if not nums:
        return out
    arr = np.asarray(nums)
    nz = arr[arr != 0]
    out["zero"] = round(1 - len(nz) / len(arr), 4)
    if len(nz) >= min_nonzero:
        out["q"] = [_sig(x) for x in np.quantile(np.abs(nz), QUANTILE_LEVELS)]
    elif len(nz):
        out["q"] = [_sig(float(np.median(np.abs(nz))))] * len(QUANTILE_LEVELS)
    return out


def _read_sheet(path: Path, sheet: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    import openpyxl

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Workbook contains no default style"
        wb = openpyxl.load_workbook(path, read_only=True)
        ws = wb[sheet]
        ws.reset_dimensions()  # the lab's files declare a 1x1 dimension
        rows = list(ws.iter_rows(values_only=True))
        wb.close()
    header = [str(h) for h in rows[0]]
    return header, [r for r in rows[2:] if any(v is not None for v in r)]


def _quantiles_of(values: Iterable[float]) -> list[float]:
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    return [_sig(x) for x in np.quantile(arr, QUANTILE_LEVELS)] if len(arr) else []


def _derive_finning(finning_dir: Path) -> dict[str, Any]:
    import pandas as pd

    files = sorted(finning_dir.glob("T-*.xlsx"))
    if not files:
        raise FileNotFoundError(f"no Finning workbooks in {finning_dir}")
    oil_header: list[str] | None = None
    cool_header: list[str] | None = None
    oil_rows: list[tuple[Any, ...]] = []
    cool_rows: list[tuple[Any, ...]] = []
    trucks: list[dict[str, Any]] = []
    for f in files:
        h, rows = _read_sheet(f, "OIL")
        ch, crows = _read_sheet(f, "COOLANT")
        if oil_header is None:
            oil_header, cool_header = h, ch
        if h != oil_header or ch != cool_header:
            raise ValueError(f"{f.name}: header differs from the first workbook")
        oil_rows += rows
        cool_rows += crows
        idx = {name: i for i, name in reversed(list(enumerate(h)))}
        dates = [r[idx["Fecha de Toma de Muestra"]] for r in rows]
        hours = [r[idx["Horas"]] for r in rows]
        span = (max(dates) - min(dates)).days
        valid = sorted((d, x) for d, x in zip(dates, hours, strict=True) if x)
        trucks.append(
            {
                "samples_per_year": len(rows) / max(span, 1) * 365.25,
                "hours_per_day": (valid[-1][1] - valid[0][1]) / max((valid[-1][0] - valid[0][0]).days, 1),
                "coolant_per_year": len(crows) / max(span, 1) * 365.25,
            }
        )
    assert oil_header is not None and cool_header is not None
    first = {name: i for i, name in reversed(list(enumerate(oil_header)))}
    df = pd.DataFrame([[r[first[c]] for c in first] for r in oil_rows], columns=list(first))
    # The second "Estado" is the sample state, not the verdict.
    df["Estado.1"] = [r[[i for i, n in enumerate(oil_header) if n == "Estado"][1]] for r in oil_rows]
    comp = df["Compartimento"]
    date = pd.to_datetime(df["Fecha de Toma de Muestra"])
    has_a = df["Total part/ml"].notna()
    has_b = df["10µ"].notna() & ~has_a
    switch = pd.Timestamp(date[has_a].min()) if has_a.any() else pd.Timestamp("2099-01-01")

    def iso_kind(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        return "iso4406" if _ISO4406.match(str(v)) else str(v)

    components: dict[str, Any] = {}
    for name, g in df.groupby(comp, sort=True):
        gi = g.index
        before = date[gi] < switch
        no_pkg = ~(has_a[gi] | has_b[gi])
        gd = date[gi].sort_values()
        # Gaps between consecutive samples of the same truck and compartment.
        gaps = (
            pd.DataFrame({"u": g["ID de equipo"], "d": date[gi]})
            .sort_values(["u", "d"])
            .groupby("u")["d"]
            .diff()
            .dt.days.dropna()
            .astype(float)
        )
        per_comp: dict[str, Any] = {
            "share": round(len(g) / len(df), 4),
            "columns": {c: _numeric_summary(list(g[c])) for c in FINNING_ELEMENTS + FINNING_EXTRA_NUMERIC},
            "flags": {f: _shares(g[f]) for f in ("W", "A", "F")},
            "iso_visual": _shares(g.loc[no_pkg, "ISO"].map(iso_kind), min_share=0.0),
            "iso_codes": {
                k: _numeric_summary(
                    [str(v).split("/")[i] for v in g["ISO"].dropna() if _ISO4406.match(str(v))]
                )
                for i, k in enumerate(("r4", "r6", "r14"))
            },
            "particle_package": {
                "before_switch": {
                    "B": round(float(has_b[gi][before].mean()), 3) if before.any() else 0.0,
                },
                "after_switch": {
                    "A": round(float(has_a[gi][~before].mean()), 3) if (~before).any() else 0.0,
                    "B": round(float(has_b[gi][~before].mean()), 3) if (~before).any() else 0.0,
                },
            },
            "fluids": [
                [b, t, w, round(n / len(g), 4)]
                for (b, t, w), n in Counter(
                    zip(
                        g["Fluid Brand"].map(lambda v: None if pd.isna(v) else v),
                        g["Fluid Type"].map(lambda v: None if pd.isna(v) else v),
                        g["Fluid Weight"].map(lambda v: None if pd.isna(v) else v),
                        strict=True,
                    )
                ).most_common()
                if n / len(g) >= 0.01
            ],
            "meter_on_fluid": _numeric_summary(list(g["Meter on Fluid"])),
            "component_meter_null": round(float(g["Component Meter"].isna().mean()), 4),
            "fluid_changed": _shares(g["Fluido Cambiado"]),
            "estado": _shares(g["Estado"]),
            "interval_days": _quantiles_of(gaps),
            "first_sample_offset_days": int((gd.min() - date.min()).days),
            # Only the lab's own package notes; other notes may carry part or serial numbers.
            "notas": {k: v for k, v in _shares(g["Notas"]).items() if k.startswith(("TBN", "FERROGRAFIA"))},
        }
        components[str(name)] = per_comp

    iv = df["Interpretacion"].astype(str)
    lab_lag = (pd.to_datetime(df["Fecha de laboratorio"]) - date).dt.days.astype(float)
    dist_lag = (
        pd.to_datetime(df["Distribution Date"]) - pd.to_datetime(df["Fecha de laboratorio"])
    ).dt.total_seconds() / 86400

    v100 = [str(v) for v in df["V100"].dropna()]
    v100_decimals = _shares([len(s.split(".")[1]) if "." in s else 0 for s in v100])

    # Per-truck sampling pace and machine-hours rate (averaged, not per truck).
    spy = float(np.mean([t["samples_per_year"] for t in trucks]))
    hpd = float(np.mean([t["hours_per_day"] for t in trucks]))
    cpy = float(np.mean([t["coolant_per_year"] for t in trucks]))

    cfirst = {name: i for i, name in reversed(list(enumerate(cool_header)))}
    cdf = pd.DataFrame([[r[cfirst[c]] for c in cfirst] for r in cool_rows], columns=list(cfirst))
    coolant_cols: dict[str, Any] = {}
    for c in dict.fromkeys(cool_header[37:]):
        vals = list(cdf[c])
        if all(_is_null(v) for v in vals):
            continue
        nums = _numeric_summary(vals, min_nonzero=3)
        if nums.get("n", 0) == sum(not _is_null(v) for v in vals):
            strs = [str(v) for v in vals if v is not None]
            nums["decimals"] = max((len(s.split(".")[1]) if "." in s else 0) for s in strs)
            nums["negative"] = all(s.startswith("-") for s in strs)
            coolant_cols[c] = nums
        else:
            coolant_cols[c] = {
                "null": round(float(np.mean([_is_null(v) for v in vals])), 4),
                "cats": _shares(vals),
            }
    coolant = {
        "columns": coolant_cols,
        "estado": _shares(cdf["Estado"]),
        "fluids": [
            [b, t, round(n / len(cdf), 4)]
            for (b, t), n in Counter(zip(cdf["Fluid Brand"], cdf["Fluid Type"], strict=True)).most_common()
        ],
        "per_year": round(cpy, 2),
    }

    return {
        "oil_header": oil_header,
        "coolant_header": cool_header,
        "constants": {
            c: df[c].dropna().mode().iloc[0]
            for c in (
                "Meter Units",
                "Nombre del Distribuidor",
                "Nombre del Cliente",
                "Sitio de Trabajo",
                "UCID",
                "Kidney Loop",
                "Sample Activity",
                "Install Meter",
                "Estado.1",
            )
        },  # fmt: skip
        "filter_changed": _shares(df["Filtro Cambiado"]),
        "etiqueta": _shares(df["No. de Etiqueta"], min_share=0.005),
        "created_on_share": round(float(df["Created on"].notna().mean()), 4),
        "components": components,
        "particle_switch_date": switch.strftime("%Y-%m-%d"),
        "lab_lag_days": _quantiles_of(lab_lag),
        "distribution_lag_days": _quantiles_of(dist_lag),
        "samples_per_year": round(spy, 1),
        "machine_hours_per_day": round(hpd, 2),
        "hours_null": round(float(df["Horas"].isna().mean()), 4),
        "estado": _shares(df["Estado"]),
        "estado_by_w": {w: _shares(g["Estado"]) for w, g in df.groupby("W")},
        "normal_texts": _shares(iv[df["Estado"] == "No se requiere acción"], min_share=0.02),
        "v100_decimals": v100_decimals,
        "coolant": coolant,
    }


def _derive_emin(emin_path: Path) -> dict[str, Any]:
    import pandas as pd

    df = pd.read_parquet(emin_path)
    types: dict[str, Any] = {}
    for mt, g in df.groupby("machineName", sort=True):
        units = g.groupby("unitId")
        per_unit = g.drop_duplicates("unitId")
        types[str(mt)] = {
            "units": int(g["unitId"].nunique()),
            "samples": len(g),
            "makers_models": [
                [b, m, int(n)]
                for (b, m), n in Counter(
                    zip(per_unit["machineBrand"], per_unit["machineModel"], strict=True)
                ).most_common()
            ],
            # share of units that have the component at all, and its raw names
            "components": {
                str(c): {
                    "unit_share": round(gc["unitId"].nunique() / g["unitId"].nunique(), 3),
                    "names": _shares(gc["componentName"]),
                    "samples_per_unit": _sig(len(gc) / gc["unitId"].nunique()),
                }
                for c, gc in g.groupby("componentNameNormalized", sort=True)
            },
            # ALS sends the equipment's current meter with every sample: one value per unit.
            "machine_hours": _quantiles_of(units["machineHours"].max().astype(float)),
        }
    essays: dict[str, Any] = {}
    for key, g in list(df.groupby(["machineName", "componentNameNormalized"])) + list(
        df.groupby(["componentNameNormalized"])
    ):
        k = (
            "|".join(key)
            if isinstance(key, tuple) and len(key) == 2
            else str(key[0] if isinstance(key, tuple) else key)
        )
        if len(g) < 30:
            continue
        essays[k] = {"n": len(g), **{e: _numeric_summary(list(g[e])) for e in EMIN_ELEMENTS}}
    essays["*"] = {"n": len(df), **{e: _numeric_summary(list(df[e])) for e in EMIN_ELEMENTS}}
    oil: dict[str, Any] = {}
    for c, g in df.groupby("componentNameNormalized", sort=True):
        oil[str(c)] = {
            "brands": _shares(g["oilBrand"], min_share=0.01),
            "types": _shares(g["oilType"], min_share=0.01),
            "meter": _numeric_summary(list(g["oilMeter"])),
        }
    days = df.loc[df["daysSincePrevious"] > 0, "daysSincePrevious"].astype(float)
    ts = pd.to_datetime(df["sampleDate"])
    return {
        # Share of sample dates sent as local midnight in UTC (03:00/04:00) rather than 00:00 UTC,
        # before and after the change observed in mid-2024.
        "local_midnight_share": {
            "before_2024_07": round(float((ts[ts < "2024-07-01"].dt.hour > 0).mean()), 3),
            "after_2024_07": round(float((ts[ts >= "2024-07-01"].dt.hour > 0).mean()), 3),
        },
        "machine_types": types,
        "essays": essays,
        "oil": oil,
        "days_between": _quantiles_of(days),
        "date_range": [
            df["sampleDate"].min().strftime("%Y-%m-%d"),
            df["sampleDate"].max().strftime("%Y-%m-%d"),
        ],
        "samples": len(df),
        "units": int(df["unitId"].nunique()),
    }


def derive_profiles(shared_data: Path) -> dict[str, Any]:
    """Derive the generator profile from the real data under ``shared_data``.

    ``shared_data`` is the folder holding ``finning/T-*.xlsx`` and
    ``emin/EMIN_silver_reference.parquet``. Returns the JSON-serializable profile.
    """
    return {
        "version": PROFILE_VERSION,
        "quantile_levels": list(QUANTILE_LEVELS),
        "finning": _derive_finning(shared_data / "finning"),
        "emin": _derive_emin(shared_data / "emin" / "EMIN_silver_reference.parquet"),
    }


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def write_profiles(profile: dict[str, Any], path: Path) -> None:
    """Write ``profile`` as stable, human-diffable JSON."""
    text = json.dumps(_jsonable(profile), ensure_ascii=False, indent=1)
    # Keep lists of scalars on one line so the file stays short and diffable.
    text = re.sub(
        r"\[\s*([^\[\]{}]*?)\s*\]", lambda m: "[" + re.sub(r"\s*\n\s*", " ", m.group(1)) + "]", text
    )
    path.write_text(text + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: re-derive ``profiles.json`` from the real data."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shared", type=Path, default=Path("../shared/data"), help="folder with finning/ and emin/"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("profiles.json"))
    args = parser.parse_args(argv)
    write_profiles(derive_profiles(args.shared), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
