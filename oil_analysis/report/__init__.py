"""The people's view: the fleet report of a client as one self-contained HTML page (no dagster)."""

from .fleet_html import ReportParams, render_fleet_report, status_by_month, status_over_time_markdown
from .paths import fleet_report_path

__all__ = [
    "ReportParams",
    "fleet_report_path",
    "render_fleet_report",
    "status_by_month",
    "status_over_time_markdown",
]
