"""Finning (Cat S·O·S) lab workbooks → tidy samples.

Format facts (DOMAIN.md §1.1): one workbook per unit, sheets ``OIL`` and ``COOLANT``; row 1 is the
header and row 2 is empty; element columns appear two or three times under the same name (their
values must agree: we keep one); W/A/F are letter flags; ``ISO`` mixes ISO 4406 codes and visual
particle codes; ``Estado`` (first of two) is the lab verdict, ``Interpretacion`` its text.

The ``COOLANT`` sheet is not oil: it is ignored and its sample count reported in ``info``.
"""

from __future__ import annotations

import datetime as dt
import os
import zipfile

import numpy as np
import pandas as pd
from python_calamine import CalamineError, CalamineWorkbook

from ..catalog import Catalog, load_catalog
from .common import (
    LabFileError,
    ReadResult,
    censored_json,
    concat_rejects,
    parse_flags,
    parse_numbers,
    reject_rows,
)
from .particles import PARTICLE_COLUMNS, parse_particle_column

LAB_FORMAT = "finning_xlsx"
OIL_SHEET = "OIL"
COOLANT_SHEET = "COOLANT"
FIRST_DATA_ROW = 3  # Excel row numbers: 1 header, 2 always empty

# Finning column → tidy column (text and meters; essays come from the catalog).
TEXT_COLUMNS = {
    "No. de control de laboratorio": "sampleNumber",
    "ID de equipo": "unitId",
    "Model": "machineModel",
    "No. de serie del equipo": "machineSerialNumber",
    "Compartimento": "componentName",
    "Component Serial Number": "componentSerialNumber",
    "Fluid Brand": "oilBrand",
    "Fluid Type": "oilType",
    "Fluid Weight": "oilWeight",
    "Sitio de Trabajo": "site",
    "Estado": "labVerdict",
    "Interpretacion": "labComment",
}
DATE_COLUMNS = {
    "Fecha de Toma de Muestra": "sampleDate",
    "Fecha de laboratorio": "reportDate",
}
METER_COLUMNS = {
    "Horas": "machineHours",
    "Component Meter": "componentHours",
    "Meter on Fluid": "oilMeter",
}
OIL_CHANGED_COLUMN = "Fluido Cambiado"
REQUIRED = ["No. de control de laboratorio", "Fecha de Toma de Muestra", "ID de equipo", "Compartimento"]
PARTICLE_FIELD = "ISO"


def _dedupe_header(header: list) -> list[str]:
    """Name repeated headers like pandas does (``Si``, ``Si.1``, ``Si.2``)."""
    seen: dict[str, int] = {}
    out = []
    for h in header:
        name = str(h).strip().lstrip("\ufeff")
        n = seen.get(name, 0)
        seen[name] = n + 1
        out.append(name if n == 0 else f"{name}.{n}")
    return out


