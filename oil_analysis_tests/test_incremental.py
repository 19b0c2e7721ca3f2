"""Incremental silver equals a full rebuild over a sequence of file arrivals; changes are audited."""

from __future__ import annotations

import pandas as pd
import pytest

from oil_analysis.domain.catalog import load_catalog
from oil_analysis.domain.harmonize import finish, harmonize, prepare
from oil_analysis.domain.incremental import audit, candidate_index, rows_differ, upsert

from .test_harmonize import tidy

CAT = load_catalog()
D = pd.Timestamp


def file(name: str, rows: list[dict]) -> pd.DataFrame:
    return tidy([{**r, "sourceFile": name} for r in rows])


def motor(n: str, day: str, fe: float, **kw) -> dict:
    return {"sampleNumber": n, "sampleDate": D(day), "fe": fe, **kw}


A1 = file("A.xlsx", [motor(f"M{i}", f"2024-0{i}-01", 10.0 + i) for i in range(1, 6)])
B1 = file("B.xlsx", [motor(f"T{i}", f"2024-0{i}-05", 3.0, componentName="TRANSMISION") for i in range(1, 5)])
C1 = file("C.xlsx", [motor("M0", "2023-12-15", 9.0), motor("U1", "2024-02-01", 5.0, unitId="T-02")])
A2 = file("A.xlsx", [motor(f"M{i}", f"2024-0{i}-01", 10.0 + i + (20 if i == 3 else 0)) for i in range(1, 7)])
D1 = file(
    "D.xlsx", [motor("T2", "2024-02-05", 30.0, componentName="TRANSMISION", reportDate=D("2024-03-01"))]
)

STEPS = [  # (files present after the step, files whose previous rows are replaced or removed)
    ({"A": A1, "B": B1}, set()),
    ({"A": A1, "B": B1, "C": C1}, set()),  # a late sample (older date) and a new unit
    ({"A": A2, "B": B1, "C": C1}, {"A.xlsx"}),  # a re-exported workbook: one correction, one new row
    ({"A": A2, "B": B1, "C": C1, "D": D1}, set()),  # a conflicting duplicate in a new file wins
    ({"A": A2, "B": B1, "D": D1}, {"C.xlsx"}),  # a file removed
]


def full(files: dict) -> pd.DataFrame:
    return harmonize(list(files.values()), "cda", as_of=D("2025-01-01"))[0]


def test_incremental_equals_full_rebuild_at_every_step():
    silver, index = None, None
    previous_files: dict = {}
    for files, dropped in STEPS:
        if silver is None:
            cand, _, _ = prepare(list(files.values()), "cda", as_of=D("2025-01-01"))
            silver, _, _ = finish(cand)
            index = candidate_index(cand)
        else:
            delta = [f for k, f in files.items() if k not in previous_files or f is not previous_files[k]]
            cand, _, _ = prepare(delta, "cda", as_of=D("2025-01-01"))
            out = upsert(silver, index, cand, dropped)
            assert out is not None
            silver, index, _, _ = out
        pd.testing.assert_frame_equal(silver, full(files))
        previous_files = files


def test_every_file_resent_equals_a_full_rebuild():
    """The whole fleet re-sends its cumulative workbooks: no row is kept, every pair is relinked."""
    cand, _, _ = prepare([A1, B1, C1], "cda", as_of=D("2025-01-01"))
    silver, _, _ = finish(cand)
    again, _, _ = prepare([A2, B1, C1], "cda", as_of=D("2025-01-01"))
    out = upsert(silver, candidate_index(cand), again, {"A.xlsx", "B.xlsx", "C.xlsx"})
    assert out is not None
    pd.testing.assert_frame_equal(out[0], full({"A": A2, "B": B1, "C": C1}))
    pd.testing.assert_frame_equal(out[1], candidate_index(again))
    assert out[3]["rows_relinked"] == len(out[0])


def test_late_sample_fixes_previous_links_only_of_its_pair():
    cand, _, _ = prepare([A1, B1], "cda", as_of=D("2025-01-01"))
    before, _, _ = finish(cand)
    late, _, _ = prepare([C1], "cda", as_of=D("2025-01-01"))
    after, _, _, info = upsert(before, candidate_index(cand), late, set())
    m1 = after.set_index("sampleNumber").loc["M1"]
    assert m1["previousSampleNumber"] == "M0" and m1["daysSincePrevious"] == 17
    assert info["pairs_relinked"] == 2  # T_01 motor (late sample) and T_02 motor (new unit), not the gearbox
    assert info["rows_relinked"] == 7


def test_removing_the_winner_of_a_duplicate_needs_a_full_rebuild():
    files = {"B": B1, "D": D1}
    cand, _, _ = prepare(list(files.values()), "cda", as_of=D("2025-01-01"))
    silver, _, _ = finish(cand)
    assert silver.set_index("sampleNumber").loc["T2", "fe"] == 30.0
    empty, _, _ = prepare([], "cda")
    assert upsert(silver, candidate_index(cand), empty, {"D.xlsx"}) is None  # B's copy must come back


def test_audit_records_corrections_additions_and_removals():
    old, new = full({"A": A1, "B": B1, "C": C1}), full({"A": A2, "B": B1})
    table, summary = audit(old, new, D("2026-11-22 10:00"))
    assert summary == {"samples_added": 1, "samples_removed": 2, "samples_updated": 1, "values_changed": 1}
    row = table.iloc[0]
    assert (row["sampleNumber"], row["column"], row["old_value"], row["new_value"], row["file"]) == (
        "M3",
        "fe",
        "13.0",
        "33.0",
        "A.xlsx",
    )


