"""Pieces every lab reader shares: the error type, the result type and value parsing.

A reader turns one raw file into a *tidy sample frame*: one row per sample, lab-neutral column
names (the silver names of ``harmonize.SILVER_METADATA`` that the lab provides, plus one float
column per catalog essay). Harmonization then normalizes names, dates and links across files.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

REJECT_COLUMNS = ["file", "sheet", "row", "column", "value", "reason"]

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


def parse_numbers(values: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Parse lab cells into floats.

    Returns ``(value, censor, bad)``: ``censor`` is ``'<'``/``'>'`` for censored readings such as
    ``<0.05`` or ``>100`` (kept as the bound, never dropped), empty otherwise; ``bad`` marks cells
    that hold something that is not a number (they become NaN and the caller rejects the row).
    Decimal commas and signs are kept. Works on unique strings, so it is cheap on big frames.
    """
    numeric = pd.to_numeric(values, errors="coerce")
    blank = values.isna() | values.astype("string").str.strip().isin(["", "-", "nan", "NaN", "None"])
    todo = numeric.isna() & ~blank
    censor = pd.Series("", index=values.index, dtype="string")
    bad = pd.Series(False, index=values.index)
    if todo.any():
        raw = values[todo].astype(str)
        parsed = {}
        for text in raw.unique():
            m = _NUMBER.match(text)
            parsed[text] = (float(m.group(3).replace(",", ".")), m.group(1)) if m else (np.nan, None)
        pairs = raw.map(parsed)
        numeric.loc[todo] = pairs.map(lambda p: p[0]).astype(float)
        censor.loc[todo] = pairs.map(lambda p: p[1] or "")
        bad.loc[todo] = pairs.map(lambda p: p[1] is None)
    return numeric.astype(float), censor, bad


_BLANK_TEXT = frozenset(["", "-", "nan", "NaN", "None"])


def parse_number_cells(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`parse_numbers` on a flat object array (e.g. many columns concatenated), as arrays.

    Same rules, one ``to_numeric`` pass for the whole block: a reader with a hundred numeric
    columns pays the pandas overhead once, not a hundred times. Returns ``(value, censor, bad)``
    with ``censor`` an object array of ``''``/``'<'``/``'>'``.
    """
    value = np.asarray(pd.to_numeric(cells, errors="coerce"), dtype=float)
    censor = np.full(len(cells), "", dtype=object)
    bad = np.zeros(len(cells), dtype=bool)
    parsed: dict[str, tuple[float, str | None]] = {}
    for i in np.flatnonzero(np.isnan(value)):
        v = cells[i]
        if v is None or v is pd.NA or (isinstance(v, float) and v != v):
            continue
        if not isinstance(v, str):  # an odd cell type (a date in a number column): the Series rules
            one = parse_numbers(pd.Series([v], dtype=object))
            value[i], censor[i], bad[i] = one[0].iat[0], one[1].iat[0], bool(one[2].iat[0])
            continue
        if v.strip() in _BLANK_TEXT:
            continue
        text = v
        if text not in parsed:
            m = _NUMBER.match(text)
            parsed[text] = (float(m.group(3).replace(",", ".")), m.group(1)) if m else (np.nan, None)
        number, sign = parsed[text]
        value[i] = number
        censor[i] = sign or ""
        bad[i] = sign is None
    return value, censor, bad


def parse_flags(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Letter flags (N/T/P/E, case-insensitive) → ordinal 0..3. Returns ``(level, bad)``."""
    text = values.astype("string").str.strip().str.upper()
    blank = text.isna() | (text == "")
    level = text.map(FLAG_LEVELS).astype(float)
    bad = ~blank & level.isna()
    return level, bad.fillna(False).astype(bool)


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
    file: str, sheet: str | None, rows: pd.Series, column: str, values: pd.Series, reason: str
) -> pd.DataFrame:
    """Build reject records (one per row) in the shared reject layout."""
    return pd.DataFrame(
        {
            "file": file,
            "sheet": sheet,
            "row": rows.astype("int64").to_numpy(),
            "column": column,
            "value": values.astype("string").to_numpy(),
            "reason": reason,
        },
        columns=REJECT_COLUMNS,
    )


def concat_rejects(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=REJECT_COLUMNS)
    return pd.concat(parts, ignore_index=True)
