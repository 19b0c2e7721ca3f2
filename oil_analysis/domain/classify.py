"""Silver samples + limits → classified reports (one row per sample).

Every reading beyond a limit is a *breach* with a level (marginal / condemning / critical), a
direction and a kind (``level``: the reading itself; ``trend``: its change since the previous
sample of the same unit and component). Each breach carries its points::

    points = level_points[level] × weight(essay group) × (trend_weight if kind == 'trend')
             × (secondary_factor if another breach of the same group in the sample scores higher)

Kind ``hours`` judges the reading against the limits of its oil-hour bin; a level and an hours
breach of the same essay score once (the higher). Contaminant breaches score only when the sample
also has a scoring wear or particle breach (``corroboration``); otherwise they are recorded with 0.

``severity_score`` is exactly the sum of the points in ``breached_essays`` and ``report_status``
cuts it: Normal < ``alerta_cut`` ≤ Alerta < ``anormal_cut`` ≤ Anormal. Additive essays are
recorded with 0 points: additive levels describe the oil formulation, not the machine.

The comparison rule (strict or inclusive) is read from the limits table, so classification can
never disagree with the rule the limits were computed for.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from .catalog import Catalog
from .limits import ALL_STRATA, LEVELS, params_from_dict, parse_hours_stratum, trend_deltas

STATUSES = ("Normal", "Alerta", "Anormal")  # the statuses of a report or a machine, mildest first
RANK = {s: i for i, s in enumerate(STATUSES)}  # a status's severity: higher is worse
CLASSIFIED_COLUMNS = [
    "breached_essays",
    "essays_broken",
    "wear_essays_broken",
    "severity_score",
    "report_status",
    "limits_version",
]


# Weight of each catalog group. Additives are recorded but never score; a positive water, fuel or
# glycol flag is a condemning finding by itself (P = 3 points x 3 = 9, E = 18).
DEFAULT_GROUP_WEIGHTS = {
    "wear": 1.0,
    "contaminant": 0.5,
    "additive": 0.0,
    "physicochemical": 1.0,
    "particle": 0.5,
    "visual": 1.0,
    "flag": 3.0,
}


@dataclass(frozen=True)
class ClassificationParams:
    """Points and cut-offs of the report classification (defaults: docs/CLASSIFICATION.md)."""

    # Points of one breach at marginal / condemning / critical level, before weights.
    level_points: tuple[float, float, float] = (1.0, 3.0, 6.0)
    # Weight of each catalog group (a group missing here takes its DEFAULT_GROUP_WEIGHTS value).
    group_weights: tuple[tuple[str, float], ...] = tuple(DEFAULT_GROUP_WEIGHTS.items())
    # Per-essay overrides of the group weight. The PQ index measures ferrous wear debris: it
    # weighs like a wear metal. Raw particle counts duplicate the ISO 4406 code built from them and
    # ferrography figures are rare: recorded, 0 points.
    essay_weights: tuple[tuple[str, float], ...] = (
        ("pq_index", 1.0),
        ("pc_4um", 0.0),
        ("pc_6um", 0.0),
        ("pc_10um", 0.0),
        ("pc_14um", 0.0),
        ("pc_18um", 0.0),
        ("pc_21um", 0.0),
        ("pc_38um", 0.0),
        ("pc_50um", 0.0),
        ("pc_70um", 0.0),
        ("particles_total", 0.0),
        ("ferro_cutting", 0.0),
        ("ferro_fatigue", 0.0),
        ("ferro_sliding", 0.0),
        ("ferro_nonmetallic", 0.0),
        ("nonmetallic", 0.0),
        ("fatigue", 0.0),
        ("fibers", 0.0),
    )
    # Multiplier of trend (rate-of-change) breaches; 0 switches trends off.
    trend_weight: float = 0.5
    # A previous sample older than this does not make a trend (same default as LimitParams).
    trend_max_days: int = 120
    # Within one sample and group, every breach after the highest-scoring one is multiplied by this
    # (correlated readings — Fe and Cr, or the three ISO code numbers — are one finding, not three).
    secondary_factor: float = 0.5
    # Where the secondary factor applies: within each catalog 'group' of a sample, or the whole 'sample'.
    secondary_scope: str = "group"
    # Multiplier of oil-age breaches (kind 'hours': the reading against the samples of similar oil
    # hours). A level and an hours breach of the same essay are one reading judged twice: only the
    # higher scores, the other is recorded with 0 points. 0 switches oil-age breaches off.
    hours_weight: float = 1.0
    # (group, supporting groups): breaches of the group score only when the same sample has a
    # scoring breach of a supporting group; otherwise they are recorded with 0 points. Silicon,
    # sodium and potassium without wear debris are sealants, ambient drift or new oil, not dirt.
    corroboration: tuple[tuple[str, tuple[str, ...]], ...] = (("contaminant", ("wear", "particle")),)
    # Normal < alerta_cut <= Alerta < anormal_cut <= Anormal.
    alerta_cut: float = 4.0
    anormal_cut: float = 10.0

    def weight(self, essay: str, group: str) -> float:
        over = dict(self.essay_weights)
        if essay in over:
            return float(over[essay])
        return float(dict(self.group_weights).get(group, DEFAULT_GROUP_WEIGHTS.get(group, 1.0)))

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ClassificationParams:
        """Build from plain config values (lists become tuples); unknown keys are an error."""
        return params_from_dict(cls, values)


# v2.0 reference scoring (DOMAIN.md §4.1-4.2): 1/3/5 points, every element counts, Anormal >= 9.
REFERENCE_V2_CLASSIFICATION = ClassificationParams(
    level_points=(1.0, 3.0, 5.0),
    group_weights=(("wear", 1.0), ("contaminant", 1.0), ("additive", 1.0)),
    essay_weights=(),
    trend_weight=0.0,
    hours_weight=0.0,
    corroboration=(),
    secondary_factor=1.0,
    alerta_cut=3.0,
    anormal_cut=9.0,
)


_BREACH_COLUMNS = ["row", "essay", "group", "value", "limit", "level", "direction", "kind", "points"]
_KEYS = ["client", "machine", "component"]


def _row_groups(silver: pd.DataFrame, limits: pd.DataFrame) -> tuple[np.ndarray, int, dict]:
    """Code every silver row by its limit group. Returns (codes, n_groups, {(client, machine,
    component): code}); rows of a group without limits get code n_groups (the "no limit" slot).

    Each key column is factorized on its own and the codes combined (no groupby over text: a small
    incremental batch would pay more for it than for its classification)."""
    cols = ["client", "machineName", "componentNameNormalized"]
    combined = np.zeros(len(silver), dtype=np.int64)
    factors, labels = [], []
    for c in cols:
        f, uniques = pd.factorize(silver[c].astype(str), use_na_sentinel=False)
        combined = combined * max(len(uniques), 1) + f
        factors.append(f)
        labels.append(np.asarray(uniques, dtype=object))
    _, first, row_code = np.unique(combined, return_index=True, return_inverse=True)
    keys = [tuple(labels[k][factors[k][i]] for k in range(len(cols))) for i in first]
    mapping = {k: i for i, k in enumerate(keys)}
    known = set(key_tuples(limits, _KEYS))
    has = np.fromiter((k in known for k in keys), dtype=bool, count=len(keys))
    codes = np.where(has[row_code.reshape(-1)], row_code.reshape(-1), len(keys))
    return codes, len(keys), mapping


def _limit_codes(limits: pd.DataFrame, mapping: dict, n_groups: int) -> np.ndarray:
    """The group code of every limit row (``n_groups`` for a group with no samples)."""
    keys = key_tuples(limits, _KEYS)
    return np.fromiter((mapping.get(k, n_groups) for k in keys), dtype=int, count=len(limits))


def key_tuples(frame: pd.DataFrame, columns: list[str]) -> list[tuple]:
    """The rows of ``frame[columns].astype(str)`` as tuples, built from one list per column (what
    ``itertuples`` gives, without its per-row machinery)."""
    return list(zip(*(frame[c].astype(str).to_numpy(object).tolist() for c in columns), strict=True))


def _level_array(gid: np.ndarray, levels: np.ndarray, at: np.ndarray, n_groups: int) -> np.ndarray:
    """Limits of the limit rows at positions ``at`` (one kind, essay, direction, stratum) as an array
    (n_groups + 1, 3) by group code, NaN when absent."""
    arr = np.full((n_groups + 1, 3), np.nan)
    arr[gid[at]] = levels[at]
    arr[n_groups] = np.nan
    return arr


def _hours_limit_array(rows: pd.DataFrame, n_groups: int, codes: np.ndarray, hours: np.ndarray) -> np.ndarray:
    """Limits (n_samples, 3) of kind 'hours' rows: the row of the sample's group whose oil-hour bin
    [lo, hi) holds the sample's oil hours (> 0); NaN when there is none."""
    lo, hi = parse_hours_stratum(rows["stratum"])
    gid = rows["_gid"].to_numpy(int)
    order = np.lexsort((lo, gid))
    gid, lo, hi = gid[order], lo[order], hi[order]
    levels = rows[list(LEVELS)].to_numpy(float)[order]
    rank = np.arange(len(gid)) - np.searchsorted(gid, gid, side="left")
    out = np.full((len(codes), 3), np.nan)
    ok = hours > 0
    for j in range(int(rank.max()) + 1 if len(rank) else 0):
        sel = rank == j
        blo = np.full(n_groups + 1, np.nan)
        bhi = np.full(n_groups + 1, np.nan)
        blim = np.full((n_groups + 1, 3), np.nan)
        blo[gid[sel]], bhi[gid[sel]], blim[gid[sel]] = lo[sel], hi[sel], levels[sel]
        blo[n_groups] = np.nan
        with np.errstate(invalid="ignore"):
            use = ok & (hours >= blo[codes]) & (hours < bhi[codes])
        out[use] = blim[codes[use]]
    return out


