"""Quality of the limits and agreement of the classification with the lab's own verdict.

``limit_quality`` answers two questions about a classified run:

* how often each limit fires (share of samples at each level per component and essay, and the
  report flag rates) — a percentile limit that fires on far more than 10/5/2 % of samples is
  suspect;
* when the lab verdict (``labVerdict``, Finning ``Estado``) is present, how well the score and the
  status agree with it: ROC AUC of ``severity_score`` for "action or urgent", Spearman correlation
  with the lab's ordinal class, precision / recall / flag rate of non-Normal reports against
  "action or urgent", and the precision of Anormal. The maths mirrors ``eval_vs_lab.py``.
"""

from __future__ import annotations

import json
import os
import threading
import unicodedata
from collections import Counter
from concurrent.futures import Future
from itertools import chain

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from .limits import LEVELS

# Lab verdict → ordinal (accent- and case-insensitive); "Sin comentarios" is not a verdict.
VERDICT_ORDINAL = {
    "no se requiere accion": 0,
    "monitorear compartimento": 1,
    "accion requerida": 2,
    "se requiere accion urgente": 3,
}


def _norm(text) -> str | None:
    if text is None or text is pd.NA or (isinstance(text, float) and np.isnan(text)):
        return None
    t = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    return " ".join(t.lower().split())


def lab_ordinal(verdicts: pd.Series) -> pd.Series:
    """Lab verdict text → 0 none, 1 monitor, 2 action, 3 urgent; NaN when unknown or missing."""
    uniq = {v: VERDICT_ORDINAL.get(_norm(v), np.nan) for v in verdicts.dropna().unique()}
    return verdicts.map(uniq).astype(float)


# The breach objects written by classify.breaches_json, for pyarrow's JSON reader.
_BREACH_SCHEMA = pa.schema(
    [
        pa.field(
            "b",
            pa.list_(
                pa.struct(
                    [
                        *(pa.field(c, pa.string()) for c in ("essay", "group", "level", "direction", "kind")),
                        *(pa.field(c, pa.float64()) for c in ("value", "limit", "points")),
                    ]
                )
            ),
        )
    ]
)


def _breaches_arrow(text: pa.Array) -> pd.DataFrame:
    """``breaches_frame`` by pyarrow's JSON reader: each row becomes the line ``{"b": [...]}``, the
    lines are one buffer, and the breaches come out as columns (no Python object per breach)."""
    big = pa.large_string()
    lines = pc.binary_join_element_wise(
        pa.scalar('{"b": ', big), text, pa.scalar("}\n", big), pa.scalar("", big)
    )
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64, count=len(lines) + 1, offset=lines.offset * 8)
    data = lines.buffers()[2][offsets[0] : offsets[-1]]
    table = pa_json.read_json(
        pa.BufferReader(data),
        read_options=pa_json.ReadOptions(block_size=1 << 24),
        parse_options=pa_json.ParseOptions(
            explicit_schema=_BREACH_SCHEMA, unexpected_field_behavior="ignore"
        ),
    )
    if table.num_rows != len(text):
        raise ValueError("breached_essays: one JSON list per row expected")
    lists = table.column("b").combine_chunks()
    sizes = np.diff(lists.offsets.to_numpy())
    b = pa.Table.from_struct_array(lists.flatten()).to_pandas()
    b.insert(0, "row", np.repeat(np.arange(len(text)), sizes))
    return b


# The last breached_essays column parsed, by the identity of its Arrow array (immutable, and held
# here so its identity cannot be reused), and its breaches (a future: another thread may be parsing
# it): the classified step's checks and the limit quality of the same run read the same column,
# which is parsed once.
_LAST_PARSED: tuple[object, Future] | None = None
_PARSE_LOCK = threading.Lock()


def _forget_after_fork() -> None:
    """A forked child starts with no parse under way (its parent's threads are not there)."""
    global _LAST_PARSED, _PARSE_LOCK
    _LAST_PARSED, _PARSE_LOCK = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def breaches_frame(classified: pd.DataFrame) -> pd.DataFrame:
    """Explode ``breached_essays`` into one row per breach with ``row`` = position in ``classified``."""
    global _LAST_PARSED
    source = classified["breached_essays"].array
    arrow = source.__arrow_array__() if hasattr(source, "__arrow_array__") else None
    if arrow is None:
        return _parse_breaches(classified)
    with _PARSE_LOCK:
        last = _LAST_PARSED
        parsing = last is None or last[0] is not arrow
        if parsing:
            last = _LAST_PARSED = (arrow, Future())
    if parsing:  # this thread parses; any other asking for the same column waits for it
        try:
            last[1].set_result(_parse_breaches(classified))
        except BaseException as exc:
            last[1].set_exception(exc)
    return last[1].result().copy(deep=False)


