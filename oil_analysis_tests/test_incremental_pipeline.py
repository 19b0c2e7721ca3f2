"""Incremental runs of the whole graph: nothing re-done without cause, corrections audited, re-runs identical."""

from __future__ import annotations

import hashlib
import json
import shutil

import pandas as pd
import pytest
from dagster import DagsterInstance, materialize

from oil_analysis.definitions import all_assets, build_resources

from .builders import finning_row, write_finning
from .conftest import DEMO_BRONZE

DATA_FILES = [
    "silver/harmonized/CDA.parquet",
    "gold/cda/classified_reports.parquet",
    "gold/cda/machine_status_current.parquet",
    "gold/cda/limit_quality.parquet",
    "silver/stewart_limits/cda/latest.json",
]


def run(root, instance, **config):
    run_config = {"ops": {"silver_harmonized": {"config": config}}} if config else None
    result = materialize(
        all_assets,
        partition_key="cda",
        instance=instance,
        resources=build_resources(str(root)),
        run_config=run_config,
    )
    assert result.success
    return {
        e.asset_key.path[-1]: e.step_materialization_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }


def digests(root) -> dict[str, str]:
    return {p: hashlib.sha256((root / p).read_bytes()).hexdigest() for p in DATA_FILES}


@pytest.fixture
def cda_root(data_root):
    shutil.copytree(DEMO_BRONZE / "cda", data_root / "bronze/cda")
    return data_root


def test_rerun_with_unchanged_inputs_is_byte_identical_and_does_no_work(cda_root):
    with DagsterInstance.ephemeral() as instance:
        first = run(cda_root, instance)
        before = digests(cda_root)
        again = run(cda_root, instance)
    assert digests(cda_root) == before
    assert again["bronze_lab_files"]["parsed_this_run"].value == 0
    assert again["silver_harmonized"]["build_mode"].value == "unchanged"
    assert again["stewart_limits"]["refreshed"].value is False
    assert again["classified_reports"]["classified_this_run"].value == 0
    assert (
        first["classified_reports"]["classified_this_run"].value == again["classified_reports"]["rows"].value
    )


def test_new_workbook_is_upserted_and_only_its_reports_classified(cda_root):
    with DagsterInstance.ephemeral() as instance:
        run(cda_root, instance)
        rows = [
            finning_row(i, **{"No. de control de laboratorio": f"R555-00000-{i:04d}", "ID de equipo": "T-55"})
            for i in range(5)
        ]
        write_finning(cda_root / "bronze/cda/2026-11-21/T-55.xlsx", rows)
        meta = run(cda_root, instance)
    assert meta["bronze_lab_files"]["parsed_this_run"].value == 1
    assert meta["silver_harmonized"]["build_mode"].value == "incremental"
    assert meta["silver_harmonized"]["changes"].value["samples_added"] == 5
    assert meta["classified_reports"]["classified_this_run"].value == 5
    logs = [json.loads(p.read_text()) for p in (cda_root / "gold/cda/_changes").glob("*.json")]
    assert len(logs) == 2  # one change log per run
    last = max(logs, key=lambda d: d["written_at"])
    assert last["reports"]["samples_added"] == 5 and "machines" in last
    assert "T_55" in last["machines"]["machines_added"]


def test_corrected_value_updates_silver_and_leaves_an_audit_record(cda_root):
    rows = [
        finning_row(i, **{"No. de control de laboratorio": f"R556-00000-{i:04d}", "ID de equipo": "T-56"})
        for i in range(4)
    ]
    path = write_finning(cda_root / "bronze/cda/T-56.xlsx", rows)
    with DagsterInstance.ephemeral() as instance:
        run(cda_root, instance)
        rows[2]["Fe"] = 90
        rows[2]["Fe.1"] = 90
        write_finning(path, rows)
        meta = run(cda_root, instance)
        incremental = pd.read_parquet(cda_root / "silver/harmonized/CDA.parquet")
        run(cda_root, instance, full_rebuild=True)
    assert meta["silver_harmonized"]["build_mode"].value == "incremental"
    assert incremental.set_index("sampleNumber").loc["R556-00000-0002", "fe"] == 90.0
    audit = pd.concat(pd.read_parquet(p) for p in (cda_root / "silver/_audit/cda").glob("*.parquet"))
    row = audit[audit["sampleNumber"] == "R556-00000-0002"].iloc[0]
    assert (row["column"], row["old_value"], row["new_value"], row["file"]) == (
        "fe",
        "12.0",
        "90.0",
        "bronze/cda/T-56.xlsx",
    )
    full = pd.read_parquet(cda_root / "silver/harmonized/CDA.parquet")
    pd.testing.assert_frame_equal(incremental, full)


def test_incremental_gold_equals_a_full_reclassification_with_the_same_limits(cda_root):
    rows = [
        finning_row(i, **{"No. de control de laboratorio": f"R557-00000-{i:04d}", "ID de equipo": "T-01"})
        for i in range(6)
    ]
    with DagsterInstance.ephemeral() as instance:
        run(cda_root, instance)
        write_finning(cda_root / "bronze/cda/late/T-01-late.xlsx", rows)
        meta = run(cda_root, instance)
        assert (
            0
            < meta["classified_reports"]["classified_this_run"].value
            < meta["classified_reports"]["rows"].value
        )
        incremental = {
            n: (cda_root / f"gold/cda/{n}.parquet").read_bytes()
            for n in ("classified_reports", "machine_status_current")
        }
        for n in incremental:  # without a previous gold everything is classified and advised again
            (cda_root / f"gold/cda/{n}.parquet").unlink()
        meta = run(cda_root, instance)
        assert meta["classified_reports"]["reused_from_previous"].value == 0
    for n, data in incremental.items():
        assert (cda_root / f"gold/cda/{n}.parquet").read_bytes() == data, n
