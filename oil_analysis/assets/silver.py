"""Silver: the harmonized samples of each client, and its Stewart limits."""

import pandas as pd
from dagster import AssetExecutionContext, Config, MetadataValue, Output

from ..domain import checks
from ..domain.catalog import load_catalog
from ..domain.labs.common import SAMPLE_REJECTED
from ..domain.limits import LimitParams
from ..domain.names import mapping_version
from ..domain.refresh import limits_age
from ..pipeline.gold import prefetch_previous_reports
from ..pipeline.limits import refresh_limits, refresh_params
from ..pipeline.silver import build_silver, save_state, side_files
from ..resources.storage import StorageResource
from ..settings import get_settings
from ..storage import layout, runstate
from ..storage.filesystem import parquet_bytes
from ..storage.healing import read_limits_pointer
from ..storage.publication import load_published
from .common import (
    CLIENTS,
    check_specs,
    client_asset,
    md_table,
    publish_or_block,
    step_fingerprint,
    storage_kinds,
    table_metadata,
    unchanged_state,
    yield_unchanged,
)

SILVER_CHECKS = [
    "unique_sample_number",
    "dates_valid",
    "essays_in_physical_range",
    "component_hours_le_machine_hours",
    "required_columns",
    "fresh_samples",
]
LIMITS_CHECKS = ["limits_monotone", "limits_sample_count"]


class SilverConfig(Config):
    """``full_rebuild`` rebuilds silver from every file instead of upserting the changed ones."""

    full_rebuild: bool = False


@client_asset(
    "silver",
    kinds={"pandas", "parquet", *storage_kinds()},
    metadata=table_metadata("silver_harmonized"),
    code_version="silver-1",
    check_specs=check_specs("silver_harmonized", SILVER_CHECKS),
    description="One harmonized sample table per client (silver/harmonized/{CLIENT}.parquet): metadata "
    "columns in camelCase plus one column per catalog essay, previous-sample links. Rows the readers "
    "or harmonization reject go to silver/rejects/{client}.parquet with their reason.",
)
def silver_harmonized(
    context: AssetExecutionContext,
    config: SilverConfig,
    storage: StorageResource,
    bronze_lab_files: pd.DataFrame,
):
    client = CLIENTS[context.partition_key]
    store = storage.get()
    catalog = load_catalog()
    settings = get_settings()
    fp = step_fingerprint(
        context,
        store,
        ["bronze_lab_files"],
        catalog=catalog.version,
        names=mapping_version(),
        min_date=settings.min_sample_date,
    )
    state = None if config.full_rebuild else unchanged_state(store, client.key, "silver_harmonized", fp)
    if state is not None:
        context.log.info(f"silver of {client.key}: no raw file changed; the published silver stands")
        newest = next(
            (o["metadata"].get("newest_sample") for o in state["checks"] if o["name"] == "fresh_samples"),
            None,
        )
        dates = pd.DataFrame({"sampleDate": pd.to_datetime([newest] if newest else [])})
        aged = checks.freshness(  # the clock moved on
            dates, settings.freshness_days, pd.Timestamp(settings.report_date())
        )
        yield from yield_unchanged(
            "silver_harmonized", fp, state, [aged], build_mode="unchanged", rows_rejected=0
        )
        return
    registry = (
        load_published(store, client.key, "bronze_lab_files")
        if runstate.is_unchanged(bronze_lab_files)
        else bronze_lab_files
    )
    build = build_silver(
        store,
        client.key,
        registry,
        full_rebuild=config.full_rebuild,
        min_date=settings.min_sample_date,
        run_id=context.run_id,
    )
    silver, info, rejects = build.silver, build.info, build.rejects
    # Its file rendered on the other core while the checks and metadata below are computed.
    runstate.prepare(context.run_id, context.partition_key, "silver_harmonized", silver, parquet_bytes)
    context.log.info(f"silver of {client.key}: {build.mode} build, changes {build.changes}")
    for r in build.repairs:
        context.log.warning(f"{r['path']} could not be read ({r['error']}): {r['action']}")
    # Published with silver by the IO manager (same commit, listed in the manifest): a blocked
    # silver keeps the old ledger and writes no audit.
    runstate.set_side_files(
        context.run_id, client.key, "silver_harmonized", side_files(client.key, build, context.run_id)
    )
    samples_rejected = int((rejects["action"] == SAMPLE_REJECTED).sum()) if len(rejects) else 0
    cells_cleared = int(len(rejects)) - samples_rejected
    if len(rejects):
        context.log.warning(
            f"{samples_rejected} samples rejected and {cells_cleared} cells cleared; "
            f"see {store.display(layout.rejects_path(client.key))}"
        )
    outcomes = checks.silver_checks(
        silver, catalog, settings.freshness_days, pd.Timestamp(settings.report_date())
    )
    output = Output(
        silver,
        metadata={
            "rows": len(silver),
            "build_mode": build.mode,
            "changes": MetadataValue.json(build.changes),
            "units": info.get("units", 0),
            "unit_components": info.get("components", 0),
            "date_range": f"{info.get('date_min')} → {info.get('date_max')}",
            "rows_rejected": len(rejects),
            "samples_rejected": samples_rejected,
            "cells_cleared": cells_cleared,
            "samples_with_cleared_cells": int((silver["cellsCleared"] > 0).sum()),
            "reject_reasons": MetadataValue.json(
                rejects["reason"].value_counts().head(10).to_dict() if len(rejects) else {}
            ),
            "state_repairs": MetadataValue.json(build.repairs),
            "duplicate_sample_numbers": info.get("duplicate_sample_numbers", 0),
            "duplicates_conflicting": MetadataValue.json(info.get("duplicates_conflicting", [])[:50]),
            "coolant_samples_excluded": info.get("coolant_samples_excluded", 0),
            "catalog_version": load_catalog().version,
            "names_mapping_version": mapping_version(),
            "preview": md_table(
                silver.head(8)[
                    [
                        "sampleNumber",
                        "sampleDate",
                        "unitId",
                        "componentName",
                        "componentNameNormalized",
                        "fe",
                        "si",
                        "visc_100c",
                        "water",
                    ]
                ]
            ),
        },
    )
    yield from publish_or_block("silver_harmonized", output, outcomes, context=context, fp=fp)
    save_state(store, client.key, build)  # only once silver is published