def _parse_breaches(classified: pd.DataFrame) -> pd.DataFrame:
    column = classified["breached_essays"].astype("string").fillna("[]")
    if len(column):
        arrow = pa.chunked_array(pa.array(column.array)).cast(pa.large_string())
        try:
            parts, start = [], 0
            for chunk in arrow.chunks:  # classify writes the column in chunks; parquet in row groups
                if len(chunk):
                    parts.append(_breaches_arrow(chunk).assign(row=lambda d, s=start: d["row"] + s))
                start += len(chunk)
            b = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
            if len(b):
                return b
        except (pa.ArrowInvalid, ValueError):
            pass  # JSON the reader does not take (e.g. NaN): the Python parser below
    text = column.to_numpy(dtype=object)
    lists = json.loads("[" + ",".join(text) + "]")  # one parse for the whole column
    sizes = np.fromiter((len(x) for x in lists), dtype=int, count=len(lists))
    b = pd.DataFrame(list(chain.from_iterable(lists)))
    cols = ["essay", "group", "value", "limit", "level", "direction", "kind", "points"]
    if b.empty:
        b = pd.DataFrame({c: pd.Series(dtype="object") for c in cols})
    b.insert(0, "row", np.repeat(np.arange(len(lists)), sizes))
    return b


def roc_auc(score, truth) -> float:
    """ROC AUC by the Mann-Whitney U statistic with average ranks (ties count one half)."""
    score = np.asarray(score, float)
    truth = np.asarray(truth, bool)
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = _average_ranks(score)
    return float((r[truth].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _average_ranks(values) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (scipy's ``rankdata`` default), without
    importing scipy.stats, whose first import costs more than the whole quality step."""
    return pd.Series(np.asarray(values, float)).rank(method="average").to_numpy()


def spearman(x, y) -> float:
    """Spearman rank correlation (Pearson correlation of average ranks)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3:
        return float("nan")
    rx, ry = _average_ranks(x), _average_ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _ratio(a: int, b: int) -> float:
    return a / b if b else float("nan")


def _counts(rows: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``pd.crosstab`` of two aligned arrays without missing values, by sorted ``factorize`` and
    ``bincount``: (sorted row labels, sorted column labels, counts[row, column])."""
    r, row_labels = pd.factorize(rows, sort=True)
    c, col_labels = pd.factorize(columns, sort=True)
    width = len(col_labels)
    counts = np.bincount(r * width + c, minlength=len(row_labels) * width)
    return row_labels, col_labels, counts.reshape(len(row_labels), width)


def agreement(classified: pd.DataFrame, ordinal: pd.Series | None = None) -> dict:
    """Agreement of ``severity_score`` / ``report_status`` with the lab verdict (samples with a known
    verdict only). Positive = lab "action required" or "urgent action". ``ordinal``: the
    :func:`lab_ordinal` of its verdicts when the caller has it already."""
    if ordinal is None:
        ordinal = (
            lab_ordinal(classified["labVerdict"]) if "labVerdict" in classified else pd.Series(dtype=float)
        )
    known = ordinal.notna().to_numpy()
    k = classified.loc[known, ["severity_score", "report_status"]]  # not every column of the reports
    ordv = ordinal[known].to_numpy(float)
    score = k["severity_score"].to_numpy(float)
    status = k["report_status"].astype(str).to_numpy()
    truth = ordv >= 2
    flagged = status != "Normal"
    anormal = status == "Anormal"
    tp, fp = int((flagged & truth).sum()), int((flagged & ~truth).sum())
    atp, afp = int((anormal & truth).sum()), int((anormal & ~truth).sum())
    n, n_pos = len(k), int(truth.sum())
    statuses, labs, confusion = _counts(status, ordv)
    return {
        "n": n,
        "n_action": n_pos,
        "roc_auc_action": roc_auc(score, truth),
        "roc_auc_monitor": roc_auc(score, ordv >= 1),
        "spearman": spearman(score, ordv),
        "flag_rate": _ratio(int(flagged.sum()), n),
        "recall": _ratio(tp, n_pos),
        "precision": _ratio(tp, tp + fp),
        "anormal_rate": _ratio(int(anormal.sum()), n),
        "anormal_count": int(anormal.sum()),
        "anormal_precision": _ratio(atp, atp + afp),
        "anormal_recall": _ratio(atp, n_pos),
        "confusion": {
            str(s): {str(int(c)): int(v) for c, v in zip(labs, row, strict=True)}
            for s, row in zip(statuses, confusion, strict=True)
        },
    }


def _present_per_group(notna: np.ndarray, group_of: np.ndarray, groups: int) -> np.ndarray:
    """(groups, essays): per group, how many rows have each essay (``notna``: rows × essays, 0/1).
    Every essay at once: the rows ordered by group and summed per group's run (each of the
    ``groups`` numbers holds a row), what a ``bincount`` per essay gives."""
    if not groups:
        return np.zeros((0, notna.shape[1]))
    order = np.argsort(group_of, kind="stable")
    starts = np.searchsorted(group_of[order], np.arange(groups))
    return np.add.reduceat(notna[order], starts, axis=0)


def limit_quality(classified: pd.DataFrame, limits: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Firing rates of the limits and, when lab verdicts are present, agreement figures.

    Returns ``(table, summary)``. ``table`` has one row per (client, machine, component, essay,
    direction, kind) of ``limits`` with ``samples`` (reports of the group), ``measured`` (reports
    with the essay), ``share_marginal`` / ``share_condemning`` / ``share_critical`` (share of the
    measured reports whose breach reached that level) and ``share_breached`` (any level).
    ``summary`` holds the status shares, flag rates, limits version(s) and ``agreement`` (None
    without lab verdicts).
    """
    keys = ["client", "machine", "component", "essay", "direction", "kind"]
    df = classified.reset_index(drop=True)
    comp = pd.DataFrame(
        {
            "client": df["client"].astype(str),
            "machine": df["machineName"].astype(str),
            "component": df["componentNameNormalized"].astype(str),
        }
    )
    b = breaches_frame(df)
    # One row per limit: the 'ALL' rows, plus the oil-age rows (kind 'hours', one per oil-hour bin).
    overall = (
        limits[(limits["stratum"] == "ALL") | (limits["kind"] == "hours")]
        if "stratum" in limits and "kind" in limits
        else limits[limits["stratum"] == "ALL"]
        if "stratum" in limits
        else limits
    )
    table = overall[keys].drop_duplicates().reset_index(drop=True)
    table.attrs = {}  # the limits' own markers (version) are not the table's: never written with it
    # Counted with plain dicts and bincount over group numbers (a few hundred limit rows, a few
    # thousand breaches): no join or groupby over the text keys of every report and breach.
    group_keys = list(zip(*(comp[c].to_numpy(object).tolist() for c in comp.columns), strict=True))
    number = {k: i for i, k in enumerate(dict.fromkeys(group_keys))}
    group_of = np.fromiter((number[k] for k in group_keys), dtype=np.intp, count=len(group_keys))
    table_groups = list(zip(*(table[c].to_numpy(object).tolist() for c in keys[:3]), strict=True))
    at = np.fromiter((number.get(k, -1) for k in table_groups), dtype=np.intp, count=len(table))
    found = at >= 0
    # One slot more, missing: a limit group without reports (position -1) reads it.
    per_group = np.append(np.bincount(group_of, minlength=len(number)).astype(float), np.nan)
    table["samples"] = per_group[at]
    essays = [e for e in table["essay"].unique() if e in df.columns]
    if essays:
        measured = np.full(len(table), np.nan)
        essay_of = table["essay"].to_numpy(object)
        present = _present_per_group(df[essays].notna().to_numpy(float), group_of, len(number))
        for j, e in enumerate(essays):
            rows = np.flatnonzero(found & (essay_of == e))
            measured[rows] = present[at[rows], j]
        table["measured"] = measured
    else:
        table["measured"] = 0
    if len(b):
        rows = b["row"].to_numpy(np.intp)
        tally = Counter(
            zip(
                group_of[rows].tolist(),
                *(
                    b[c].astype(str).to_numpy(object).tolist()
                    for c in ("essay", "direction", "kind", "level")
                ),
                strict=True,
            )
        )
        wanted = [
            (g, e, d, k)
            for g, e, d, k in zip(
                at.tolist(), *(table[c].to_numpy(object).tolist() for c in keys[3:]), strict=True
            )
        ]
        for lv in LEVELS:
            table[lv] = np.array([float(tally.get((*w, lv), 0)) for w in wanted])
    for lv in LEVELS:
        if lv not in table:
            table[lv] = 0.0
    table[list(LEVELS)] = table[list(LEVELS)].fillna(0.0)
    for c in ("samples", "measured"):
        table[c] = table[c].fillna(0).astype(int)
    denom = table["measured"].where(table["measured"] > 0)
    for lv in LEVELS:
        table[f"share_{lv}"] = (table[lv] / denom).fillna(0.0)
    table["share_breached"] = table[[f"share_{lv}" for lv in LEVELS]].sum(axis=1)
    table = table.drop(columns=list(LEVELS)).sort_values(keys, kind="mergesort").reset_index(drop=True)

    status = df["report_status"].astype(str)
    n = len(df)
    components, seen, counts = _counts(comp["component"].to_numpy(object), status.to_numpy(object))
    shares = counts / counts.sum(axis=1, keepdims=True)  # as crosstab(normalize="index") divides
    seen = list(seen)
    summary = {
        "samples": n,
        "status_share": {s: _ratio(int((status == s).sum()), n) for s in ("Normal", "Alerta", "Anormal")},
        "flag_rate": _ratio(int((status != "Normal").sum()), n),
        "anormal_rate": _ratio(int((status == "Anormal").sum()), n),
        "status_share_by_component": {
            str(c): {
                s: float(r[seen.index(s)]) if s in seen else 0.0 for s in ("Normal", "Alerta", "Anormal")
            }
            for c, r in zip(components, shares, strict=True)
        },
        "limits_version": sorted(set(limits["version"].dropna().astype(str))) if "version" in limits else [],
        "agreement": None,
    }
    ordinal = lab_ordinal(df["labVerdict"]) if "labVerdict" in df else None
    if ordinal is not None and ordinal.notna().any():
        summary["agreement"] = agreement(df, ordinal)
    return table, summary