def _beyond(value: np.ndarray, limit: np.ndarray, upper: bool, strict: bool) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        if upper:
            return value > limit if strict else value >= limit
        return value < limit if strict else value <= limit


def _breach_levels(value: np.ndarray, lim: np.ndarray, upper: bool, strict: bool) -> np.ndarray:
    """0 none, 1 marginal, 2 condemning, 3 critical (limits are monotone, so counting works).

    Only the readings beyond the marginal limit (a few percent) are compared with the other two.
    """
    level = np.zeros(len(value), dtype=np.int64)
    hit = np.flatnonzero(_beyond(value, lim[:, 0], upper, strict))
    if len(hit):
        level[hit] = _beyond(value[hit, None], lim[hit], upper, strict).sum(axis=1)
    return level


def _comparison(limits: pd.DataFrame) -> bool:
    """True for the strict rule. The limits table says which rule its limits were made for."""
    rules = set(limits["comparison"].dropna()) if "comparison" in limits else set()
    if len(rules) > 1:
        raise ValueError(f"limits mix comparison rules {sorted(rules)}")
    return (rules.pop() if rules else "strict") != "inclusive"


def find_breaches(
    silver: pd.DataFrame, limits: pd.DataFrame, catalog: Catalog, params: ClassificationParams | None = None
) -> pd.DataFrame:
    """All breaches of all samples, long: row (position in ``silver``), essay, group, value, limit,
    level, direction, kind, points (categorical text columns). Sorted by row, points (desc), essay."""
    params = params or ClassificationParams()
    if silver.empty or limits.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in _BREACH_COLUMNS})
    strict = _comparison(limits)
    codes, n_groups, mapping = _row_groups(silver, limits)
    limits = limits.assign(_gid=_limit_codes(limits, mapping, n_groups))  # once, not once per essay
    strata = (
        limits["stratum"].astype(str) if "stratum" in limits else pd.Series(ALL_STRATA, index=limits.index)
    )
    hours = (
        silver["oilHourRange"].astype(str).to_numpy()
        if (strata != ALL_STRATA).any() and "oilHourRange" in silver
        else None
    )
    hours_kind = (limits["kind"] == "hours").to_numpy()
    oil_hours = (
        pd.to_numeric(silver["oilMeter"], errors="coerce").to_numpy(float, na_value=np.nan)
        if hours_kind.any() and params.hours_weight != 0 and "oilMeter" in silver
        else None
    )
    trend_essays = sorted(set(limits.loc[limits["kind"] == "trend", "essay"]) & set(silver.columns))
    deltas = (
        trend_deltas(silver, trend_essays, params.trend_max_days)
        if trend_essays and params.trend_weight != 0 and "previousSampleNumber" in silver
        else None
    )

    combos, found = [], []  # combos: (essay, group, direction, kind); found: arrays per combo
    points_by_level = np.asarray(params.level_points, float)
    # Plain arrays of the limit rows, indexed by position: a few hundred (kind, essay, direction)
    # combinations cost no DataFrame slicing each (small incremental batches are dominated by it).
    gid_all = limits["_gid"].to_numpy(int)
    levels_all = limits[list(LEVELS)].to_numpy(float)
    strata_all = strata.to_numpy(object)
    is_all = strata_all == ALL_STRATA
    combos_at = limits.groupby(["kind", "essay", "direction"], sort=True).indices
    values: dict[tuple[bool, str], np.ndarray] = {}
    for kind, essay, direction in sorted(combos_at):
        if essay not in silver.columns or (kind == "trend" and deltas is None):
            continue
        if kind == "hours" and oil_hours is None:
            continue
        at = combos_at[(kind, essay, direction)]
        value = values.get((kind == "trend", essay))
        if value is None:  # each essay's readings (or trend deltas) converted once, not per combo
            value = (deltas[essay] if kind == "trend" else silver[essay]).to_numpy(float)
            values[(kind == "trend", essay)] = value
        if kind == "hours":
            lim = _hours_limit_array(limits.iloc[at], n_groups, codes, oil_hours)
        else:
            lim = _level_array(gid_all, levels_all, at[is_all[at]], n_groups)[codes]
        if hours is not None and kind != "hours":
            other = at[~is_all[at]]
            for name in sorted(set(strata_all[other])):
                slim = _level_array(gid_all, levels_all, other[strata_all[other] == name], n_groups)[codes]
                use = (hours == name) & ~np.isnan(slim[:, 0])
                lim[use] = slim[use]
        level = _breach_levels(value, lim, direction == "upper", strict)
        hit = np.flatnonzero(level > 0)
        if not len(hit):
            continue
        group = catalog.group(essay)
        weight = params.weight(essay, group) * {
            "trend": params.trend_weight,
            "hours": params.hours_weight,
        }.get(kind, 1.0)
        lv = level[hit]
        combos.append((essay, group, direction, kind))
        found.append(
            (
                hit,
                np.full(len(hit), len(combos) - 1),
                lv - 1,
                value[hit],
                lim[hit, lv - 1],
                points_by_level[lv - 1] * weight,
            )
        )
    if not found:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in _BREACH_COLUMNS})
    row, combo, level, value, limit, points = (np.concatenate(a) for a in zip(*found, strict=True))
    info = pd.DataFrame(combos, columns=["essay", "group", "direction", "kind"])
    cat_codes = {c: pd.factorize(info[c], sort=True) for c in info.columns}
    essay_c, group_c, dir_c, kind_c = (cat_codes[c][0][combo] for c in info.columns)
    points = points.copy()
    kind_names = np.asarray(cat_codes["kind"][1], dtype=object)
    if "hours" in kind_names:
        # A reading judged against the whole history and against its oil age: the higher scores.
        lh = np.flatnonzero(np.isin(kind_names[kind_c], ["level", "hours"]))
        o = lh[np.lexsort((kind_c[lh], -points[lh], dir_c[lh], essay_c[lh], row[lh]))]
        same = (
            (row[o][1:] == row[o][:-1])
            & (essay_c[o][1:] == essay_c[o][:-1])
            & (dir_c[o][1:] == dir_c[o][:-1])
        )
        points[o[1:][same]] = 0.0
    group_names = np.asarray(cat_codes["group"][1], dtype=object)
    for target, support in params.corroboration:
        tgt = group_names[group_c] == target
        if not tgt.any():
            continue
        supported = np.zeros(len(silver), dtype=bool)
        supported[row[np.isin(group_names[group_c], list(support)) & (points > 0)]] = True
        points[tgt & ~supported[row]] = 0.0
    if params.secondary_factor != 1.0:
        # Highest points first within the scope; ties broken by kind then essay (deterministic).
        scope = group_c if params.secondary_scope == "group" else np.zeros_like(group_c)
        order = np.lexsort((essay_c, kind_c, -points, scope, row))
        first = np.ones(len(order), dtype=bool)
        same = (row[order][1:] == row[order][:-1]) & (scope[order][1:] == scope[order][:-1])
        first[1:] = ~same
        factor = np.where(first, 1.0, params.secondary_factor)
        points[order] = points[order] * factor
    order = np.lexsort((kind_c, essay_c, -points, row))
    combo, level = combo[order], level[order]
    out = {
        "row": row[order],
        **{c: pd.Categorical.from_codes(cat_codes[c][0][combo], cat_codes[c][1]) for c in ("essay", "group")},
        "value": value[order],
        "limit": limit[order],
        "level": pd.Categorical.from_codes(level, list(LEVELS)),
        **{
            c: pd.Categorical.from_codes(cat_codes[c][0][combo], cat_codes[c][1])
            for c in ("direction", "kind")
        },
        "points": points[order],
    }
    return pd.DataFrame(out)[_BREACH_COLUMNS]


