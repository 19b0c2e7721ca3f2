"""The change log: report and machine transitions between two publishes."""

from __future__ import annotations

import pandas as pd

from oil_analysis.domain.changes import machine_changes, report_changes


def reports(rows):
    return pd.DataFrame(
        rows,
        columns=[
            "sampleNumber",
            "unitId",
            "componentName",
            "severity_score",
            "report_status",
            "breached_essays",
            "limits_version",
        ],
    )


def test_report_changes_counts_transitions_and_new_non_normal():
    before = reports(
        [
            ["S1", "T_1", "motor", 0.0, "Normal", "[]", "v1"],
            ["S2", "T_1", "motor", 5.0, "Alerta", "[]", "v1"],
            ["S3", "T_2", "motor", 0.0, "Normal", "[]", "v1"],
        ]
    )
    after = reports(
        [
            ["S1", "T_1", "motor", 12.0, "Anormal", "[x]", "v1"],
            ["S2", "T_1", "motor", 5.0, "Alerta", "[]", "v1"],
            ["S4", "T_2", "motor", 6.0, "Alerta", "[y]", "v1"],
        ]
    )
    c = report_changes(before, after)
    assert (c["samples_added"], c["samples_updated"], c["samples_removed"]) == (1, 1, 1)
    assert c["report_status_transitions"] == {"Normal → Anormal": 1}
    assert [s["sampleNumber"] for s in c["new_non_normal_samples"]] == ["S1", "S4"]
    assert c["status_after"] == {"Normal": 0, "Alerta": 2, "Anormal": 1}
    first = report_changes(None, after)
    assert first["samples_added"] == 3 and first["reports_before"] == 0


def test_machine_changes():
    before = pd.DataFrame({"unitId": ["T_15", "T_16"], "machine_status": ["Normal", "Alerta"]})
    after = pd.DataFrame({"unitId": ["T_15", "T_17"], "machine_status": ["Anormal", "Normal"]})
    c = machine_changes(before, after)
    assert c["machine_status_transitions"] == {"T_15": "Normal → Anormal"}
    assert c["machines_added"] == ["T_17"] and c["machines_removed"] == ["T_16"]
