"""The default status of the schedules, from the environment (``OIL_SCHEDULES_RUNNING``).

``dev`` sets it to ``false`` (a laptop does not refresh limits on its own), ``staging`` and ``prod``
to ``true`` (oil_analysis/settings.py). It is only the *default*: a status set in the UI or with
``dagster schedule start/stop`` is stored in the instance and wins over it.
"""

from __future__ import annotations

from dagster import DefaultScheduleStatus

from ..settings import get_settings


def schedule_status() -> DefaultScheduleStatus:
    """RUNNING when ``OIL_SCHEDULES_RUNNING`` is true (staging and prod by default), else STOPPED."""
    running = get_settings().schedules_running
    return DefaultScheduleStatus.RUNNING if running else DefaultScheduleStatus.STOPPED
