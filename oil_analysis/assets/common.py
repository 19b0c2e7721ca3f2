"""What every asset shares: the client partitions and metadata helpers."""

from __future__ import annotations

import dataclasses
import json
import warnings

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    DataVersion,
    Failure,
    MetadataValue,
    Output,
    StaticPartitionsDefinition,
    TableColumn,
    TableColumnConstraints,
    TableSchema,
    asset,
    get_dagster_logger,
)

from ..domain.checks import CHECK_SPECS, CheckOutcome
from ..domain.classify import STATUSES
from ..domain.clients import load_clients
from ..resources import notify
from ..settings import get_settings
from ..storage import manifest, runstate
from ..storage.publication import published_path

CLIENTS = load_clients(get_settings().clients_file)
client_partitions = StaticPartitionsDefinition(sorted(CLIENTS))
OWNER = "team:oil-analysis"


def client_asset(group: str, *, table: bool = True, **kwargs):
    """``@asset`` with the arguments every asset of the product shares: partitioned by client, owned
    by the team, in ``group``; ``table``: its output is a table written by the layout IO manager."""
    if table:
        kwargs.setdefault("io_manager_key", "layout_io_manager")
    return asset(group_name=group, partitions_def=client_partitions, owners=[OWNER], **kwargs)


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
    # The rows from one list per column (the values ``itertuples`` gives, without its per-cell
    # indexing: a preview is made for every output of every run).
    rows = zip(*(head.iloc[:, k].tolist() for k in range(len(cols))), strict=True) if cols else []
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return MetadataValue.md("\n".join(lines))


def status_counts(values: pd.Series) -> dict[str, int]:
    counts = values.value_counts()
    return {s: int(counts.get(s, 0)) for s in STATUSES}


def check_specs(asset: str, names: list[str]) -> list[AssetCheckSpec]:
    """Check specs of an asset: visible in the UI with their description, executed with the asset in
    the same step; blocking unless the check only warns (``CHECK_SPECS``)."""
    with warnings.catch_warnings():  # partitioned check specs are a Dagster "preview" feature
        warnings.simplefilter("ignore")
        return [
            AssetCheckSpec(
                n,
                asset=asset,
                description=CHECK_SPECS[n][0],
                blocking=not CHECK_SPECS[n][1],
                partitions_def=client_partitions,
            )
            for n in names
        ]


def column_schema(table: str) -> TableSchema:
    """The contract of ``table`` (``contracts.py``) as Dagster's column schema (the UI's Columns tab)."""
    from ..domain.contracts import tables

    return TableSchema(
        columns=[
            TableColumn(
                c.name,
                type=str(c.type),
                description=c.description,
                constraints=TableColumnConstraints(nullable=c.nullable),
            )
            for c in tables()[table][1]
        ]
    )


def table_metadata(table: str) -> dict:
    """Definition metadata of a table asset: its column schema from the contract."""
    return {"dagster/column_schema": column_schema(table)}


def storage_kinds() -> set[str]:
    """``s3`` when the layout lives on S3 (``s3`` or ``dual`` mode), else ``local`` (read when the
    code location loads, like every definition)."""
    return {"s3"} if get_settings().storage_mode != "local" else {"local"}


def notify_kinds() -> set[str]:
    """``sns`` only when an SNS topic is configured."""
    return {"sns"} if get_settings().notify_sns_topic_arn else set()


def advisor_kinds() -> set[str]:
    """``openai`` only when the LLM advisor is on (a key and not ``OIL_LLM_OFFLINE``)."""
    s = get_settings()
    return {"openai"} if s.openai_api_key and not s.llm_offline else set()


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


def versioned_output(value, metadata: dict, fp: str) -> Output:
    """An output whose Dagster data version is its input fingerprint (``data_version`` is a beta
    parameter of Output in Dagster 1.13: its warning is silenced here, once)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Output(value, metadata=metadata, data_version=DataVersion(fp))


def step_fingerprint(context, store, upstream: list[str], **params) -> str:
    """The input fingerprint of this step: its asset, its code version, ``params`` and the
    fingerprints of the published outputs of its ``upstream`` assets (runstate)."""
    client, key = context.partition_key, context.asset_key
    code = context.assets_def.code_versions_by_key.get(key)
    inputs = {a: runstate.published_fingerprint(store, client, a) for a in upstream}
    return runstate.fingerprint(key.path[-1], code, {**inputs, **params})


def unchanged_state(store, client: str, asset: str, fp: str, path: str | None = None) -> dict | None:
    """The recorded state when the published output of ``asset`` already has fingerprint ``fp``
    and its files are as published (size and sha256 of its manifest part; without a part, its file
    ``path``, default its IO manager path, exists); None when the step has work to do."""
    state = runstate.read_state(store, client, asset)
    if not state or state.get("fingerprint") != fp:
        return None
    problems = manifest.part_problems(store, client, asset)
    if problems:
        get_dagster_logger().warning(
            f"{asset} of {client}: inputs unchanged but its published files changed since run "
            f"{state.get('run_id')} ({'; '.join(problems[:3])}): built again"
        )
        return None
    if problems is None and not store.exists(path or published_path(client, asset)):
        return None
    return state


def scalar_metadata(metadata: dict) -> dict:
    """The plain figures of an output's metadata (numbers, text), kept to show again when unchanged."""
    plain = {k: v.value if isinstance(v, MetadataValue) else v for k, v in metadata.items()}
    return {k: v for k, v in plain.items() if isinstance(v, bool | int | float | str)}


