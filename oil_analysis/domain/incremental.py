"""Incremental silver: upsert by sampleNumber, links recomputed only where needed, audit of changes.

Lab exports are cumulative (one workbook per unit, re-exported with new rows and corrections) and
samples arrive late. Rather than rebuilding silver from every file, a run:

1. drops the rows that came from files that changed or disappeared since the last silver;
2. prepares the rows of new and changed files (the row-by-row rules of :func:`harmonize.prepare`);
3. resolves duplicate sampleNumbers over the union with the deterministic rule of a full build;
4. recomputes previous-sample links only for the (unit, component) pairs that gained or lost rows.

The result is exactly what :func:`harmonize.harmonize` gives on all files (a test proves it). One
case cannot be done incrementally: a sample of a changed or removed file that also sits in an
unchanged file (its copy there may have lost the duplicate contest and must come back). Then
:func:`upsert` returns ``None`` and the caller rebuilds in full.

The *candidate index* (sampleNumber, sourceFile of every prepared row, winners and losers) is the
state that makes that check possible; it is stored beside silver.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api.types import is_float_dtype

from .catalog import Catalog, load_catalog
from .harmonize import (
    ORDER_KEYS,
    SILVER_LINKS,
    _resolve_duplicates,
    _types,
    finish,
    link_previous,
    silver_columns,
    sort_order,
)

AUDIT_COLUMNS = ["sampleNumber", "column", "old_value", "new_value", "file", "changed_at"]
INDEX_COLUMNS = ["sampleNumber", "sourceFile"]


def candidate_index(candidates: pd.DataFrame) -> pd.DataFrame:
    """(sampleNumber, sourceFile) of every prepared row, winners and losers, sorted."""
    idx = candidates[INDEX_COLUMNS].astype("string").drop_duplicates()
    return idx.take(sort_order(idx, INDEX_COLUMNS, na_position="last")).reset_index(drop=True)


def _text(values) -> pa.Array | None:
    """``values`` (a Series, or a collection of texts) as one Arrow text array without nulls;
    None when they are not all text (the callers then take their general path)."""
    try:
        if isinstance(values, pd.Series):
            if values.hasnans:
                return None
            arr = pa.array(values.array)
        else:
            arr = pa.array(values if isinstance(values, list) else list(values), type=pa.large_string())
    except (pa.ArrowException, TypeError, ValueError):
        return None
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)) or arr.null_count:
        return None
    return arr.cast(pa.large_string())


def among(values: pd.Series, pool) -> np.ndarray:
    """``values.isin(pool)`` as a boolean array: in Arrow when both are texts without missing
    values (sample numbers), else through a Python set (for thousands of sample numbers pandas'
    ``isin`` on Arrow-backed strings costs ~50× more)."""
    arr, members = _text(values), _text(pool)
    if arr is not None and members is not None:
        return pc.is_in(arr, value_set=members).to_numpy(zero_copy_only=False)
    # A Series' values through one conversion (iterating an Arrow-backed Series is per element).
    members = set(pool.tolist() if isinstance(pool, pd.Series) else pool)
    return np.fromiter((v in members for v in values.to_numpy(object)), dtype=bool, count=len(values))


def repeats(values: pd.Series) -> bool:
    """``values.duplicated().any()``, counted in Arrow for texts without missing values."""
    arr = _text(values)
    if arr is None:
        return bool(values.duplicated().any())
    return pc.count_distinct(arr).as_py() != len(arr)


def locate(values: pd.Series, pool: pd.Series) -> np.ndarray:
    """Per value, its position in ``pool`` (-1: absent): ``pd.Index(pool).get_indexer(values)``
    over the objects, in Arrow when both are texts without missing values and ``pool`` holds
    each once (sample numbers); otherwise pandas, which also raises on a repeated pool value."""
    arr, keys = _text(values), _text(pool)
    if arr is not None and keys is not None and pc.count_distinct(keys).as_py() == len(keys):
        found = pc.index_in(arr, value_set=keys)
        return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.intp)
    return pd.Index(pool.to_numpy(object)).get_indexer(values.to_numpy(object))


def upsert(
    previous: pd.DataFrame,
    index: pd.DataFrame,
    new_candidates: pd.DataFrame,
    dropped_files: set[str],
    catalog: Catalog | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict] | None:
    """Apply one batch of file changes to the previous silver.

    ``new_candidates``: prepared rows of the new and changed files; ``dropped_files``: files whose
    previous rows are replaced (changed) or gone (removed). Returns ``(silver, index, dup_rejects,
    info)``, or ``None`` when only a full rebuild gives the right answer.
    """
    catalog = catalog or load_catalog()
    touched = set(dropped_files) | set(new_candidates["sourceFile"].astype(str).drop_duplicates().tolist())
    leaving = index[index["sourceFile"].isin(dropped_files)]
    staying = index[~index["sourceFile"].isin(touched)]
    if among(leaving["sampleNumber"], staying["sampleNumber"]).any():
        return None
    stays = ~among(previous["sourceFile"], touched)
    new_index = candidate_index(pd.concat([staying, new_candidates[INDEX_COLUMNS]]))
    if not stays.any():
        # Every file changed (a fleet re-sending its cumulative workbooks): nothing to keep, so the
        # rows are those of a full build of the candidates (the links of every pair recomputed).
        silver, dup_rejects, dup_info = finish(new_candidates, catalog)
        pairs = silver[["unitId", "componentName"]].drop_duplicates()
        info = {**dup_info, "pairs_relinked": int(len(pairs)), "rows_relinked": int(len(silver))}
        return silver, new_index, dup_rejects, info
    kept = previous[stays]
    gone = previous[~stays]
    union = pd.concat([kept.drop(columns=SILVER_LINKS), new_candidates], ignore_index=True)
    merged, dup_rejects, dup_info = _resolve_duplicates(union, catalog.essays)
    fresh = merged[merged["sourceFile"].isin(touched)]
    survivors = pd.MultiIndex.from_frame(merged[["sampleNumber", "sourceFile"]])
    lost = kept[~pd.MultiIndex.from_frame(kept[["sampleNumber", "sourceFile"]]).isin(survivors)]
    pairs = pd.concat([gone, fresh, lost])[["unitId", "componentName"]].drop_duplicates()
    key = pd.MultiIndex.from_frame(merged[["unitId", "componentName"]])
    affected = (
        key.isin(pd.MultiIndex.from_frame(pairs)) if len(pairs) else pd.Series(False, index=merged.index)
    )
    relinked = link_previous(merged[affected])
    untouched = merged[~affected].merge(
        kept[["sampleNumber", *SILVER_LINKS]], on="sampleNumber", how="left", validate="one_to_one"
    )
    silver = pd.concat([untouched, relinked], ignore_index=True)
    silver = silver.take(sort_order(silver, ORDER_KEYS)).reset_index(drop=True)
    silver = _types(silver[silver_columns(catalog)].copy(), catalog.essays)
    info = {**dup_info, "pairs_relinked": int(len(pairs)), "rows_relinked": int(affected.sum())}
    return silver, new_index, dup_rejects, info


NO_CHANGES = {"samples_added": 0, "samples_removed": 0, "samples_updated": 0, "values_changed": 0}


def empty_audit() -> pd.DataFrame:
    table = pd.DataFrame({c: pd.Series(dtype="string") for c in AUDIT_COLUMNS})
    table["changed_at"] = pd.Series(dtype="datetime64[us]")
    return table


_EMPTY_AUDIT = empty_audit()


def _quiet(previous: pd.Series, before_at: np.ndarray, current: pd.Series, now_at: np.ndarray) -> bool:
    """True when ``previous`` at ``before_at`` equals ``current`` at ``now_at`` row for row (two
    missing values are equal), found cheaply: float columns in numpy, the others in Arrow. False
    when it cannot tell (types that differ or do not convert): the caller compares them in pandas,
    so False is never wrong."""
    if is_float_dtype(previous.dtype) and is_float_dtype(current.dtype):
        x = previous.to_numpy(float, na_value=np.nan)[before_at]
        y = current.to_numpy(float, na_value=np.nan)[now_at]
        return bool(((x == y) | (np.isnan(x) & np.isnan(y))).all())
    try:
        x = pa.array(previous.array).take(pa.array(before_at))
        y = pa.array(current.array).take(pa.array(now_at))
    except (pa.ArrowException, TypeError, ValueError):
        return False
    if x.type != y.type:
        return False
    same = pc.or_(pc.fill_null(pc.equal(x, y), False), pc.and_(x.is_null(), y.is_null()))
    return bool(pc.all(same).as_py())


def audit(
    previous: pd.DataFrame, current: pd.DataFrame, changed_at: pd.Timestamp, catalog: Catalog | None = None
) -> tuple[pd.DataFrame, dict]:
    """What changed between two silvers: added / removed samples and every corrected value."""
    catalog = catalog or load_catalog()
    # Rows matched by position through sampleNumber (unique in a silver): no re-indexed copies.
    cur_ids = current["sampleNumber"].to_numpy(object)
    at = locate(current["sampleNumber"], previous["sampleNumber"])
    now_at = np.flatnonzero(at >= 0)
    before_at = at[now_at]
    watched = [
        "sampleDate",
        "unitId",
        "componentName",
        "machineHours",
        "oilMeter",
        "labVerdict",
        *catalog.essays,
    ]
    records = []
    # Each column first told equal or not in one vectorized pass (a re-sent workbook holds mostly the
    # same values): only the columns with a difference are compared value by value below.
    quiet = {c for c in watched if _quiet(previous[c], before_at, current[c], now_at)}
    ids = cur_ids[now_at]
    for col in watched:
        if col in quiet:
            continue
        x = previous[col].iloc[before_at].reset_index(drop=True)
        y = current[col].iloc[now_at].reset_index(drop=True)
        differ = (~((x == y).fillna(False) | (x.isna() & y.isna()))).to_numpy(bool)
        if differ.any():
            records.append(
                pd.DataFrame(
                    {
                        "sampleNumber": ids[differ],
                        "column": col,
                        "old_value": x[differ].astype("string").to_numpy(),
                        "new_value": y[differ].astype("string").to_numpy(),
                        "file": current["sourceFile"].iloc[now_at[differ]].astype("string").to_numpy(),
                        "changed_at": changed_at,
                    }
                )
            )
    if records:
        table = pd.concat(records, ignore_index=True)
        table = table.sort_values(["sampleNumber", "column"], kind="mergesort").reset_index(drop=True)
        for c in ("sampleNumber", "column", "old_value", "new_value", "file"):
            table[c] = table[c].astype("string")
        table["changed_at"] = pd.to_datetime(table["changed_at"]).astype("datetime64[us]")
    else:
        table = _EMPTY_AUDIT.copy()  # typed and in order already
    summary = {
        "samples_added": int(len(cur_ids) - len(now_at)),
        "samples_removed": int(len(previous) - len(now_at)),
        "samples_updated": int(table["sampleNumber"].nunique()),
        "values_changed": int(len(table)),
    }
    return table, summary


def rows_differ(current: pd.DataFrame, previous: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Per row of ``current``: True when ``previous`` has no row of its sampleNumber (both unique)
    or that row holds another value in one of ``columns`` (two missing values are equal).

    Float columns are compared in numpy, the others in Arrow."""
    at = locate(current["sampleNumber"], previous["sampleNumber"])
    known = at >= 0
    take = at[known]
    differ = np.zeros(int(known.sum()), dtype=bool)
    now_types, before_types = current.dtypes, previous.dtypes
    floats = [c for c in columns if is_float_dtype(now_types[c]) and is_float_dtype(before_types[c])]
    now_at = np.flatnonzero(known)
    for c in floats:
        # Column by column (no copy of the float block): equal bits, the same value and sign
        # (-0.0 and 0.0 compare equal but are written differently: a sign change is a change).
        # Only the few cells whose bits differ are looked at again: two missing values are equal
        # whatever their NaN payload.
        x = current[c].to_numpy(float, na_value=np.nan)[now_at]
        y = previous[c].to_numpy(float, na_value=np.nan)[take]
        rows = np.flatnonzero(x.view(np.uint64) != y.view(np.uint64))
        if len(rows):
            differ[rows[~(np.isnan(x[rows]) & np.isnan(y[rows]))]] = True
    rows_now, rows_before = pa.array(now_at), pa.array(take)
    for c in columns:
        if c in floats:
            continue
        x = pa.array(current[c].array).take(rows_now)
        y = pa.array(previous[c].array).take(rows_before)
        if x.type != y.type:  # retyped: compared as text
            x, y = x.cast(pa.large_string()), y.cast(pa.large_string())
        same = pc.or_(pc.fill_null(pc.equal(x, y), False), pc.and_(x.is_null(), y.is_null()))
        differ |= ~same.to_numpy(zero_copy_only=False)
    out = np.ones(len(current), dtype=bool)
    out[known] = differ
    return out


