"""Silver samples → Stewart limits (marginal / condemning / critical) per client, machine, component, essay.

Method (docs/CLASSIFICATION.md has the why of every choice):

* **percentile** essays: the limits are percentiles of the essay's history in the group
  (client × machineName × componentNameNormalized [× oil-hour stratum]). Upper limits are
  P90/P95/P98, lower limits (catalog direction ``lower`` or ``both``) P10/P5/P2.
* **relative** essays (viscosity by default): the limits are a band around the group median,
  ±10/20/30 %, the usual way viscosity alarms are set against the nominal grade.
* **flag** and **code** essays (water/fuel/glycol letters, visual debris codes) get fixed absolute
  levels, not percentiles: under the strict rule the limits 0/1/2 make trace/level 1 marginal,
  positive/level 2 condemning and excessive/level 3 critical.
* **trend** rows (``kind='trend'``): limits on the change since the previous sample of the same
  unit and component (ASTM D7669 rate of change), percentiles of the historical increases.
* **oil-age** rows (``kind='hours'``): for essays that accumulate with oil hours in the group's
  history (Spearman rho >= 0.6, e.g. motor iron), P90/P95/P98 per oil-hour quartile of the group,
  ``stratum='OH:lo-hi'`` (bin [lo, hi) of oil hours); samples with an implausible meter are ignored.

Comparison is **strict** (breach when value > upper limit or value < lower limit) and zeros are
kept in the percentiles, so at most 10/5/2 % of the reference history lies beyond the
marginal/condemning/critical limits by construction. Limits are rounded outwards to the essay's
reporting resolution (neutral under the strict rule for readings at that resolution) and forced
apart by one resolution step when they coincide.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pandas as pd

from .catalog import Catalog
from .rankcorr import NEAR, spearman_by_group, spearman_by_group_exact

LEVELS = ("marginal", "condemning", "critical")
LEVEL_RANK = {lv: i + 1 for i, lv in enumerate(LEVELS)}  # a breach level's severity (1: marginal)
GROUP_KEYS = ["client", "machine", "component", "stratum"]
LIMIT_COLUMNS = [
    "client",
    "machine",
    "component",
    "stratum",
    "essay",
    "group",
    "limit_method",
    "kind",
    "direction",
    "marginal",
    "condemning",
    "critical",
    "baseline",
    "sample_count",
    "comparison",
    "version",
    "computed_at",
]
ALL_STRATA = "ALL"
P = TypeVar("P")
_SILVER_KEYS = {"client": "client", "machine": "machineName", "component": "componentNameNormalized"}


@dataclass(frozen=True)
class LimitParams:
    """Parameters of the limit computation. Every default is documented in docs/CLASSIFICATION.md."""

    upper_percentiles: tuple[float, float, float] = (90.0, 95.0, 98.0)
    lower_percentiles: tuple[float, float, float] = (10.0, 5.0, 2.0)
    # A percentile limit needs this many readings in its group, and this many distinct values.
    min_samples: int = 20
    min_distinct: int = 4
    # Zeros are real readings (below detection): kept. True reproduces the v2.0 rule.
    exclude_zeros: bool = False
    # 'strict' (value > upper / value < lower) or 'inclusive' (>= / <=, the v2.0 rule).
    comparison: str = "strict"
    # Decimals of the reporting resolution, by catalog unit; other units use default_decimals.
    decimals_by_unit: tuple[tuple[str, int], ...] = (
        ("ppm", 0),
        ("index", 0),
        ("code", 0),
        ("count/ml", 0),
        ("SD", 0),
        ("level 0-3", 0),
        ("A/cm", 0),
    )
    default_decimals: int = 2
    # Lower limits for essays whose catalog direction is lower/both.
    lower_limits: bool = True
    # Essays limited as a band around the group median: (essay, (marginal, condemning, critical)).
    relative_bands: tuple[tuple[str, tuple[float, float, float]], ...] = (
        ("visc_100c", (0.10, 0.20, 0.30)),
        ("visc_40c", (0.10, 0.20, 0.30)),
    )
    # Absolute limits of flag/code essays (strict rule: level 1 > 0 marginal, 2 > 1 condemning, 3 > 2 critical).
    flag_limits: tuple[float, float, float] = (0.0, 1.0, 2.0)
    # Rate-of-change limits (kind 'trend') for these catalog groups; empty disables trend rows.
    trend_groups: tuple[str, ...] = ("wear", "particle")
    trend_percentiles: tuple[float, float, float] = (95.0, 98.0, 99.5)
    # Maximum days between two samples for their difference to count as a trend.
    trend_max_days: int = 120
    # Also compute limits per oil-hour range (LT_1000 / GE_1000); 'ALL' rows are always there.
    oil_hour_strata: bool = False
    # Oil-age limits (kind 'hours'): an essay that accumulates with oil hours in its group's
    # history (Spearman rho >= hours_min_correlation over the samples with a plausible meter,
    # 0 < oilMeter < max_oil_hours) also gets upper limits per oil-hour quantile bin
    # (hours_bins bins of equal sample count). 0 bins disables them.
    hours_bins: int = 4
    hours_min_correlation: float = 0.6
    max_oil_hours: float = 20000.0
    # Restrict to these essays (None = every catalog essay present in silver).
    essays: tuple[str, ...] | None = None

    def decimals(self, unit: str) -> int:
        return dict(self.decimals_by_unit).get(unit, self.default_decimals)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> LimitParams:
        """Build from plain config values (lists become tuples); unknown keys are an error."""
        return params_from_dict(cls, values)


def params_from_dict(cls: type[P], values: dict) -> P:
    """Frozen-dataclass parameters from a plain mapping (e.g. YAML or Dagster config)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown parameters {sorted(unknown)}")

    def freeze(v):
        if isinstance(v, dict):
            return tuple((k, freeze(x)) for k, x in v.items())
        if isinstance(v, list | tuple):
            return tuple(freeze(x) for x in v)
        return v

    return cls(**{k: freeze(v) for k, v in values.items()})


