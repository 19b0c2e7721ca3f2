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
    FLAG_LEVELS,
    LabFileError,
    ReadResult,
    censored_json,
    concat_rejects,
    parse_flags,
    parse_number_cells,
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


def _dates(cells: np.ndarray, index: pd.Index) -> tuple[pd.Series, np.ndarray]:
    """:func:`_to_dates` with a fast path for the usual column of date cells and blanks."""
    if all(v is None or isinstance(v, dt.date) for v in cells):
        return pd.Series(np.array(cells, dtype="datetime64[us]"), index=index), np.zeros(len(cells), bool)
    out, bad = _to_dates(pd.Series(cells, index=index, dtype=object))
    return out, bad.to_numpy(bool)


def _text_value(v):
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    s = str(v).strip()
    return s if s else None


def _text(values) -> pd.Series:
    """Cells → trimmed strings; whole-number floats lose their ``.0`` (Fluid Weight 60.0 → '60')."""
    index = values.index if isinstance(values, pd.Series) else None
    texts = [(v.strip() or None) if type(v) is str else _text_value(v) for v in values]
    return pd.Series(texts, index=index, dtype="string")


def _flags(cells: np.ndarray, index: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """:func:`parse_flags` with a fast path for text cells (the lab's letters) and blanks."""
    if not all(v is None or isinstance(v, str) for v in cells):
        level, bad = parse_flags(pd.Series(cells, index=index, dtype=object))
        return level.to_numpy(float), bad.to_numpy(bool)
    level = np.full(len(cells), np.nan)
    bad = np.zeros(len(cells), dtype=bool)
    for i, v in enumerate(cells):
        if v is None:
            continue
        t = v.strip().upper()
        if t in FLAG_LEVELS:
            level[i] = FLAG_LEVELS[t]
        elif t:
            bad[i] = True
    return level, bad


_SOURCES: dict[tuple[str, str], dict[str, str]] = {}


def _sources(catalog: Catalog, method: str) -> dict[str, str]:
    """``catalog.source_columns`` of this format, computed once per catalog version."""
    key = (catalog.version, method)
    if key not in _SOURCES:
        _SOURCES[key] = catalog.source_columns(LAB_FORMAT, method)
    return _SOURCES[key]


def _is_blank_row(row: list) -> bool:
    return all(v == "" or v is None or (isinstance(v, float) and v != v) for v in row)


def read_finning_workbook(path: str, catalog: Catalog | None = None) -> ReadResult:
    """Read one Finning workbook into tidy samples.

    Raises :class:`LabFileError` when the file as a whole is unusable (not an xlsx, no ``OIL``
    sheet, a required column missing, no data rows). Rows with unusable cells are returned in
    ``rejects`` with the Excel row number, column and reason; every other row is kept.

    The sheet is handled column by column as plain arrays (calamine's rows transposed once), and
    every numeric column is parsed in one pass: a workbook costs little more than calamine's read.
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
    # Excel row numbers of the rows below the header; fully empty rows are skipped and counted.
    empty = [_is_blank_row(r) for r in body]
    kept_rows = [r for r, e in zip(body, empty, strict=True) if not e]
    index = pd.Index([n for n, e in zip(range(2, 2 + len(body)), empty, strict=True) if not e], dtype="int64")
    n_empty = sum(empty)
    coolant = 0
    if COOLANT_SHEET in wb.sheet_names:
        crows = _sheet_rows(wb, name, COOLANT_SHEET)
        coolant = sum(1 for r in crows[1:] if any(str(c).strip() for c in r))
    if not kept_rows:
        raise LabFileError(name, "no sample rows below the header", sheet=OIL_SHEET, row=FIRST_DATA_ROW)
    position = {h: j for j, h in enumerate(header)}
    columns = list(zip(*kept_rows, strict=True))
    cache: dict[str, np.ndarray] = {}

    def cells(column: str) -> np.ndarray:
        """The column's cells as an object array, empty cells as None."""
        if column not in cache:
            a = np.array(columns[position[column]], dtype=object)
            a[a == ""] = None
            cache[column] = a
        return cache[column]

    n = len(index)
    rejects: list[pd.DataFrame] = []
    bad_rows = np.zeros(n, dtype=bool)

    def reject(mask: np.ndarray, column: str, reason: str) -> None:
        nonlocal bad_rows
        mask = mask & ~bad_rows  # one reason per row: the first problem found
        if mask.any():
            rows_at = pd.Series(index[mask], dtype="int64")
            values = pd.Series(cells(column)[mask], dtype=object)
            rejects.append(reject_rows(name, OIL_SHEET, rows_at, column, values, reason))
            bad_rows = bad_rows | mask

    out: dict[str, object] = {}
    for src, dst in TEXT_COLUMNS.items():
        out[dst] = _text(cells(src)) if src in position else pd.Series([None] * n, dtype="string")
    reject(out["sampleNumber"].isna().to_numpy(), "No. de control de laboratorio", "sample number is empty")
    for src, dst in DATE_COLUMNS.items():
        if src in position:
            out[dst], bad = _dates(cells(src), index)
            if dst == "sampleDate":
                reject(out[dst].isna().to_numpy() & ~bad, src, "sample date is empty")
            reject(bad, src, "expected a date")
        else:
            out[dst] = pd.Series(pd.NaT, index=index, dtype="datetime64[us]")
    out["labDate"] = out["reportDate"]

    # Every numeric cell (meters and the copies of each essay column) parsed in one pass.
    by_source: dict[str, list[str]] = {}
    for c in header:  # "Si", "Si.1", "Si.2" are copies of source column "Si"
        base, _, suffix = c.rpartition(".")
        by_source.setdefault(c, []).append(c)
        if base and suffix.isdigit():
            by_source.setdefault(base, []).append(c)
    copies_of = {
        essay: sorted(by_source.get(src, []), key=position.__getitem__)
        for src, essay in _sources(catalog, "percentile").items()
        if src != PARTICLE_FIELD
    }
    numeric = [c for c in METER_COLUMNS if c in position]
    numeric += [c for copies in copies_of.values() for c in copies]
    parsed = {}
    if numeric:
        value, censor, bad = parse_number_cells(np.concatenate([cells(c) for c in numeric]))
        for k, c in enumerate(numeric):
            part = slice(k * n, (k + 1) * n)
            parsed[c] = (value[part], censor[part], bad[part])

    for src, dst in METER_COLUMNS.items():
        if src in position:
            out[dst] = parsed[src][0]
            reject(parsed[src][2], src, "expected a number")
        else:
            out[dst] = np.full(n, np.nan)
    if OIL_CHANGED_COLUMN in position:
        changed = _text(cells(OIL_CHANGED_COLUMN)).str.upper()
        out["oilChanged"] = changed.map({"Y": True, "N": False}).astype("boolean")
    else:
        out["oilChanged"] = pd.array([pd.NA] * n, dtype="boolean")

    # Essays. Repeated element columns (Si, Si.1, Si.2) must agree; the first non-empty wins.
    essays: dict[str, np.ndarray] = {}
    censors: dict[str, pd.Series] = {}
    disagreements: dict[str, int] = {}
    for essay, copies in copies_of.items():
        if not copies:
            essays[essay] = np.full(n, np.nan)
            continue
        value, censor, bad = parsed[copies[0]]
        reject(bad, copies[0], "expected a number")
        for extra in copies[1:]:
            v2, _, bad2 = parsed[extra]
            reject(bad2, extra, "expected a number")
            differ = ~np.isnan(value) & ~np.isnan(v2) & (value != v2)
            if differ.any():
                disagreements[f"{copies[0]}/{extra}"] = int(differ.sum())
                reject(differ, extra, f"repeated column disagrees with {copies[0]!r}")
            value = np.where(np.isnan(value), v2, value)
        essays[essay] = value
        if (censor != "").any():  # the JSON lists censored readings only
            censors[essay] = pd.Series(censor, index=index, dtype="string")
    for src, essay in _sources(catalog, "flag").items():
        if src in position:
            essays[essay], bad = _flags(cells(src), index)
            reject(bad, src, "expected a flag letter N, T, P or E")
        else:
            essays[essay] = np.full(n, np.nan)
    if PARTICLE_FIELD in position:
        particles, bad = parse_particle_column(pd.Series(cells(PARTICLE_FIELD), index=index, dtype=object))
        reject(
            bad.to_numpy(bool),
            PARTICLE_FIELD,
            "expected an ISO 4406 code like 22/19/14 or a visual code like S-M",
        )
    else:
        particles, _ = parse_particle_column(pd.Series(pd.NA, index=index))
    for c in PARTICLE_COLUMNS:
        if c in catalog.table.index:
            essays[c] = particles[c].to_numpy()
        else:
            out[c] = particles[c]

    # ``.array`` keeps the extension dtypes (string, boolean) of the columns built as Series.
    frame = pd.DataFrame(
        {
            **{k: v.array if isinstance(v, pd.Series) else v for k, v in out.items()},
            **{e: essays[e] for e in catalog.essays},
        },
        index=index,
    )
    frame["censoredEssays"] = censored_json(censors, index)
    frame["machineName"] = pd.Series(pd.NA, index=index, dtype="string")
    frame["machineBrand"] = "caterpillar"
    frame["sourceFile"] = name
    frame["sourceRow"] = index.astype("int64")
    kept = frame[~bad_rows].reset_index(drop=True)
    info = {
        "file": name,
        "lab_format": LAB_FORMAT,
        "rows_read": int(n),
        "empty_rows_skipped": int(n_empty),
        "samples": int(len(kept)),
        "rows_rejected": int(bad_rows.sum()),
        "coolant_samples_ignored": int(coolant),
        "repeated_column_disagreements": disagreements,
    }
    return ReadResult(samples=kept, rejects=concat_rejects(rejects), info=info)