def yield_unchanged(
    asset: str, fp: str, state: dict, outcomes: list[CheckOutcome] | None = None, **overrides
):
    """The step's answer when nothing it depends on changed: the unchanged placeholder (the IO
    manager writes nothing), the recorded figures of the published output (``overrides``: the
    figures of this run, e.g. nothing classified), and its check results as recorded
    (``outcomes`` replaces recorded ones of the same name, e.g. freshness, which ages)."""
    recorded = [CheckOutcome(**o) for o in state.get("checks", [])]
    fresh = {o.name: o for o in outcomes or []}
    metadata = {
        **state.get("metadata", {}),
        **overrides,
        "unchanged": True,
        "unchanged_since_run": state.get("run_id", ""),
    }
    yield versioned_output(runstate.unchanged_frame(fp), metadata, fp)
    yield from check_results(asset, [fresh.get(o.name, o) for o in recorded])


def record(context, asset: str, fp: str, output: Output, outcomes) -> Output:
    """Mark ``output`` with its input fingerprint (data version, metadata ``unchanged`` False) and
    leave the state the IO manager records once the files are written."""
    metadata = dict(output.metadata or {})
    state = {
        "fingerprint": fp,
        "run_id": context.run_id,
        "checks": [dataclasses.asdict(o) for o in outcomes],
        "metadata": scalar_metadata(metadata),
    }
    runstate.set_pending(context.run_id, context.partition_key, asset, state)
    return versioned_output(output.value, {**metadata, "unchanged": False}, fp)


def publish_or_block(asset: str, output: Output, outcomes, *, context=None, fp: str | None = None):
    """Yield the output then its check results, or — when a blocking check fails — the results and a
    Failure without the output, so nothing is written and the previously published file stays.
    With ``context`` and ``fp`` (the step's input fingerprint) the output records it (see
    :func:`record`)."""
    from ..domain.checks import blocking_failures
    from ..domain.contracts import ContractError, conform, tables

    if asset in tables():
        try:
            value = conform(output.value, asset)
            value.attrs.update(output.value.attrs)  # markers (limits version, kept) survive
            metadata = {**(output.metadata or {}), "dagster/row_count": len(value)}
            output = Output(value, metadata=metadata)
        except ContractError as exc:
            raise Failure(description=f"{exc}; nothing was published") from None
    failed = blocking_failures(outcomes)
    if failed:
        yield from check_results(asset, outcomes)
        notify_check_failure(asset, failed)
        raise Failure(
            description=f"{asset}: blocking checks failed: {', '.join(o.name for o in failed)}; "
            "nothing was published, the previous version stays in place",
            metadata={o.name: MetadataValue.json(o.metadata) for o in failed},
        )
    if context is not None and fp is not None:
        output = record(context, asset, fp, output, outcomes)
    yield output
    yield from check_results(asset, outcomes)


def notify_check_failure(asset: str, failed) -> None:
    """Tell the destinations that blocking checks (``CheckOutcome``) stopped the publish of ``asset``.

    A delivery problem is logged, never raised: the run is failing already for the checks, and that
    error must stay the one people see.
    """
    if not notify.configured():
        return
    try:
        context = AssetExecutionContext.get()
    except Exception:  # noqa: BLE001 - outside a run (unit tests of the assets' helpers)
        return
    checks = [
        {
            "check": o.name,
            "description": o.description,
            "metadata": json.loads(json.dumps(o.metadata, default=str)),
        }
        for o in failed
    ]
    step = context.get_step_execution_context().step.key
    message = notify.check_failure_message(context.partition_key, context.run_id, step, asset, checks)
    try:
        sent = notify.notify(
            message,
            notify.check_failure_text(message),
            f"oil-analysis blocking check FAILED: {message['client']} {asset}",
        )
        context.log.info(f"blocking check failure notified: {sent}")
    except notify.NotificationError as exc:
        context.log.error(f"could not notify the blocking check failure: {exc}")