def _float_text(x: np.ndarray) -> np.ndarray:
    """``x.astype(str)`` through the unique values (readings and limits repeat a lot)."""
    uniq, inverse = np.unique(x, return_inverse=True)
    text = uniq.astype(str).astype(object)[inverse]
    negative_zero = (x == 0) & np.signbit(x)  # np.unique folds -0.0 into 0.0
    if negative_zero.any():
        text[negative_zero] = "-0.0"
    return text


def _string_array(values) -> pd.api.extensions.ExtensionArray:
    """A ``string`` array built through pyarrow (several times faster than from Python objects)."""
    return pd.array(pa.array(values, type=pa.large_string()), dtype="string")


def breaches_json(b: pd.DataFrame, n: int) -> np.ndarray:
    """Per sample, the JSON list of its breaches ('[]' when none); ``b`` as from find_breaches.

    Built column-wise: the constant text of each (essay, group, level, direction, kind) is made
    once, the numbers are formatted as arrays, and one join assembles every row's list.
    """
    text = np.full(n, "[]", dtype=object)
    if not len(b):
        return text
    kinds = ["essay", "group", "level", "direction", "kind"]
    key = pd.DataFrame({c: b[c].astype("category").cat.codes for c in kinds})
    combo = key.groupby(kinds, sort=False).ngroup().to_numpy()
    firsts = pd.Series(np.arange(len(b))).groupby(combo).first().to_numpy()
    # The text values of the first breach of each combination, taken once per column: indexing the
    # frame per value (``.iat``) costs more than the rest of a small batch's classification.
    values = {c: np.asarray(b[c].take(firsts), dtype=object) for c in kinds}
    static = np.array(
        [json.dumps({c: str(values[c][j]) for c in kinds})[:-1] + ', "value": ' for j in range(len(firsts))],
        dtype=object,
    )
    row = b["row"].to_numpy(int)
    first = np.r_[True, row[1:] != row[:-1]]
    last = np.r_[row[1:] != row[:-1], True]
    # Breach values are always finite: the shortest round-trip text is a valid JSON number.
    parts = np.empty((len(b), 8), dtype=object)
    parts[:, 0] = np.where(first, "[", ", ")
    parts[:, 1] = static[combo]
    parts[:, 2] = _float_text(b["value"].to_numpy(float))
    parts[:, 3] = ', "limit": '
    parts[:, 4] = _float_text(b["limit"].to_numpy(float))
    parts[:, 5] = ', "points": '
    parts[:, 6] = _float_text(b["points"].to_numpy(float))
    parts[:, 7] = np.where(last, "}]\n", "}")
    text[row[last]] = "".join(parts.ravel().tolist()).split("\n")[:-1]
    return text


