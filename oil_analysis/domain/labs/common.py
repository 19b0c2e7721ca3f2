"""Pieces every lab reader shares: the error type, the result type and value parsing.

A reader turns one raw file into a *tidy sample frame*: one row per sample, lab-neutral column
names (the silver names of ``harmonize.SILVER_METADATA`` that the lab provides, plus one float
column per catalog essay). Harmonization then normalizes names, dates and links across files.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

# The reject ledger layout (docs/DATA_CONTRACTS.md, table ``rejects``). ``action`` says what happened:
# ``sample rejected`` (an invalid identity: sample number, sample date, unit or component) or
# ``cell cleared`` (any other bad cell: the sample is kept without that value). ``stage`` names the
# rule family: ``read`` (the lab reader), ``harmonize`` (row rules) or ``duplicate`` (across files).
REJECT_COLUMNS = ["file", "sheet", "row", "column", "value", "reason", "action", "sampleNumber", "stage"]
SAMPLE_REJECTED = "sample rejected"
CELL_CLEARED = "cell cleared"

# "Not determined" markers: the lab ran no test or got no reading. They mean "no value" in every
# reader (compared case-insensitively, after trimming and folding inner spaces).
NOT_DETERMINED = frozenset(
    [
        "",
        "-",
        "--",
        "---",
        "—",
        "–",
        ".",
        "nan",
        "none",
        "null",
        "n/d",
        "nd",
        "n.d.",
        "n.d",
        "n/a",
        "na",
        "n.a.",
        "s/d",
        "<ld",
        "< ld",
        "<l.d.",
        "<lod",
        "< lod",
        "<lc",
        "bld",
        "no realizado",
        "no determinado",
        "no detectable",
        "not determined",
        "not tested",
    ]
)
# What Excel writes into a cell whose formula failed (the xlsx stores them as error cells).
EXCEL_ERRORS = frozenset(
    ["#N/A", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#NULL!", "#SPILL!", "#CALC!", "#GETTING_DATA"]
)


def not_determined(value) -> bool:
    """True for an empty cell or a "not determined" marker (``N/D``, ``ND``, ``<LD``, ``n/a``, ``--``...)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float):
        return value != value
    if not isinstance(value, str):
        return False
    return " ".join(value.split()).lower() in NOT_DETERMINED


def excel_error(value) -> str | None:
    """The Excel error code a cell holds as text (``#N/A``, ``#DIV/0!``...), else None."""
    if isinstance(value, str):
        text = value.strip().upper()
        if text in EXCEL_ERRORS:
            return text
    return None


# Ordinal levels of the letter flags (water, glycol/antifreeze, fuel): N none, T trace,
# P positive, E excessive. The lab prints them as letters; the product compares levels.
FLAG_LEVELS = {"N": 0.0, "T": 1.0, "P": 2.0, "E": 3.0}

_NUMBER = re.compile(r"^\s*([<>]?)\s*(=?)\s*([-+]?\d+(?:[.,]\d+)?(?:[eE][-+]?\d+)?)\s*$")


class LabFileError(ValueError):
    """A raw file that cannot be read at all. Names the file, sheet, row and column."""

    def __init__(
        self,
        file: str,
        message: str,
        *,
        sheet: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.file, self.sheet, self.row, self.column, self.message = file, sheet, row, column, message
        where = [f"file {file!r}"]
        if sheet is not None:
            where.append(f"sheet {sheet!r}")
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}")

    def as_dict(self) -> dict:
        return {
            "file": self.file,
            "sheet": self.sheet,
            "row": self.row,
            "column": self.column,
            "error": self.message,
        }


@dataclass
class ReadResult:
    """What a reader returns: tidy samples, rejected rows with reasons, and reading facts."""

    samples: pd.DataFrame
    rejects: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REJECT_COLUMNS))
    info: dict = field(default_factory=dict)
    row_cache: RowCache | None = None