# The columns of a limit row that classification reads: a group whose rows differ only elsewhere
# (sample_count, baseline, version, computed_at) classifies every sample exactly as before.
CLASSIFYING_LIMIT_COLUMNS = [
    "client",
    "machine",
    "component",
    "stratum",
    "essay",
    "group",
    "kind",
    "direction",
    "marginal",
    "condemning",
    "critical",
    "comparison",
]
LIMIT_GROUP = ["client", "machine", "component"]
# Where a row came from, not what it says: a cumulative workbook re-sent with new rows on top moves
# every old row down (sourceRow), which must not make its report "changed". Reused reports take
# these columns from the current silver.
PROVENANCE = ("sourceFile", "sourceRow")
SILVER_GROUP = ["client", "machineName", "componentNameNormalized"]


def changed_limit_groups(old: pd.DataFrame, new: pd.DataFrame) -> set[tuple[str, str, str]]:
    """The (client, machine, component) groups whose limits classify differently in ``new`` than
    in ``old``: a limit row added, removed, or with another level, stratum or comparison rule."""
    cols = [c for c in CLASSIFYING_LIMIT_COLUMNS if c in old.columns or c in new.columns]
    both = pd.concat([old.reindex(columns=cols), new.reindex(columns=cols)], ignore_index=True)
    for c in cols:
        if not pd.api.types.is_float_dtype(both[c]):
            both[c] = both[c].astype("string")
    differ = both[~both.duplicated(keep=False)]  # a row in only one of the two tables
    return set(differ[LIMIT_GROUP].astype(str).itertuples(index=False, name=None))