# The v2.0 reference rules (DOMAIN.md §3.1): 21 elements, zeros removed, >= 4 distinct values,
# >= 3 non-zero readings, rounded up, inclusive comparison, no lower/flag/trend limits.
REFERENCE_V2_ELEMENTS = (
    "fe",
    "cr",
    "al",
    "cu",
    "pb",
    "ni",
    "ag",
    "sn",
    "ti",
    "v",
    "mn",
    "si",
    "k",
    "na",
    "zn",
    "ba",
    "b",
    "ca",
    "mo",
    "mg",
    "p",
)
REFERENCE_V2_LIMITS = LimitParams(
    min_samples=3,
    min_distinct=4,
    exclude_zeros=True,
    comparison="inclusive",
    lower_limits=False,
    relative_bands=(),
    trend_groups=(),
    essays=REFERENCE_V2_ELEMENTS,
)


def _force_monotone(m: np.ndarray, c: np.ndarray, k: np.ndarray, step: np.ndarray, up: bool):
    """Make limits strictly ordered: upper m < c < k, lower m > c > k, by one resolution step."""
    if up:
        c = np.where(c <= m, m + step, c)
        k = np.where(k <= c, c + step, k)
    else:
        c = np.where(c >= m, m - step, c)
        k = np.where(k >= c, c - step, k)
    return m, c, k


def _essays(silver: pd.DataFrame, catalog: Catalog, params: LimitParams) -> list[str]:
    chosen = params.essays if params.essays is not None else catalog.essays
    return [e for e in chosen if e in catalog.table.index and e in silver.columns]


