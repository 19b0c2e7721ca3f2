"""Data-quality checks: each fails on a crafted bad table, passes on the demo data; blocking works."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance, materialize

from oil_analysis.definitions import all_assets, build_resources
from oil_analysis.domain import checks
from oil_analysis.domain.catalog import load_catalog
from oil_analysis.domain.classify import ClassificationParams
from oil_analysis.domain.limits import LimitParams

CAT = load_catalog()
AS_OF = pd.Timestamp("2026-02-01")


def resources(root):
    return build_resources(str(root))


@pytest.fixture(scope="module")
def demo_outputs(tmp_path_factory):
    import shutil

    from .conftest import DEMO_BRONZE

    root = tmp_path_factory.mktemp("demo") / "data"
    shutil.copytree(DEMO_BRONZE, root / "bronze")
    with DagsterInstance.ephemeral() as instance:
        result = materialize(all_assets, partition_key="cda", instance=instance, resources=resources(root))
        assert result.success
        evals = {
            e.event_specific_data.check_name: e.event_specific_data.passed
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        }
    silver = pd.read_parquet(root / "silver/harmonized/CDA.parquet")
    latest = json.loads((root / "silver/stewart_limits/cda/latest.json").read_text())
    limits = pd.read_parquet(root / latest["path"] / "stewart_limits.parquet")
    reports = pd.read_parquet(root / "gold/cda/classified_reports.parquet")
    machines = pd.read_parquet(root / "gold/cda/machine_status_current.parquet")
    return root, evals, silver, limits, reports, machines


def test_checks_run_in_the_job_and_pass_on_demo(demo_outputs):
    _, evals, *_ = demo_outputs
    expected = {
        "unique_sample_number",
        "dates_valid",
        "essays_in_physical_range",
        "required_columns",
        "limits_monotone",
        "limits_sample_count",
        "every_sample_classified_once",
        "status_consistent_with_score",
        "machine_status_consistent",
    }
    assert expected <= set(evals)
    assert all(evals[n] for n in expected), {n: evals[n] for n in expected}


def test_silver_checks_fail_on_crafted_bad_tables(demo_outputs):
    silver = demo_outputs[2]
    assert all(o.passed for o in checks.silver_checks(silver, CAT, 10_000, AS_OF) if not o.warn_only)
    dup = pd.concat([silver, silver.head(1)])
    assert not checks.unique_sample_numbers(dup).passed
    future = silver.copy()
    future.loc[future.index[0], "sampleDate"] = pd.Timestamp("2030-01-01")
    assert checks.dates_valid(future, AS_OF).metadata["future"] == 1
    neg = silver.copy()
    neg.loc[neg.index[0], "fe"] = -1.0
    assert checks.essays_in_physical_range(neg, CAT).metadata["out_of_range"] == {"fe": 1}
    hours = silver.copy()
    hours.loc[hours.index[0], ["componentHours", "machineHours"]] = [500.0, 100.0]
    out = checks.component_hours_within_machine_hours(hours)
    assert not out.passed and out.warn_only
    assert not checks.required_columns(silver.drop(columns=["unitId"]), CAT).passed
    stale = checks.freshness(silver, 40, silver["sampleDate"].max() + pd.Timedelta(days=41))
    assert not stale.passed and stale.warn_only
    assert checks.freshness(silver, 40, silver["sampleDate"].max() + pd.Timedelta(days=40)).passed


def test_limit_checks_fail_on_crafted_bad_tables(demo_outputs):
    limits = demo_outputs[3]
    assert checks.limits_monotone(limits).passed
    assert checks.limits_sample_count(limits, LimitParams().min_samples).passed
    bad = limits.copy()
    i = bad.index[bad["direction"] == "upper"][0]
    bad.loc[i, "critical"] = bad.loc[i, "marginal"]
    assert checks.limits_monotone(bad).metadata["violations"] == 1
    j = bad.index[(bad["limit_method"] == "percentile") & (bad["kind"] == "level")][0]
    bad.loc[j, "sample_count"] = 2
    assert not checks.limits_sample_count(bad, LimitParams().min_samples).passed


def test_gold_checks_fail_on_crafted_bad_tables(demo_outputs):
    _, _, silver, _, reports, machines = demo_outputs
    p = ClassificationParams()
    assert checks.every_sample_classified_once(reports, silver).passed
    assert not checks.every_sample_classified_once(reports.iloc[1:], silver).passed
    assert not checks.every_sample_classified_once(pd.concat([reports, reports.head(1)]), silver).passed
    assert checks.status_consistent_with_score(reports, p).passed
    wrong = reports.copy()
    i = wrong.index[wrong["report_status"] == "Anormal"][0]
    wrong.loc[i, "report_status"] = "Normal"
    assert checks.status_consistent_with_score(wrong, p).metadata["status_mismatches"] == 1
    untraceable = reports.copy()
    untraceable.loc[i, "severity_score"] += 1.0
    assert not checks.status_consistent_with_score(untraceable, p).passed
    assert checks.machine_status_consistent(machines, reports).passed
    flipped = machines.copy()
    k = flipped.index[flipped["machine_status"] != "Normal"][0]
    flipped.loc[k, "machine_status"] = "Normal"
    assert (
        flipped.loc[k, "unitId"]
        in checks.machine_status_consistent(flipped, reports).metadata["mismatched_units"]
    )
    no_text = reports.assign(ai_recommendation=np.where(reports["report_status"] == "Normal", "ok", None))
    assert not checks.recommendation_present(no_text).passed
    assert checks.recommendation_present(reports.assign(ai_recommendation="texto")).passed


def test_failing_blocking_check_keeps_previous_gold(demo_outputs, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(demo_outputs[0], root)
    gold = root / "gold/cda/classified_reports.parquet"
    before = gold.read_bytes()
    silver_path = root / "silver/harmonized/CDA.parquet"
    silver = pd.read_parquet(silver_path)
    pd.concat([silver, silver.head(3)]).to_parquet(silver_path, index=False)  # duplicated samples
    # Silver edited by hand, not by a run: forget the recorded fingerprint so the step re-reads it.
    (root / "silver/_state/cda/fingerprints/classified_reports.json").unlink()
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            all_assets,
            partition_key="cda",
            instance=instance,
            resources=resources(root),
            raise_on_error=False,
            selection=["classified_reports", "machine_status_current"],
        )
    assert not result.success
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "every_sample_classified_once" in failure.message or "every_sample_classified_once" in str(
        failure.event_specific_data.error
    )
    assert gold.read_bytes() == before
