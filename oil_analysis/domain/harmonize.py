"""Tidy samples of one client's files → the silver harmonized table.

Rules (each a documented choice, see docs/DATA_CONTRACTS.md):

* names normalized by :mod:`oil_analysis.domain.names` (one versioned rule);
* ``sampleDate`` is the local site date (naive); a missing date, a date before the plausible floor
  (``OIL_MIN_SAMPLE_DATE``, default 1990-01-01) or after the run date + 1 day rejects the sample
  (the date is part of its identity); a report or lab date before the sampling (by more than a day)
  or outside that window is cleared;
* readings beyond the catalog's physical range, non-finite readings and meters beyond
  ``MAX_METER_HOURS`` are cleared (sample kept, cell recorded, counted in ``cellsCleared``);
* coolant compartments are not oil: they are excluded and counted (their essays differ);
* a ``sampleNumber`` seen twice with identical content is kept once; with different content the
  copy from the newest lab report wins (then the file name, then the row, so the choice is
  deterministic) and the others go to the rejects table with the reason;
* the previous sample is the one before in (unitId, componentName) ordered by
  (sampleDate, reportDate, sampleNumber) — a deterministic tie-break.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api.types import is_float_dtype

from . import contracts
from .catalog import Catalog, load_catalog
from .labs.common import CELL_CLEARED, concat_rejects, empty_rejects, reject_rows
from .names import brands, by_value, component_columns, machine_name, unit_ids

OIL_HOURS_SPLIT = 1000.0
COOLANT_COMPONENTS = {"refrigerante"}
DEFAULT_MIN_SAMPLE_DATE = pd.Timestamp("1990-01-01")
# An hour meter beyond 10 million hours (over a thousand years) is a typo, not a reading.
MAX_METER_HOURS = 1e7

# The silver columns and their types come from the contract (domain/contracts.py), the one source.
SILVER_METADATA = [c.name for c in contracts.SILVER_META]
SILVER_LINKS = [c.name for c in contracts.SILVER_LINKS]
ORDER_KEYS = ["unitId", "componentName", "sampleDate", "reportDate", "sampleNumber"]

_ALL = contracts.SILVER_META + contracts.SILVER_LINKS
STRING_COLUMNS = [c.name for c in _ALL if c.type == contracts.S]
DATE_COLUMNS = [c.name for c in _ALL if c.type == contracts.TS]
FLOAT_COLUMNS = [c.name for c in contracts.SILVER_META if c.type == contracts.F]  # essays: the catalog


def silver_columns(catalog: Catalog | None = None) -> list[str]:
    catalog = catalog or load_catalog()
    return SILVER_METADATA + catalog.essays + SILVER_LINKS


_SPACES = re.compile(r"\s+")


def _squeeze(text: str) -> str:
    """``re.sub(r"\\s+", " ", text)`` (what pandas runs for that pattern, Python's Unicode ``\\s``),
    cheaper: a printable text without two spaces in a row has no whitespace but single spaces
    (every other whitespace character is unprintable), so nothing to replace; with no whitespace
    at either end, splitting on whitespace runs and joining with one space is the same text."""
    if text.isprintable() and "  " not in text:
        return text
    return " ".join(text.split()) if text == text.strip() else _SPACES.sub(" ", text)


def _clean_text(s: pd.Series) -> pd.Series:
    # Through the distinct texts: a column repeats a handful of them, and the rule is per value
    # (pandas' strip, the whitespace rule, the placeholders of an empty cell).
    return by_value(s, _clean_value, trimmed=True)


def _clean_value(text: str):
    text = _squeeze(text)
    return pd.NA if text in _EMPTY_TEXT else text


_EMPTY_TEXT = {"", "nan", "None", "-"}


def oil_hour_range(oil_meter: pd.Series) -> pd.Series:
    """LT_1000 / GE_1000 / UNKNOWN (DOMAIN.md §2.1)."""
    out = np.where(oil_meter.isna(), "UNKNOWN", np.where(oil_meter < OIL_HOURS_SPLIT, "LT_1000", "GE_1000"))
    return pd.Series(out, index=oil_meter.index, dtype="string")


def sort_order(df: pd.DataFrame, keys: list[str], na_position: str = "first") -> np.ndarray:
    """The positions that sort ``df`` by ``keys`` as ``sort_values(keys, kind="mergesort",
    na_position=na_position)`` does (ascending, ties in row order): Arrow's stable sort of the key
    columns only, without building pandas' categorical codes of every key."""
    table = pa.Table.from_pandas(df[keys], preserve_index=False)
    nulls = {"first": "at_start", "last": "at_end"}[na_position]
    order = pc.sort_indices(table, sort_keys=[(k, "ascending", nulls) for k in keys])
    return order.to_numpy()


def link_previous(silver: pd.DataFrame) -> pd.DataFrame:
    """Sort by the deterministic order and add the previous-sample columns."""
    df = silver.take(sort_order(silver, ORDER_KEYS)).reset_index(drop=True)
    same = (df["unitId"] == df["unitId"].shift()) & (df["componentName"] == df["componentName"].shift())
    same = same.fillna(False).astype(bool)
    df["previousSampleNumber"] = df["sampleNumber"].shift().where(same).astype("string")
    df["previousSampleDate"] = df["sampleDate"].shift().where(same).astype("datetime64[us]")
    days = (df["sampleDate"] - df["previousSampleDate"]).dt.days
    df["daysSincePrevious"] = days.astype("Int64")
    return df


def _bounds(catalog: Catalog) -> list[tuple[str, float, float]]:
    """(column, min, max) of every range-checked column: the catalog's essays, then the meters."""
    found = _BOUNDS.get(catalog.version)
    if found is None:
        found = [(essay, row["min_value"], row["max_value"]) for essay, row in catalog.table.iterrows()]
        found += [(c, 0.0, MAX_METER_HOURS) for c in FLOAT_COLUMNS]
        _BOUNDS[catalog.version] = found
    return found


# Range bounds per catalog version (a catalog is immutable for its version).
_BOUNDS: dict[str, list[tuple[str, float, float]]] = {}


def _clear_out_of_range(df: pd.DataFrame, catalog: Catalog) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Readings outside the catalog's physical range (a negative ppm, a million ppm, ``inf``) and
    meters beyond :data:`MAX_METER_HOURS` are cleared, not kept.

    The sample stays (its other readings are good); each cleared cell is recorded as a reject and
    counted in the sample's ``cellsCleared``. ``df`` is the caller's own frame (:func:`prepare`'s
    copy of the kept rows): its cells are cleared in place, with no second copy of every column.
    """
    parts = []
    if "cellsCleared" not in df:
        df["cellsCleared"] = 0
    df["cellsCleared"] = df["cellsCleared"].fillna(0).astype("int64")
    bounds = _bounds(catalog)
    # One array of every bounded column: only the columns with a bad cell are handled one by one.
    columns = [c for c, _, _ in bounds]
    if len(df) and all(is_float_dtype(t) for t in df.dtypes[columns]):
        values = df[columns].to_numpy(float, na_value=np.nan)  # one copy of the float columns
    else:
        values = (
            np.column_stack(
                [
                    (df[c] if is_float_dtype(df[c]) else pd.to_numeric(df[c], errors="coerce")).to_numpy(
                        float, na_value=np.nan
                    )
                    for c in columns
                ]
            )
            if len(df)
            else np.zeros((0, len(columns)))
        )
    lo = np.array([b[1] for b in bounds], dtype=float)
    hi = np.array([b[2] for b in bounds], dtype=float)
    with np.errstate(invalid="ignore"):
        flagged = np.isinf(values) | (values < lo) | (values > hi)
    for j in np.flatnonzero(flagged.any(axis=0)):
        column, lo_j, hi_j = bounds[j]
        v = pd.Series(values[:, j], index=df.index)
        bad = pd.Series(flagged[:, j], index=df.index)
        b = df[bad]
        rng = f"[{'' if pd.isna(lo_j) else f'{lo_j:g}'}, {'' if pd.isna(hi_j) else f'{hi_j:g}'}]"
        parts.append(
            reject_rows(
                "",
                None,
                b["sourceRow"],
                column,
                v[bad].astype(str),
                f"value outside the physical range {rng}; cell cleared, sample kept",
                action=CELL_CLEARED,
                sample_numbers=b["sampleNumber"],
                stage="harmonize",
            ).assign(file=b["sourceFile"].to_numpy())
        )
        df.loc[bad, column] = np.nan
        df.loc[bad, "cellsCleared"] += 1
    return df, concat_rejects(parts)


def _resolve_duplicates(df: pd.DataFrame, essays: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    dup = df["sampleNumber"].duplicated(keep=False)
    info = {"duplicate_sample_numbers": 0, "duplicates_identical_dropped": 0, "duplicates_conflicting": []}
    if not dup.any():
        return df, empty_rejects(), info
    content = ["sampleDate", "unitId", "componentName", *essays]
    d = df[dup]
    info["duplicate_sample_numbers"] = int(d["sampleNumber"].nunique())
    # Newest lab report first, then the later file and row: the deterministic winner.
    ranked = d.sort_values(
        ["sampleNumber", "reportDate", "sourceFile", "sourceRow"],
        ascending=[True, False, False, False],
        kind="mergesort",
        na_position="last",
    )
    winners = ranked.drop_duplicates("sampleNumber", keep="first")
    losers = ranked.drop(winners.index)
    win_by_id = winners.set_index("sampleNumber")
    same_content = (
        (
            losers[content].reset_index(drop=True).fillna(-1).astype(str)
            == win_by_id.loc[losers["sampleNumber"], content].reset_index(drop=True).fillna(-1).astype(str)
        )
        .all(axis=1)
        .to_numpy()
    )
    info["duplicates_identical_dropped"] = int(same_content.sum())
    conflicting = losers[~same_content]
    rejects = []
    for sample, grp in conflicting.groupby("sampleNumber", sort=True):
        w = win_by_id.loc[sample]
        info["duplicates_conflicting"].append(str(sample))
        rejects.append(
            reject_rows(
                "",
                None,
                grp["sourceRow"],
                "sampleNumber",
                grp["sampleNumber"],
                f"duplicate sampleNumber with different values; kept {w['sourceFile']} row {int(w['sourceRow'])}",
                sample_numbers=grp["sampleNumber"],
                stage="duplicate",
            ).assign(file=grp["sourceFile"].to_numpy())
        )
    keep = df.drop(losers.index)
    return keep, concat_rejects(rejects), info


def prepare(
    samples: list[pd.DataFrame],
    client: str,
    *,
    as_of: pd.Timestamp | None = None,
    catalog: Catalog | None = None,
    min_date: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Row-by-row rules, independent of other rows: names, dates, exclusions, physical ranges.

    ``min_date``: the plausible floor of sample dates (default 1990-01-01, ``OIL_MIN_SAMPLE_DATE``).
    Returns ``(candidates, rejects, info)``; candidates may still share a sampleNumber.
    """
    catalog = catalog or load_catalog()
    essays = catalog.essays
    as_of = (as_of or pd.Timestamp.now(tz="UTC").tz_localize(None)).normalize()
    floor = pd.Timestamp(min_date) if min_date is not None else DEFAULT_MIN_SAMPLE_DATE
    frames = [s for s in samples if len(s)]
    if not frames:
        empty = pd.DataFrame({c: pd.Series(dtype="object") for c in silver_columns(catalog)})
        return _types(empty, essays).drop(columns=SILVER_LINKS), empty_rejects(), {}
    df = pd.concat(frames, ignore_index=True)
    if "cellsCleared" not in df:
        df["cellsCleared"] = 0
    n_in = len(df)
    df["client"] = client.upper()
    df["unitId"] = unit_ids(df["unitId"])
    df["machineName"] = machine_name(df["machineName"], df["machineModel"])
    df["machineBrand"] = brands(df["machineBrand"]).fillna("desconocido")
    df["machineModel"] = _clean_text(df["machineModel"]).str.upper()
    df["componentName"], df["componentNameNormalized"] = component_columns(df["componentName"])
    for c in (
        "oilBrand",
        "oilType",
        "oilWeight",
        "site",
        "machineSerialNumber",
        "componentSerialNumber",
        "labVerdict",
        "labComment",
    ):
        df[c] = _clean_text(df[c])
    for c in ("sampleDate", "labDate", "reportDate"):
        df[c] = pd.to_datetime(df[c]).astype("datetime64[us]")

    rejects = []

    def reject(mask: pd.Series, column: str, values: pd.Series, reason: str) -> None:
        if mask.any():
            m = df[mask]
            rejects.append(
                reject_rows(
                    "",
                    None,
                    m["sourceRow"],
                    column,
                    values[mask].astype(str),
                    reason,
                    sample_numbers=m["sampleNumber"],
                    stage="harmonize",
                ).assign(file=m["sourceFile"].to_numpy())
            )

    day = pd.Timedelta(days=1)
    future = (df["sampleDate"] > as_of + day).fillna(False)
    reject(
        future,
        "sampleDate",
        df["sampleDate"],
        f"sample date after {(as_of + day).date()}, the run day + 1 (in the future)",
    )
    too_old = (df["sampleDate"] < floor).fillna(False) & ~future
    reject(
        too_old,
        "sampleDate",
        df["sampleDate"],
        f"sample date before {floor.date()} (the plausible floor, OIL_MIN_SAMPLE_DATE)",
    )
    bad_date = future | too_old
    missing = (df["sampleDate"].isna() | df["unitId"].isna() | df["componentName"].isna()) & ~bad_date
    reject(
        missing,
        "sampleDate/unitId/componentName",
        df["sampleNumber"],
        "sample date, unit or component is empty",
    )
    coolant = df["componentNameNormalized"].isin(COOLANT_COMPONENTS)
    keep = (~bad_date & ~missing & ~coolant).to_numpy(bool)
    if not keep.all():  # one copy of the kept rows (a boolean selection and ``.copy()`` made two)
        df = df.take(np.flatnonzero(keep))
    # A report dated more than a day before its own sampling, or outside the plausible window, is a
    # wrong report date: cleared (recorded), the sample kept.
    for col in ("reportDate", "labDate"):
        wrong = ((df[col] < df["sampleDate"] - day) | (df[col] < floor) | (df[col] > as_of + day)).fillna(
            False
        )
        if wrong.any():
            w = df[wrong]
            rejects.append(
                reject_rows(
                    "",
                    None,
                    w["sourceRow"],
                    col,
                    w[col].astype(str),
                    f"{col} before the sample date, before {floor.date()} or after {(as_of + day).date()}; "
                    "cell cleared, sample kept",
                    action=CELL_CLEARED,
                    sample_numbers=w["sampleNumber"],
                    stage="harmonize",
                ).assign(file=w["sourceFile"].to_numpy())
            )
            df.loc[wrong, col] = pd.NaT
            df.loc[wrong, "cellsCleared"] = df.loc[wrong, "cellsCleared"].fillna(0) + 1
    df, range_rejects = _clear_out_of_range(df, catalog)
    rejects.append(range_rejects)
    # A sample the lab delivered without any reading is no analysis yet; one whose readings were all
    # cleared as bad is kept (its cellsCleared says so).
    empty = df[essays].isna().all(axis=1) & (df["cellsCleared"] == 0)
    reject(empty, "(all essays)", df["sampleNumber"], "sample has no measured value")
    df = df[~empty]
    df = df.assign(oilHourRange=oil_hour_range(df["oilMeter"]))
    cols = [c for c in silver_columns(catalog) if c not in SILVER_LINKS]
    info = {
        "samples_in": int(n_in),
        "future_dates_rejected": int(future.sum()),
        "dates_before_floor_rejected": int(too_old.sum()),
        "missing_keys_rejected": int(missing.sum()),
        "coolant_samples_excluded": int(coolant.sum()),
        "empty_samples_rejected": int(empty.sum()),
    }
    return df[cols].reset_index(drop=True), concat_rejects(rejects), info


def finish(
    candidates: pd.DataFrame, catalog: Catalog | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Cross-row rules: one row per sampleNumber, previous-sample links, the contract's dtypes."""
    catalog = catalog or load_catalog()
    df, dup_rejects, dup_info = _resolve_duplicates(candidates, catalog.essays)
    df = link_previous(df)
    return _types(df[silver_columns(catalog)], catalog.essays), dup_rejects, dup_info


def describe(silver: pd.DataFrame) -> dict:
    return {
        "samples": int(len(silver)),
        "units": int(silver["unitId"].nunique()),
        "components": int(silver[["unitId", "componentName"]].drop_duplicates().shape[0]),
        "date_min": str(silver["sampleDate"].min().date()) if len(silver) else None,
        "date_max": str(silver["sampleDate"].max().date()) if len(silver) else None,
    }


def harmonize(
    samples: list[pd.DataFrame],
    client: str,
    *,
    as_of: pd.Timestamp | None = None,
    catalog: Catalog | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Build one client's silver table from the tidy samples of its files (a full rebuild).

    ``as_of`` is the date after which a sample date counts as "in the future" (default: today,
    UTC). Returns ``(silver, rejects, info)``.
    """
    catalog = catalog or load_catalog()
    candidates, rejects, info = prepare(samples, client, as_of=as_of, catalog=catalog)
    silver, dup_rejects, dup_info = finish(candidates, catalog)
    return silver, concat_rejects([rejects, dup_rejects]), {**info, **dup_info, **describe(silver)}


def _types(df: pd.DataFrame, essays: list[str]) -> pd.DataFrame:
    """Pin the silver dtypes (the contract), whatever the lab readers produced."""
    # A column already of its type is left as it is (the same values: converting it is a copy).
    dtypes = df.dtypes  # before any change: each column is looked at once
    text = pd.StringDtype()
    for c in STRING_COLUMNS:
        if dtypes[c] != text:
            df[c] = df[c].astype(text)
    day = np.dtype("datetime64[us]")
    for c in DATE_COLUMNS:
        if dtypes[c] != day:
            df[c] = pd.to_datetime(df[c]).astype(day)
    number = np.dtype("float64")
    for c in FLOAT_COLUMNS + essays:
        if dtypes[c] != number:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(number)
    df["oilChanged"] = df["oilChanged"].astype("boolean")
    df["countPreventedByWater"] = df["countPreventedByWater"].fillna(False).astype(bool)
    df["sourceRow"] = df["sourceRow"].astype("int64")
    df["cellsCleared"] = pd.to_numeric(df["cellsCleared"], errors="coerce").fillna(0).astype("int64")
    df["daysSincePrevious"] = df["daysSincePrevious"].astype("Int64")
    return df
