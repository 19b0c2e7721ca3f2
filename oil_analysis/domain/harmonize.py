"""Tidy samples of one client's files → the silver harmonized table.

Rules (each a documented choice, see docs/DATA_CONTRACTS.md):

* names normalized by :mod:`oil_analysis.domain.names` (one versioned rule);
* ``sampleDate`` is the local site date (naive); missing or future dates are rejected;
* coolant compartments are not oil: they are excluded and counted (their essays differ);
* a ``sampleNumber`` seen twice with identical content is kept once; with different content the
  copy from the newest lab report wins (then the file name, then the row, so the choice is
  deterministic) and the others go to the rejects table with the reason;
* the previous sample is the one before in (unitId, componentName) ordered by
  (sampleDate, reportDate, sampleNumber) — a deterministic tie-break.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .catalog import Catalog, load_catalog
from .labs.common import REJECT_COLUMNS, concat_rejects, reject_rows
from .names import brands, component_columns, machine_name, unit_ids

OIL_HOURS_SPLIT = 1000.0
COOLANT_COMPONENTS = {"refrigerante"}

SILVER_METADATA = [
    "client",
    "sampleNumber",
    "sampleDate",
    "labDate",
    "reportDate",
    "site",
    "unitId",
    "machineName",
    "machineModel",
    "machineBrand",
    "machineSerialNumber",
    "machineHours",
    "componentName",
    "componentNameNormalized",
    "componentSerialNumber",
    "componentHours",
    "oilMeter",
    "oilHourRange",
    "oilBrand",
    "oilType",
    "oilWeight",
    "oilChanged",
    "isoCode",
    "particleCode",
    "countPreventedByWater",
    "censoredEssays",
    "labVerdict",
    "labComment",
    "sourceFile",
    "sourceRow",
]
SILVER_LINKS = ["previousSampleNumber", "previousSampleDate", "daysSincePrevious"]
ORDER_KEYS = ["unitId", "componentName", "sampleDate", "reportDate", "sampleNumber"]

STRING_COLUMNS = [
    "client",
    "sampleNumber",
    "site",
    "unitId",
    "machineName",
    "machineModel",
    "machineBrand",
    "machineSerialNumber",
    "componentName",
    "componentNameNormalized",
    "componentSerialNumber",
    "oilHourRange",
    "oilBrand",
    "oilType",
    "oilWeight",
    "isoCode",
    "particleCode",
    "censoredEssays",
    "labVerdict",
    "labComment",
    "sourceFile",
    "previousSampleNumber",
]
DATE_COLUMNS = ["sampleDate", "labDate", "reportDate", "previousSampleDate"]
FLOAT_COLUMNS = ["machineHours", "componentHours", "oilMeter"]


def silver_columns(catalog: Catalog | None = None) -> list[str]:
    catalog = catalog or load_catalog()
    return SILVER_METADATA + catalog.essays + SILVER_LINKS


def _clean_text(s: pd.Series) -> pd.Series:
    # Through the unique values: a column repeats a handful of texts, and the regex is per value.
    s = s.astype("string")
    uniq = pd.Series(s.dropna().unique(), dtype="string")
    clean = uniq.str.strip().str.replace(r"\s+", " ", regex=True)
    clean = clean.mask(clean.isin(["", "nan", "None", "-"]))
    return s.map(dict(zip(uniq, clean, strict=True))).astype("string")


def oil_hour_range(oil_meter: pd.Series) -> pd.Series:
    """LT_1000 / GE_1000 / UNKNOWN (DOMAIN.md §2.1)."""
    out = np.where(oil_meter.isna(), "UNKNOWN", np.where(oil_meter < OIL_HOURS_SPLIT, "LT_1000", "GE_1000"))
    return pd.Series(out, index=oil_meter.index, dtype="string")


def link_previous(silver: pd.DataFrame) -> pd.DataFrame:
    """Sort by the deterministic order and add the previous-sample columns."""
    df = silver.sort_values(ORDER_KEYS, kind="mergesort", na_position="first").reset_index(drop=True)
    same = (df["unitId"] == df["unitId"].shift()) & (df["componentName"] == df["componentName"].shift())
    same = same.fillna(False).astype(bool)
    df["previousSampleNumber"] = df["sampleNumber"].shift().where(same).astype("string")
    df["previousSampleDate"] = df["sampleDate"].shift().where(same).astype("datetime64[us]")
    days = (df["sampleDate"] - df["previousSampleDate"]).dt.days
    df["daysSincePrevious"] = days.astype("Int64")
    return df


def _clear_out_of_range(df: pd.DataFrame, catalog: Catalog) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Readings outside the catalog's physical range (a negative ppm...) are cleared, not kept.

    The sample stays (its other readings are good); each cleared cell is recorded as a reject.
    """
    parts = []
    df = df.copy()
    for essay, row in catalog.table.iterrows():
        lo, hi = row["min_value"], row["max_value"]
        v = pd.to_numeric(df[essay], errors="coerce")
        bad = pd.Series(False, index=df.index)
        if pd.notna(lo):
            bad |= v < lo
        if pd.notna(hi):
            bad |= v > hi
        if bad.any():
            b = df[bad]
            rng = f"[{'' if pd.isna(lo) else f'{lo:g}'}, {'' if pd.isna(hi) else f'{hi:g}'}]"
            parts.append(
                reject_rows(
                    "",
                    None,
                    b["sourceRow"],
                    essay,
                    v[bad].astype(str),
                    f"value outside the physical range {rng}; cell cleared, sample kept",
                ).assign(file=b["sourceFile"].to_numpy())
            )
            df.loc[bad, essay] = np.nan
    return df, concat_rejects(parts)


