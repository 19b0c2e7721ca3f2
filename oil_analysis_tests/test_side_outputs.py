"""Side outputs go through the one publication path: atomic, rolled back together, in the manifest.

Rejects, audit, change logs, history, fleet report and advisor cache are written by
``storage/publication.py`` (the IO manager's commit or :func:`publish_files`) and listed in the
client's manifest with their sha256 (docs/ARCHITECTURE.md, "Side outputs").
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil

import pandas as pd
import pytest
from dagster import DagsterInstance, materialize

from oil_analysis.definitions import all_assets, build_resources
from oil_analysis.storage import layout, manifest
from oil_analysis.storage.ai_cache import CACHE_COLUMNS, MAX_SHARDS, AICache
from oil_analysis.storage.filesystem import Storage
from oil_analysis.storage.publication import PublicationError, publish_files

from .conftest import DEMO_BRONZE


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_run_lists_every_side_output_in_the_manifest(data_root):
    shutil.copytree(DEMO_BRONZE / "cda", data_root / "bronze/cda")
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            all_assets, partition_key="cda", instance=instance, resources=build_resources(str(data_root))
        )
    assert result.success
    store = Storage.local(str(data_root))
    doc = manifest.read_manifest(store, "cda")
    listed = {f["path"]: f for f in doc["files"]}
    day = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    history = {
        layout.history_path("cda", day, n) for n in ("classified_reports.parquet", "fleet_report.html")
    }
    changes = [p for p in listed if p.startswith(layout.changes_dir("cda") + "/")]
    expected = {layout.rejects_path("cda"), layout.fleet_report_path("cda"), *history}
    assert expected <= set(listed)
    assert len(changes) == 1 and changes[0].endswith(f"-{result.run_id[:8]}.json")
    assert {listed[p]["asset"] for p in history} == {"gold_history"}
    assert listed[changes[0]]["asset"] == "change_log"
    assert listed[layout.rejects_path("cda")]["asset"] == "silver_harmonized"
    for path, entry in listed.items():
        data = (data_root / path).read_bytes()
        assert entry["sha256"] == sha(data) and entry["bytes"] == len(data), path
    assert manifest.verify(store, "cda") == []
    # the history copies are the published bytes
    for name in ("classified_reports.parquet", "fleet_report.html"):
        assert listed[layout.history_path("cda", day, name)]["sha256"] == listed[f"gold/cda/{name}"]["sha256"]
    # nothing pending is left beside silver's state: the ledger is handed over in memory
    assert not list((data_root / layout.silver_state_dir("cda")).glob("*.pending.*"))


def test_a_failed_side_publication_restores_every_file_and_the_manifest(data_root):
    store = Storage.local(str(data_root))
    first = [("gold/cda/_history/2026-01-01/a.json", b'{"a": 1}\n', None)]
    publish_files(store, "cda", "gold_history", first, run_id="run-1")
    before = manifest.read_manifest(store, "cda")
    (data_root / "gold/cda/_history/blocked").write_bytes(b"a file where a folder should be")
    second = [
        ("gold/cda/_history/2026-01-01/a.json", b'{"a": 2}\n', None),  # written, then restored
        ("gold/cda/_history/blocked/b.json", b"{}\n", None),  # cannot be written
    ]
    with pytest.raises(PublicationError, match="restored"):
        publish_files(store, "cda", "gold_history", second, run_id="run-2")
    assert (data_root / "gold/cda/_history/2026-01-01/a.json").read_bytes() == b'{"a": 1}\n'
    after = manifest.read_manifest(store, "cda")
    assert after["files"] == before["files"] and after["assets"] == before["assets"]
    assert manifest.verify(store, "cda") == []


def test_the_advisor_cache_is_published_with_every_shard_listed(data_root):
    store = Storage.local(str(data_root))

    def entry(i: int) -> dict:
        row = dict.fromkeys(CACHE_COLUMNS)
        return {
            **row,
            "key": f"k{i}",
            "kind": "report",
            "subject": f"s{i}",
            "text": f"t{i}",
            "model": "m",
            "prompt_version": "p",
            "temperature": 0.2,
            "generated_at": pd.Timestamp("2026-01-01"),
            "tokens_in": 1,
            "tokens_out": 1,
        }

    for i in range(MAX_SHARDS + 1):  # the last append compacts the shards into one
        AICache(store, "cda", f"run-{i}").append([entry(i)])
        shards = sorted(e.path for e in store.list_files(layout.ai_cache_dir("cda")))
        part = store.read_json(layout.manifest_part_path("cda", "ai_cache"))
        assert sorted(f["path"] for f in part["files"]) == shards, i
        assert part["run_id"] == f"run-{i}"
        assert manifest.verify(store, "cda") == []
    assert len(shards) == 1
    assert sorted(AICache(store, "cda").entries()["key"]) == sorted(f"k{i}" for i in range(MAX_SHARDS + 1))