def reports_to_redo(
    silver: pd.DataFrame,
    previous: pd.DataFrame | None,
    limits_version: str,
    catalog: Catalog | None = None,
    changed_groups: set[tuple[str, str, str]] | None = None,
) -> pd.Series:
    """Which silver rows need classifying again (boolean, aligned with ``silver``).

    The rows that are new or changed, and the rows whose previous sample is one of those (their
    trend breaches depend on it). When the limits version changed: also every row of the groups in
    ``changed_groups`` (see :func:`changed_limit_groups`), or every row when that is None.
    """
    catalog = catalog or load_catalog()
    if previous is None or previous.empty:
        return pd.Series(True, index=silver.index)
    new_version = (previous["limits_version"] != limits_version).any()
    if new_version and changed_groups is None:
        return pd.Series(True, index=silver.index)
    if repeats(silver["sampleNumber"]) or repeats(previous["sampleNumber"]):
        return pd.Series(True, index=silver.index)  # not a valid key: the checks will say so
    cols = [c for c in silver_columns(catalog) if c not in PROVENANCE]
    if any(c not in previous.columns for c in cols):
        return pd.Series(True, index=silver.index)
    changed = pd.Series(rows_differ(silver, previous, cols), index=silver.index)
    dirty = set(silver.loc[changed, "sampleNumber"])
    redo = changed | silver["previousSampleNumber"].isin(dirty).fillna(False)
    if new_version and changed_groups:
        key = pd.MultiIndex.from_frame(silver[SILVER_GROUP].astype(str))
        redo |= key.isin(list(changed_groups))
    return redo