def _breaches_column(b: pd.DataFrame, n: int, chunk: int = 250_000) -> pd.api.extensions.ExtensionArray:
    """``breaches_json`` as a ``string`` array, built ``chunk`` samples at a time: the Python text
    of one chunk is freed once it is in Arrow, so a million reports never hold it all at once."""
    rows = b["row"].to_numpy(int) if len(b) else np.zeros(0, dtype=int)
    parts = []
    for lo in range(0, max(n, 1), chunk):
        hi = min(lo + chunk, n)
        s, e = np.searchsorted(rows, [lo, hi])
        part = b.iloc[s:e].assign(row=rows[s:e] - lo) if e > s else b.iloc[0:0]
        parts.append(pa.array(breaches_json(part, hi - lo), type=pa.large_string()))
    return pd.array(pa.chunked_array(parts, type=pa.large_string()), dtype="string")


def classify_reports(
    silver: pd.DataFrame,
    limits: pd.DataFrame,
    catalog: Catalog,
    params: ClassificationParams | None = None,
) -> pd.DataFrame:
    """Classify every sample. Returns all silver columns (same rows, same order) plus
    ``CLASSIFIED_COLUMNS``: ``breached_essays`` (JSON list of {essay, group, value, limit, level,
    direction, kind, points}; for trend breaches value is the change since the previous sample),
    ``essays_broken`` (breaches with points > 0), ``wear_essays_broken``, ``severity_score`` (sum of
    the points), ``report_status`` and ``limits_version``."""
    params = params or ClassificationParams()
    if params.alerta_cut > params.anormal_cut:
        raise ValueError("alerta_cut must not exceed anormal_cut")
    if params.secondary_scope not in ("group", "sample"):
        raise ValueError(f"secondary_scope must be 'group' or 'sample', not {params.secondary_scope!r}")
    out = silver.copy(deep=False)  # copy-on-write: the new columns never touch silver
    n = len(out)
    b = find_breaches(silver, limits, catalog, params)
    score = np.zeros(n)
    broken = np.zeros(n, dtype=int)
    wear = np.zeros(n, dtype=int)
    if len(b):
        rows = b["row"].to_numpy(int)
        pts = b["points"].to_numpy(float)
        score = np.bincount(rows, weights=pts, minlength=n)
        broken = np.bincount(rows[pts > 0], minlength=n)
        wear = np.bincount(rows[(pts > 0) & (b["group"] == "wear").to_numpy()], minlength=n)
    score = np.round(score, 6)
    status = np.where(
        score >= params.anormal_cut, "Anormal", np.where(score >= params.alerta_cut, "Alerta", "Normal")
    )
    out["breached_essays"] = _breaches_column(b, n)
    out["essays_broken"] = broken
    out["wear_essays_broken"] = wear
    out["severity_score"] = score
    out["report_status"] = _string_array(status.astype(object))
    if len(limits) and "version" in limits:
        versions = limits.drop_duplicates("client").set_index("client")["version"].astype(str)
        out["limits_version"] = out["client"].astype(str).map(versions).astype("string")
    else:
        out["limits_version"] = pd.array([pd.NA] * n, dtype="string")
    return out
