"""Load once, in the parent, what every reader loads on its first call.

The bronze step parses each file in a forked child (:func:`oil_analysis.pipeline.bronze.parse_isolated`).
A fork inherits the parent's memory: what the parent has loaded before forking (the essay catalog,
each format's column maps, pandas/pyarrow modules imported lazily on a first conversion) is not
loaded again by every child. In a fresh process (a CLI or sensor-launched run, where bronze is the
first step) that was ~0.1 CPU s per file, a third of a child's work on a real workbook.

Nothing here reads a raw file: the isolation of the parse stays whole.
"""

from __future__ import annotations

from collections.abc import Iterable


def preload_readers(lab_formats: Iterable[str]) -> None:
    """Load the immutable data and lazy modules the readers of ``lab_formats`` need (cached)."""
    import pyarrow.pandas_compat  # noqa: F401  (imported by the first DataFrame ↔ Arrow conversion)

    from ..catalog import load_catalog
    from . import finning
    from .common import empty_rejects

    empty_rejects()  # pandas' first string/Int64 casts initialise lazily (~0.04 s)
    catalog = load_catalog()
    if "finning_xlsx" in set(lab_formats):
        for method in ("percentile", "flag"):
            finning._sources(catalog, method)