def _assemble(
    silver: pd.DataFrame,
    redo: np.ndarray,
    fresh: pd.DataFrame,
    previous: pd.DataFrame,
    version: str | None,
) -> pd.DataFrame:
    """The reports of every silver row, in silver's order: the silver columns as they are, and each
    column classification adds taken from ``fresh`` (the classified rows, a superset of the redo
    rows) for the rows to redo and from ``previous`` for the others (their sampleNumbers are all
    in ``previous``: a row without a previous report is redone). ``version``: the limits version
    the kept reports are now named with (None: keep theirs). Only the added columns are built: the
    ~100 silver columns are never concatenated or reordered."""
    kept = np.flatnonzero(~redo)
    redone = np.flatnonzero(redo)
    sample = silver["sampleNumber"].reset_index(drop=True)
    from_previous = locate(sample.iloc[kept], previous["sampleNumber"])
    from_fresh = locate(sample.iloc[redone], fresh["sampleNumber"])
    out = silver.reset_index(drop=True).copy(deep=False)  # columns are added, never written into
    for c in [c for c in fresh.columns if c not in silver.columns]:
        if c == "limits_version" and version is not None:
            old = pd.Series(version, index=kept, dtype=object)  # same breaches under the new version
        else:
            old = previous[c].iloc[from_previous]
        col = interleave(kept, old, redone, fresh[c].iloc[from_fresh])
        if col.dtype != fresh[c].dtype:
            col = col.astype(fresh[c].dtype)
        out[c] = col.array
    return out