class _Groups:
    """Integer codes of the limit groups of every silver row.

    ``table`` lists the groups (client, machine, component, stratum); ``codes`` is a list of
    (row positions, group code) pairs: one for the 'ALL' stratum and, when stratified, one for the
    rows with a known oil-hour range.
    """

    def __init__(self, silver: pd.DataFrame, params: LimitParams):
        keys = list(_SILVER_KEYS.values())
        frame = silver[keys].astype(str).reset_index(drop=True)
        grouped = frame.groupby(keys, sort=True)
        gid = grouped.ngroup().to_numpy()
        table = grouped.size().index.to_frame(index=False)
        table.columns = list(_SILVER_KEYS)
        tables = [table.assign(stratum=ALL_STRATA)]
        self.codes = [(np.arange(len(frame)), gid)]
        if params.oil_hour_strata and "oilHourRange" in silver:
            hours = silver["oilHourRange"].astype(str).to_numpy()
            known = np.flatnonzero(np.isin(hours, ["LT_1000", "GE_1000"]))
            if len(known):
                sub = frame.iloc[known].assign(stratum=hours[known])
                g2 = sub.groupby([*keys, "stratum"], sort=True)
                t2 = g2.size().index.to_frame(index=False)
                t2.columns = [*_SILVER_KEYS, "stratum"]
                self.codes.append((known, g2.ngroup().to_numpy() + len(table)))
                tables.append(t2)
        self.table = pd.concat(tables, ignore_index=True)

    def aggregate(self, values: pd.DataFrame, how) -> pd.DataFrame:
        """Apply ``how(grouped_frame)`` per stratum set and stack to (group code, essay) rows."""
        parts = []
        for rows, codes in self.codes:
            sub = values.iloc[rows]
            parts.append(how(sub.groupby(codes, sort=True)))
        return pd.concat(parts)


def _stack(frame: pd.DataFrame, name: str) -> pd.Series:
    out = frame.stack(future_stack=True)
    out.index = out.index.set_names(["gid", "essay"])
    return out.rename(name)


