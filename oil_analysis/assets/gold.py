"""Gold: a classified report per sample, the current status of every machine, limit quality."""

import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, Output

from ..domain import checks
from ..domain.catalog import load_catalog
from ..domain.classify import ClassificationParams
from ..domain.fleet import FleetParams
from ..domain.quality import limit_quality as build_limit_quality
from ..pipeline import gold
from ..report import status_over_time_markdown
from ..resources.llm import LLMResource
from ..resources.storage import StorageResource
from ..storage import runstate
from ..storage.filesystem import parquet_bytes
from .common import (
    advisor_kinds,
    check_specs,
    client_asset,
    md_table,
    publish_or_block,
    status_counts,
    step_fingerprint,
    storage_kinds,
    table_metadata,
    unchanged_state,
    yield_unchanged,
)


def llm_identity(llm: LLMResource) -> dict:
    """What of the advisor's settings shapes its texts (never the key): part of the fingerprints."""
    config = llm.get_config()
    if config is None:
        return {"offline": True}
    return {k: getattr(config, k) for k in ("base_url", "model", "temperature", "max_tokens")}


def ai_metadata(ai: dict) -> dict:
    """Advisor run figures for the UI: calls, cache hits, tokens and estimated cost."""
    return {
        "ai": MetadataValue.json(ai),
        "ai_calls": int(ai.get("calls", 0)),
        "ai_cache_hits": int(ai.get("cache_hits", 0)),
        "ai_cost_usd": float(ai.get("estimated_cost_usd") or 0.0),
    }


@client_asset(
    "gold",
    kinds={"pandas", "parquet", *storage_kinds(), *advisor_kinds()},
    metadata=table_metadata("classified_reports"),
    code_version="classify-3",
    check_specs=check_specs(
        "classified_reports",
        ["every_sample_classified_once", "status_consistent_with_score", "recommendation_present"],
    ),
    description="One classified report per silver sample: breached_essays (JSON: essay, value, limit, "
    "level, direction, kind, points), severity_score (sum of points), report_status (Normal / Alerta / "
    "Anormal) and the limits_version used.",
)
def classified_reports(
    context: AssetExecutionContext,
    storage: StorageResource,
    llm: LLMResource,
    silver_harmonized: pd.DataFrame,
    stewart_limits: pd.DataFrame,
):
    params = ClassificationParams()
    store, client = storage.get(), context.partition_key
    fp = step_fingerprint(
        context,
        store,
        ["silver_harmonized", "stewart_limits"],
        params=params,
        catalog=load_catalog().version,
        advisor=llm_identity(llm),
    )
    state = unchanged_state(store, client, "classified_reports", fp)
    if state is not None:
        rows = state.get("metadata", {}).get("rows", 0)
        yield from yield_unchanged(
            "classified_reports",
            fp,
            state,
            classified_this_run=0,
            reused_from_previous=rows,
            ai_calls=0,
            ai_cache_hits=0,
            ai_cost_usd=0.0,
        )
        return
    silver_harmonized = gold.resolved(silver_harmonized, store, client, "silver_harmonized")
    stewart_limits = gold.resolved(stewart_limits, store, client, "stewart_limits")
    reports, reuse, changes, ai, previous = gold.classify(
        store, client, silver_harmonized, stewart_limits, llm.get_config(), params, context.run_id
    )
    # Its file rendered on the other core while the checks and metadata below are computed.
    runstate.prepare(context.run_id, client, "classified_reports", reports, parquet_bytes)
    counts = status_counts(reports["report_status"])
    version = str(reports["limits_version"].iloc[0]) if len(reports) else ""
    outcomes = [
        checks.every_sample_classified_once(reports, silver_harmonized),
        checks.status_consistent_with_score(reports, params),
        checks.recommendation_present(reports),
    ]
    output = Output(
        reports,
        metadata={
            "rows": len(reports),
            "status_distribution": MetadataValue.json(counts),
            "flag_rate": round(1 - counts["Normal"] / max(len(reports), 1), 4),
            "limits_version": version,
            "top_breached_essays": MetadataValue.json(gold.top_breached(reports)),
            "status_over_time": MetadataValue.md(status_over_time_markdown(reports)),
            "classified_this_run": reuse["classified"],
            "reused_from_previous": reuse["reused"],
            "limits_change": gold.limits_change_text(previous, version, reuse.get("limit_groups_changed")),
            "changes": MetadataValue.json(
                {k: v for k, v in changes.items() if k != "new_non_normal_samples"}
            ),
            "new_non_normal_samples": MetadataValue.json(changes["new_non_normal_samples"][:50]),
            **ai_metadata(ai),
            # The latest reports first (most severe first within a day): what arrived, not all time.
            "preview": md_table(
                reports[
                    [
                        "sampleNumber",
                        "sampleDate",
                        "unitId",
                        "componentName",
                        "severity_score",
                        "report_status",
                    ]
                ].sort_values(
                    ["sampleDate", "severity_score"], ascending=False
                )  # six columns sorted, not all
            ),
        },
    )
    yield from publish_or_block("classified_reports", output, outcomes, context=context, fp=fp)