def interleave(first_at: np.ndarray, first: pd.Series, second_at: np.ndarray, second: pd.Series) -> pd.Series:
    """One column from two parts: the values of ``first`` at the positions ``first_at`` and those of
    ``second`` at ``second_at`` (together the positions 0..n-1), as one Series in position order
    (one concatenation and one take: no sort of an index)."""
    if not len(second_at):
        return first.reset_index(drop=True)
    if not len(first_at):
        return second.reset_index(drop=True)
    order = np.empty(len(first_at) + len(second_at), dtype=np.intp)
    order[first_at] = np.arange(len(first_at))
    order[second_at] = len(first_at) + np.arange(len(second_at))
    a, b = first.array, second.array
    if a.dtype == b.dtype:  # one array concatenation and take, without pandas' Series machinery
        name = first.name if first.name == second.name else None
        return pd.Series(type(a)._concat_same_type([a, b]).take(order), name=name)
    return pd.concat([first, second], ignore_index=True).take(order).reset_index(drop=True)


def classify_incremental(
    silver: pd.DataFrame,
    limits: pd.DataFrame,
    previous: pd.DataFrame | None,
    classify,
    catalog: Catalog | None = None,
    previous_limits: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Classify only what needs it and reuse the previous reports of the other rows.

    ``classify(frame)`` is the full classifier; rows are classified together with their previous
    samples so trend breaches see the same context as in a full run. ``previous_limits``: the
    limits the previous reports were classified with; when the version changed, only the groups
    whose limits classify differently are classified again (the others keep their reports, with
    the new version named).
    """
    catalog = catalog or load_catalog()
    version = str(limits["version"].iloc[0]) if len(limits) else "empty"
    changed_groups = None
    known = previous_limits is not None and previous is not None and len(previous) and len(limits)
    if known and str(previous_limits["version"].iloc[0]) == str(previous["limits_version"].iloc[0]):
        changed_groups = changed_limit_groups(previous_limits, limits)
    redo = reports_to_redo(silver, previous, version, catalog, changed_groups)
    if redo.all():
        out = classify(silver)
        return out, {
            "classified": int(len(silver)),
            "reused": 0,
            "redo": None,
            "limit_groups_changed": None if changed_groups is None else len(changed_groups),
        }
    need = set(silver.loc[redo, "sampleNumber"]) | set(silver.loc[redo, "previousSampleNumber"].dropna())
    context = silver[among(silver["sampleNumber"], need)]
    fresh = classify(context.reset_index(drop=True))
    out = _assemble(silver, redo.to_numpy(bool), fresh, previous, version if len(limits) else None)
    return out, {
        "classified": int(redo.sum()),
        "reused": int((~redo).sum()),
        "redo": set(silver.loc[redo, "sampleNumber"]),
        "limit_groups_changed": None if changed_groups is None else len(changed_groups),
    }
