"""The essay catalog: every measurement the labs deliver, with its group, unit and limit direction.

The catalog is data (``oil_analysis/reference/essays.csv``), versioned by the sha256 of its bytes,
so that limits and classifications can say which catalog they were computed with.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources

import pandas as pd

GROUPS = ("wear", "contaminant", "additive", "physicochemical", "particle", "visual", "flag")
DIRECTIONS = ("upper", "lower", "both")
LIMIT_METHODS = ("percentile", "flag", "code")


@dataclass(frozen=True)
class Catalog:
    """Essay catalog. ``table`` has one row per essay, indexed by the canonical essay key."""

    table: pd.DataFrame
    version: str

    @property
    def essays(self) -> list[str]:
        return list(self.table.index)

    def of_group(self, *groups: str) -> list[str]:
        return list(self.table.index[self.table["group"].isin(groups)])

    def with_method(self, *methods: str) -> list[str]:
        return list(self.table.index[self.table["limit_method"].isin(methods)])

    @cached_property
    def _text(self) -> dict[str, dict[str, str]]:
        # Per-essay lookups are called per breach (advisor, classifier): a dict, not DataFrame.at.
        return {c: dict(zip(self.table.index, self.table[c].astype(str), strict=True)) for c in self.table}

    def direction(self, essay: str) -> str:
        return self._text["direction"][essay]

    def group(self, essay: str) -> str:
        return self._text["group"][essay]

    def name_es(self, essay: str) -> str:
        return self._text["name_es"][essay]

    def unit(self, essay: str) -> str:
        return self._text["unit"][essay]

    def source_columns(self, lab_format: str, *methods: str) -> dict[str, str]:
        """Map of the lab's source column (or test name) to the essay key, for one lab format.

        ``methods`` restricts to essays of those limit methods (default: all).
        """
        col = {"finning_xlsx": "finning_column", "als_parquet": "als_test_name"}[lab_format]
        table = self.table if not methods else self.table[self.table["limit_method"].isin(methods)]
        src = table[col].dropna()
        return {str(v): str(k) for k, v in src.items() if str(v).strip()}


def _validate(table: pd.DataFrame) -> None:
    bad_group = set(table["group"]) - set(GROUPS)
    bad_dir = set(table["direction"]) - set(DIRECTIONS)
    bad_method = set(table["limit_method"]) - set(LIMIT_METHODS)
    if bad_group or bad_dir or bad_method:
        raise ValueError(f"essays.csv: unknown group {bad_group} / direction {bad_dir} / method {bad_method}")
    if table.index.duplicated().any():
        raise ValueError(f"essays.csv: duplicated essay keys {list(table.index[table.index.duplicated()])}")


@cache
def load_catalog() -> Catalog:
    """Load the shipped essay catalog (cached; it is immutable data)."""
    raw = resources.files("oil_analysis.reference").joinpath("essays.csv").read_bytes()
    table = pd.read_csv(
        io.BytesIO(raw),  # the bytes the version is computed from (and no file left open)
        dtype={"finning_column": "string", "als_test_name": "string"},
        keep_default_na=False,
        na_values={"min_value": [""], "max_value": [""], "finning_column": [""], "als_test_name": [""]},
    ).set_index("essay")
    _validate(table)
    return Catalog(table=table, version="catalog-" + hashlib.sha256(raw).hexdigest()[:12])
