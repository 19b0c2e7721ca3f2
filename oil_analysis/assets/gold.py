"""Gold: a classified report per sample, the current status of every machine, limit quality."""

import json

import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, Output, asset

from ..advisor import recommend_machines, recommend_reports
from ..domain import checks
from ..domain.catalog import load_catalog
from ..domain.changes import machine_changes, report_changes
from ..domain.classify import ClassificationParams, classify_reports
from ..domain.fleet import FleetParams
from ..domain.fleet import machine_status_current as build_machine_status
from ..domain.incremental import classify_incremental
from ..domain.quality import limit_quality as build_limit_quality
from ..report import status_over_time_markdown
from ..resources.llm import LLMResource
from ..resources.storage import StorageResource
from ..storage import layout, runstate
from ..storage.io_manager import load_published
from .common import (
    OWNER,
    advisor_kinds,
    check_specs,
    client_partitions,
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


def resolved(frame: pd.DataFrame, store, client: str, asset: str) -> pd.DataFrame:
    """An input as a table: the unchanged placeholder of an upstream step is read from its files."""
    return load_published(store, client, asset) if runstate.is_unchanged(frame) else frame


def top_breached(classified: pd.DataFrame, n: int = 10) -> dict[str, int]:
    """Most frequent breached essays over all reports (from the breached_essays JSON)."""
    counts: dict[str, int] = {}
    for text in classified.loc[classified["report_status"] != "Normal", "breached_essays"]:
        for b in json.loads(text or "[]"):
            counts[b["essay"]] = counts.get(b["essay"], 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n])


def recommend_incremental(reports, previous, redo: set | None, store, client: str, llm: LLMResource):
    """Recommendations for the reclassified reports; the others keep their published text.

    Reclassified reports are advised together with their previous samples (the prompt shows the
    trend), exactly as in a full run; ``redo`` None means everything was reclassified.
    """
    ai_cols = [c for c in (previous.columns if previous is not None else []) if c.startswith("ai_")]
    if redo is None or not ai_cols:
        return recommend_reports(reports, store, client, llm.get_config(), load_catalog())
    need = redo | set(reports.loc[reports["sampleNumber"].isin(redo), "previousSampleNumber"].dropna())
    fresh, ai = recommend_reports(
        reports[reports["sampleNumber"].isin(need)].reset_index(drop=True),
        store,
        client,
        llm.get_config(),
        load_catalog(),
    )
    fresh = fresh[fresh["sampleNumber"].isin(redo)].set_index("sampleNumber")[ai_cols]
    kept = previous.set_index("sampleNumber").loc[lambda d: ~d.index.isin(redo), ai_cols]
    texts = pd.concat([kept, fresh]).reindex(reports["sampleNumber"])
    out = reports.copy()
    for c in ai_cols:
        out[c] = texts[c].to_numpy()
        out[c] = out[c].astype(fresh[c].dtype if len(fresh) else previous[c].dtype)
    return out, {**ai, "reused_recommendations": int(len(kept))}


def read_previous(store, path: str) -> pd.DataFrame | None:
    """The currently published table at ``path`` (None before the first publish)."""
    return store.read_parquet(path) if store.exists(path) else None


def limits_of_groups(limits: pd.DataFrame, silver: pd.DataFrame) -> pd.DataFrame:
    """The limit rows of the machine × component groups of ``silver`` (classification reads no
    other): a few reclassified samples are not judged against the whole limits table."""
    if limits.empty:
        return limits
    keys = ["client", "machine", "component"]
    present = silver[["client", "machineName", "componentNameNormalized"]].drop_duplicates().astype(str)
    present.columns = keys
    rows = limits[keys].astype(str).merge(present.assign(_in=True), on=keys, how="left")["_in"]
    return limits[rows.fillna(False).to_numpy(bool)].reset_index(drop=True)


def limits_of_reports(store, client: str, previous, limits: pd.DataFrame) -> pd.DataFrame | None:
    """The limits the previous reports were classified with, when they are not ``limits`` (their
    version folder is kept): what lets a limits change reclassify only the groups it changed."""
    if previous is None or previous.empty or limits.empty:
        return None
    version = str(previous["limits_version"].iloc[0])
    if version == str(limits["version"].iloc[0]):
        return None
    path = f"{layout.limits_dir(client, version)}/stewart_limits.parquet"
    return store.read_parquet(path) if store.exists(path) else None


