"""Stewart limits of one client, without Dagster: keep the published version or compute a new one.

``domain/refresh.py`` decides (new machine or component, growth, drift, age, forced);
``domain/limits.py`` computes. The ``stewart_limits`` asset fingerprints, calls :func:`refresh_limits`
and describes the decision.
"""

from __future__ import annotations

import pandas as pd

from ..domain.catalog import Catalog
from ..domain.limits import LimitParams, compute_limits
from ..domain.refresh import RefreshDecision, RefreshParams, decide_refresh
from ..settings import get_settings
from ..storage import layout, runstate
from ..storage.filesystem import Storage
from ..storage.healing import read_limits_pointer


def refresh_params() -> RefreshParams:
    """The refresh decision's parameters from the settings (``OIL_LIMITS_*``)."""
    s = get_settings()
    return RefreshParams(
        growth=s.limits_growth,
        ks_alpha=s.limits_ks_alpha,
        ks_min_samples=s.limits_ks_min_samples,
        max_age_days=s.limits_max_age_days,
        ks_min_effect=s.limits_ks_min_effect,
    )


def current_limits(store, client: str, repairs: list | None = None) -> pd.DataFrame | None:
    """The published limits of a client (``latest.json``), or None before the first publish.
    A damaged pointer is rebuilt from the versions present (the repair goes to ``repairs``)."""
    pointer = read_limits_pointer(store, client, repairs)
    if pointer is None:
        return None
    path = layout.limits_file(pointer["path"])
    return store.read_parquet(path) if store.exists(path) else None


def refresh_limits(
    store: Storage,
    client: str,
    silver: pd.DataFrame,
    catalog: Catalog,
    params: LimitParams,
    refresh: RefreshParams,
    *,
    force: bool,
    now: pd.Timestamp,
    refreshed_at: str | None,
) -> tuple[pd.DataFrame, RefreshDecision]:
    """The limits to publish and why: new ones when a trigger holds, else the current version marked
    *kept* (its files are published already). ``attrs``: ``version`` and ``refreshed_at`` (the wall
    clock of the last recomputation, for ``latest.json``)."""
    current = current_limits(store, client)
    groups = {g: catalog.of_group(g) for g in set(catalog.table["group"])}
    decision = decide_refresh(
        silver,
        current,
        groups,
        refresh,
        force=force,
        as_of=now,
        refreshed_at=refreshed_at,
    )
    if decision.refresh:
        # computed_at is the newest sample date, not the wall clock: a re-run writes identical files.
        newest = silver["sampleDate"].max() if len(silver) else None
        limits = compute_limits(silver, catalog, params, computed_at=newest)
    else:
        limits = runstate.kept(current)  # its files are published already: not written again
    version = str(limits["version"].iloc[0]) if len(limits) else "empty"
    limits.attrs["version"] = version
    # The wall clock of the last recomputation (the age trigger's input); kept while the version stays.
    limits.attrs["refreshed_at"] = now.isoformat() if decision.refresh else refreshed_at
    return limits, decision
