"""The change log of a publish (CDC): what a run changed in a client's gold, for people and consumers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .classify import RANK, STATUSES
from .incremental import locate, repeats

_WATCHED = ("severity_score", "report_status", "breached_essays", "limits_version")


def _transitions(old: pd.Series, new: pd.Series) -> dict[str, int]:
    both = old.index.intersection(new.index)
    moved = old[both] != new[both]
    pairs = (old[both][moved] + " → " + new[both][moved]).value_counts()
    return {k: int(v) for k, v in sorted(pairs.items())}


def report_changes(previous: pd.DataFrame | None, current: pd.DataFrame, *, max_listed: int = 200) -> dict:
    """Counts before/after, samples added/updated/removed, status transitions, new non-Normal samples."""
    # Only the columns read here (the reports are wide: every essay, texts).
    read = ["sampleNumber", "unitId", "componentName", *_WATCHED]
    current = current[[c for c in read if c in current]]
    previous = None if previous is None else previous[[c for c in read if c in previous]]
    # A broken key (duplicates) is reported by the checks; the change log counts each sample once.
    cur = _once(current).reset_index(drop=True)
    prev = cur.iloc[:0] if previous is None else _once(previous)
    prev = prev.reset_index(drop=True)
    # Rows matched by position once (both keys are unique now): no label alignment per column.
    numbers = cur["sampleNumber"].to_numpy(object)
    at = locate(cur["sampleNumber"], prev["sampleNumber"])
    in_both = np.flatnonzero(at >= 0)
    added = np.flatnonzero(at < 0)
    removed = len(prev) - len(in_both)
    pairs = at[in_both]
    watched = [c for c in _WATCHED if c in prev]
    updated = 0
    if len(in_both) and watched:
        now_w = cur[watched].iloc[in_both].reset_index(drop=True)
        was_w = prev[watched].iloc[pairs].reset_index(drop=True)
        # Most reports are kept as they were: only rows whose values differ (or hold a missing
        # value, which the text comparison below counts its own way) are compared as text.
        maybe = _maybe_differ(now_w, was_w)
        if maybe.any():  # (none: every kept report as it was, nothing to compare as text)
            now_w, was_w = now_w[maybe], was_w[maybe]
            updated = int((was_w.astype(str) != now_w.astype(str)).any(axis=1).sum())
    was = prev["report_status"].iloc[pairs].reset_index(drop=True) if len(prev) else None
    now = cur["report_status"]
    now_both = now.iloc[in_both].reset_index(drop=True)
    if was is None:
        was = pd.Series(index=now_both.index, dtype="string")
    moved = was != now_both
    transitions = (was[moved] + " → " + now_both[moved]).value_counts()
    worse = _flag(now_both != "Normal") & (_ranks(now_both) > _ranks(was))
    # The new non-Normal reports by position, listed in sampleNumber order.
    bad = np.concatenate([added[_flag(now.iloc[added] != "Normal")], in_both[worse]])
    bad = bad[np.argsort(numbers[bad], kind="stable")] if len(bad) else bad
    new_bad, where = numbers[bad].tolist(), bad[:max_listed]
    listed = new_bad[:max_listed]
    units, comps = (cur[c].to_numpy(object)[where] for c in ("unitId", "componentName"))
    before = prev["report_status"].value_counts() if len(prev) else pd.Series(dtype=int)
    after = now.value_counts()
    return {
        "reports_before": int(len(prev)),
        "reports_after": int(len(cur)),
        "samples_added": int(len(added)),
        "samples_updated": updated,
        "samples_removed": int(removed),
        "report_status_transitions": {k: int(v) for k, v in sorted(transitions.items())},
        "status_before": {s: int(before.get(s, 0)) for s in STATUSES},
        "status_after": {s: int(after.get(s, 0)) for s in STATUSES},
        "new_non_normal_samples": [
            {"sampleNumber": str(s), "unitId": str(u), "component": str(c), "status": str(st)}
            for s, u, c, st in zip(listed, units, comps, now.to_numpy(object)[where], strict=True)
        ],
        "new_non_normal_count": len(new_bad),
    }


def _once(reports: pd.DataFrame) -> pd.DataFrame:
    """Each sampleNumber once (its last row); the frame as it is when none repeats."""
    if not repeats(reports["sampleNumber"]):
        return reports
    return reports.drop_duplicates("sampleNumber", keep="last")


def _flag(mask: pd.Series) -> np.ndarray:
    """A comparison's result as booleans (a missing result is False)."""
    return mask.to_numpy(dtype=bool, na_value=False)


def _ranks(status: pd.Series) -> np.ndarray:
    """``status.map(RANK)`` as floats (NaN for anything else), by one comparison per status."""
    out = np.full(len(status), np.nan)
    for name, rank in RANK.items():
        out[_flag(status == name)] = rank
    return out


def _maybe_differ(now: pd.DataFrame, was: pd.DataFrame) -> np.ndarray:
    """Rows of two aligned frames that may differ as text: a value differs (floats bit for bit, so
    -0.0 and 0.0 differ as their texts do), a value is missing, or a column changed type."""
    maybe = np.zeros(len(now), dtype=bool)
    for c in now.columns:
        x, y = now[c], was[c]
        if x.dtype != y.dtype:
            return np.ones(len(now), dtype=bool)
        missing = (x.isna() | y.isna()).to_numpy(bool)
        if isinstance(x.dtype, np.dtype) and x.dtype.kind == "f":
            a, b = x.to_numpy(), y.to_numpy()
            maybe |= missing | (a.view(np.int64) != b.view(np.int64))
        else:
            maybe |= missing | ~(x == y).fillna(False).to_numpy(bool)
    return maybe


def machine_changes(previous: pd.DataFrame | None, current: pd.DataFrame) -> dict:
    """Machine status transitions, e.g. ``{"T_15": "Normal → Anormal"}``."""
    cur = current.drop_duplicates("unitId", keep="last").set_index("unitId")["machine_status"]
    prev = previous.set_index("unitId")["machine_status"] if previous is not None else cur.iloc[:0]
    both = cur.index.intersection(prev.index)
    moved = {str(u): f"{prev[u]} → {cur[u]}" for u in sorted(both) if prev[u] != cur[u]}
    return {
        "machines_before": int(len(prev)),
        "machines_after": int(len(cur)),
        "machines_added": sorted(map(str, cur.index.difference(prev.index))),
        "machines_removed": sorted(map(str, prev.index.difference(cur.index))),
        "machine_status_transitions": moved,
    }
