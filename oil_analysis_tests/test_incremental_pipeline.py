"""Incremental runs of the whole graph: nothing re-done without cause, corrections audited, re-runs identical."""

from __future__ import annotations

import hashlib
import json
import shutil

import pandas as pd
import pytest
from dagster import DagsterInstance

from .builders import finning_row, write_finning
from .builders import run_cda as run
from .conftest import DEMO_BRONZE

DATA_FILES = [
    "silver/harmonized/CDA.parquet",
    "gold/cda/classified_reports.parquet",
    "gold/cda/machine_status_current.parquet",
    "gold/cda/limit_quality.parquet",
    "silver/stewart_limits/cda/latest.json",
]


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


GOLD_FILES = [*DATA_FILES, "gold/cda/fleet_report.html"]


def run_tagged(root, instance, tags=None, **config):
    """:func:`run` with run tags; the metadata as plain values."""
    return {
        asset: {k: v.value for k, v in meta.items()}
        for asset, meta in run(root, instance, tags=tags, **config).items()
    }


def truck(rows: range, fe=lambda i: 10 + i % 5, fix: dict | None = None) -> list[dict]:
    """A cumulative workbook of truck T-77 (newest rows on top, as the lab sends them)."""
    out = []
    for i in rows:
        row = finning_row(
            i,
            **{
                "No. de control de laboratorio": f"R577-00000-{i:04d}",
                "ID de equipo": "T-77",
                "Fe": fe(i),
                **(fix or {}).get(i, {}),
            },
        )
        out.append(row)
    return out[::-1]


def test_sequence_of_arrivals_equals_a_full_rebuild_byte_for_byte(cda_root):
    """Cumulative re-sends (every old row moves down), a correction, a limits change on some
    groups only, an unchanged re-run: the gold equals a full rebuild, byte for byte."""
    path = cda_root / "bronze/cda/T-77.xlsx"
    with DagsterInstance.ephemeral() as instance:
        write_finning(path, truck(range(30)))
        run_tagged(cda_root, instance)
        write_finning(path, truck(range(36)))  # the same file re-sent with 6 more rows
        resent = run_tagged(cda_root, instance)
        assert resent["silver_harmonized"]["changes"]["samples_added"] == 6
        assert resent["classified_reports"]["classified_this_run"] <= 6 + 1
        # A correction of an old row and two new rows, in the next cumulative export.
        write_finning(path, truck(range(38), fix={3: {"Fe": 70}}))
        corrected = run_tagged(cda_root, instance)
        assert corrected["silver_harmonized"]["changes"]["values_changed"] >= 1
        # New motor readings far above the rest, then a forced refresh: only the groups whose
        # limits moved are classified again.
        write_finning(
            path, truck(range(60), fe=lambda i: 10 + i % 5 if i < 38 else 40 + i, fix={3: {"Fe": 70}})
        )
        refreshed = run_tagged(cda_root, instance, tags={"force_limits_refresh": "true"})
        reports = refreshed["classified_reports"]
        assert refreshed["stewart_limits"]["refreshed"] is True
        assert "group(s) classify differently" in reports["limits_change"]
        assert 0 < reports["classified_this_run"] < reports["rows"]
        before = digests_of(cda_root, GOLD_FILES)
        again = run_tagged(cda_root, instance)
        assert digests_of(cda_root, GOLD_FILES) == before
        assert all(m["unchanged"] for m in again.values()), {k: m["unchanged"] for k, m in again.items()}
        # The full rebuild: silver from every file, every report classified and advised again.
        for name in ("classified_reports", "machine_status_current", "limit_quality"):
            (cda_root / f"gold/cda/{name}.parquet").unlink()
        (cda_root / "gold/cda/fleet_report.html").unlink()
        full = run_tagged(cda_root, instance, full_rebuild=True)
        assert full["classified_reports"]["reused_from_previous"] == 0
    assert digests_of(cda_root, GOLD_FILES) == before


def digests_of(root, files) -> dict[str, str]:
    return {p: hashlib.sha256((root / p).read_bytes()).hexdigest() for p in files}


def test_unchanged_rerun_reads_and_writes_no_table(cda_root, monkeypatch):
    from oil_analysis.storage.filesystem import Storage

    with DagsterInstance.ephemeral() as instance:
        run_tagged(cda_root, instance)
        calls = []
        for name in ("read_parquet", "write_parquet", "write_bytes", "read_bytes"):
            original = getattr(Storage, name)

            def spy(self, path, *args, _name=name, _original=original, **kwargs):
                calls.append((_name, path))
                return _original(self, path, *args, **kwargs)

            monkeypatch.setattr(Storage, name, spy)
        meta = run_tagged(cda_root, instance)
    tables = [c for c in calls if c[1].endswith((".parquet", ".html", ".xlsx"))]
    assert tables == []
    assert all(m["unchanged"] for m in meta.values())
    assert meta["fleet_report"]["unchanged_since_run"] == meta["classified_reports"]["unchanged_since_run"]


def test_a_published_file_edited_or_removed_by_hand_is_built_again(cda_root):
    """The unchanged short-cut trusts a published file only while it is the one published (its size
    and arrival time as stamped in its manifest part, else its sha256): an edit or a deletion by hand
    is repaired by the next run, a touch that leaves the bytes alone is not work."""
    with DagsterInstance.ephemeral() as instance:
        run(cda_root, instance)
        before = digests(cda_root)
        reports = cda_root / "gold/cda/classified_reports.parquet"
        edited = pd.read_parquet(reports).head(3)
        edited.to_parquet(reports)  # someone "fixed" the gold by hand
        (cda_root / "gold/cda/limit_quality.parquet").unlink()
        html = cda_root / "gold/cda/fleet_report.html"
        html.write_bytes(html.read_bytes())  # rewritten with the same bytes: a new arrival time
        meta = run(cda_root, instance)
    assert digests(cda_root) == before
    assert meta["classified_reports"]["unchanged"].value is False
    assert meta["limit_quality"]["unchanged"].value is False
    assert meta["silver_harmonized"]["unchanged"].value is True
    assert meta["fleet_report"]["unchanged"].value is True