def _resolve_duplicates(df: pd.DataFrame, essays: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    dup = df["sampleNumber"].duplicated(keep=False)
    info = {"duplicate_sample_numbers": 0, "duplicates_identical_dropped": 0, "duplicates_conflicting": []}
    if not dup.any():
        return df, pd.DataFrame(columns=REJECT_COLUMNS), info
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
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Row-by-row rules, independent of other rows: names, dates, exclusions, physical ranges.

    Returns ``(candidates, rejects, info)``; candidates may still share a sampleNumber.
    """
    catalog = catalog or load_catalog()
    essays = catalog.essays
    as_of = (as_of or pd.Timestamp.now(tz="UTC").tz_localize(None)).normalize()
    frames = [s for s in samples if len(s)]
    if not frames:
        empty = pd.DataFrame({c: pd.Series(dtype="object") for c in silver_columns(catalog)})
        return _types(empty, essays).drop(columns=SILVER_LINKS), pd.DataFrame(columns=REJECT_COLUMNS), {}
    df = pd.concat(frames, ignore_index=True)
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
                reject_rows("", None, m["sourceRow"], column, values[mask].astype(str), reason).assign(
                    file=m["sourceFile"].to_numpy()
                )
            )

    future = df["sampleDate"] > as_of
    reject(future, "sampleDate", df["sampleDate"], f"sample date after {as_of.date()} (in the future)")
    missing = df["sampleDate"].isna() | df["unitId"].isna() | df["componentName"].isna()
    reject(
        missing,
        "sampleDate/unitId/componentName",
        df["sampleNumber"],
        "sample date, unit or component is empty",
    )
    coolant = df["componentNameNormalized"].isin(COOLANT_COMPONENTS)
    df = df[~future & ~missing & ~coolant]
    df, range_rejects = _clear_out_of_range(df, catalog)
    rejects.append(range_rejects)
    empty = df[essays].isna().all(axis=1)
    reject(empty, "(all essays)", df["sampleNumber"], "sample has no measured value")
    df = df[~empty]
    df = df.assign(oilHourRange=oil_hour_range(df["oilMeter"]))
    cols = [c for c in silver_columns(catalog) if c not in SILVER_LINKS]
    info = {
        "samples_in": int(n_in),
        "future_dates_rejected": int(future.sum()),
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
    return _types(df[silver_columns(catalog)].copy(), catalog.essays), dup_rejects, dup_info


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
    for c in STRING_COLUMNS:
        df[c] = df[c].astype("string")
    for c in DATE_COLUMNS:
        df[c] = pd.to_datetime(df[c]).astype("datetime64[us]")
    for c in FLOAT_COLUMNS + essays:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    df["oilChanged"] = df["oilChanged"].astype("boolean")
    df["countPreventedByWater"] = df["countPreventedByWater"].fillna(False).astype(bool)
    df["sourceRow"] = df["sourceRow"].astype("int64")
    df["daysSincePrevious"] = df["daysSincePrevious"].astype("Int64")
    return df
