"""The whole graph in-process on a real (temporary) Dagster instance: demo data and real workbooks."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from dagster import DagsterInstance, materialize

from oil_analysis.definitions import all_assets, build_resources, defs
from oil_analysis.domain.contracts import conform

GOLD_COLUMNS = {"breached_essays", "severity_score", "report_status", "limits_version"}


def run_client(root, client: str):
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            all_assets, partition_key=client, instance=instance, resources=build_resources(str(root))
        )
        assert result.success
        mats = {
            e.asset_key.path[-1]: e.step_materialization_data.materialization.metadata
            for e in result.get_asset_materialization_events()
        }
    return mats


def test_real_finning_workbooks_one_report_per_sample(real_cda_root):
    mats = run_client(real_cda_root, "cda")
    reports = pd.read_parquet(real_cda_root / "gold/cda/classified_reports.parquet")
    assert len(reports) == 1945 and reports["sampleNumber"].is_unique
    assert set(reports.columns) >= GOLD_COLUMNS
    assert set(reports["report_status"]) <= {"Normal", "Alerta", "Anormal"}
    latest = json.loads((real_cda_root / "silver/stewart_limits/cda/latest.json").read_text())
    assert (reports["limits_version"] == latest["version"]).all()
    folder = real_cda_root / "silver/stewart_limits/cda" / latest["version"]
    assert (folder / "stewart_limits.json").exists() and (folder / "stewart_limits.parquet").exists()
    nested = json.loads((folder / "stewart_limits.json").read_text())
    assert list(nested) == ["CDA"] and "camion" in nested["CDA"]
    status = pd.read_parquet(real_cda_root / "gold/cda/machine_status_current.parquet")
    assert sorted(status["unitId"]) == ["T_09", "T_10", "T_11"]
    assert mats["classified_reports"]["rows"].value == 1945
    assert mats["classified_reports"]["limits_version"].value == latest["version"]
    assert "preview" in mats["silver_harmonized"] and mats["silver_harmonized"]["rows"].value == 1945
    assert mats["bronze_lab_files"]["files_ok"].value == 3
    # Dagster-native row counts, and a preview of the latest reports (not the worst of all time).
    assert mats["classified_reports"]["dagster/row_count"].value == 1945
    assert mats["silver_harmonized"]["dagster/row_count"].value == 1945
    assert mats["bronze_lab_files"]["dagster/row_count"].value == 3
    registry = pd.read_parquet(real_cda_root / "bronze/_registry/cda/registry.parquet")
    conform(registry, "bronze_lab_files")  # the registry meets the contract its Columns tab shows
    preview = mats["classified_reports"]["preview"].value.splitlines()
    first_date = preview[2].split("|")[2].strip()
    assert pd.Timestamp(first_date) == reports["sampleDate"].max()


@pytest.mark.parametrize("client", ["cda", "emin"])
def test_demo_data_every_file_written(demo_root, client):
    mats = run_client(demo_root, client)
    silver = pd.read_parquet(demo_root / f"silver/harmonized/{client.upper()}.parquet")
    reports = pd.read_parquet(demo_root / f"gold/{client}/classified_reports.parquet")
    status = pd.read_parquet(demo_root / f"gold/{client}/machine_status_current.parquet")
    assert len(silver) > 1000 and len(reports) == len(silver)
    assert (reports["report_status"] != "Normal").any(), "the demo has failing units"
    assert (status["machine_status"] != "Normal").any()
    assert (demo_root / f"gold/{client}/limit_quality.parquet").exists()
    assert (demo_root / f"silver/rejects/{client}.parquet").exists()
    dist = mats["classified_reports"]["status_distribution"].value
    assert sum(dist.values()) == len(reports)


def test_definitions_load_with_groups_and_partitions():
    graph = defs.resolve_asset_graph()
    groups = {k.path[-1]: graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert groups == {
        "bronze_lab_files": "bronze",
        "silver_harmonized": "silver",
        "stewart_limits": "silver",
        "classified_reports": "gold",
        "machine_status_current": "gold",
        "limit_quality": "gold",
        "fleet_report": "gold",
        "gold_publication": "gold",
    }
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.partitions_def.get_partition_keys() == ["cda", "emin"]
        assert node.owners and node.code_version and node.description


def test_a_client_with_no_files_yet_runs_green_with_empty_typed_outputs(tmp_path):
    """A client registered before its lab sends anything: the run succeeds and publishes empty tables
    with the contract's types (empty frames used to fail the limits contract on object columns)."""
    import pyarrow.parquet as pq
    from dagster import DagsterInstance, materialize

    from oil_analysis.definitions import all_assets, build_resources

    root = tmp_path / "data"
    (root / "bronze/cda").mkdir(parents=True)
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            all_assets, partition_key="cda", instance=instance, resources=build_resources(str(root))
        )
    assert result.success
    latest = json.loads((root / "silver/stewart_limits/cda/latest.json").read_text())
    limits = pq.read_table(root / latest["path"] / "stewart_limits.parquet")
    assert limits.num_rows == 0
    assert str(limits.schema.field("sample_count").type) == "int64"
    assert pq.read_table(root / "gold/cda/classified_reports.parquet").num_rows == 0