@dataclass
class RowCache:
    """What a reader keeps of a parse so that a re-sent file's unchanged rows are not parsed again.

    ``context``: digest of everything besides a row that its parse depends on (header, reader and
    catalog versions, column-wide choices); ``rows``: the Excel row and digest of each non-blank
    raw row (``row``, ``hash``); ``samples``/``rejects``: that parse's output (``samples`` as a
    frame, or as the Arrow table the registry's row cache stores); ``reject_calls``: the order key
    of each ledger record (records are in (call, row) order). ``xml``: per row element of the
    sheet, keyed by its XML without row numbers (``key``), its ``hash`` and ``flags`` (blank, date
    bits), valid under ``xml_context`` (see :mod:`.xlsx_rows`); ``source``: else the raw file's
    bytes, split only if the file comes back (Finning: ``rows`` then also keep ``dates``).
    """

    context: str
    rows: pd.DataFrame
    samples: pd.DataFrame | pa.Table
    rejects: pd.DataFrame
    reject_calls: np.ndarray
    xml: pd.DataFrame | None = None
    xml_context: str | None = None
    source: bytes | None = None


NOT_A_NUMBER = "expected a number"
NOT_FINITE = "not a finite number"


def _number_text(text: str) -> tuple[float, str, str | None]:
    """One text cell → ``(value, censor, problem)``; ``problem`` is None when the cell is fine."""
    if " ".join(text.split()).lower() in NOT_DETERMINED:
        return np.nan, "", None
    err = excel_error(text)
    if err:
        return np.nan, "", f"Excel error cell {err}"
    m = _NUMBER.match(text)
    if not m:
        return np.nan, "", NOT_A_NUMBER
    number = float(m.group(3).replace(",", "."))
    if not np.isfinite(number):  # a 400-digit number overflows to inf
        return np.nan, "", NOT_FINITE
    return number, m.group(1), None


def parse_number_cells(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse a flat object array of lab cells (e.g. many columns concatenated) into floats.

    Returns ``(value, censor, problem)``: ``censor`` is ``'<'``/``'>'`` for censored readings such
    as ``<0.05`` or ``>100`` (kept as the bound, never dropped), ``''`` otherwise; ``problem`` is
    None for a good or empty cell, else the reason the cell cannot be used (the caller clears it and
    records the reason). Empty cells and "not determined" markers (:data:`NOT_DETERMINED`) are NaN
    without a problem; Excel error cells, text and non-finite numbers are problems. Decimal commas
    and signs are kept. Text cells are parsed once per distinct text (a lab column repeats a few
    values thousands of times), other cells one by one: :func:`_number_cells`.
    """
    cells = np.asarray(cells, dtype=object)
    codes, uniques = pd.factorize(cells)
    # Only text is parsed by distinct value: numbers, booleans and dates, which Python may find equal
    # across types (1 == 1.0 == True), stay cell by cell. The one parse sees every kind of value of
    # the block (and an empty cell when it has one), so ``to_numeric`` decides as over the block.
    uniques = np.asarray(uniques, dtype=object)
    is_text = np.fromiter((type(u) is str for u in uniques), dtype=bool, count=len(uniques))
    present = codes >= 0
    text = present.copy()
    text[present] = is_text[codes[present]]
    other = present & ~text
    k = int(is_text.sum())
    block = [uniques[is_text], cells[other]]
    if not present.all():
        block.append(np.array([None], dtype=object))
    v, c, p = _number_cells(np.concatenate(block))
    at = np.full(len(uniques), -1, dtype=np.int64)
    at[is_text] = np.arange(k)
    value = np.full(len(cells), np.nan)
    censor = np.full(len(cells), "", dtype=object)
    problem = np.full(len(cells), None, dtype=object)
    pick = at[codes[text]]
    value[text], censor[text], problem[text] = v[pick], c[pick], p[pick]
    rest = slice(k, k + int(other.sum()))
    value[other], censor[other], problem[other] = v[rest], c[rest], p[rest]
    return value, censor, problem


def _number_cells(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`parse_number_cells` cell by cell: one ``to_numeric`` pass, then text by unique value."""
    cells = np.asarray(cells, dtype=object)
    value = np.array(pd.to_numeric(pd.Series(cells, dtype=object), errors="coerce"), dtype=float)
    censor = np.full(len(cells), "", dtype=object)
    problem = np.full(len(cells), None, dtype=object)
    inf = np.isinf(value)
    if inf.any():
        value[inf] = np.nan
        problem[inf] = NOT_FINITE
    parsed: dict[str, tuple[float, str, str | None]] = {}
    for i in np.flatnonzero(np.isnan(value) & ~inf):
        v = cells[i]
        if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v):
            continue
        if isinstance(v, bool | np.bool_) or not isinstance(v, str):
            problem[i] = NOT_A_NUMBER  # a date or a boolean in a number column
            continue
        if v not in parsed:
            parsed[v] = _number_text(v)
        value[i], censor[i], problem[i] = parsed[v]
    return value, censor, problem


