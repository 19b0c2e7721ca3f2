"""The change log of a publish (CDC): what a run changed in a client's gold, for people and consumers."""

from __future__ import annotations

import pandas as pd

from .classify import RANK, STATUSES

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
    cur = current.drop_duplicates("sampleNumber", keep="last").set_index("sampleNumber")
    prev = (
        cur.iloc[:0]
        if previous is None
        else previous.drop_duplicates("sampleNumber", keep="last").set_index("sampleNumber")
    )
    added = cur.index.difference(prev.index)
    removed = prev.index.difference(cur.index)
    both = cur.index.intersection(prev.index)
    watched = [c for c in _WATCHED if c in prev]
    updated = (
        both[(prev.loc[both, watched].astype(str) != cur.loc[both, watched].astype(str)).any(axis=1)]
        if len(both) and watched
        else both[:0]
    )
    was = prev["report_status"] if len(prev) else pd.Series(dtype="string")
    now = cur["report_status"]
    rank_was = was.reindex(both).map(RANK)
    rank_now = now.reindex(both).map(RANK)
    became_bad = both[((now.reindex(both) != "Normal") & (rank_now > rank_was)).to_numpy()]
    new_bad = sorted([*added[(now.reindex(added) != "Normal").to_numpy()], *became_bad])
    return {
        "reports_before": int(len(prev)),
        "reports_after": int(len(cur)),
        "samples_added": int(len(added)),
        "samples_updated": int(len(updated)),
        "samples_removed": int(len(removed)),
        "report_status_transitions": _transitions(was, cur["report_status"]),
        "status_before": {s: int((was == s).sum()) for s in STATUSES},
        "status_after": {s: int((cur["report_status"] == s).sum()) for s in STATUSES},
        "new_non_normal_samples": [
            {
                "sampleNumber": str(s),
                "unitId": str(cur.at[s, "unitId"]),
                "component": str(cur.at[s, "componentName"]),
                "status": str(cur.at[s, "report_status"]),
            }
            for s in new_bad[:max_listed]
        ],
        "new_non_normal_count": len(new_bad),
    }


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
