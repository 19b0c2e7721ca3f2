"""Where the fleet report lives in the layout (to move into storage/layout.py with the other paths)."""

from __future__ import annotations


def fleet_report_path(client: str) -> str:
    """``gold/{client}/fleet_report.html``, relative to the data root (local folder or S3 prefix)."""
    return f"gold/{client}/fleet_report.html"
