"""The people's view: the fleet report of a client as one self-contained HTML page (no dagster)."""

from .fleet_html import ReportParams, render_fleet_report, status_by_month, status_over_time_markdown

__all__ = [
    "ReportParams",
    "render_fleet_report",
    "status_by_month",
    "status_over_time_markdown",
]
