"""What every asset shares: the client partitions and metadata helpers."""

from __future__ import annotations

import warnings

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    Failure,
    MetadataValue,
    Output,
    StaticPartitionsDefinition,
)

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


def check_specs(asset: str, names: list[str], blocking: bool = True) -> list[AssetCheckSpec]:
    """Check specs of an asset: visible in the UI, executed with the asset in the same step."""
    with warnings.catch_warnings():  # partitioned check specs are a Dagster "preview" feature
        warnings.simplefilter("ignore")
        return [
            AssetCheckSpec(n, asset=asset, blocking=blocking, partitions_def=client_partitions) for n in names
        ]


def check_results(asset: str, outcomes) -> list[AssetCheckResult]:
    """Dagster results of the domain's CheckOutcomes (warnings get WARN severity)."""
    return [
        AssetCheckResult(
            asset_key=asset,
            check_name=o.name,
            passed=bool(o.passed),
            description=o.description,
            severity=AssetCheckSeverity.WARN if o.warn_only else AssetCheckSeverity.ERROR,
            metadata={
                k: MetadataValue.json(v) if isinstance(v, list | dict) else v for k, v in o.metadata.items()
            },
        )
        for o in outcomes
    ]


def publish_or_block(asset: str, output: Output, outcomes):
    """Yield the output then its check results, or — when a blocking check fails — the results and a
    Failure without the output, so nothing is written and the previously published file stays."""
    from ..contracts import ContractError, conform, tables
    from ..domain.checks import blocking_failures

    if asset in tables():
        try:
            output = Output(conform(output.value, asset), metadata=output.metadata)
        except ContractError as exc:
            raise Failure(description=f"{exc}; nothing was published") from None
    failed = blocking_failures(outcomes)
    if failed:
        from ..automation.failures import notify_check_failure

        yield from check_results(asset, outcomes)
        notify_check_failure(asset, failed)
        raise Failure(
            description=f"{asset}: blocking checks failed: {', '.join(o.name for o in failed)}; "
            "nothing was published, the previous version stays in place",
            metadata={o.name: MetadataValue.json(o.metadata) for o in failed},
        )
    yield output
    yield from check_results(asset, outcomes)