def limits_change_text(previous, version: str, groups_changed: int | None) -> str:
    """What a new limits version meant for the reports (UI metadata)."""
    if previous is None or previous.empty:
        return "first classification"
    if str(previous["limits_version"].iloc[0]) == version:
        return "same limits version"
    if groups_changed is None:
        return "new limits version: every group reclassified (previous limits unknown)"
    return f"new limits version: {groups_changed} machine × component group(s) classify differently"


def write_changes(store, client: str, run_id: str, section: str, summary: dict) -> None:
    """Add one section to the run's change log ``gold/{client}/_changes/{day}-{run}.json``."""
    day = pd.Timestamp.now(tz="UTC").strftime("%Y%m%d")
    path = layout.changes_path(client, f"{day}-{run_id[:8]}")
    doc = store.read_json(path) if store.exists(path) else {"client": client, "run_id": run_id}
    doc[section] = summary
    doc["written_at"] = pd.Timestamp.now(tz="UTC").isoformat()
    store.write_json(path, doc)


def ai_metadata(ai: dict) -> dict:
    """Advisor run figures for the UI: calls, cache hits, tokens and estimated cost."""
    return {
        "ai": MetadataValue.json(ai),
        "ai_calls": int(ai.get("calls", 0)),
        "ai_cache_hits": int(ai.get("cache_hits", 0)),
        "ai_cost_usd": float(ai.get("estimated_cost_usd") or 0.0),
    }


@asset(
    group_name="gold",
    partitions_def=client_partitions,
    io_manager_key="layout_io_manager",
    owners=[OWNER],
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
    silver_harmonized = resolved(silver_harmonized, store, client, "silver_harmonized")
    stewart_limits = resolved(stewart_limits, store, client, "stewart_limits")
    previous = read_previous(store, layout.gold_path(client, "classified_reports"))
    reports, reuse = classify_incremental(
        silver_harmonized,
        stewart_limits,
        previous,
        lambda frame: classify_reports(
            frame, limits_of_groups(stewart_limits, frame), load_catalog(), params
        ),
        previous_limits=limits_of_reports(store, client, previous, stewart_limits),
    )
    changes = report_changes(previous, reports)
    write_changes(store, client, context.run_id, "reports", changes)
    reports, ai = recommend_incremental(reports, previous, reuse["redo"], store, client, llm)
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
            "top_breached_essays": MetadataValue.json(top_breached(reports)),
            "status_over_time": MetadataValue.md(status_over_time_markdown(reports)),
            "classified_this_run": reuse["classified"],
            "reused_from_previous": reuse["reused"],
            "limits_change": limits_change_text(previous, version, reuse.get("limit_groups_changed")),
            "changes": MetadataValue.json(
                {k: v for k, v in changes.items() if k != "new_non_normal_samples"}
            ),
            "new_non_normal_samples": MetadataValue.json(changes["new_non_normal_samples"][:50]),
            **ai_metadata(ai),
            # The latest reports first (most severe first within a day): what arrived, not all time.
            "preview": md_table(
                reports.sort_values(["sampleDate", "severity_score"], ascending=False)[
                    [
                        "sampleNumber",
                        "sampleDate",
                        "unitId",
                        "componentName",
                        "severity_score",
                        "report_status",
                    ]
                ]
            ),
        },
    )
    yield from publish_or_block("classified_reports", output, outcomes, context=context, fp=fp)


@asset(
    group_name="gold",
    partitions_def=client_partitions,
    io_manager_key="layout_io_manager",
    owners=[OWNER],
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
    classified_reports = resolved(classified_reports, store, client, "classified_reports")
    previous = read_previous(store, layout.gold_path(client, "machine_status_current"))
    status = build_machine_status(classified_reports, FleetParams())
    machine_delta = machine_changes(previous, status)
    write_changes(store, client, context.run_id, "machines", machine_delta)
    status, ai = recommend_machines(
        status, classified_reports, storage.get(), context.partition_key, llm.get_config(), load_catalog()
    )
    version = str(classified_reports["limits_version"].iloc[0]) if len(classified_reports) else ""
    status["limits_version"] = pd.Series(version, index=status.index, dtype="string")
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


@asset(
    group_name="gold",
    partitions_def=client_partitions,
    io_manager_key="layout_io_manager",
    owners=[OWNER],
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
    classified_reports = resolved(classified_reports, store, client, "classified_reports")
    stewart_limits = resolved(stewart_limits, store, client, "stewart_limits")
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
