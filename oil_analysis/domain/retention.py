"""Which gold history snapshots to keep: daily ones for ``daily_days``, then one a week for ``weekly_weeks``."""

from __future__ import annotations

import datetime as dt


def snapshots_to_keep(
    days: list[dt.date], today: dt.date, daily_days: int = 30, weekly_weeks: int = 52
) -> set[dt.date]:
    """Every snapshot of the last ``daily_days`` days; older ones, the newest of each ISO week within
    ``weekly_weeks`` weeks; nothing older."""
    keep = {d for d in days if (today - d).days < daily_days}
    weekly: dict[tuple[int, int], dt.date] = {}
    for d in days:
        age = (today - d).days
        if daily_days <= age < weekly_weeks * 7:
            week = d.isocalendar()[:2]
            if week not in weekly or d > weekly[week]:
                weekly[week] = d
    return keep | set(weekly.values())
