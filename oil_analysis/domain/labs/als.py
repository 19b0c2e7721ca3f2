"""ALS lab parquet exports → tidy samples.

Format facts (DOMAIN.md §1.3): one row per sample in a wide *test-slot* layout: for every slot N,
``testResults_{N}_test_translation_name`` names the test (Spanish) and
``testResults_{N}_resultValue`` holds its value as text. Slots are in no fixed order.

Unlike the reference, values are parsed without losing information: censored readings (``<0.05``,
``>100``) are kept as their bound with a censor marker, decimal commas and signs are kept, and a
test repeated within one sample with different values rejects that sample (reported, no crash).
Coolant tests (pH, urea...) are not in the oil catalog: they are counted and skipped.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..catalog import Catalog, load_catalog
from ..names import fold
from .common import (
    CELL_CLEARED,
    FLAG_LEVELS,
    LabFileError,
    ReadResult,
    censored_json,
    concat_rejects,
    date_value,
    identifier_series,
    not_determined,
    parse_numbers,
    reject_rows,
)

LAB_FORMAT = "als_parquet"
_SLOT = re.compile(r"^testResults_(\d+)_(test_translation_name|resultValue)$")

IDENTITY = {
    "sampleNumber": "sampleNumber",
    "equipment_tag": "unitId",
    "equipment_family_name": "machineName",
    "equipment_maker_name": "machineBrand",
    "equipment_model": "machineModel",
    "equipment_serial": "machineSerialNumber",
    "compartment_name": "componentName",
    "compartment_id": "componentSerialNumber",
    "collectionData_oil_manufacturer_name": "oilBrand",
    "collectionData_oil_viscosity_name": "oilType",
}
NUMERIC = {"equipment_time": "machineHours", "collectionData_fluidTime": "oilMeter"}
DATES = {
    "collectionData_dateSampled": "sampleDate",
    "dateOfEntryIntoLaboratory": "labDate",
    "validResult_evaluationDate": "reportDate",
}
REQUIRED = ["sampleNumber", "equipment_tag", "compartment_name", "collectionData_dateSampled"]

# Words the lab may use instead of the N/T/P/E letters for water, fuel and glycol.
FLAG_WORDS = {
    "n": 0.0,
    "neg": 0.0,
    "negativo": 0.0,
    "no detectado": 0.0,
    "nd": 0.0,
    "t": 1.0,
    "traza": 1.0,
    "trazas": 1.0,
    "p": 2.0,
    "pos": 2.0,
    "positivo": 2.0,
    "e": 3.0,
    "excesivo": 3.0,
    "alto": 3.0,
}
# Words for the visual debris levels (magnetic / non-magnetic particles).
LEVEL_WORDS = {
    "ausente": 0.0,
    "no": 0.0,
    "nulo": 0.0,
    "leve": 1.0,
    "bajo": 1.0,
    "moderado": 2.0,
    "medio": 2.0,
    "abundante": 3.0,
    "severo": 3.0,
    "alto": 3.0,
}
IDENTITY_EMPTY = {
    "sampleNumber": "sample number is empty",
    "equipment_tag": "unit (equipment_tag) is empty",
    "compartment_name": "component (compartment_name) is empty",
}
DEFAULT_MAX_MB = 256.0


def _read_table(path: str, max_mb: float) -> pd.DataFrame:
    name = os.path.basename(path)
    if os.path.getsize(path) == 0:
        raise LabFileError(name, "the file is empty (0 bytes); expected a parquet file")
    try:
        meta = pq.ParquetFile(path).metadata
        inflated = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if inflated > max_mb * 1024 * 1024:
            raise LabFileError(
                name,
                f"the file inflates to {inflated / 1e6:,.1f} MB of column data ({meta.num_rows:,} rows), "
                f"over the limit of {max_mb:g} MB (OIL_MAX_SHEET_XML_MB); not parsed",
            )
        table = pq.read_table(path)
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        raise LabFileError(name, f"not a readable parquet file ({type(exc).__name__}: {exc})") from None
    return table.to_pandas(types_mapper=None)


def _dates(values: pd.Series, tz: str) -> tuple[pd.Series, pd.Series]:
    """Sampling timestamps (any physical type) → the local site date (naive midnight).

    ALS sends UTC timestamps. Most are local midnight (03:00/04:00Z in Chile) and are converted to
    the site timezone; a timestamp at exactly 00:00Z carries a bare date (older exports) and is
    taken as that date, not shifted to the previous local day. Epoch numbers (s, ms, µs, ns) are UTC
    timestamps too; a text date without a zone (``15/01/2024``) is the local date it names.
    Returns ``(dates, problem)``: the reason of each cell that is not a date, None otherwise.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        utc = pd.to_datetime(values, utc=True)
        problem = pd.Series(None, index=values.index, dtype=object)
    else:
        stamps, problems = [], []
        for v in values.to_numpy(dtype=object):
            ts, why = date_value(v)
            if (
                ts is not None
                and ts.tzinfo is None
                and (
                    isinstance(v, int | float | np.integer | np.floating)
                    or (isinstance(v, str) and v.strip().isdigit())
                )
            ):
                ts = ts.tz_localize("UTC")  # epoch numbers count from 1970-01-01 UTC
            elif ts is not None and ts.tzinfo is None:
                ts = ts.normalize().tz_localize("UTC")  # a local date: kept as that date below
            stamps.append(ts if ts is not None else pd.NaT)
            problems.append(why)
        utc = pd.to_datetime(pd.Series(stamps, index=values.index, dtype=object), utc=True)
        problem = pd.Series(problems, index=values.index, dtype=object)
    bare_date = utc == utc.dt.normalize()
    local = utc.dt.tz_convert(tz).dt.tz_localize(None).dt.normalize()
    local = local.where(~bare_date, utc.dt.tz_localize(None))
    return local.astype("datetime64[us]"), problem