class LimitsConfig(Config):
    """Run config of the limits: ``force_limits_refresh`` recomputes whatever the triggers say."""

    force_limits_refresh: bool = False


@client_asset(
    "silver",
    kinds={"pandas", "parquet", "json", *storage_kinds()},
    metadata=table_metadata("stewart_limits"),
    code_version="limits-2",
    check_specs=check_specs("stewart_limits", LIMITS_CHECKS),
    description="Stewart limits per client × machine × normalized component × essay: upper "
    "(marginal/condemning/critical) and lower limits from percentiles of the client's own history. "
    "Versioned: silver/stewart_limits/{client}/{version}/ with latest.json naming the current one; the "
    "version is a hash of the inputs and parameters. Recomputed only when a trigger holds (new "
    "machine/component, >10 % more samples, KS drift, or force_limits_refresh); otherwise the current "
    "version stays and the decision is in the metadata.",
)
def stewart_limits(
    context: AssetExecutionContext,
    config: LimitsConfig,
    storage: StorageResource,
    silver_harmonized: pd.DataFrame,
):
    client, store = CLIENTS[context.partition_key], storage.get()
    catalog = load_catalog()
    force = (
        config.force_limits_refresh or str(context.run.tags.get("force_limits_refresh", "")).lower() == "true"
    )
    params, refresh = LimitParams(), refresh_params()
    fp = step_fingerprint(
        context, store, ["silver_harmonized"], params=params, refresh=refresh, catalog=catalog.version
    )
    # The pointer first, once: a damaged latest.json is rebuilt here and the repair reported.
    repairs: list[dict] = []
    pointer = read_limits_pointer(store, client.key, repairs)
    for r in repairs:
        context.log.warning(f"{r['path']} could not be used ({r['error']}): {r['action']}")
    refreshed_at = pointer.get("refreshed_at") if pointer else None
    now = pd.Timestamp.now(tz="UTC")
    # Limits past their age are recomputed even when nothing else changed (the weekly refresh).
    too_old, _ = limits_age(refreshed_at, now, refresh.max_age_days)
    state = None if force or too_old else unchanged_state(store, client.key, "stewart_limits", fp)
    if state is not None:
        summary = (
            "kept the current limits: no trigger held (silver and parameters unchanged since they were "
            f"published; age below {refresh.max_age_days} d)"
        )
        context.log.info(f"limits of {client.key}: {summary}")
        yield from yield_unchanged(
            "stewart_limits",
            fp,
            state,
            refreshed=False,
            refresh_decision=summary,
            state_repairs=MetadataValue.json(repairs),
        )
        return
    # Silver changed, so the reports will be classified again: their published table is read on the
    # other core meanwhile (the classified step takes it if the file is still the same).
    prefetch_previous_reports(store, client.key, context.run_id)
    if runstate.is_unchanged(silver_harmonized):
        silver_harmonized = load_published(store, client.key, "silver_harmonized")
    limits, decision = refresh_limits(
        store,
        client.key,
        silver_harmonized,
        catalog,
        params,
        refresh,
        force=force,
        now=now,
        refreshed_at=refreshed_at,
    )
    context.log.info(f"limits of {client.key}: {decision.summary()}")
    version = limits.attrs["version"]
    outcomes = [checks.limits_monotone(limits), checks.limits_sample_count(limits, params.min_samples)]
    output = Output(
        limits,
        metadata={
            "limits_version": version,
            "refreshed": decision.refresh,
            "refresh_decision": decision.summary(),
            "refresh_details": MetadataValue.json(decision.details),
            "refresh_reasons": ", ".join(decision.reasons) if decision.refresh else "",
            "limits_refreshed_at": limits.attrs["refreshed_at"] or "",
            "state_repairs": MetadataValue.json(repairs),
            "rows": len(limits),
            "essays": int(limits["essay"].nunique()) if len(limits) else 0,
            "components": int(limits[["machine", "component"]].drop_duplicates().shape[0])
            if len(limits)
            else 0,
            "preview": md_table(limits),
        },
    )
    yield from publish_or_block("stewart_limits", output, outcomes, context=context, fp=fp)
