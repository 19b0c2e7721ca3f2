"""What every asset shares: the client partitions and metadata helpers."""

from __future__ import annotations

import pandas as pd
from dagster import MetadataValue, StaticPartitionsDefinition

from ..domain.clients import load_clients

CLIENTS = load_clients()
client_partitions = StaticPartitionsDefinition(sorted(CLIENTS))
OWNER = "team:oil-analysis"
STATUSES = ["Normal", "Alerta", "Anormal"]


def md_table(df: pd.DataFrame, n: int = 8) -> MetadataValue:
    """A small markdown preview of a frame (no tabulate dependency)."""
    head = df.head(n)
    cols = list(head.columns)

    def cell(v) -> str:
        if v is None or (isinstance(v, float) and pd.isna(v)) or v is pd.NA or v is pd.NaT:
            return ""
        s = str(v)
        return (s[:40] + "…" if len(s) > 41 else s).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in head.itertuples(index=False)]
    return MetadataValue.md("\n".join(lines))


def status_counts(values: pd.Series) -> dict[str, int]:
    counts = values.value_counts()
    return {s: int(counts.get(s, 0)) for s in STATUSES}