def by_value(cells, fn) -> np.ndarray:
    """``[fn(v) for v in cells]`` as an object array, with ``fn`` called once per distinct text.

    A lab column repeats a few texts hundreds of times. Only text cells share a result (and None
    cells, one call): numbers, booleans and dates (which Python may find equal across types:
    ``1 == 1.0 == True``) and other empty cells (NaN) go through ``fn`` one by one.
    """
    memo: dict = {}
    get = memo.get
    none = memo  # not computed yet
    out = []
    append = out.append
    for v in cells:
        if type(v) is str:
            r = get(v, memo)
            if r is memo:
                r = memo[v] = fn(v)
        elif v is None:
            if none is memo:
                none = fn(None)
            r = none
        else:
            r = fn(v)
        append(r)
    return np.fromiter(out, dtype=object, count=len(out))


def parse_numbers(values: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """:func:`parse_number_cells` on a Series: ``(value, censor, problem)`` aligned with it."""
    value, censor, problem = parse_number_cells(values.to_numpy(dtype=object))
    return (
        pd.Series(value, index=values.index, dtype=float),
        pd.Series(censor, index=values.index, dtype="string"),
        pd.Series(problem, index=values.index, dtype=object),
    )


def flag_value(v) -> tuple[float, str | None]:
    """One letter-flag cell → ``(level, problem)``: level NaN when empty or bad."""
    if not_determined(v):
        return np.nan, None
    err = excel_error(v)
    if err:
        return np.nan, f"Excel error cell {err}"
    t = str(v).strip().upper()
    if t in FLAG_LEVELS:
        return FLAG_LEVELS[t], None
    return np.nan, "expected a flag letter N, T, P or E"


def parse_flags(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Letter flags (N/T/P/E, case-insensitive) → ordinal 0..3. Returns ``(level, problem)``."""
    level = np.full(len(values), np.nan)
    problem = np.full(len(values), None, dtype=object)
    for i, v in enumerate(values.to_numpy(dtype=object)):
        level[i], problem[i] = flag_value(v)
    return pd.Series(level, index=values.index), pd.Series(problem, index=values.index, dtype=object)


# --- identifiers and dates ---------------------------------------------------------------------


def identifier_text(value) -> str | None:
    """An identifier cell as the lab wrote it: text trimmed; a whole number without ``.0``.

    A numeric export turns ``2210022514`` into the float ``2210022514.0``; the id is the digits.
    """
    if type(value) is str:  # the usual cell, in one pass (the same rules as below)
        text = " ".join(value.split())
        # An Excel error code has no inner space: the folded text is the stripped one.
        if text.lower() in NOT_DETERMINED or text.upper() in EXCEL_ERRORS:
            return None
        return text
    if not_determined(value) or excel_error(value):
        return None
    if isinstance(value, bool | np.bool_):
        return str(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if not np.isfinite(value):
            return None
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    text = " ".join(str(value).split())
    return text or None


def identifier_series(values: pd.Series) -> pd.Series:
    """:func:`identifier_text` over a column (by unique value), as a string Series."""
    if pd.api.types.is_string_dtype(values) or values.dtype == object:
        uniq = {}
        out = []
        for v in values.to_numpy(dtype=object):
            key = (type(v), v) if v is not None and v is not pd.NA else None
            if key not in uniq:
                uniq[key] = identifier_text(v)
            out.append(uniq[key])
        return pd.Series(out, index=values.index, dtype="string")
    return pd.Series(
        [identifier_text(v) for v in values.to_numpy(dtype=object)], index=values.index, dtype="string"
    )


_ISO_DATE = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}([ T].*)?$")
_DAY_FIRST = re.compile(
    r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4}|\d{2})(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?)?$"
)
_DIGITS = re.compile(r"^[+-]?\d+(\.\d+)?$")
EXCEL_EPOCH = pd.Timestamp("1899-12-30")


def epoch_to_timestamp(x: float) -> pd.Timestamp | None:
    """A number in a date column → a timestamp, by magnitude (None when it cannot be a date).

    Epoch nanoseconds / microseconds / milliseconds / seconds (1973 → 2286) and Excel serial days
    (10,000-99,999: 1927 → 2173). Anything else is not a date. Epoch values are UTC.
    """
    if x is None or not np.isfinite(x):
        return None
    a = abs(x)
    for low, unit in ((1e17, "ns"), (1e14, "us"), (1e11, "ms"), (1e8, "s")):
        if a >= low:
            if a >= low * 1e3:
                return None
            return pd.Timestamp(int(x), unit=unit) if unit != "s" else pd.Timestamp(x, unit="s")
    if 10_000 <= x < 100_000:
        return EXCEL_EPOCH + pd.Timedelta(days=float(x))
    return None


def date_text(text: str) -> pd.Timestamp | None:
    """A text date → timestamp: ISO (``2024-01-15``, with time or zone) or day-first
    (``15/01/2024``, ``15-01-2024``, ``15.01.2024``, ``15/01/2024 08:30``); digits as epoch numbers."""
    t = " ".join(text.split())
    if not t:
        return None
    try:
        if _ISO_DATE.match(t):
            return pd.Timestamp(t)
        m = _DAY_FIRST.match(t)
        if m:
            day, month, year = int(m.group(1)), int(m.group(2)), int(m.group(3))
            year += 2000 if year < 100 else 0
            hh, mm, ss = (int(g) if g else 0 for g in m.group(4, 5, 6))
            return pd.Timestamp(year, month, day, hh, mm, ss)
        if _DIGITS.match(t):
            return epoch_to_timestamp(float(t))
        return pd.Timestamp(pd.to_datetime(t, dayfirst=True))
    except (ValueError, OverflowError, TypeError):
        return None


def date_value(v) -> tuple[pd.Timestamp | None, str | None]:
    """Any physical date cell → ``(timestamp or None, problem or None)``.

    Datetimes and dates as they are (a tz-aware value keeps its zone), numbers by magnitude
    (:func:`epoch_to_timestamp`), text by :func:`date_text`; empty and "not determined" → no value.
    """
    if not_determined(v):
        return None, None
    err = excel_error(v)
    if err:
        return None, f"Excel error cell {err}"
    if isinstance(v, pd.Timestamp | dt.datetime | dt.date | np.datetime64):
        try:
            return pd.Timestamp(v), None
        except (ValueError, OverflowError):
            return None, "expected a date"
    if isinstance(v, bool | np.bool_):
        return None, "expected a date"
    if isinstance(v, int | float | np.integer | np.floating):
        ts = epoch_to_timestamp(float(v))
        return (ts, None) if ts is not None else (None, f"expected a date (the number {v!r} is no date)")
    if isinstance(v, str):
        ts = date_text(v)
        return (ts, None) if ts is not None else (None, "expected a date")
    return None, "expected a date"


def parse_dates(values: pd.Series, tz: str | None = None) -> tuple[pd.Series, pd.Series]:
    """A date column of any physical type → naive timestamps, and the problem of each bad cell.

    ``tz``: tz-aware values (and epoch numbers, which are UTC) are converted to this zone before
    the zone is dropped; None keeps their wall time. Returns ``(datetime64[us] Series, problem)``.
    """
    out: list = []
    problems: list = []
    cache: dict = {}
    for v in values.to_numpy(dtype=object):
        key = (type(v), v) if isinstance(v, str | int | float) else None
        if key is not None and key in cache:
            ts, problem = cache[key]
        else:
            ts, problem = date_value(v)
            is_epoch = isinstance(v, int | float | np.integer | np.floating) or (
                isinstance(v, str) and _DIGITS.match(v.strip() or "x")
            )
            if ts is not None and is_epoch and tz:
                ts = ts.tz_localize("UTC")
            if ts is not None and ts.tzinfo is not None:
                ts = ts.tz_convert(tz).tz_localize(None) if tz else ts.tz_localize(None)
            if key is not None:
                cache[key] = (ts, problem)
        out.append(ts if ts is not None else pd.NaT)
        problems.append(problem)
    series = pd.Series(pd.to_datetime(pd.Series(out, dtype=object)).to_numpy(), index=values.index)
    return series.astype("datetime64[us]"), pd.Series(problems, index=values.index, dtype=object)


def censored_json(censors: dict[str, pd.Series], index: pd.Index) -> pd.Series:
    """One JSON object per row ``{essay: '<' | '>'}`` for the censored readings, null when none."""
    out = pd.Series(pd.NA, index=index, dtype="string")
    if not censors:
        return out
    frame = pd.DataFrame(censors, index=index)
    has = (frame != "").any(axis=1)
    if has.any():
        out.loc[has] = [
            json.dumps({k: v for k, v in row.items() if v}, sort_keys=True)
            for row in frame[has].to_dict("records")
        ]
    return out


def reject_rows(
    file: str,
    sheet: str | None,
    rows: pd.Series,
    column: str,
    values: pd.Series,
    reason: str,
    *,
    action: str = SAMPLE_REJECTED,
    sample_numbers=None,
    stage: str = "read",
) -> pd.DataFrame:
    """Build reject records (one per row) in the shared reject layout (:data:`REJECT_COLUMNS`)."""
    n = len(rows)
    ids = (
        pd.Series(sample_numbers, dtype="string").to_numpy()
        if sample_numbers is not None
        else pd.array([pd.NA] * n, dtype="string")
    )
    return pd.DataFrame(
        {
            "file": file,
            "sheet": sheet,
            "row": pd.Series(rows).astype("int64").to_numpy(),
            "column": column,
            "value": pd.Series(values, dtype=object).map(_value_text).astype("string").to_numpy(),
            "reason": reason,
            "action": action,
            "sampleNumber": ids,
            "stage": stage,
        },
        columns=REJECT_COLUMNS,
    )


def _value_text(v) -> str | None:
    """A rejected cell as text for the ledger (never fails, whatever the cell holds)."""
    if v is None or v is pd.NA or (isinstance(v, float) and v != v):
        return None
    text = str(v)
    return text if len(text) <= 200 else text[:200] + "…"


def concat_rejects(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate reject frames into one frame of the ledger layout (all columns as text but ``row``)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty_rejects()
    out = pd.concat([p.reindex(columns=REJECT_COLUMNS) for p in parts], ignore_index=True)
    return ledger_types(out)


_EMPTY_REJECTS: list[pd.DataFrame] = []


def empty_rejects() -> pd.DataFrame:
    """An empty ledger with its dtypes (a copy of one built once: building it costs ~40 ms)."""
    if not _EMPTY_REJECTS:
        _EMPTY_REJECTS.append(
            ledger_types(pd.DataFrame({c: pd.Series(dtype=object) for c in REJECT_COLUMNS}))
        )
    return _EMPTY_REJECTS[0].copy()


_STRING = pd.StringDtype()


def ledger_types(df: pd.DataFrame) -> pd.DataFrame:
    """The ledger's dtypes: ``row`` Int64, every other column string."""
    df = df.reindex(columns=REJECT_COLUMNS).copy()
    for c in REJECT_COLUMNS:
        if c == "row":
            if df[c].dtype != "Int64":
                df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
        elif df[c].dtype != _STRING:  # already text (a ledger read back or concatenated): kept as is
            df[c] = df[c].astype("string")
    if "stage" in df:
        df["stage"] = df["stage"].fillna("read")
    if "action" in df:
        df["action"] = df["action"].fillna(SAMPLE_REJECTED)
    return df
