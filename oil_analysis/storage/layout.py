"""The layout of the data root: every path the product reads or writes, relative to the root.

bronze/{client}/...                                   raw lab files, any depth
bronze/_registry/{client}/registry.parquet            one row per raw file seen (sha256, status)
bronze/_registry/{client}/parsed/{sha256}.parquet     tidy samples parsed from one file content
  + .rejects.parquet, .rows.parquet, .rowcache.arrow  its ledger; row digests; samples and ledger
                                                      as Arrow IPC (a re-sent workbook's unchanged rows
                                                      are not parsed again)
bronze/_quarantine/{client}/{path} + .reason.json     unreadable files and why (path under bronze/{client}/)
silver/harmonized/{CLIENT}.parquet                    harmonized samples
silver/rejects/{client}.parquet                       reject ledger: rejected samples and cleared cells of
                                                      every raw file that feeds silver
silver/stewart_limits/{client}/{version}/stewart_limits.json|.parquet
silver/stewart_limits/{client}/latest.json            names the current version
gold/{client}/classified_reports.parquet
gold/{client}/machine_status_current.parquet
gold/{client}/limit_quality.parquet
gold/{client}/fleet_report.html                       self-contained HTML report (Spanish)
gold/{client}/_manifest.json                          every published file with sha256 (+ _manifest.parts/)
gold/{client}/_changes/{day}-{run}.json               what a run changed (reports, machine status)
gold/{client}/_history/{day}/{file}                   dated snapshots of the gold files
gold/{client}/_ai_cache/shard-….parquet               the advisor's cache
silver/_state/{client}/…                              what silver was built from; input fingerprints
silver/_audit/{client}/{stamp}.parquet                what an incremental silver build changed
"""

from __future__ import annotations

import posixpath

BRONZE = "bronze"
RESERVED_BRONZE = ("_registry", "_quarantine")


def bronze_dir(client: str) -> str:
    return f"{BRONZE}/{client}"


def registry_path(client: str) -> str:
    return f"{BRONZE}/_registry/{client}/registry.parquet"


def parsed_path(client: str, sha256: str) -> str:
    return f"{BRONZE}/_registry/{client}/parsed/{sha256}.parquet"


def quarantine_path(client: str, key: str) -> str:
    """Where a bad raw file goes: its path under ``bronze/{client}/`` kept, so names never collide."""
    own = f"{bronze_dir(client)}/"
    rel = key[len(own) :] if key.startswith(own) else posixpath.basename(key)
    return f"{BRONZE}/_quarantine/{client}/{rel}"


def harmonized_path(client: str) -> str:
    return f"silver/harmonized/{client.upper()}.parquet"


def rejects_path(client: str) -> str:
    return f"silver/rejects/{client}.parquet"


def limits_dir(client: str, version: str) -> str:
    return f"silver/stewart_limits/{client}/{version}"


def limits_file(folder: str, ext: str = "parquet") -> str:
    """The limits table of one version folder (``limits_dir`` or a ``latest.json``'s ``path``):
    ``{folder}/stewart_limits.parquet``, or its nested ``.json`` twin."""
    return f"{str(folder).rstrip('/')}/stewart_limits.{ext}"


def limits_latest(client: str) -> str:
    return f"silver/stewart_limits/{client}/latest.json"


def gold_path(client: str, name: str) -> str:
    return f"gold/{client}/{name}.parquet"


def silver_state_dir(client: str) -> str:
    """What the current silver was built from: files.json (key → sha256) and candidates.parquet."""
    return f"silver/_state/{client}"


def limits_client_dir(client: str) -> str:
    """Every limits version of a client and its ``latest.json``."""
    return f"silver/stewart_limits/{client}"


def gold_dir(client: str) -> str:
    return f"gold/{client}"


def fleet_report_path(client: str) -> str:
    """``gold/{client}/fleet_report.html``, relative to the data root (local folder or S3 prefix)."""
    return f"gold/{client}/fleet_report.html"


def manifest_path(client: str) -> str:
    return f"gold/{client}/_manifest.json"


def manifest_parts_dir(client: str) -> str:
    return f"gold/{client}/_manifest.parts"


def manifest_part_path(client: str, part: str) -> str:
    """One writer's part of the manifest (an asset, or a side output such as ``ai_cache``)."""
    return f"{manifest_parts_dir(client)}/{part}.json"


def audit_dir(client: str) -> str:
    return f"silver/_audit/{client}"


def audit_path(client: str, stamp: str) -> str:
    return f"{audit_dir(client)}/{stamp}.parquet"


def changes_dir(client: str) -> str:
    return f"gold/{client}/_changes"


def changes_path(client: str, stamp: str) -> str:
    return f"{changes_dir(client)}/{stamp}.json"


def ai_cache_dir(client: str) -> str:
    """The advisor's cache shards (``shard-{utc stamp}-{token}.parquet``)."""
    return f"gold/{client}/_ai_cache"


def history_path(client: str, day: str, name: str) -> str:
    return f"gold/{client}/_history/{day}/{name}"


def history_dir(client: str) -> str:
    return f"gold/{client}/_history"


# Deprecated v1 paths, written only with LEGACY_EXPORTS=true (storage/legacy.py).
LEGACY_LIMITS_JSON = "processed/stewart_limits.json"
LEGACY_LIMITS_PARQUET = "processed/stewart_limits.parquet"


def legacy_classified_path(client: str) -> str:
    return f"processed/{client}_classified.parquet"


def legacy_machine_status_path(client: str) -> str:
    return f"processed/{client}_machine_status.parquet"


def legacy_silver_path(client: str) -> str:
    return f"to_consume/{client.upper()}.parquet"


def legacy_consumer_path(client: str, table: str) -> str:
    """The original consumers' fixed path of a gold table: ``to_consume/{client}/{table}.parquet``."""
    return f"to_consume/{client}/{table}.parquet"