@pytest.mark.parametrize("files", [{"A": A1}, {"A": A2, "B": B1, "D": D1}])
def test_audit_of_identical_silver_is_empty(files):
    s = full(files)
    table, summary = audit(s, s.copy(), D("2026-11-22"))
    assert table.empty and summary["values_changed"] == 0


def test_incremental_classification_equals_full(tmp_path):
    from oil_analysis.domain.classify import ClassificationParams, classify_reports
    from oil_analysis.domain.incremental import classify_incremental
    from oil_analysis.domain.labs.finning import read_finning_workbook
    from oil_analysis.domain.limits import LimitParams, compute_limits

    from .conftest import DEMO_BRONZE

    tidy_frames = [
        read_finning_workbook(str(p)).samples for p in sorted((DEMO_BRONZE / "cda").glob("*.xlsx"))
    ]
    before = harmonize(tidy_frames, "cda")[0]
    limits = compute_limits(before, CAT, LimitParams(), computed_at=before["sampleDate"].max())

    def classify(frame):
        return classify_reports(frame, limits, CAT, ClassificationParams())

    previous = classify(before)
    # A correction on one sample (its successor's trend changes too) and one sample removed.
    changed = before.copy()
    i = changed.index[changed["fe"].notna()][100]
    changed.loc[i, "fe"] = changed.loc[i, "fe"] + 250
    changed = changed.drop(index=changed.index[5]).reset_index(drop=True)
    changed = harmonize(
        [changed.drop(columns=["previousSampleNumber", "previousSampleDate", "daysSincePrevious"])], "cda"
    )[0]
    out, info = classify_incremental(changed, limits, previous, classify)
    assert 0 < info["classified"] < 10 and info["reused"] > 1000
    pd.testing.assert_frame_equal(out, classify(changed))
    # A new limits version reclassifies everything.
    other = limits.assign(version="limits-other")
    _, info = classify_incremental(changed, other, previous, lambda f: classify_reports(f, other, CAT))
    assert info["reused"] == 0


def test_limits_change_on_some_groups_reclassifies_only_those(tmp_path):
    """New limits that differ for one machine × component: only its samples are classified again,
    and the result equals a full reclassification with the new limits, frame for frame."""
    from oil_analysis.domain.classify import classify_reports
    from oil_analysis.domain.incremental import changed_limit_groups, classify_incremental
    from oil_analysis.domain.labs.finning import read_finning_workbook
    from oil_analysis.domain.limits import compute_limits

    from .conftest import DEMO_BRONZE

    tidy = [read_finning_workbook(str(p)).samples for p in sorted((DEMO_BRONZE / "cda").glob("*.xlsx"))]
    silver = harmonize(tidy, "cda")[0]
    old = compute_limits(silver, CAT, computed_at=silver["sampleDate"].max())
    previous = classify_reports(silver, old, CAT)
    group = old[old["kind"] == "level"].iloc[0]
    target = (old["machine"] == group["machine"]) & (old["component"] == group["component"])
    new = old.assign(version="limits-new", sample_count=old["sample_count"] + 1)  # counts only: no change
    assert changed_limit_groups(old, new) == set()
    essay = target & (old["essay"] == group["essay"]) & (old["kind"] == "level")
    new.loc[essay, ["marginal", "condemning", "critical"]] = (
        new.loc[essay, ["marginal", "condemning", "critical"]] / 2
    )
    assert changed_limit_groups(old, new) == {(group["client"], group["machine"], group["component"])}

    out, info = classify_incremental(
        silver, new, previous, lambda f: classify_reports(f, new, CAT), previous_limits=old
    )
    in_group = (silver["machineName"] == group["machine"]) & (
        silver["componentNameNormalized"] == group["component"]
    )
    assert info["limit_groups_changed"] == 1
    assert info["classified"] == int(in_group.sum()) < len(silver)
    full = classify_reports(silver, new, CAT)
    pd.testing.assert_frame_equal(out, full)
    assert (out["limits_version"] == "limits-new").all()
    assert not out.loc[in_group.to_numpy(), "breached_essays"].equals(
        previous.loc[in_group.to_numpy(), "breached_essays"]
    )


def test_rows_differ_finds_exactly_the_changed_and_new_rows():
    """What reclassification reads: a row differs when any compared value changed (a missing value
    equals a missing value), or when its sample is new; rows in another order are matched by id."""
    cand, _, _ = prepare([A1, B1], "cda", as_of=D("2025-01-01"))
    before, _, _ = finish(cand)
    after = before.iloc[::-1].reset_index(drop=True).copy()
    cols = [c for c in before.columns if c not in ("sourceFile", "sourceRow")]
    after.loc[after["sampleNumber"] == "M2", "fe"] = 99.0  # a float
    after.loc[after["sampleNumber"] == "T3", "labComment"] = "otro"  # a text (was missing)
    after.loc[after["sampleNumber"] == "M4", "sourceRow"] = 77  # not compared
    extra = after[after["sampleNumber"] == "M5"].assign(sampleNumber="M9")
    after = pd.concat([after, extra], ignore_index=True)
    got = set(after.loc[rows_differ(after, before, cols), "sampleNumber"])
    assert got == {"M2", "T3", "M9"}
    assert not rows_differ(before, before, cols).any()
