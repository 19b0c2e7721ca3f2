"""Deprecated v1 paths for consumers that have not moved to the layout yet (``LEGACY_EXPORTS=true``).

    to_consume/{CLIENT}.parquet                  = silver/harmonized/{CLIENT}.parquet (same bytes)
    to_consume/{client}/classified_reports.parquet       = gold/{client}/classified_reports.parquet
    to_consume/{client}/machine_status_current.parquet   = gold/{client}/machine_status_current.parquet
    processed/{client}_classified.parquet        = gold/{client}/classified_reports.parquet
    processed/{client}_machine_status.parquet    = gold/{client}/machine_status_current.parquet
    processed/stewart_limits.json                v1 nested thresholds, all clients in one file
    processed/stewart_limits.parquet             v2.0 flat thresholds, all clients in one file

The per-client copies are the very bytes of the new files. The two limits files are shared by every
client (the old contract): each is rebuilt from every registered client's current limits
(``silver/stewart_limits/{client}/latest.json``) and keeps the entries of keys that are not ours
(older formats), then re-checked against those sources and rebuilt if a concurrent partition changed
one meanwhile — so two clients publishing at once cannot drop each other's limits.
"""

from __future__ import annotations

import pandas as pd

from . import layout
from .filesystem import Storage, json_bytes, parquet_bytes
from .manifest import FileRecord, backoff

LIMITS_JSON = layout.LEGACY_LIMITS_JSON
LIMITS_PARQUET = layout.LEGACY_LIMITS_PARQUET
V1_COLUMNS = [
    "client",
    "machine",
    "component",
    "essay",
    "threshold_normal",
    "threshold_alert",
    "threshold_critic",
]
PUBLISH_ATTEMPTS = 12


# The v1 paths are declared in layout (every path of the product is); the short names stay here.
classified_path = layout.legacy_classified_path
machine_status_path = layout.legacy_machine_status_path
to_consume_path = layout.legacy_silver_path
consumer_path = layout.legacy_consumer_path


_COPIES = {
    "silver_harmonized": (to_consume_path,),
    "classified_reports": (classified_path, lambda c: consumer_path(c, "classified_reports")),
    "machine_status_current": (machine_status_path, lambda c: consumer_path(c, "machine_status_current")),
}


def copy_paths(asset: str, client: str) -> list[str]:
    """Legacy paths that receive the same bytes as the asset's file in the layout."""
    return [f(client) for f in _COPIES.get(asset, ())]


def all_paths(client: str) -> list[str]:
    return [f(client) for fs in _COPIES.values() for f in fs] + [LIMITS_JSON, LIMITS_PARQUET]


def v1_limits(limits: pd.DataFrame) -> pd.DataFrame:
    """The v2.0 flat shape: upper level limits of the whole history (no strata, no trends, no lower)."""
    if not len(limits):
        return pd.DataFrame(
            {c: pd.Series(dtype="float64" if "threshold" in c else "string") for c in V1_COLUMNS}
        )
    up = limits[(limits["kind"] == "level") & (limits["direction"] == "upper") & (limits["stratum"] == "ALL")]
    out = pd.DataFrame(
        {
            "client": up["client"].astype("string"),
            "machine": up["machine"].astype("string"),
            "component": up["component"].astype("string"),
            "essay": up["essay"].astype("string"),
            "threshold_normal": up["marginal"].astype("float64"),
            "threshold_alert": up["condemning"].astype("float64"),
            "threshold_critic": up["critical"].astype("float64"),
        }
    )
    return out.sort_values(V1_COLUMNS[:4], kind="mergesort").reset_index(drop=True)


def v1_nested(flat: pd.DataFrame) -> dict:
    """v1 JSON: client → machine → component → essay → {threshold_normal, threshold_alert, threshold_critic}."""
    out: dict = {}
    for r in flat.itertuples(index=False):
        out.setdefault(r.client, {}).setdefault(r.machine, {}).setdefault(r.component, {})[r.essay] = {
            "threshold_normal": float(r.threshold_normal),
            "threshold_alert": float(r.threshold_alert),
            "threshold_critic": float(r.threshold_critic),
        }
    return out


def _sources(store: Storage, clients: list[str]) -> dict[str, dict]:
    """The current limits pointer (latest.json) of every client that has one."""
    out = {}
    for c in sorted(clients):
        path = layout.limits_latest(c)
        if store.exists(path):
            out[c] = store.read_json(path)
    return out


def _render(store: Storage, sources: dict[str, dict]) -> tuple[bytes, bytes, int]:
    ours = [v1_limits(store.read_parquet(layout.limits_file(doc["path"]))) for doc in sources.values()]
    keys = {c.upper() for c in sources}
    if store.exists(LIMITS_PARQUET):
        old = store.read_parquet(LIMITS_PARQUET)
        ours.append(old[~old["client"].astype(str).isin(keys)].reindex(columns=V1_COLUMNS))
    flat = pd.concat(ours, ignore_index=True) if ours else v1_limits(pd.DataFrame())
    flat = flat.astype({c: "string" for c in V1_COLUMNS[:4]}).astype({c: "float64" for c in V1_COLUMNS[4:]})
    flat = flat.sort_values(V1_COLUMNS[:4], kind="mergesort").reset_index(drop=True)
    nested = {}
    if store.exists(LIMITS_JSON):
        doc = store.read_json(LIMITS_JSON)
        if not isinstance(doc, dict):
            raise ValueError(f"{store.display(LIMITS_JSON)} is not a JSON object: not overwriting it")
        nested = {k: v for k, v in doc.items() if k not in keys}
    nested.update(v1_nested(flat[flat["client"].isin(keys)]))
    return parquet_bytes(flat), json_bytes(nested), len(flat)


def publish_shared_limits(store: Storage, clients: list[str]) -> list[FileRecord]:
    """Rebuild ``processed/stewart_limits.{parquet,json}`` from every client's current limits."""
    sources = _sources(store, clients)
    for attempt in range(PUBLISH_ATTEMPTS):
        pq_data, js_data, rows = _render(store, sources)
        store.write_bytes(LIMITS_PARQUET, pq_data)
        store.write_bytes(LIMITS_JSON, js_data)
        fresh = _sources(store, clients)
        if (
            fresh == sources
            and store.read_bytes(LIMITS_PARQUET) == pq_data
            and store.read_bytes(LIMITS_JSON) == js_data
        ):
            return [
                FileRecord.of(LIMITS_PARQUET, pq_data, rows, legacy=True, shared=True),
                FileRecord.of(LIMITS_JSON, js_data, None, legacy=True, shared=True),
            ]
        sources = fresh
        backoff(attempt)
    raise RuntimeError(f"{store.display(LIMITS_JSON)} kept changing after {PUBLISH_ATTEMPTS} attempts")