def read_als_parquet(
    path: str,
    catalog: Catalog | None = None,
    timezone: str = "UTC",
    *,
    max_xml_mb: float = DEFAULT_MAX_MB,
    max_cells: int | None = None,
) -> ReadResult:
    """Read one ALS export into tidy samples (``timezone``: the client's site timezone).

    Only an invalid identity (sample number, sampling date, unit, component) rejects a sample; any
    other bad cell is cleared, recorded (action ``cell cleared``) and counted in ``cellsCleared``.
    ``max_xml_mb`` bounds the uncompressed column data (``max_cells`` is for sheets; unused here).
    """
    catalog = catalog or load_catalog()
    name = os.path.basename(path)
    raw = _read_table(path, max_xml_mb)
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise LabFileError(
            name, f"required column missing; expected a column named {missing[0]!r}", column=missing[0]
        )
    slots: dict[int, dict[str, str]] = {}
    for col in raw.columns:
        m = _SLOT.match(col)
        if m:
            slots.setdefault(int(m.group(1)), {})[m.group(2)] = col
    slots = {n: s for n, s in slots.items() if len(s) == 2}
    if not slots:
        raise LabFileError(
            name,
            "no test slots; expected columns testResults_{N}_test_translation_name "
            "and testResults_{N}_resultValue",
            column="testResults_0_resultValue",
        )
    for slot in slots.values():
        names = raw[slot["test_translation_name"]]
        if not (pd.api.types.is_string_dtype(names) or names.dtype == object or names.isna().all()):
            raise LabFileError(
                name, f"expected text test names, got {names.dtype}", column=slot["test_translation_name"]
            )
    raw = raw.reset_index(drop=True)
    raw.index = pd.RangeIndex(1, len(raw) + 1)  # 1-based record numbers in error messages
    if raw.empty:
        raise LabFileError(name, "the file holds no samples", row=1)

    rejects: list[pd.DataFrame] = []
    bad_rows = pd.Series(False, index=raw.index)
    cleared = pd.Series(0, index=raw.index, dtype="int64")
    rownum = pd.Series(raw.index, index=raw.index)
    ids = pd.Series(pd.NA, index=raw.index, dtype="string")

    def reject(mask: pd.Series, column: str, values: pd.Series, reason) -> None:
        """Reject whole samples (invalid identity); one reason per sample: the first found."""
        nonlocal bad_rows
        mask = mask.reindex(raw.index, fill_value=False).astype(bool) & ~bad_rows
        if mask.any():
            part = reject_rows(
                name,
                None,
                rownum[mask],
                column,
                values.reindex(raw.index)[mask],
                "",
                sample_numbers=ids[mask],
            )
            part["reason"] = reason[mask].to_numpy() if isinstance(reason, pd.Series) else reason
            rejects.append(part)
            bad_rows = bad_rows | mask

    def clear(problem: pd.Series, column: str, values: pd.Series) -> pd.Series:
        """Record the cells with a problem (cleared, sample kept); returns the mask of those cells."""
        problem = problem.reindex(raw.index)
        mask = problem.notna() & ~bad_rows
        if mask.any():
            part = reject_rows(
                name,
                None,
                rownum[mask],
                column,
                values.reindex(raw.index)[mask],
                "",
                action=CELL_CLEARED,
                sample_numbers=ids[mask],
            )
            part["reason"] = [f"{p}; cell cleared, sample kept" for p in problem[mask]]
            rejects.append(part)
            cleared.loc[mask] += 1
        return mask

    out = pd.DataFrame(index=raw.index)
    for src, dst in IDENTITY.items():
        col = raw[src] if src in raw else pd.Series(pd.NA, index=raw.index, dtype=object)
        out[dst] = identifier_series(col)
        if dst == "componentSerialNumber":
            out[dst] = out[dst].str.replace(r"\.0$", "", regex=True)
    ids[:] = out["sampleNumber"].to_numpy()
    for src, why in IDENTITY_EMPTY.items():
        reject(out[IDENTITY[src]].isna(), src, raw[src], why)
    for src, dst in DATES.items():
        if src in raw:
            out[dst], problem = _dates(raw[src], timezone)
            if dst == "sampleDate":
                reject(problem.notna(), src, raw[src], problem.fillna(""))
            else:
                out[dst] = out[dst].mask(clear(problem, src, raw[src]))
        else:
            out[dst] = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us]")
    reject(
        out["sampleDate"].isna(),
        "collectionData_dateSampled",
        raw["collectionData_dateSampled"],
        "sample date is empty",
    )
    for src, dst in NUMERIC.items():
        if src in raw:
            out[dst], _, problem = parse_numbers(raw[src])
            clear(problem, src, raw[src])
        else:
            out[dst] = np.nan

    # Melt the slots into (row, test, value) in one numpy pass.
    slot_ids = sorted(slots)
    names = np.concatenate(
        [raw[slots[n]["test_translation_name"]].astype(object).to_numpy() for n in slot_ids]
    )
    values = np.concatenate([raw[slots[n]["resultValue"]].astype(object).to_numpy() for n in slot_ids])
    rows = np.tile(raw.index.to_numpy(), len(slot_ids))
    long = pd.DataFrame({"row": rows, "test": names, "value": values})
    long = long[long["test"].notna() & (long["test"].astype(str).str.strip() != "")]
    tests = catalog.source_columns(LAB_FORMAT)
    by_fold = {fold(k): v for k, v in tests.items()}
    long["essay"] = long["test"].map(lambda t: by_fold.get(fold(t)))
    unknown = long[long["essay"].isna()]
    long = long[long["essay"].notna()]

    # "Not determined" markers (N/D, <LD, --...) are no reading, exactly as in every reader.
    long = long[~long["value"].map(not_determined).astype(bool)]
    # A test repeated within one sample: identical values are folded; different values leave the
    # essay unknown for that sample (cleared, recorded), the sample stays.
    conflicts: dict[str, pd.Series] = {}
    dup = long.duplicated(["row", "essay"], keep=False)
    if dup.any():
        d = long[dup]
        n_values = d.assign(v=d["value"].astype(str)).groupby(["row", "essay"])["v"].nunique()
        conflict = n_values[n_values > 1].reset_index()
        for essay, grp in conflict.groupby("essay"):
            values = d[d["essay"] == essay].groupby("row")["value"].agg(lambda v: " | ".join(map(str, v)))
            conflicts[essay] = values.reindex(raw.index)[raw.index.isin(grp["row"])]
        long = long.drop_duplicates(["row", "essay"], keep="first")
    wide = long.pivot(index="row", columns="essay", values="value").reindex(raw.index)
    essays: dict[str, pd.Series] = {}
    censors: dict[str, pd.Series] = {}
    flag_essays = set(catalog.with_method("flag"))
    level_essays = set(catalog.with_method("code"))
    for essay in catalog.essays:
        if essay not in wide:
            essays[essay] = pd.Series(np.nan, index=raw.index)
            continue
        cells = wide[essay]
        test = catalog.table.at[essay, "als_test_name"]
        if essay in flag_essays or essay in level_essays:
            words = FLAG_WORDS if essay in flag_essays else LEVEL_WORDS
            text = cells.astype("string").map(lambda v: fold(v) if v is not pd.NA else v)
            level = text.map(words)
            numeric, _, _ = parse_numbers(cells)
            level = level.astype(float).fillna(numeric.where(numeric.isin(list(FLAG_LEVELS.values()))))
            bad = cells.notna() & level.isna()
            expected = (
                "a flag level N, T, P or E"
                if essay in flag_essays
                else "a level Ausente, Leve, Moderado or Abundante (0-3)"
            )
            problem = pd.Series(None, index=raw.index, dtype=object).mask(bad, f"expected {expected}")
            level = level.mask(clear(problem, f"test {test!r}", cells))
            essays[essay] = level.astype(float)
        else:
            value, censor, problem = parse_numbers(cells)
            clear(problem, f"test {test!r}", cells)
            essays[essay], censors[essay] = value, censor
        if essay in conflicts:
            c = conflicts[essay]
            problem = pd.Series(None, index=raw.index, dtype=object)
            problem[c.index] = "test repeated within the sample with different values"
            gone = clear(problem, f"test {test!r}", c)
            essays[essay] = essays[essay].mask(gone)
            if essay in censors:
                censors[essay] = censors[essay].mask(gone, "")

    out = pd.concat([out, pd.DataFrame(essays, index=raw.index)[catalog.essays]], axis=1)
    out["censoredEssays"] = censored_json(censors, raw.index)
    for c in ("componentHours",):
        out[c] = np.nan
    for c in ("oilWeight", "site", "labVerdict", "labComment", "isoCode", "particleCode"):
        out[c] = pd.Series(pd.NA, index=raw.index, dtype="string")
    out["oilChanged"] = pd.Series(pd.NA, index=raw.index, dtype="boolean")
    out["countPreventedByWater"] = False
    out["sourceFile"] = name
    out["sourceRow"] = raw.index.astype("int64")
    out["cellsCleared"] = cleared.astype("int64")
    kept = out[~bad_rows].reset_index(drop=True)
    rejects = [concat_rejects(rejects)]
    if len(rejects[0]):  # a rejected sample's record is its identity reason, not its other cells
        r = rejects[0]
        rejects = [r[~((r["action"] == CELL_CLEARED) & r["row"].isin(set(raw.index[bad_rows])))]]
    info = {
        "file": name,
        "lab_format": LAB_FORMAT,
        "rows_read": int(len(raw)),
        "samples": int(len(kept)),
        "rows_rejected": int(bad_rows.sum()),
        "cells_cleared": int(cleared[~bad_rows].sum()),
        "test_slots": len(slot_ids),
        "unknown_tests_skipped": {str(k): int(v) for k, v in unknown["test"].value_counts().head(20).items()},
    }
    return ReadResult(samples=kept, rejects=concat_rejects(rejects), info=info)