@client_asset(
    "gold",
    kinds={"pandas", "parquet", *storage_kinds(), *advisor_kinds()},
    metadata=table_metadata("machine_status_current"),
    code_version="fleet-3",
    check_specs=check_specs("machine_status_current", ["machine_status_consistent"]),
    description="Current status of every unit from the latest report of each of its components: "
    "machine_status, score, latest sample date, per-component status (JSON), counts and priority.",
)
def machine_status_current(
    context: AssetExecutionContext,
    storage: StorageResource,
    llm: LLMResource,
    classified_reports: pd.DataFrame,
):
    store, client = storage.get(), context.partition_key
    fp = step_fingerprint(
        context, store, ["classified_reports"], params=FleetParams(), advisor=llm_identity(llm)
    )
    state = unchanged_state(store, client, "machine_status_current", fp)
    if state is not None:
        yield from yield_unchanged(
            "machine_status_current", fp, state, ai_calls=0, ai_cache_hits=0, ai_cost_usd=0.0
        )
        return
    classified_reports = gold.resolved(classified_reports, store, client, "classified_reports")
    status, machine_delta, ai = gold.machine_status(
        store, client, classified_reports, llm.get_config(), FleetParams(), context.run_id
    )
    outcomes = [checks.machine_status_consistent(status, classified_reports)]
    output = Output(
        status,
        metadata={
            "units": len(status),
            "machines_by_status": MetadataValue.json(status_counts(status["machine_status"])),
            "machine_status_transitions": MetadataValue.json(machine_delta["machine_status_transitions"]),
            **ai_metadata(ai),
            "preview": md_table(
                status.sort_values("priority", ascending=False)[
                    ["unitId", "machine_status", "machine_score", "latest_sample_date", "priority"]
                ]
            ),
        },
    )
    yield from publish_or_block("machine_status_current", output, outcomes, context=context, fp=fp)


@client_asset(
    "gold",
    kinds={"pandas", "parquet", *storage_kinds()},
    metadata=table_metadata("limit_quality"),
    code_version="quality-1",
    description="How good the limits are (in the spirit of ASTM D7720): share of samples at each level "
    "per essay and component, flag rates and, where the lab's verdicts exist, the agreement figures "
    "(ROC AUC, Spearman, precision/recall).",
)
def limit_quality(
    context: AssetExecutionContext,
    storage: StorageResource,
    classified_reports: pd.DataFrame,
    stewart_limits: pd.DataFrame,
):
    store, client = storage.get(), context.partition_key
    fp = step_fingerprint(context, store, ["classified_reports", "stewart_limits"])
    state = unchanged_state(store, client, "limit_quality", fp)
    if state is not None:
        yield from yield_unchanged("limit_quality", fp, state)
        return
    classified_reports = gold.resolved(classified_reports, store, client, "classified_reports")
    stewart_limits = gold.resolved(stewart_limits, store, client, "stewart_limits")
    table, summary = build_limit_quality(classified_reports, stewart_limits)
    output = Output(
        table,
        metadata={
            "rows": len(table),
            "agreement": MetadataValue.json(summary),
            "preview": md_table(table),
        },
    )
    yield from publish_or_block("limit_quality", output, [], context=context, fp=fp)