def _stats(
    values: pd.DataFrame,
    groups: _Groups,
    params: LimitParams,
    qs: list[float],
    distinct_from: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per (group, essay): sample_count, distinct and the requested quantiles, NaN-free readings."""
    data = values.mask(values == 0) if params.exclude_zeros else values
    count = _stack(groups.aggregate(data, lambda g: g.count()), "sample_count")
    distinct = _stack(
        groups.aggregate(distinct_from if distinct_from is not None else values, lambda g: g.nunique()),
        "distinct",
    )
    stats = pd.concat([count, distinct], axis=1)
    stats = stats[(stats["sample_count"] >= params.min_samples) & (stats["distinct"] >= params.min_distinct)]
    if stats.empty or not qs:
        return stats
    quant = groups.aggregate(data, lambda g: g.quantile(qs))  # index (gid, q)
    quant = quant.stack(future_stack=True).unstack(1)
    quant.index = quant.index.set_names(["gid", "essay"])
    return stats.join(quant, how="inner")


def _limit_rows(
    stats: pd.DataFrame, groups: _Groups, catalog: Catalog, params: LimitParams, kind: str, upper_q, lower_q
) -> pd.DataFrame:
    """Quantile stats → limit rows (rounded outwards, forced monotone), one per direction."""
    if stats.empty:
        return pd.DataFrame()
    stats = stats.reset_index()
    table = catalog.table
    direction = stats["essay"].map(table["direction"])
    dec = stats["essay"].map(table["unit"]).map(params.decimals).astype(int).to_numpy()
    out = []
    for side, qset in (("upper", upper_q), ("lower", lower_q)):
        if not qset:
            continue
        up = side == "upper"
        if kind == "level":
            ok = direction.isin(["both", side]).to_numpy()
            if not up and not params.lower_limits:
                continue
        else:
            ok = np.ones(len(stats), dtype=bool)
        if not ok.any():
            continue
        lim = [_round_by(stats[q / 100].to_numpy(float), dec, up) for q in qset]
        m, c, k = _force_monotone(*lim, 10.0 ** (-dec.astype(float)), up)
        rows = stats[["gid", "essay", "sample_count"]].assign(
            direction=side,
            marginal=m,
            condemning=c,
            critical=k,
            baseline=np.nan,
            limit_method="percentile",
            kind=kind,
        )
        out.append(rows[ok])
    if not out:
        return pd.DataFrame()
    return pd.concat(out, ignore_index=True)


def _round_by(x: np.ndarray, decimals: np.ndarray, up: bool) -> np.ndarray:
    """Round outwards to the resolution (tolerating float noise such as 12.000000001)."""
    scale = 10.0 ** decimals.astype(float)
    y = np.round(x * scale, 6)
    return (np.ceil(y) if up else np.floor(y)) / scale


def _relative_rows(
    silver: pd.DataFrame, essays: list[str], groups: _Groups, catalog: Catalog, params: LimitParams
) -> pd.DataFrame:
    """Band around the group median for the essays of ``params.relative_bands``."""
    if not essays:
        return pd.DataFrame()
    values = silver[essays].reset_index(drop=True)
    count = _stack(groups.aggregate(values, lambda g: g.count()), "sample_count")
    median = _stack(groups.aggregate(values, lambda g: g.median()), "baseline")
    stats = pd.concat([count, median], axis=1)
    stats = stats[stats["sample_count"] >= params.min_samples].reset_index()
    if stats.empty:
        return pd.DataFrame()
    bands = dict(params.relative_bands)
    dec = stats["essay"].map(catalog.table["unit"]).map(params.decimals).astype(int).to_numpy()
    band = np.array([bands[e] for e in stats["essay"]], dtype=float)
    base = stats["baseline"].to_numpy(float)
    direction = stats["essay"].map(catalog.table["direction"])
    out = []
    for side, sign in (("upper", 1.0), ("lower", -1.0)):
        if side == "lower" and not params.lower_limits:
            continue
        up = side == "upper"
        lim = [_round_by(base * (1 + sign * band[:, i]), dec, up) for i in range(3)]
        m, c, k = _force_monotone(*lim, 10.0 ** (-dec.astype(float)), up)
        rows = stats[["gid", "essay", "sample_count", "baseline"]].assign(
            direction=side, marginal=m, condemning=c, critical=k, limit_method="relative", kind="level"
        )
        out.append(rows[direction.isin(["both", side]).to_numpy()])
    return pd.concat(out, ignore_index=True)


def _flag_rows(
    silver: pd.DataFrame, essays: list[str], groups: _Groups, catalog: Catalog, params: LimitParams
) -> pd.DataFrame:
    """Fixed absolute levels for flag/code essays: one row per group × essay, every group."""
    if not essays:
        return pd.DataFrame()
    values = silver[essays].reset_index(drop=True)
    count = _stack(groups.aggregate(values, lambda g: g.count()), "sample_count").reset_index()
    m, c, k = params.flag_limits
    return count.assign(
        direction="upper",
        marginal=float(m),
        condemning=float(c),
        critical=float(k),
        baseline=np.nan,
        limit_method=count["essay"].map(catalog.table["limit_method"]),
        kind="level",
    )


def trend_deltas(silver: pd.DataFrame, essays: list[str], max_days: int) -> pd.DataFrame:
    """Change of each essay since the previous sample of the same unit and component.

    Aligned to ``silver``'s index; NaN when there is no previous sample in the frame, when it is
    older than ``max_days``, or when either reading is missing. A sample taken with an oil change
    is compared with the previous one all the same: fresh oil should read lower, not higher.
    """
    numbers = pd.Index(silver["sampleNumber"].astype(str).to_numpy())
    previous = silver["previousSampleNumber"].astype(object).to_numpy()
    if numbers.is_unique:  # silver's key: one hash table for the lookup
        prev = numbers.get_indexer(previous)
    else:  # the first row of a repeated number
        pos = pd.Series(np.arange(len(silver)), index=numbers)
        pos = pos[~pos.index.duplicated()]
        prev = pd.Series(previous).map(pos).fillna(-1).to_numpy(int)
    ok = prev >= 0
    if "daysSincePrevious" in silver:
        days = pd.to_numeric(silver["daysSincePrevious"], errors="coerce").to_numpy(float, na_value=np.nan)
        ok &= ~(days > max_days)
    rows = np.flatnonzero(ok)
    before = prev[rows]
    # One essay at a time into an (essay, sample) block: no n × essays temporaries.
    delta = np.full((len(essays), len(silver)), np.nan)
    for j, essay in enumerate(essays):
        cur = silver[essay].to_numpy(float)
        delta[j, rows] = cur[rows] - cur[before]
    return pd.DataFrame(delta.T, index=silver.index, columns=essays, copy=False)


def _trend_rows(
    silver: pd.DataFrame, essays: list[str], groups: _Groups, catalog: Catalog, params: LimitParams
) -> pd.DataFrame:
    """Percentiles of the historical increases (change since the previous sample > 0)."""
    if not essays or "previousSampleNumber" not in silver:
        return pd.DataFrame()
    deltas = trend_deltas(silver, essays, params.trend_max_days).reset_index(drop=True)
    increases = deltas.where(deltas > 0)
    qs = [q / 100 for q in params.trend_percentiles]
    stats = _stats(increases, groups, dataclasses.replace(params, exclude_zeros=False), qs)
    return _limit_rows(stats, groups, catalog, params, "trend", params.trend_percentiles, ())


def direction_of(catalog: Catalog, essay: str) -> str:
    return str(catalog.table.at[essay, "direction"])


HOURS_PREFIX = "OH:"


def hours_stratum(lo: float, hi: float) -> str:
    """Stratum label of an oil-hour bin [lo, hi) of kind 'hours' rows, e.g. ``OH:439-613``."""
    return f"{HOURS_PREFIX}{lo:g}-{hi:g}"


def parse_hours_stratum(labels: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``OH:lo-hi`` labels → (lo, hi) arrays (NaN for any other label)."""
    parts = labels.astype(str).str.extract(r"^OH:([0-9.e+]+)-([0-9.e+]+)$")
    return parts[0].astype(float).to_numpy(), parts[1].astype(float).to_numpy()


def _hours_rows(
    silver: pd.DataFrame, essays: list[str], groups: _Groups, catalog: Catalog, params: LimitParams
) -> pd.DataFrame:
    """Upper limits per oil-hour quantile bin for essays that accumulate with oil hours.

    Only samples with a plausible meter (0 < oilMeter < max_oil_hours) are used. Per group, the
    bin edges are the quantiles of their oil hours (rounded to whole hours); an essay gets rows
    when its Spearman correlation with oil hours is at least ``hours_min_correlation`` and every
    bin has ``min_samples`` readings and ``min_distinct`` values. Bins are [lo, hi): the first
    starts at 0, the last ends at ``max_oil_hours``; the stratum column says ``OH:lo-hi``.
    """
    nb = int(params.hours_bins)
    if nb < 1 or not essays or "oilMeter" not in silver:
        return pd.DataFrame()
    hours = pd.to_numeric(silver["oilMeter"], errors="coerce").to_numpy(float, na_value=np.nan)
    plausible = (hours > 0) & (hours < params.max_oil_hours)
    rows, gid = groups.codes[0]  # the 'ALL' groups
    keep = plausible[rows]
    rows, gid = rows[keep], gid[keep]
    if not len(rows):
        return pd.DataFrame()
    h = pd.Series(hours[rows])
    qs = [k / nb for k in range(1, nb)]
    edges = (
        h.groupby(gid).quantile(qs).unstack().round(0).reindex(columns=qs)
        if qs
        else pd.DataFrame(index=np.unique(gid))
    )
    bounds = np.column_stack(
        [np.zeros(len(edges)), edges.to_numpy(float), np.full(len(edges), params.max_oil_hours)]
    )
    pos = {g: i for i, g in enumerate(edges.index)}
    gi = np.fromiter((pos[g] for g in gid), dtype=int, count=len(gid))
    my = bounds[gi]  # (n, nb + 1)
    bin_ = (h.to_numpy()[:, None] >= my[:, 1:-1]).sum(axis=1) if nb > 1 else np.zeros(len(h), int)
    values = silver[essays].iloc[rows].reset_index(drop=True)
    # Spearman rho (Pearson of average ranks) of each essay with oil hours, per group, pairwise.
    rho = {}
    # Dense non-negative group codes (as _Groups makes them) allow the bincount path.
    fast = np.issubdtype(gid.dtype, np.integer) and int(gid.min()) >= 0
    n_codes = int(gid.max()) + 1 if fast else 0
    for e in essays:
        v = values[e]
        ok = v.notna().to_numpy()
        if not ok.any():
            continue
        x, y = v.to_numpy(float)[ok], h.to_numpy()[ok]
        if fast:
            r = spearman_by_group(gid[ok], x, y, n_codes)
            # Only the comparison with the threshold matters: pandas decides the near ties.
            if not (np.abs(r - params.hours_min_correlation) < NEAR).any():
                rho[e] = pd.Series(r)
                continue
        rho[e] = spearman_by_group_exact(gid[ok], x, y)
    if not rho:
        return pd.DataFrame()
    rho = pd.DataFrame(rho)  # gid x essay
    key = pd.MultiIndex.from_arrays([gid, bin_], names=["gid", "bin"])
    vk = values.set_axis(key)
    grouped = vk.groupby(level=["gid", "bin"], sort=True)
    count = grouped.count().stack(future_stack=True).rename("sample_count")
    distinct = grouped.nunique().stack(future_stack=True).rename("distinct")
    q = [p / 100 for p in params.upper_percentiles]
    quant = grouped.quantile(q).stack(future_stack=True).unstack(2)  # (gid, bin, essay) x q
    stats = pd.concat([count, distinct], axis=1).join(quant)
    stats.index = stats.index.set_names(["gid", "bin", "essay"])
    stats = stats.reset_index()
    ok = (stats["sample_count"] >= params.min_samples) & (stats["distinct"] >= params.min_distinct)
    stats["ok"] = ok
    every = stats.groupby(["gid", "essay"])["ok"].transform("sum") == nb
    r = rho.stack(future_stack=True).rename("rho")
    r.index = r.index.set_names(["gid", "essay"])
    stats = stats.join(r, on=["gid", "essay"])
    stats = stats[every & (stats["rho"] >= params.hours_min_correlation)].reset_index(drop=True)
    if stats.empty:
        return pd.DataFrame()
    dec = stats["essay"].map(catalog.table["unit"]).map(params.decimals).astype(int).to_numpy()
    lim = [_round_by(stats[p].to_numpy(float), dec, True) for p in q]
    m, c, k = _force_monotone(*lim, 10.0 ** (-dec.astype(float)), True)
    gpos = stats["gid"].map(pos).to_numpy(int)
    b = stats["bin"].to_numpy(int)
    stratum = [hours_stratum(lo, hi) for lo, hi in zip(bounds[gpos, b], bounds[gpos, b + 1], strict=True)]
    # The group table row of the 'ALL' stratum, with the bin label as stratum.
    return stats[["gid", "essay", "sample_count"]].assign(
        direction="upper",
        marginal=m,
        condemning=c,
        critical=k,
        baseline=np.nan,
        limit_method="percentile",
        kind="hours",
        _stratum=stratum,
    )


def compute_limits(
    silver: pd.DataFrame,
    catalog: Catalog,
    params: LimitParams | None = None,
    client: str | None = None,
    *,
    computed_at: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Compute the limits table (flat, one row per group × essay × direction × kind).

    ``client`` restricts to one client (None: every client in ``silver``, each on its own history:
    the client is part of the group key). Columns: ``LIMIT_COLUMNS``. Upper rows satisfy
    marginal < condemning < critical, lower rows marginal > condemning > critical.
    """
    params = params or LimitParams()
    if params.comparison not in ("strict", "inclusive"):
        raise ValueError(f"comparison must be 'strict' or 'inclusive', not {params.comparison!r}")
    if client is not None:
        silver = silver[silver["client"] == client]
    silver = silver.reset_index(drop=True)
    version = limits_version(silver, params, catalog)
    computed_at = computed_at or pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
    if silver.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in LIMIT_COLUMNS})
    essays = _essays(silver, catalog, params)
    method = catalog.table["limit_method"]
    bands = dict(params.relative_bands)
    pct = [e for e in essays if method[e] == "percentile" and e not in bands]
    rel = [e for e in essays if e in bands]
    flags = [e for e in essays if method[e] in ("flag", "code")]
    trend = [e for e in pct if catalog.group(e) in params.trend_groups]
    groups = _Groups(silver, params)
    qs = sorted(
        {q / 100 for q in params.upper_percentiles}
        | ({q / 100 for q in params.lower_percentiles} if params.lower_limits else set())
    )
    values = silver[pct].reset_index(drop=True)
    parts = [
        _limit_rows(
            _stats(values, groups, params, qs),
            groups,
            catalog,
            params,
            "level",
            params.upper_percentiles,
            params.lower_percentiles if params.lower_limits else (),
        ),
        _relative_rows(silver, rel, groups, catalog, params),
        _flag_rows(silver, flags, groups, catalog, params),
        _trend_rows(silver, trend, groups, catalog, params),
        _hours_rows(silver, [e for e in pct if direction_of(catalog, e) != "lower"], groups, catalog, params),
    ]
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in LIMIT_COLUMNS})
    out = pd.concat(parts, ignore_index=True)
    out = out.join(groups.table, on="gid").drop(columns="gid")
    if "_stratum" in out:
        out["stratum"] = out["_stratum"].where(out["_stratum"].notna(), out["stratum"])
        out = out.drop(columns="_stratum")
    out["group"] = out["essay"].map(catalog.table["group"])
    out["comparison"] = params.comparison
    out["version"] = version
    out["computed_at"] = computed_at
    out["sample_count"] = out["sample_count"].astype("int64")
    for c in ("marginal", "condemning", "critical", "baseline"):
        out[c] = out[c].astype("float64")
    out["_k"] = out["kind"].map({"level": 0, "trend": 1, "hours": 2})
    out = out.sort_values([*GROUP_KEYS, "_k", "essay", "direction"], kind="mergesort")
    return out[LIMIT_COLUMNS].reset_index(drop=True)


def limits_version(silver: pd.DataFrame, params: LimitParams, catalog: Catalog) -> str:
    """Deterministic hash of the inputs of the limits: samples, parameters and catalog.

    Row order does not matter (samples are sorted by sampleNumber before hashing).
    """
    h = hashlib.sha256()
    h.update(json.dumps(params.as_dict(), sort_keys=True, default=str).encode())
    h.update(catalog.version.encode())
    cols = [
        c
        for c in (
            *_SILVER_KEYS.values(),
            "oilHourRange",
            "oilMeter",
            "sampleNumber",
            "previousSampleNumber",
            "daysSincePrevious",
        )
        if c in silver.columns
    ]
    cols += [e for e in _essays(silver, catalog, params)]
    if len(silver):
        frame = (
            silver[cols].sort_values("sampleNumber", kind="mergesort")
            if "sampleNumber" in cols
            else silver[cols]
        )
        frame = frame.reset_index(drop=True)
        for c in frame.columns:
            if not pd.api.types.is_float_dtype(frame[c]):
                frame[c] = frame[c].astype("string").fillna("\x00")
        h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        h.update(",".join(cols).encode())
    return "limits-" + h.hexdigest()[:16]


def limits_to_nested(df: pd.DataFrame) -> dict:
    """Flat limits → {client: {machine: {component: {essay: {...}}}}}.

    The essay entry holds one dict per ``direction`` (``trend_<direction>`` for trend rows,
    ``hours_<direction>`` for oil-age rows keyed by their ``OH:lo-hi`` stratum),
    each with marginal, condemning, critical, sample_count, limit_method and stratum keys when
    strata exist (``{stratum: {...}}`` under the direction).
    """
    out: dict = {}
    for row in df.to_dict("records"):
        essay = (
            out.setdefault(row["client"], {})
            .setdefault(row["machine"], {})
            .setdefault(row["component"], {})
            .setdefault(row["essay"], {})
        )
        kind = row.get("kind", "level")
        key = row["direction"] if kind == "level" else f"{kind}_{row['direction']}"
        entry = {
            "marginal": float(row["marginal"]),
            "condemning": float(row["condemning"]),
            "critical": float(row["critical"]),
            "sample_count": int(row["sample_count"]),
            "limit_method": row.get("limit_method"),
            "group": row.get("group"),
        }
        essay.setdefault(key, {})[row.get("stratum", ALL_STRATA)] = entry
    return out
