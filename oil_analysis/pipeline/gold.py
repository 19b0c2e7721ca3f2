"""Gold for one client, without Dagster: classification with advice, machine status, limit quality.

A sample's way from silver to the fleet: :func:`classify` (``domain/classify.py`` on the changed
samples, ``domain/incremental.py`` to keep the others, then :mod:`.advice`), :func:`machine_status`
(``domain/fleet.py``, then :mod:`.advice`). The gold assets call these and describe the result.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..domain.catalog import load_catalog
from ..domain.changes import machine_changes, report_changes
from ..domain.classify import ClassificationParams, classify_reports, key_tuples
from ..domain.fleet import FleetParams
from ..domain.fleet import machine_status_current as build_machine_status
from ..domain.incremental import among, classify_incremental, interleave, locate
from ..domain.quality import breaches_frame
from ..storage import layout, runstate
from ..storage.filesystem import Storage, json_bytes
from ..storage.publication import load_published, publish_files
from .advice import LLM, recommend_machines, recommend_reports


def resolved(frame: pd.DataFrame, store, client: str, asset: str) -> pd.DataFrame:
    """An input as a table: the unchanged placeholder of an upstream step is read from its files."""
    return load_published(store, client, asset) if runstate.is_unchanged(frame) else frame


def top_breached(classified: pd.DataFrame, n: int = 10) -> dict[str, int]:
    """Most frequent breached essays over all reports (from the breached_essays JSON)."""
    flagged = np.flatnonzero((classified["report_status"] != "Normal").to_numpy(bool))
    # The breaches of every report (parsed once for the checks too), those of flagged reports kept.
    b = breaches_frame(classified)
    b = b[np.isin(b["row"].to_numpy(), flagged)] if len(b) else b
    counts = b["essay"].astype(str).value_counts().to_dict() if len(b) else {}
    return dict(sorted(((k, int(v)) for k, v in counts.items()), key=lambda kv: (-kv[1], kv[0]))[:n])


def recommend_incremental(
    reports, previous, redo: set | None, store, client: str, llm: LLM | None, run_id: str = "no-run"
):
    """Recommendations for the reclassified reports; the others keep their published text.

    Reclassified reports are advised with their previous samples at hand (the prompt shows the
    trend), exactly as in a full run; ``redo`` None means everything was reclassified.
    """
    ai_cols = [c for c in (previous.columns if previous is not None else []) if c.startswith("ai_")]
    if redo is None or not ai_cols:
        return recommend_reports(reports, store, client, llm, load_catalog(), run_id)
    is_redo = among(reports["sampleNumber"], redo)
    need = redo | set(reports.loc[is_redo, "previousSampleNumber"].dropna())
    context = reports[among(reports["sampleNumber"], need)].reset_index(drop=True)
    fresh, ai = recommend_reports(
        context,
        store,
        client,
        llm,
        load_catalog(),
        run_id,
        only=among(context["sampleNumber"], redo),  # the previous samples are context, not advised
    )
    # Each text column assembled by position: the published text of a kept report, the new one of
    # a reclassified report (no copy, reindex or sort of the wide table).
    redone, kept = np.flatnonzero(is_redo), np.flatnonzero(~is_redo)
    numbers = reports["sampleNumber"].reset_index(drop=True)
    from_fresh = locate(numbers.iloc[redone], fresh["sampleNumber"])
    from_previous = locate(numbers.iloc[kept], previous["sampleNumber"])
    out = reports.copy(deep=False)  # columns are set, never written into: the input stays as it is
    for c in ai_cols:
        dtype = fresh[c].dtype if len(fresh) else previous[c].dtype
        col = interleave(kept, previous[c].iloc[from_previous], redone, fresh[c].iloc[from_fresh])
        out[c] = (col if col.dtype == dtype else col.astype(dtype)).array
    reused = len(previous) - int(among(previous["sampleNumber"], redo).sum())
    return out, {**ai, "reused_recommendations": reused}


def read_previous(store, path: str, run_id: str | None = None) -> pd.DataFrame | None:
    """The currently published table at ``path`` (None before the first publish); ``run_id``: taken
    from what an earlier step of this run prefetched (:func:`runstate.prefetch`) when still current."""
    if run_id is not None:
        return runstate.read_table(run_id, store, path)
    return store.read_parquet(path) if store.exists(path) else None


def prefetch_previous_reports(store, client: str, run_id: str) -> None:
    """Start reading the published reports of ``client`` in the background: the limits step calls
    it when the reports will be classified again, so their read overlaps that step."""
    runstate.prefetch(run_id, store, layout.gold_path(client, "classified_reports"))


def limits_of_groups(limits: pd.DataFrame, silver: pd.DataFrame) -> pd.DataFrame:
    """The limit rows of the machine × component groups of ``silver`` (classification reads no
    other): a few reclassified samples are not judged against the whole limits table."""
    if limits.empty:
        return limits
    present = set(key_tuples(silver, ["client", "machineName", "componentNameNormalized"]))
    keys = key_tuples(limits, ["client", "machine", "component"])
    rows = np.fromiter((k in present for k in keys), dtype=bool, count=len(limits))
    return limits[rows].reset_index(drop=True)


def limits_of_reports(store, client: str, previous, limits: pd.DataFrame) -> pd.DataFrame | None:
    """The limits the previous reports were classified with, when they are not ``limits`` (their
    version folder is kept): what lets a limits change reclassify only the groups it changed."""
    if previous is None or previous.empty or limits.empty:
        return None
    version = str(previous["limits_version"].iloc[0])
    if version == str(limits["version"].iloc[0]):
        return None
    path = layout.limits_file(layout.limits_dir(client, version))
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


def write_changes(
    store, client: str, run_id: str, section: str, summary: dict, limits_version: str | None = None
) -> None:
    """Add one section to the run's change log ``gold/{client}/_changes/{day}-{run}.json``, published
    through :func:`~oil_analysis.storage.publication.publish_files` (manifest part ``change_log``)."""
    day = pd.Timestamp.now(tz="UTC").strftime("%Y%m%d")
    path = layout.changes_path(client, f"{day}-{run_id[:8]}")
    doc = store.read_json(path) if store.exists(path) else {"client": client, "run_id": run_id}
    doc[section] = summary
    doc["written_at"] = pd.Timestamp.now(tz="UTC").isoformat()
    publish_files(
        store,
        client,
        "change_log",
        [(path, json_bytes(doc), None)],
        run_id=run_id,
        limits_version=limits_version,
    )


def classify(
    store: Storage,
    client: str,
    silver: pd.DataFrame,
    limits: pd.DataFrame,
    llm: LLM | None,
    params: ClassificationParams,
    run_id: str,
) -> tuple[pd.DataFrame, dict, dict, dict, pd.DataFrame | None]:
    """Silver + limits → classified reports with their recommendations, for one client.

    Only the samples whose inputs changed are classified again (the others keep their published
    report and text); the run's report changes go to the change log. Returns the reports, the
    reuse figures, the changes, the advisor figures and the previously published reports.
    """
    previous = read_previous(store, layout.gold_path(client, "classified_reports"), run_id)
    reports, reuse = classify_incremental(
        silver,
        limits,
        previous,
        lambda frame: classify_reports(frame, limits_of_groups(limits, frame), load_catalog(), params),
        previous_limits=limits_of_reports(store, client, previous, limits),
    )
    # The breaches of every report are parsed for the step's checks: on the other core meanwhile
    # (advice adds columns but keeps this very breached_essays array, so the checks find it parsed).
    runstate.in_background(breaches_frame, reports)
    changes = report_changes(previous, reports)
    version = str(reports["limits_version"].iloc[0]) if len(reports) else None
    write_changes(store, client, run_id, "reports", changes, version)
    reports, ai = recommend_incremental(reports, previous, reuse["redo"], store, client, llm, run_id)
    return reports, reuse, changes, ai, previous


def machine_status(
    store: Storage, client: str, reports: pd.DataFrame, llm: LLM | None, params: FleetParams, run_id: str
) -> tuple[pd.DataFrame, dict, dict]:
    """Classified reports → the current status of every machine with its recommendation.

    The run's status transitions go to the change log. Returns the status table, the transitions
    and the advisor figures."""
    previous = read_previous(store, layout.gold_path(client, "machine_status_current"))
    status = build_machine_status(reports, params)
    machine_delta = machine_changes(previous, status)
    version = str(reports["limits_version"].iloc[0]) if len(reports) else ""
    write_changes(store, client, run_id, "machines", machine_delta, version or None)
    status, ai = recommend_machines(status, reports, store, client, llm, load_catalog(), run_id)
    status["limits_version"] = pd.Series(version, index=status.index, dtype="string")
    return status, machine_delta, ai
