"""The pieces that make the gold steps of an update cost what changed: each gives what the plain
computation gives (same values, same order, same types), only cheaper."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pyarrow as pa

from oil_analysis.domain import quality
from oil_analysis.domain.catalog import load_catalog
from oil_analysis.domain.changes import report_changes
from oil_analysis.domain.contracts import conform
from oil_analysis.domain.fleet import latest_reports, machine_status_current
from oil_analysis.domain.incremental import interleave
from oil_analysis.pipeline.advice import recommend_machines, recommend_reports
from oil_analysis.storage import runstate

from .llm_server import advisor_reports

CAT = load_catalog()


def test_interleave_puts_each_part_at_its_positions_with_the_part_types():
    first = pd.Series(["a", "c", "d"], dtype="string")
    second = pd.Series(["B", "E"], dtype="string")
    out = interleave(np.array([0, 2, 3]), first, np.array([1, 4]), second)
    assert out.tolist() == ["a", "B", "c", "d", "E"] and str(out.dtype) == "string"
    assert interleave(
        np.array([0, 1]), first.iloc[:2], np.array([], dtype=int), second.iloc[:0]
    ).tolist() == [
        "a",
        "c",
    ]


def test_recommend_reports_only_advises_the_chosen_rows_with_their_previous_samples_at_hand():
    reports = advisor_reports(40, normal_every=4)
    full, _ = recommend_reports(reports, None, "cda", None, CAT)
    only = np.zeros(len(reports), dtype=bool)
    only[1::2] = True
    part, stats = recommend_reports(reports, None, "cda", None, CAT, only=only)
    # The advised rows get exactly the text of a full run (their previous sample is still read).
    assert part["ai_recommendation"][only].tolist() == full["ai_recommendation"][only].tolist()
    assert part["ai_recommendation"][~only].isna().all()
    assert sum(stats["sources"].values()) == int(only.sum())


def test_report_changes_counts_a_sign_of_zero_and_a_missing_value_as_updates():
    def frame(scores, versions):
        return pd.DataFrame(
            {
                "sampleNumber": ["S1", "S2", "S3", "S4"],
                "unitId": "T1",
                "componentName": "motor",
                "severity_score": scores,
                "report_status": ["Normal", "Normal", "Alerta", "Anormal"],
                "breached_essays": "[]",
                "limits_version": pd.array(versions, dtype="string"),
            }
        )

    before = frame([0.0, 1.0, 5.0, 12.0], ["v1", "v1", "v1", "v1"])
    after = frame([-0.0, 1.0, 5.0, 12.0], ["v1", None, "v1", "v1"])
    c = report_changes(before, after)
    assert c["samples_updated"] == 2 and c["samples_added"] == 0
    assert report_changes(before, before)["samples_updated"] == 0


def test_latest_reports_by_codes_equals_the_sort_on_the_key_columns():
    rng = np.random.default_rng(3)
    n = 400
    days = pd.to_datetime("2025-01-01") + pd.to_timedelta(rng.integers(0, 20, n), unit="D")
    frame = pd.DataFrame(
        {
            "unitId": pd.array(rng.choice(["T2", "T1", "T10"], n), dtype="string"),
            "componentName": pd.array(rng.choice(["motor", "mando final izq", None], n), dtype="string"),
            "sampleDate": days.astype("datetime64[us]"),
            "reportDate": pd.Series(days).where(rng.random(n) > 0.2).astype("datetime64[us]"),
            "sampleNumber": pd.array([f"S{i % 150}" for i in range(n)], dtype="string"),
            "row": np.arange(n),
        }
    )
    cols = ["unitId", "componentName", "sampleDate", "reportDate", "sampleNumber"]
    keys = frame[cols].sort_values(cols, kind="mergesort", na_position="first")
    expected = frame.iloc[keys.index[~keys.duplicated(["unitId", "componentName"], keep="last")]]
    assert latest_reports(frame)["row"].tolist() == expected["row"].tolist()


def test_a_breaches_column_is_parsed_once_whoever_asks_first():
    text = [json.dumps([{"essay": "fe", "points": float(i)}]) for i in range(50)]
    frame = pd.DataFrame(
        {"breached_essays": pd.array(pa.array(text, type=pa.large_string()), dtype="string")}
    )
    calls, original = [], quality._parse_breaches
    quality._parse_breaches = lambda c: calls.append(1) or original(c)
    try:
        worker = runstate.in_background(quality.breaches_frame, frame)
        results = [quality.breaches_frame(frame[["breached_essays"]]) for _ in range(3)]
        worker.result()
    finally:
        quality._parse_breaches = original
    assert len(calls) == 1 and all(r["points"].tolist() == list(map(float, range(50))) for r in results)


def test_prepared_bytes_are_taken_only_for_the_very_frame_they_were_rendered_from():
    frame = pd.DataFrame({"a": [1, 2]})
    runstate.prepare("run-1", "cda", "t", frame, lambda f: b"bytes of f")
    assert runstate.take_prepared("run-1", "cda", "t", frame.copy()) is None  # an equal frame: no
    runstate.prepare("run-1", "cda", "t", frame, lambda f: b"bytes of f")
    assert runstate.take_prepared("run-1", "cda", "t", frame) == b"bytes of f"
    assert runstate.take_prepared("run-1", "cda", "t", frame) is None  # taken once


def test_conform_returns_a_frame_in_contract_order_as_it_is_and_reorders_the_others():
    reports = pd.DataFrame(
        {
            "client": "CDA",
            "unitId": ["T1", "T1", "T2"],
            "machineName": "camion",
            "machineModel": "789C",
            "componentName": ["motor", "mando", "motor"],
            "componentNameNormalized": ["motor", "mando", "motor"],
            "sampleNumber": ["S1", "S2", "S3"],
            "sampleDate": pd.to_datetime(["2025-01-01", "2025-01-02", "2025-01-03"]).astype("datetime64[us]"),
            "reportDate": pd.to_datetime(["2025-01-05", "2025-01-06", "2025-01-07"]).astype("datetime64[us]"),
            "report_status": ["Normal", "Alerta", "Normal"],
            "severity_score": [0.0, 5.0, 0.0],
            "breached_essays": "[]",
            "limits_version": "v1",
        }
    )
    status, _ = recommend_machines(machine_status_current(reports), reports, None, "cda", None, CAT)
    ordered = conform(status, "machine_status_current")
    assert conform(ordered, "machine_status_current") is ordered
    shuffled = ordered[list(reversed(ordered.columns))]
    again = conform(shuffled, "machine_status_current")
    assert again is not shuffled and list(again.columns) == list(ordered.columns)


def test_a_forked_child_gets_its_own_background_worker():
    assert runstate.in_background(sum, [1, 2]).result(timeout=10) == 3  # the parent's worker exists
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its work must run, not wait for a thread it does not have
        try:
            ok = runstate.in_background(sum, [3, 4]).result(timeout=10) == 7
        except Exception:  # noqa: BLE001 - reported to the parent through the pipe
            ok = False
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    assert answer == b"1"


def test_settle_waits_for_the_work_handed_to_the_background_worker():
    """The bronze step forks its parse workers only once the background worker is idle."""
    import threading

    release, done = threading.Event(), []
    runstate.in_background(lambda: (release.wait(10), done.append(1)))
    threading.Timer(0.2, release.set).start()
    runstate.settle()
    assert done == [1]