def _open(path: str) -> CalamineWorkbook:
    name = os.path.basename(path)
    if os.path.getsize(path) == 0:
        raise LabFileError(name, "the file is empty (0 bytes); expected an .xlsx workbook")
    try:
        return CalamineWorkbook.from_path(path)
    except (CalamineError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise LabFileError(name, f"not a readable .xlsx workbook ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # calamine raises its own classes for broken zip members
        raise LabFileError(name, f"not a readable .xlsx workbook ({type(exc).__name__}: {exc})") from None


def _sheet_rows(wb: CalamineWorkbook, name: str, sheet: str) -> list[list]:
    try:
        return wb.get_sheet_by_name(sheet).to_python(skip_empty_area=False)
    except Exception as exc:
        raise LabFileError(name, f"sheet cannot be read ({type(exc).__name__}: {exc})", sheet=sheet) from None


def _to_dates(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Excel cells → naive timestamps. Returns ``(dates, bad)``; text dates are read day-first."""
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
    blank = values.isna() | values.astype("string").str.strip().isin(["", "nan"])
    is_dt = values.map(lambda v: isinstance(v, dt.date))
    if is_dt.any():
        out.loc[is_dt] = pd.to_datetime(values[is_dt].map(lambda v: pd.Timestamp(v)))
    rest = ~is_dt & ~blank
    if rest.any():
        out.loc[rest] = pd.to_datetime(values[rest].astype(str), errors="coerce", dayfirst=True)
    bad = ~blank & out.isna()
    return out, bad


def _text(values: pd.Series) -> pd.Series:
    """Cells → trimmed strings; whole-number floats lose their ``.0`` (Fluid Weight 60.0 → '60')."""

    def one(v):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return pd.NA
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        s = str(v).strip()
        return s if s else pd.NA

    return values.map(one).astype("string")


def read_finning_workbook(path: str, catalog: Catalog | None = None) -> ReadResult:
    """Read one Finning workbook into tidy samples.

    Raises :class:`LabFileError` when the file as a whole is unusable (not an xlsx, no ``OIL``
    sheet, a required column missing, no data rows). Rows with unusable cells are returned in
    ``rejects`` with the Excel row number, column and reason; every other row is kept.
    """
    catalog = catalog or load_catalog()
    name = os.path.basename(path)
    wb = _open(path)
    if OIL_SHEET not in wb.sheet_names:
        raise LabFileError(name, f"no sheet {OIL_SHEET!r}; sheets are {wb.sheet_names}", sheet=OIL_SHEET)
    rows = _sheet_rows(wb, name, OIL_SHEET)
    if not rows or not any(str(c).strip() for c in rows[0]):
        raise LabFileError(name, "the sheet is empty; expected a header row", sheet=OIL_SHEET, row=1)
    header = _dedupe_header(rows[0])
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise LabFileError(
            name,
            f"required column missing; expected a header named {missing[0]!r}",
            sheet=OIL_SHEET,
            row=1,
            column=missing[0],
        )
    width = len(header)
    body = [r + [""] * (width - len(r)) if len(r) < width else r[:width] for r in rows[1:]]
    raw = pd.DataFrame(body, columns=header, dtype=object)
    raw.index = pd.RangeIndex(2, 2 + len(raw))  # Excel row numbers
    raw = raw.replace("", None)
    empty = raw.isna().all(axis=1)
    raw = raw[~empty]
    coolant = 0
    if COOLANT_SHEET in wb.sheet_names:
        crows = _sheet_rows(wb, name, COOLANT_SHEET)
        coolant = sum(1 for r in crows[1:] if any(str(c).strip() for c in r))
    if raw.empty:
        raise LabFileError(name, "no sample rows below the header", sheet=OIL_SHEET, row=FIRST_DATA_ROW)

    rejects: list[pd.DataFrame] = []
    rownum = pd.Series(raw.index, index=raw.index)
    bad_rows = pd.Series(False, index=raw.index)

    def reject(mask: pd.Series, column: str, reason: str) -> None:
        nonlocal bad_rows
        mask = mask & ~bad_rows  # one reason per row: the first problem found
        if mask.any():
            rejects.append(reject_rows(name, OIL_SHEET, rownum[mask], column, raw.loc[mask, column], reason))
            bad_rows = bad_rows | mask

    out = pd.DataFrame(index=raw.index)
    for src, dst in TEXT_COLUMNS.items():
        out[dst] = _text(raw[src]) if src in raw else pd.Series(pd.NA, index=raw.index, dtype="string")
    reject(out["sampleNumber"].isna(), "No. de control de laboratorio", "sample number is empty")
    for src, dst in DATE_COLUMNS.items():
        if src in raw:
            out[dst], bad = _to_dates(raw[src])
            if dst == "sampleDate":
                reject(out[dst].isna() & ~bad, src, "sample date is empty")
            reject(bad, src, "expected a date")
        else:
            out[dst] = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us]")
    out["labDate"] = out["reportDate"]
    for src, dst in METER_COLUMNS.items():
        if src in raw:
            out[dst], _, bad = parse_numbers(raw[src])
            reject(bad, src, "expected a number")
        else:
            out[dst] = np.nan
    if OIL_CHANGED_COLUMN in raw:
        changed = _text(raw[OIL_CHANGED_COLUMN]).str.upper()
        out["oilChanged"] = changed.map({"Y": True, "N": False}).astype("boolean")
    else:
        out["oilChanged"] = pd.Series(pd.NA, index=raw.index, dtype="boolean")

    # Essays. Repeated element columns (Si, Si.1, Si.2) must agree; the first non-empty wins.
    essays: dict[str, pd.Series] = {}
    censors: dict[str, pd.Series] = {}
    disagreements: dict[str, int] = {}
    for src, essay in catalog.source_columns(LAB_FORMAT, "percentile").items():
        if src == PARTICLE_FIELD:
            continue
        copies = [
            c for c in raw.columns if c == src or (c.startswith(src + ".") and c[len(src) + 1 :].isdigit())
        ]
        if not copies:
            essays[essay] = pd.Series(np.nan, index=raw.index)
            continue
        value, censor, bad = parse_numbers(raw[copies[0]])
        reject(bad, copies[0], "expected a number")
        for extra in copies[1:]:
            v2, _, bad2 = parse_numbers(raw[extra])
            reject(bad2, extra, "expected a number")
            differ = value.notna() & v2.notna() & (value != v2)
            if differ.any():
                disagreements[f"{copies[0]}/{extra}"] = int(differ.sum())
                reject(differ, extra, f"repeated column disagrees with {copies[0]!r}")
            value = value.fillna(v2)
        essays[essay], censors[essay] = value, censor
    for src, essay in catalog.source_columns(LAB_FORMAT, "flag").items():
        if src in raw:
            essays[essay], bad = parse_flags(raw[src])
            reject(bad, src, "expected a flag letter N, T, P or E")
        else:
            essays[essay] = pd.Series(np.nan, index=raw.index)
    if PARTICLE_FIELD in raw:
        particles, bad = parse_particle_column(raw[PARTICLE_FIELD])
        reject(bad, PARTICLE_FIELD, "expected an ISO 4406 code like 22/19/14 or a visual code like S-M")
    else:
        particles, _ = parse_particle_column(pd.Series(pd.NA, index=raw.index))
    for c in PARTICLE_COLUMNS:
        if c in catalog.table.index:
            essays[c] = particles[c]
        else:
            out[c] = particles[c]

    out = pd.concat([out, pd.DataFrame(essays, index=raw.index)[catalog.essays]], axis=1)
    out["censoredEssays"] = censored_json(censors, raw.index)
    out["machineName"] = pd.Series(pd.NA, index=raw.index, dtype="string")
    out["machineBrand"] = "caterpillar"
    out["sourceFile"] = name
    out["sourceRow"] = raw.index.astype("int64")
    kept = out[~bad_rows].reset_index(drop=True)
    info = {
        "file": name,
        "lab_format": LAB_FORMAT,
        "rows_read": int(len(raw)),
        "empty_rows_skipped": int(empty.sum()),
        "samples": int(len(kept)),
        "rows_rejected": int(bad_rows.sum()),
        "coolant_samples_ignored": int(coolant),
        "repeated_column_disagreements": disagreements,
    }
    return ReadResult(samples=kept, rejects=concat_rejects(rejects), info=info)
