"""Finning (Cat S·O·S) lab workbooks → tidy samples.

Format facts (DOMAIN.md §1.1): one workbook per unit, sheets ``OIL`` and ``COOLANT``; row 1 is the
header and row 2 is empty; element columns appear two or three times under the same name (their
values must agree: we keep one); W/A/F are letter flags; ``ISO`` mixes ISO 4406 codes and visual
particle codes; ``Estado`` (first of two) is the lab verdict, ``Interpretacion`` its text.

The ``COOLANT`` sheet is not oil: it is ignored and its sample count reported in ``info``.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
import operator
import os
import pickle
import zipfile
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from python_calamine import CalamineError, CalamineWorkbook

from ..catalog import Catalog, load_catalog
from .common import (
    CELL_CLEARED,
    EXCEL_ERRORS,
    LabFileError,
    ReadResult,
    RowCache,
    by_value,
    censored_json,
    concat_rejects,
    excel_error,
    flag_value,
    identifier_text,
    ledger_types,
    parse_dates,
    parse_number_cells,
    reject_rows,
)
from .particles import PARTICLE_COLUMNS, parse_particle_column
from .xlsx_guard import MAX_ERROR_CELLS, scan_workbook
from .xlsx_rows import (
    SheetHead,
    SheetRows,
    mini_workbook,
    part_head,
    sheet_head,
    split,
    split_earlier,
    workbook_head,
)

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
SAMPLE_NUMBER = "No. de control de laboratorio"
# The identity of a sample besides its date: an invalid one rejects the sample, nothing else does.
IDENTITY_TEXT = {SAMPLE_NUMBER: "sampleNumber", "ID de equipo": "unitId", "Compartimento": "componentName"}
IDENTITY_EMPTY = {
    "sampleNumber": "sample number is empty",
    "unitId": "unit (ID de equipo) is empty",
    "componentName": "component (Compartimento) is empty",
}
# Defaults of OIL_MAX_SHEET_XML_MB / OIL_MAX_SHEET_CELLS (the real sheets: ~5 MB, ~200,000 cells).
DEFAULT_MAX_XML_MB = 256.0
DEFAULT_MAX_CELLS = 5_000_000
PARTICLE_FIELD = "ISO"
# Bump when a row's parse changes in a way the catalog version does not show (drops the row caches).
ROW_CACHE_VERSION = "finning-rows-3"
_DISAGREES = "repeated column disagrees with "
# A re-send's samples are joined from at most this many slices of the earlier and parsed rows.
_MAX_RUNS = 16


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _row_digests(rows: list) -> list[str]:
    """A digest of each raw row (the cells it reads): their types and values exactly (``1``,
    ``1.0``, ``True`` and ``"1"`` differ, a date differs from a datetime), the same in every process
    and run.

    The row is pickled in fast mode (no memo): the bytes depend on the cells' types and values only,
    never on which cells happen to share one object. About three times cheaper than ``repr``.
    """
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=5)
    pickler.fast = True
    out = []
    for r in rows:
        buf.seek(0)
        buf.truncate()
        pickler.dump(r)
        with buf.getbuffer() as view:
            out.append(hashlib.blake2b(view, digest_size=16).hexdigest())
    return out


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


def _all_dates(cells) -> bool:
    """True when a column holds only date cells and blanks (the fast path of :func:`_dates`)."""
    return all(v is None or v == "" or isinstance(v, dt.date) for v in cells)


def _dates(cells: np.ndarray, index: pd.Index, fast: bool | None = None) -> tuple[pd.Series, np.ndarray]:
    """Date cells → naive timestamps and the problem of each bad cell (None when fine).

    Fast path for the usual column of date cells and blanks; any other physical type (text in
    day-first or ISO form, Excel serial or epoch numbers) goes through :func:`parse_dates`.
    ``fast``: the path chosen over the whole column (when only some of its rows are parsed here).
    """
    if fast if fast is not None else _all_dates(cells):
        out = pd.Series(np.array(cells, dtype="datetime64[us]"), index=index)
        return out, np.full(len(cells), None, dtype=object)
    out, problem = parse_dates(pd.Series(cells, index=index, dtype=object))
    return out, problem.to_numpy(dtype=object)


def _text_value(v):
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    s = str(v).strip()
    return s if s else None


def _text_cell(v):
    """A cell as text: trimmed; a whole-number float loses its ``.0`` (Fluid Weight 60.0 → '60')."""
    return (v.strip() or None) if type(v) is str else _text_value(v)


def _present(problem: np.ndarray) -> np.ndarray:
    """Mask of the cells with a problem (a reason, not None)."""
    return np.not_equal(problem, None)


def _strings(texts: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """str/None cells → the ``string`` array pandas would build (its Arrow storage directly: the
    cells are already text, pandas' per-cell check is not needed)."""
    if pd.StringDtype().storage != "pyarrow":
        return pd.array(texts, dtype="string")
    return pd.arrays.ArrowStringArray(pa.array(texts, type=pa.large_string(), from_pandas=False))


def _flags(cells: np.ndarray, index: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """:func:`parse_flags` as arrays: ``(level, problem)``, by distinct value."""
    pairs = by_value(cells, flag_value)
    level = np.fromiter((p[0] for p in pairs), dtype=float, count=len(pairs))
    problem = np.empty(len(pairs), dtype=object)
    problem[:] = [p[1] for p in pairs]
    return level, problem


def _text_and_error(v) -> tuple[str | None, str | None]:
    return _text_cell(v), _text_error(v)


def _oil_changed(v) -> bool | None:
    """``Fluido Cambiado``: Y → True, N → False (any case, trimmed), anything else unknown."""
    text = _text_cell(v)
    return None if text is None else _YES_NO.get(text.upper())


_YES_NO = {"Y": True, "N": False}


def _text_error(v) -> str | None:
    """The problem of a text cell: an Excel error only (any other text is a valid text)."""
    if type(v) is str and v.lstrip()[:1] == "#":
        err = excel_error(v)
        if err:
            return f"Excel error cell {err}"
    return None


_SOURCES: dict[tuple[str, str], dict[str, str]] = {}


def _sources(catalog: Catalog, method: str) -> dict[str, str]:
    """``catalog.source_columns`` of this format, computed once per catalog version."""
    key = (catalog.version, method)
    if key not in _SOURCES:
        _SOURCES[key] = catalog.source_columns(LAB_FORMAT, method)
    return _SOURCES[key]


_COPIES: dict[tuple, dict[str, list[str]]] = {}


def _essay_copies(header: list[str], catalog: Catalog) -> dict[str, list[str]]:
    """Essay → the header's copies of its source column, in sheet order (``Si``, ``Si.1``...);
    computed once per header and catalog version (a lab's workbooks share one header)."""
    key = (catalog.version, tuple(header))
    if key not in _COPIES:
        if len(_COPIES) > 64:
            _COPIES.clear()
        _COPIES[key] = _copies(header, catalog)
    return {essay: list(copies) for essay, copies in _COPIES[key].items()}


def _copies(header: list[str], catalog: Catalog) -> dict[str, list[str]]:
    position = {h: j for j, h in enumerate(header)}
    by_source: dict[str, list[str]] = {}
    for c in header:  # "Si", "Si.1", "Si.2" are copies of source column "Si"
        base, _, suffix = c.rpartition(".")
        by_source.setdefault(c, []).append(c)
        if base and suffix.isdigit():
            by_source.setdefault(base, []).append(c)
    return {
        essay: sorted(by_source.get(src, []), key=position.__getitem__)
        for src, essay in _sources(catalog, "percentile").items()
        if src != PARTICLE_FIELD
    }


def _columns_read(header: list[str], catalog: Catalog, copies_of: dict[str, list[str]]) -> list[str]:
    """The header's columns a row's parse reads, in sheet order: its result depends on these only."""
    read = {*TEXT_COLUMNS, *DATE_COLUMNS, *METER_COLUMNS, OIL_CHANGED_COLUMN, PARTICLE_FIELD}
    read |= set(_sources(catalog, "flag")) | {c for copies in copies_of.values() for c in copies}
    return [h for h in header if h in read]


def _is_blank_row(row: list) -> bool:
    return all(v == "" or v is None or (isinstance(v, float) and v != v) for v in row)


@dataclass
class _Rows:
    """The sheet's rows as a parse works on them, however they were read."""

    header: list[str]  # the OIL header (repeated names made unique)
    named: int  # how many of its columns have a name (the rest: empty cells up to the widest row)
    index: pd.Index  # Excel row of each non-blank row
    picked: list  # its cells of the columns read (None: a row known from the XML row cache)
    hashes: list[str]  # its digest (:func:`_row_digests`)
    dates: list[int]  # its date bits (:func:`_date_bits`)
    n_empty: int
    coolant: int
    read: int  # rows below the header python-calamine read
    xml: pd.DataFrame | None = None  # the XML row table of this parse (``key``, ``hash``, ``flags``)


def _date_bits(picked: list, at: dict[str, int]) -> list[int]:
    """Per row, bit k set when its cell of the k-th date column is a date or blank (the test of
    :func:`_all_dates`, row by row: a column-wide choice recomputed from any subset of rows)."""
    cols = [(k, at[src]) for k, src in enumerate(DATE_COLUMNS) if src in at]
    return [
        sum(1 << k for k, j in cols if (v := r[j]) is None or v == "" or isinstance(v, dt.date))
        for r in picked
    ]


def _date_fast(bits: list[int], at: dict[str, int]) -> dict[str, bool]:
    everywhere = functools.reduce(operator.and_, bits, -1)
    return {src: bool(everywhere >> k & 1) for k, src in enumerate(DATE_COLUMNS) if src in at}


def _named(raw_header: list) -> int:
    """The header's columns up to its last named one (python-calamine pads the header row with
    empty cells up to the widest row: those depend on other rows and no row's parse reads them)."""
    k = len(raw_header)
    while k and not str(raw_header[k - 1]).strip().lstrip("\ufeff"):
        k -= 1
    return k


def _header(name: str, raw: list) -> list[str]:
    if not raw or not any(str(c).strip() for c in raw):
        raise LabFileError(name, "the sheet is empty; expected a header row", sheet=OIL_SHEET, row=1)
    header = _dedupe_header(raw)
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise LabFileError(
            name,
            f"required column missing; expected a header named {missing[0]!r}",
            sheet=OIL_SHEET,
            row=1,
            column=missing[0],
        )
    return header


def _error_code(code: str) -> str:
    return code if code.upper() in EXCEL_ERRORS else f"#{code.lstrip('#')}"


def _coolant(wb: CalamineWorkbook, name: str) -> int:
    if COOLANT_SHEET not in wb.sheet_names:
        return 0
    crows = _sheet_rows(wb, name, COOLANT_SHEET)
    return sum(1 for r in crows[1:] if any(str(c).strip() for c in r))


def _row_flags(blank: bool, dates: int = 0) -> int:
    """A row of the XML row table: bit 0 blank, the date bits above."""
    return int(blank) | dates << 1


def _read_full(path: str, name: str, oil_scan, sheet: SheetRows | None, catalog: Catalog) -> _Rows:
    """Every row of the sheet, read by python-calamine (and the XML row table when ``sheet``)."""
    wb = _open(path)
    if OIL_SHEET not in wb.sheet_names:
        raise LabFileError(name, f"no sheet {OIL_SHEET!r}; sheets are {wb.sheet_names}", sheet=OIL_SHEET)
    rows = _sheet_rows(wb, name, OIL_SHEET)
    header = _header(name, rows[0] if rows else [])
    named = _named(rows[0])
    width = len(header)
    body = [
        r if len(r) == width else r + [""] * (width - len(r)) if len(r) < width else r[:width]
        for r in rows[1:]
    ]
    del rows
    # calamine reads Excel error cells as empty strings: put the error code back (from the XML scan)
    # so each cell is judged like any other bad value and recorded.
    for (excel_row, col), code in oil_scan.errors.items() if oil_scan else ():
        if excel_row >= 2 and excel_row - 2 < len(body) and col < width:
            body[excel_row - 2][col] = _error_code(code)
    # Excel row numbers of the rows below the header; fully empty rows are skipped and counted.
    empty = [_is_blank_row(r) for r in body]
    kept_rows = [r for r, e in zip(body, empty, strict=True) if not e]
    index = pd.Index([n for n, e in zip(range(2, 2 + len(body)), empty, strict=True) if not e], dtype="int64")
    coolant = _coolant(wb, name)
    if not kept_rows:
        raise LabFileError(name, "no sample rows below the header", sheet=OIL_SHEET, row=FIRST_DATA_ROW)
    # A row's parse reads some columns only: they are taken out of the rows once (C-level), and a
    # row's digest covers them (a re-sent row that changed elsewhere parses the same).
    getter, at = _getter(header, catalog)
    picked = list(map(getter, kept_rows))
    del kept_rows
    hashes = _row_digests(picked)
    dates = _date_bits(picked, at)
    out = _Rows(header, named, index, picked, hashes, dates, sum(empty), coolant, len(body))
    if sheet is not None:
        at_row = {n: k for k, n in enumerate(index.tolist())}
        flags = []
        for n in sheet.numbers:
            k = at_row.get(n)
            flags.append(_row_flags(True) if k is None else _row_flags(False, dates[k]))
        out.xml = _xml_table(sheet, [hashes[at_row[n]] if n in at_row else "" for n in sheet.numbers], flags)
    return out


def _xml_table(sheet: SheetRows, hashes: list[str], flags: list[int]) -> pd.DataFrame:
    keep = [k is not None for k in sheet.keys]
    return pd.DataFrame(
        {
            "key": [k for k, o in zip(sheet.keys, keep, strict=True) if o],
            "hash": [h for h, o in zip(hashes, keep, strict=True) if o],
            "flags": np.array([f for f, o in zip(flags, keep, strict=True) if o], dtype="int64"),
        }
    )


def _getter(header: list[str], catalog: Catalog):
    """The columns a row's parse reads: a getter of their cells from a row, and their positions."""
    copies_of = _essay_copies(header, catalog)
    columns = _columns_read(header, catalog, copies_of)
    column_at = {h: j for j, h in enumerate(header)}
    return operator.itemgetter(*(column_at[c] for c in columns)), {c: k for k, c in enumerate(columns)}


def _known(
    previous: RowCache, sheet: SheetRows, earlier: SheetHead | None
) -> dict[str, tuple[str, int]] | None:
    """What the earlier parse knows of row elements by key: ``key → (hash, flags)``; None when
    its rows cannot serve ``sheet`` (another context). From its XML row table when it has one (a
    parse that read the XML); else its workbook (``earlier``: the head of the bytes a full parse
    kept, split only now that the file comes back) with its row digests and date bits."""
    if previous.xml is not None:
        if previous.xml_context != sheet.context:
            return None
        xml = previous.xml
        return dict(
            zip(
                xml["key"].tolist(),
                zip(xml["hash"].tolist(), xml["flags"].tolist(), strict=True),
                strict=True,
            )
        )
    earlier = split_earlier(earlier, sheet) if earlier is not None else None
    if earlier is None or earlier.context != sheet.context or "dates" not in previous.rows:
        return None
    rows = previous.rows
    parsed = dict(
        zip(
            rows["row"].tolist(), zip(rows["hash"].tolist(), rows["dates"].tolist(), strict=True), strict=True
        )
    )
    known = {}
    for key, n in zip(earlier.keys, earlier.numbers, strict=True):
        h, d = parsed.get(n, ("", None))  # a row element without a parsed row was blank
        known[key] = (h, _row_flags(d is None, d or 0))
    return known


def _read_resent(
    path: str, name: str, oil_scan, sheet: SheetRows, known: dict, previous: RowCache, catalog
) -> _Rows | None:
    """The rows of a re-sent workbook through what its earlier parse knows of its row elements
    (:func:`_known`): rows whose key it knows are not read; python-calamine reads the header and the
    other rows from a small workbook (:func:`mini_workbook`). None when the sheet's extent is not
    fixed by its rows (the last row element is blank or holds an error cell) or a column-wide
    choice changed: the caller reads the whole sheet."""
    found = [known.get(k) for k in sheet.keys]
    fresh = [i for i, f in enumerate(found) if f is None]
    errors: dict[int, list[tuple[int, str]]] = {}
    for (excel_row, col), code in oil_scan.errors.items():
        errors.setdefault(excel_row, []).append((col, code))
    if not sheet.numbers or sheet.numbers[-1] in errors:
        return None
    try:
        wb = CalamineWorkbook.from_filelike(mini_workbook(path, sheet, fresh))
        rows = wb.get_sheet_by_name(OIL_SHEET).to_python(skip_empty_area=False)
    except Exception:  # the full read reports what is wrong with the file
        return None
    if not rows:
        return None
    try:
        header = _header(name, rows[0])
    except LabFileError:
        return None
    width = len(header)
    body = [r + [""] * (width - len(r)) for r in rows[1:]]
    body += [[""] * width for _ in range(len(fresh) - len(body))]  # rows with no cell calamine keeps
    for j, i in enumerate(fresh):
        for col, code in errors.get(sheet.numbers[i], ()):
            if col >= width:
                return None
            body[j][col] = _error_code(code)
    getter, at = _getter(header, catalog)
    fresh_blank = [_is_blank_row(r) for r in body]
    fresh_picked = [getter(r) for r, b in zip(body, fresh_blank, strict=True) if not b]
    fresh_hashes = iter(_row_digests(fresh_picked))
    fresh_dates = iter(_date_bits(fresh_picked, at))
    fresh_cells = iter(fresh_picked)
    found_fresh = iter(fresh_blank)
    rows_at, picked, hashes, dates, all_hashes, flags = [], [], [], [], [], []
    for n, f in zip(sheet.numbers, found, strict=True):
        if f is None:
            blank = next(found_fresh)
            h, d, cells = (
                ("", 0, None) if blank else (next(fresh_hashes), next(fresh_dates), next(fresh_cells))
            )
        else:
            h, fl = f
            blank, d, cells = bool(fl & 1), fl >> 1, None
        all_hashes.append(h)
        flags.append(_row_flags(blank, d))
        if not blank:
            rows_at.append(n)
            picked.append(cells)
            hashes.append(h)
            dates.append(d)
    if not rows_at or flags[-1] & 1:  # the sheet's extent is its last row only if that is not blank
        return None
    out = _Rows(
        header,
        _named(rows[0]),
        pd.Index(rows_at, dtype="int64"),
        picked,
        hashes,
        dates,
        sheet.numbers[-1] - 1 - len(rows_at),
        _coolant(wb, name),
        len(fresh),
    )
    if _context(out, catalog)[1] != previous.context:
        return None  # a column-wide choice changed: every row is read and parsed again
    earlier = set(previous.rows["hash"].tolist())
    if any(c is None and h not in earlier for c, h in zip(picked, hashes, strict=True)):
        return None  # a row table that does not match its parse: read in full
    out.xml = _xml_table(sheet, all_hashes, flags)
    return out


@dataclass
class _ResentRows:
    """A re-sent sheet's rows (:func:`split`) and the earlier version's head, worked out once: from
    the part the guard inflates (:func:`scan_workbook`'s ``prove``: the rows' extent spares its
    streaming pass), or after the guard."""

    previous: RowCache
    done: bool = False
    sheet: SheetRows | None = None
    earlier: SheetHead | None = None  # the head of the earlier version's bytes (a first re-send)

    def prove(self, zf: zipfile.ZipFile, member: str, xml: bytes) -> tuple[int, int] | None:
        """The sheet's extent as the guard's streaming pass finds it, when its rows split."""
        self.of(part_head(zf, member, xml))
        return None if self.sheet is None else self.sheet.extent

    def of(self, head: SheetHead | None) -> None:
        """Split the sheet of ``head`` when the earlier parse's rows can serve it (same context: the
        contexts first, cheap: another writer's workbook is not split at all)."""
        self.done = True
        if head is None:
            return
        previous = self.previous
        if previous.xml is not None:
            same = head.context == previous.xml_context
        else:
            self.earlier = workbook_head(previous.source, OIL_SHEET)
            same = self.earlier is not None and self.earlier.context == head.context
        self.sheet = split(head) if same else None


def _context(raw: _Rows, catalog: Catalog) -> tuple[dict[str, bool], str]:
    """The column-wide choices of the rows and the digest of every row's context: the header's
    named columns, reader and catalog versions, those choices (a change re-parses all rows)."""
    date_fast = _date_fast(raw.dates, {c: 0 for c in raw.header[: raw.named]})
    named = raw.header[: raw.named]
    return date_fast, _digest(repr((ROW_CACHE_VERSION, catalog.version, named, sorted(date_fast.items()))))


def read_finning_workbook(
    path: str,
    catalog: Catalog | None = None,
    *,
    max_xml_mb: float = DEFAULT_MAX_XML_MB,
    max_cells: int = DEFAULT_MAX_CELLS,
    previous: RowCache | None = None,
) -> ReadResult:
    """Read one Finning workbook into tidy samples.

    Raises :class:`LabFileError` when the file as a whole is unusable (not an xlsx, over the size
    or extent limits, no ``OIL`` sheet, a required column missing, no data rows).

    Only an invalid identity (sample number, sample date, unit, component: empty, unreadable or an
    Excel error) rejects a sample. Any other bad cell (text in a number column, an Excel error, an
    unknown flag or particle code, a non-finite number, copies of a column that disagree) is
    cleared: the sample is kept without that value, the cell is recorded in ``rejects`` (Excel row,
    column, value, reason, action ``cell cleared``) and counted in the sample's ``cellsCleared``.

    The sheet is handled column by column as plain arrays (calamine's rows transposed once), and
    every numeric column is parsed in one pass: a workbook costs little more than calamine's read.

    ``previous``: the :class:`RowCache` of an earlier parse of the same file (a lab re-sends its
    cumulative workbook with more rows). Raw rows identical to rows of that parse (same cells, same
    header and rules) take their samples and ledger records from it, under their new row numbers;
    only the other rows are parsed. Row elements whose XML (row numbers aside) is that of a row of
    the earlier parse are not even read by python-calamine (:mod:`.xlsx_rows`), when the sheet
    provably allows it. The result is the same as a full parse (``info``: ``rows_reused``,
    ``rows_parsed``, ``sheet_rows_read``); the result's ``row_cache`` serves the next re-send.
    """
    catalog = catalog or load_catalog()
    name = os.path.basename(path)
    if os.path.getsize(path) == 0:
        raise LabFileError(name, "the file is empty (0 bytes); expected an .xlsx workbook")
    resent = previous is not None and (previous.xml is not None or previous.source is not None)
    through = _ResentRows(previous) if resent else None
    scans = scan_workbook(
        path,
        [OIL_SHEET, COOLANT_SHEET],
        max_xml_mb=max_xml_mb,
        max_cells=max_cells,
        keep=(OIL_SHEET,),
        prove=through.prove if through is not None else None,
    )
    oil_scan = scans.get(OIL_SHEET)
    # A first parse keeps the workbook's bytes with its row cache (the XML is split only if the file
    # comes back: a cold run pays nothing for it); a re-send is split and read through its rows' XML.
    sheet = known = raw = None
    whole = oil_scan is not None and len(oil_scan.errors) < MAX_ERROR_CELLS
    if whole and through is not None:
        if not through.done:  # the guard did not inflate the part for it (e.g. a part too large to keep)
            through.of(sheet_head(path, oil_scan))
        sheet = through.sheet
        known = _known(previous, sheet, through.earlier) if sheet is not None else None
    if known is not None:
        raw = _read_resent(path, name, oil_scan, sheet, known, previous, catalog)
    if raw is None:
        raw = _read_full(path, name, oil_scan, sheet, catalog)
    header, index, picked, hashes = raw.header, raw.index, raw.picked, raw.hashes
    copies_of = _essay_copies(header, catalog)
    columns = _columns_read(header, catalog, copies_of)
    date_fast, context = _context(raw, catalog)
    n_empty, coolant = raw.n_empty, raw.coolant
    rows_at = index.to_numpy()
    old_row: dict[str, int] = {}
    if previous is not None and previous.context == context:
        old_row = dict(
            zip(
                previous.rows["hash"].to_numpy(dtype=object).tolist(),
                previous.rows["row"].to_numpy().astype("int64").tolist(),
                strict=True,
            )
        )
    reuse = np.array([h in old_row for h in hashes], dtype=bool)
    ledgers, orders, rows_rejected = [], [], 0
    kept = old = None
    if not reuse.all():
        fresh = [r for r, u in zip(picked, reuse, strict=True) if not u]
        kept, rej, order, rows_rejected = _parse_rows(
            name, header, columns, fresh, index[~reuse], catalog, date_fast, copies_of
        )
        ledgers.append(rej)
        orders.append(order)
    del picked
    # The samples: rows of the earlier parse (``take``: their positions there, under their new row
    # numbers) and the parsed ones, in row order.
    take = new_rows = np.zeros(0, dtype="int64")
    if reuse.any():
        pairs = pd.DataFrame(
            {"old": [old_row[h] for h, u in zip(hashes, reuse, strict=True) if u], "new": rows_at[reuse]}
        )
        old = previous.samples  # the row cache stores it as Arrow; a frame when given one
        old = old.to_pandas() if isinstance(old, pa.Table) else old.reset_index(drop=True)
        old_at = pd.Series(np.arange(len(old)), index=old["sourceRow"].to_numpy())
        had = pairs["old"].isin(old_at.index)
        take = old_at[pairs["old"][had]].to_numpy()
        new_rows = pairs["new"][had].to_numpy().astype("int64")
        rows_rejected += int((~had).sum())  # a non-blank row without a sample was rejected
        if len(previous.rejects):  # the ledger records of the reused rows, under their new numbers
            old_rej = previous.rejects.assign(_call=previous.reject_calls).reset_index(drop=True)
            moved = old_rej.merge(pairs, left_on="row", right_on="old", how="inner", sort=False)
            moved["row"] = moved["new"]
            ledgers.append(moved.drop(columns=["_call", "old", "new"]))
            orders.append(moved["_call"].to_numpy())
    if old is None:
        samples = kept
    else:
        n_kept = 0 if kept is None else len(kept)
        at = np.concatenate([take, len(old) + np.arange(n_kept)])
        rows = new_rows if kept is None else np.concatenate([new_rows, kept["sourceRow"].to_numpy()])
        by_row = np.argsort(rows, kind="stable")
        at, rows = at[by_row], rows[by_row].astype("int64")
        # Runs of consecutive rows of one part (a re-send adds rows on top or at the end, corrects
        # a few): the samples are those slices joined, not both parts joined and reordered.
        cut = np.flatnonzero((np.diff(at) != 1) | (np.diff(at >= len(old)) != 0)) + 1
        starts, ends = np.r_[0, cut].tolist(), np.r_[cut, len(at)].tolist()
        if len(starts) <= _MAX_RUNS:
            parts = [
                old.iloc[at[a] : at[b - 1] + 1]
                if at[a] < len(old)
                else kept.iloc[at[a] - len(old) : at[b - 1] - len(old) + 1]
                for a, b in zip(starts, ends, strict=True)
            ]
            samples = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
        else:
            samples = old if kept is None else pd.concat([old, kept], ignore_index=True)
            samples = samples.take(at)
        samples = samples.reset_index(drop=True)
        if kept is not None:  # the parsed rows' types are a full parse's
            have = dict(zip(samples.columns, samples.dtypes, strict=True))
            changed = {c: t for c, t in zip(kept.columns, kept.dtypes, strict=True) if have[c] != t}
            if changed:  # e.g. a column with no value in one part
                samples = samples.astype(changed)
        if not np.array_equal(samples["sourceRow"].to_numpy(), rows):
            samples["sourceRow"] = rows
    samples["sourceFile"] = name
    rejects = concat_rejects(ledgers)
    calls = np.concatenate(orders) if orders else np.zeros(0, dtype="int64")
    if len(rejects):
        rejects["file"] = name
        by = np.lexsort((rejects["row"].to_numpy(), calls[: len(rejects)]))
        calls = calls[by]
        rejects = ledger_types(rejects.iloc[by].reset_index(drop=True))
    info = {
        "file": name,
        "lab_format": LAB_FORMAT,
        "rows_read": int(len(index)),
        "empty_rows_skipped": int(n_empty),
        "samples": int(len(samples)),
        "rows_rejected": rows_rejected,
        "cells_cleared": int(samples["cellsCleared"].sum()),
        "excel_error_cells": int(len(oil_scan.errors)) if oil_scan else 0,
        "coolant_samples_ignored": int(coolant),
        "repeated_column_disagreements": _disagreements(rejects),
        "rows_reused": int(reuse.sum()),
        "rows_parsed": int((~reuse).sum()),
        "sheet_rows_read": raw.read,
    }
    source = None
    if raw.xml is None and whole:
        with open(path, "rb") as f:
            source = f.read()
    cache = RowCache(
        context,
        pd.DataFrame(
            {"row": rows_at.astype("int64"), "hash": hashes, "dates": np.array(raw.dates, dtype="int64")}
        ),
        samples,
        rejects,
        calls,
        raw.xml,
        sheet.context if raw.xml is not None else None,
        source,
    )
    return ReadResult(samples=samples, rejects=rejects, info=info, row_cache=cache)


def _disagreements(rejects: pd.DataFrame) -> dict[str, int]:
    """``{"Si/Si.1": n}``: samples whose repeated element columns disagree, from the ledger."""
    out: dict[str, int] = {}
    if not len(rejects):
        return out
    for column, reason in zip(rejects["column"], rejects["reason"], strict=True):
        if isinstance(reason, str) and reason.startswith(_DISAGREES):
            first = reason[len(_DISAGREES) :].split("'", 2)[1]
            key = f"{first}/{column}"
            out[key] = out.get(key, 0) + 1
    return out


def _parse_rows(
    name: str,
    header: list[str],
    columns: list[str],
    rows: list[tuple],
    index: pd.Index,
    catalog: Catalog,
    date_fast: dict,
    copies_of: dict[str, list[str]],
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, int]:
    """The reader's per-row work on some non-blank rows (Excel row numbers in ``index``).

    ``rows``: the cells of ``columns`` (:func:`_columns_read`) of each row. Every result of a row
    depends only on those cells and the header (column-wide choices come in ``date_fast``). Returns
    the kept samples, the ledger, the call number of each ledger record (its order key with the
    row) and the number of rejected rows.
    """

    position = {h: j for j, h in enumerate(header)}
    at = {c: k for k, c in enumerate(columns)}
    table = np.empty((len(rows), len(columns)), dtype=object)
    table[:] = rows
    table[table == ""] = None  # empty cells as None

    def cells(column: str) -> np.ndarray:
        """The column's cells as an object array (a column outside ``columns`` is a KeyError)."""
        return table[:, at[column]]

    n = len(index)
    records: list[pd.DataFrame] = []
    bad_rows = np.zeros(n, dtype=bool)
    cleared = np.zeros(n, dtype="int64")

    # Each reject/clear call has its number, the same in every parse of the same header: the ledger
    # is in (call, row) order, so the records of rows parsed at different times merge in that order.
    calls: list[np.ndarray] = []
    call = [0]

    def reject(mask: np.ndarray, column: str, reason) -> None:
        """Reject whole samples (invalid identity); one reason per sample: the first found."""
        nonlocal bad_rows
        call[0] += 1
        mask = mask & ~bad_rows
        if mask.any():
            rows_at = pd.Series(index[mask], dtype="int64")
            values = pd.Series(cells(column)[mask], dtype=object)
            why = reason[mask] if isinstance(reason, np.ndarray) else reason
            part = reject_rows(name, OIL_SHEET, rows_at, column, values, "", sample_numbers=sample_ids[mask])
            part["reason"] = why
            records.append(part)
            calls.append(np.full(len(part), call[0]))
            bad_rows = bad_rows | mask

    def clear(problem: np.ndarray, column: str) -> np.ndarray:
        """Record the cells of ``column`` with a problem (cleared, sample kept); returns the mask."""
        call[0] += 1
        mask = _present(problem)
        if mask.any():
            part = reject_rows(
                name,
                OIL_SHEET,
                pd.Series(index[mask], dtype="int64"),
                column,
                pd.Series(cells(column)[mask], dtype=object),
                "",
                action=CELL_CLEARED,
                sample_numbers=sample_ids[mask],
            )
            part["reason"] = [f"{p}; cell cleared, sample kept" for p in problem[mask]]
            records.append(part)
            calls.append(np.full(len(part), call[0]))
            cleared[mask] += 1
        return mask

    errors_of: dict[str, np.ndarray] = {}

    def text_errors(column: str) -> np.ndarray:
        """Problems of a text column: Excel error cells only (any other text is a valid text)."""
        if column not in errors_of:
            errors_of[column] = by_value(cells(column), _text_error)
        return errors_of[column]

    out: dict[str, object] = {}
    for src, dst in TEXT_COLUMNS.items():
        if src not in position:
            out[dst] = pd.Series([None] * n, dtype="string")
            continue
        if src not in IDENTITY_TEXT:  # text and Excel error of each cell in one pass
            pairs = by_value(cells(src), _text_and_error)
            errors_of[src] = np.fromiter((p[1] for p in pairs), dtype=object, count=n)
            out[dst] = pd.Series(_strings(np.fromiter((p[0] for p in pairs), dtype=object, count=n)))
            continue
        bad = _present(text_errors(src))
        ids = {v: identifier_text(v) for v in set(cells(src)) if v is not None}
        values = np.fromiter((ids.get(v) for v in cells(src)), dtype=object, count=n)
        values[bad] = None
        out[dst] = pd.Series(_strings(values))
    sample_ids = out["sampleNumber"]  # the ledger's sample number of each row (reject/clear)
    for src, dst in IDENTITY_TEXT.items():
        problem = text_errors(src)
        has = _present(problem)
        reject(has, src, problem)
        reject(out[dst].isna().to_numpy(), src, IDENTITY_EMPTY[dst])
    for src, dst in DATE_COLUMNS.items():
        if src in position:
            out[dst], problem = _dates(cells(src), index, date_fast.get(src))
            if dst == "sampleDate":
                has = _present(problem)
                reject(has, src, problem)
                reject(out[dst].isna().to_numpy(), src, "sample date is empty")
            else:
                has = clear(np.where(bad_rows, None, problem), src)
                if has.any():  # most columns have no bad cell: no copy
                    out[dst] = out[dst].mask(has)
        else:
            out[dst] = pd.Series(pd.NaT, index=index, dtype="datetime64[us]")
    for src, dst in TEXT_COLUMNS.items():
        if src in position and src not in IDENTITY_TEXT:
            has = clear(np.where(bad_rows, None, text_errors(src)), src)
            if has.any():
                out[dst] = out[dst].mask(pd.Series(has, index=out[dst].index))
    out["labDate"] = out["reportDate"]

    # Every numeric cell (meters and the copies of each essay column) parsed in one pass.
    numeric = [c for c in METER_COLUMNS if c in position]
    numeric += [c for copies in copies_of.values() for c in copies]
    parsed = {}
    if numeric:
        value, censor, problem = parse_number_cells(np.concatenate([cells(c) for c in numeric]))
        for k, c in enumerate(numeric):
            part = slice(k * n, (k + 1) * n)
            parsed[c] = (value[part], censor[part], np.where(bad_rows, None, problem[part]))

    for src, dst in METER_COLUMNS.items():
        if src in position:
            out[dst] = parsed[src][0]
            clear(parsed[src][2], src)
        else:
            out[dst] = np.full(n, np.nan)
    if OIL_CHANGED_COLUMN in position:
        out["oilChanged"] = pd.array(by_value(cells(OIL_CHANGED_COLUMN), _oil_changed), dtype="boolean")
    else:
        out["oilChanged"] = pd.array([pd.NA] * n, dtype="boolean")

    # Essays. Repeated element columns (Si, Si.1, Si.2) must agree: the first non-empty copy is
    # taken; copies that disagree leave the essay unknown (cleared, recorded).
    essays: dict[str, np.ndarray] = {}
    censors: dict[str, pd.Series] = {}
    disagreements: dict[str, int] = {}
    for essay, copies in copies_of.items():
        if not copies:
            essays[essay] = np.full(n, np.nan)
            continue
        value, censor, problem = parsed[copies[0]]
        clear(problem, copies[0])
        value = value.copy()
        for extra in copies[1:]:
            v2, _, problem2 = parsed[extra]
            clear(problem2, extra)
            differ = ~np.isnan(value) & ~np.isnan(v2) & (value != v2) & ~bad_rows
            if differ.any():
                disagreements[f"{copies[0]}/{extra}"] = int(differ.sum())
                why = np.where(differ, f"{_DISAGREES}{copies[0]!r} ({essay} unknown)", None)
                clear(why, extra)
            else:
                call[0] += 1  # the same call numbers whether or not these rows disagree
            value = np.where(np.isnan(value), v2, value)
            value[differ] = np.nan
        essays[essay] = value
        if (censor != "").any():  # the JSON lists censored readings only
            censors[essay] = pd.Series(censor, index=index, dtype="string")
    for src, essay in _sources(catalog, "flag").items():
        if src in position:
            essays[essay], problem = _flags(cells(src), index)
            clear(np.where(bad_rows, None, problem), src)
        else:
            essays[essay] = np.full(n, np.nan)
    if PARTICLE_FIELD in position:
        particles, problem = parse_particle_column(
            pd.Series(cells(PARTICLE_FIELD), index=index, dtype=object)
        )
        clear(np.where(bad_rows, None, problem.to_numpy(dtype=object)), PARTICLE_FIELD)
    else:
        particles, _ = parse_particle_column(pd.Series(pd.NA, index=index))
    for c in PARTICLE_COLUMNS:
        if c in catalog.table.index:
            essays[c] = particles[c].to_numpy()
        else:
            out[c] = particles[c]

    # ``.array`` keeps the extension dtypes (string, boolean) of the columns built as Series.
    # One construction (a column set on a wide frame afterwards costs as much as the frame).
    frame = pd.DataFrame(
        {
            **{k: v.array if isinstance(v, pd.Series) else v for k, v in out.items()},
            **{e: essays[e] for e in catalog.essays},
            "censoredEssays": censored_json(censors, index).array,
            "machineName": pd.array([pd.NA] * n, dtype="string"),
            "machineBrand": "caterpillar",
            "sourceFile": name,
            "sourceRow": index.to_numpy().astype("int64"),
            "cellsCleared": cleared,
        },
        index=index,
    )
    kept = (frame[~bad_rows] if bad_rows.any() else frame).reset_index(drop=True)
    rejects = concat_rejects(records)
    order = np.concatenate(calls) if calls else np.zeros(0, dtype="int64")
    if len(rejects):  # a rejected sample's record is its identity reason, not its other cells
        dropped = set(index[bad_rows])
        drop = ((rejects["action"] == CELL_CLEARED) & rejects["row"].isin(dropped)).to_numpy()
        rejects, order = rejects[~drop].reset_index(drop=True), order[~drop]
    return kept, rejects, order, int(bad_rows.sum())
