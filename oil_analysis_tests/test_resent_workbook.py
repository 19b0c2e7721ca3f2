"""A cumulative workbook re-sent with more rows: its unchanged rows are not parsed again, and the
result (samples, reject ledger, silver) is exactly that of a full parse."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pandas as pd
from dagster import DagsterInstance

from oil_analysis.domain.labs.finning import _row_digests, read_finning_workbook

from .builders import finning_row, write_finning
from .builders import run_cda as run

SAMPLE = "No. de control de laboratorio"


def month_one() -> list[dict]:
    rows = [finning_row(i) for i in range(8)]
    rows[2]["Horas"] = "mil"  # a bad cell: cleared, recorded
    rows[3]["ID de equipo"] = None  # an invalid identity: the sample is rejected
    rows[4]["Fe.1"] = 99  # repeated Fe copies disagree: Fe cleared, recorded
    rows[5]["Cu"] = "<1"  # a censored reading
    return rows


def month_two() -> list[dict]:
    rows = month_one()
    rows[1]["Si"] = 40  # a correction of an old row
    rows += [finning_row(8), finning_row(9, Cu="#VALUE!"), finning_row(10, **{"Fe.1": 7})]
    return rows


def write(path, rows):
    return write_finning(path, rows, dup_keys=True)


def with_fe_copies(rows: list[dict]) -> list[dict]:
    """``dup_keys`` reads the second Fe/Si from ``Fe.1``/``Si.1``: the copies agree unless set."""
    for r in rows:
        r.setdefault("Fe.1", r["Fe"])
        r.setdefault("Si.1", r["Si"])
    return rows


def test_resent_workbook_reuses_unchanged_rows_and_equals_a_full_parse(tmp_path):
    path = tmp_path / "T-01.xlsx"
    write(path, with_fe_copies(month_one()))
    first = read_finning_workbook(str(path))
    assert first.info["rows_reused"] == 0 and first.info["rows_parsed"] == 8
    write(path, with_fe_copies(month_two()))
    full = read_finning_workbook(str(path))
    again = read_finning_workbook(str(path), previous=first.row_cache)
    pd.testing.assert_frame_equal(again.samples, full.samples)
    pd.testing.assert_frame_equal(again.rejects, full.rejects)
    counters = ("rows_reused", "rows_parsed", "sheet_rows_read")
    assert {k: v for k, v in again.info.items() if k not in counters} == {
        k: v for k, v in full.info.items() if k not in counters
    }
    # 7 old rows unchanged (the rejected one, the cleared cells and the disagreement included);
    # the corrected row and the 3 new ones parsed.
    assert (again.info["rows_reused"], again.info["rows_parsed"]) == (7, 4)
    # Only those 4 rows were read by python-calamine (the XML row cache); a full read reads all 12
    # rows below the header (row 2 is empty).
    assert (again.info["sheet_rows_read"], full.info["sheet_rows_read"]) == (4, 12)
    assert full.info["repeated_column_disagreements"] == {"Fe/Fe.1": 2}
    reasons = set(zip(full.rejects["row"].astype(int), full.rejects["column"], strict=True))
    assert {(6, "ID de equipo"), (5, "Horas"), (7, "Fe.1"), (12, "Cu"), (13, "Fe.1")} <= reasons
    samples = again.samples.set_index("sampleNumber")
    assert samples.loc["R120-00000-0001", "si"] == 40
    # The row cache of a partly reused parse serves the next re-send: nothing parsed.
    third = read_finning_workbook(str(path), previous=again.row_cache)
    assert (third.info["rows_reused"], third.info["rows_parsed"], third.info["sheet_rows_read"]) == (11, 0, 0)
    pd.testing.assert_frame_equal(third.samples, full.samples)
    pd.testing.assert_frame_equal(third.rejects, full.rejects)


def test_ingest_reuses_the_earlier_parse_and_a_broken_one_costs_a_full_parse(tmp_path):
    """Through the bronze intake (parse children): the earlier parse is read by the parent and
    decoded by the child; one that cannot be decoded is a warning naming the file and a full parse,
    with the same stored samples and ledger."""
    from oil_analysis.domain.clients import load_clients
    from oil_analysis.pipeline.bronze import ingest_client
    from oil_analysis.storage import layout
    from oil_analysis.storage.filesystem import Storage

    store, client = Storage.local(str(tmp_path)), load_clients()["cda"]
    path = tmp_path / "bronze" / "cda" / "T-01.xlsx"
    stored = {}
    for label in ("first", "resent", "broken"):
        if label == "first":
            write(path, with_fe_copies(month_one()))
        elif label == "resent":
            write(path, with_fe_copies(month_two()))
        else:  # the same workbook re-sent again, its earlier parse's row digests broken
            first = store.read_parquet(layout.registry_path("cda"))
            rows_file = tmp_path / first["parsed_path"].iloc[0].replace(".parquet", ".rows.parquet")
            rows_file.write_bytes(b"not parquet")
            # A registry that no longer knows this content: the file is parsed again.
            store.write_parquet(layout.registry_path("cda"), first.assign(sha256="other", size=0))
        batch = ingest_client(store, client)
        store.write_parquet(layout.registry_path("cda"), batch.registry)
        parsed = batch.registry["parsed_path"].iloc[0]
        stored[label] = (
            store.read_parquet(parsed),
            store.read_parquet(parsed.replace(".parquet", ".rejects.parquet")),
        )
        if label == "resent":
            assert (batch.rows_reused, batch.rows_parsed) == (7, 4)
            assert batch.warnings == []
        if label == "broken":
            assert (batch.rows_reused, batch.rows_parsed) == (0, 11)
            assert len(batch.warnings) == 1
            assert batch.warnings[0].startswith("bronze/cda/T-01.xlsx: row cache not used (")
            assert batch.warnings[0].endswith("the file is parsed in full")
    for a, b in zip(stored["resent"], stored["broken"], strict=True):
        pd.testing.assert_frame_equal(a, b)


def test_a_cell_the_reader_does_not_read_changes_no_row(tmp_path):
    """A row's digest covers the columns the reader reads: a note edited in another column leaves
    the row reused, and the result is still that of a full parse."""
    from .builders import FINNING_HEADER

    path = tmp_path / "T-01.xlsx"
    header = [*FINNING_HEADER, "Notas"]
    rows = with_fe_copies(month_one())
    write_finning(path, rows, header=header, dup_keys=True)
    first = read_finning_workbook(str(path))
    rows[0]["Notas"] = "re-muestreado"
    rows[1]["Fe"] = 55  # a column the reader reads: that row is parsed again
    write_finning(path, rows, header=header, dup_keys=True)
    again = read_finning_workbook(str(path), previous=first.row_cache)
    full = read_finning_workbook(str(path))
    assert (again.info["rows_reused"], again.info["rows_parsed"]) == (7, 1)
    pd.testing.assert_frame_equal(again.samples, full.samples)
    pd.testing.assert_frame_equal(again.rejects, full.rejects)


def test_rows_moved_or_header_changed(tmp_path):
    path = tmp_path / "T-01.xlsx"
    rows = with_fe_copies(month_one())
    write(path, rows)
    first = read_finning_workbook(str(path))
    write(path, [with_fe_copies([finning_row(20)])[0], *rows])  # a row inserted on top: rows move
    moved = read_finning_workbook(str(path), previous=first.row_cache)
    full = read_finning_workbook(str(path))
    assert (moved.info["rows_reused"], moved.info["rows_parsed"]) == (8, 1)
    pd.testing.assert_frame_equal(moved.samples, full.samples)
    pd.testing.assert_frame_equal(moved.rejects, full.rejects)
    # Another header (a column more): every row is parsed again.
    from .builders import FINNING_HEADER

    write_finning(path, rows, header=[*FINNING_HEADER, "Na"], dup_keys=True)
    other = read_finning_workbook(str(path), previous=first.row_cache)
    assert other.info["rows_reused"] == 0


ROWS = [
    [1],
    [1.0],
    [True],
    ["1"],
    [0.0],
    [-0.0],
    [dt.date(2024, 1, 2)],
    [dt.datetime(2024, 1, 2)],
    ["", ""],
    [None, ""],
    ["a", "b"],
    ["b", "a"],
]


def test_row_digests_tell_types_apart_and_are_stable_across_processes():
    here = _row_digests(ROWS)
    assert len(set(here)) == len(ROWS)  # 1, 1.0, True, "1", dates and datetimes all differ
    # Equal cells held by one object or by two give the same digest (no pickle memo).
    shared, copy = "ab" * 3, "".join(["ab"] * 3)
    assert _row_digests([[shared, shared]]) == _row_digests([[shared, copy]])
    code = (
        "import datetime as dt, json; from oil_analysis.domain.labs.finning import _row_digests; "
        "from oil_analysis_tests.test_resent_workbook import ROWS; print(json.dumps(_row_digests(ROWS)))"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == str(here).replace("'", '"')


def test_resent_workbook_through_the_graph_equals_a_full_build(data_root, tmp_path, monkeypatch):
    # Two trucks, so the limits have groups; one workbook re-sent with a correction and new rows.
    path = write(data_root / "bronze/cda/T-01.xlsx", with_fe_copies(month_one()))
    other = [finning_row(i, **{SAMPLE: f"R121-00000-{i:04d}", "ID de equipo": "T-02"}) for i in range(8)]
    write(data_root / "bronze/cda/T-02.xlsx", with_fe_copies(other))
    with DagsterInstance.ephemeral() as instance:
        run(data_root, instance)
        write(path, with_fe_copies(month_two()))
        meta = run(data_root, instance)
    bronze = meta["bronze_lab_files"]
    assert (bronze["rows_reused"].value, bronze["raw_rows_parsed_this_run"].value) == (7, 4)
    # calamine read only the re-sent workbook's new or corrected rows (the others known by their XML)
    assert bronze["raw_rows_read_this_run"].value == 4
    fresh = tmp_path / "fresh"
    (fresh / "bronze/cda").mkdir(parents=True)
    for name in ("T-01.xlsx", "T-02.xlsx"):
        (fresh / "bronze/cda" / name).write_bytes((data_root / "bronze/cda" / name).read_bytes())
    monkeypatch.setenv("OIL_DATA_ROOT", str(fresh))
    with DagsterInstance.ephemeral() as instance:
        cold = run(fresh, instance)
    assert cold["bronze_lab_files"]["rows_reused"].value == 0
    assert cold["bronze_lab_files"]["raw_rows_read_this_run"].value >= 11 + 8  # every row of both
    for name in ("silver/harmonized/CDA.parquet", "silver/rejects/cda.parquet"):
        assert (data_root / name).read_bytes() == (fresh / name).read_bytes(), name


def test_this_runs_parses_reach_silver_from_memory_equal_to_the_stored_ones(tmp_path):
    """The parses bronze made in a run are handed to that run's silver in memory: the same frames
    (values and dtypes) ``load_parsed`` reads back from storage, for a first parse and for a re-send
    assembled from the row cache; another run never gets them (it reads storage)."""
    import pytest

    from oil_analysis.domain.clients import load_clients
    from oil_analysis.pipeline.bronze import ingest_client
    from oil_analysis.storage import layout, runstate
    from oil_analysis.storage.filesystem import Storage
    from oil_analysis.storage.registry import load_parsed

    store, client = Storage.local(str(tmp_path)), load_clients()["cda"]
    path = tmp_path / "bronze" / "cda" / "T-01.xlsx"
    clean = [finning_row(i, **{SAMPLE: f"R121-00000-{i:04d}", "ID de equipo": "T-02"}) for i in range(5)]
    write_finning(tmp_path / "bronze" / "cda" / "T-02.xlsx", with_fe_copies(clean), dup_keys=True)
    for run_id, rows in (("run-1", month_one()), ("run-2", month_two())):
        write(path, with_fe_copies(rows))
        batch = ingest_client(store, client, workers=2)
        store.write_parquet(layout.registry_path("cda"), batch.registry)
        runstate.remember_parsed(run_id, store.uri, batch.parsed)
        assert len(batch.parsed) == (2 if run_id == "run-1" else 1)  # T-02 unchanged in run-2
        stored, stored_rejects = load_parsed(store, batch.registry)
        memo, memo_rejects = load_parsed(store, batch.registry, run_id)
        assert len(stored) == len(memo) == 2 and len(stored_rejects) > 0
        for a, b in zip(stored, memo, strict=True):
            pd.testing.assert_frame_equal(a, b)
            assert a.dtypes.to_dict() == b.dtypes.to_dict()
        pd.testing.assert_frame_equal(stored_rejects, memo_rejects)
    assert batch.rows_reused == 7  # the re-send was assembled from the row cache
    # Taken from memory: this run reads no parse back; another run reads storage.
    for parsed in batch.parsed:
        (tmp_path / parsed).unlink()
    assert (
        len(load_parsed(store, batch.registry[batch.registry["key"].str.endswith("T-01.xlsx")], "run-2")[0])
        == 1
    )
    with pytest.raises(FileNotFoundError):
        load_parsed(store, batch.registry, "run-1")


def test_the_tables_encoded_for_the_parse_cache_are_pyarrows_own(tmp_path):
    """The parse child's quick frame → Arrow conversion gives pyarrow's ``from_pandas`` table exactly
    (values, types, pandas metadata): the cache reads back as the frame it was made from."""
    import pyarrow as pa

    from oil_analysis.domain.labs.common import empty_rejects, ledger_types
    from oil_analysis.pipeline.bronze import _arrow

    path = tmp_path / "T-01.xlsx"
    write(path, with_fe_copies(month_two()))
    result = read_finning_workbook(str(path))
    ledger = ledger_types(result.rejects.assign(file="bronze/cda/T-01.xlsx"))
    assert len(ledger)
    for frame in (result.samples, ledger, empty_rejects(), pd.DataFrame({"a": ["x", None], "b": [1, 2]})):
        table = _arrow(frame)
        assert table.equals(pa.Table.from_pandas(frame, preserve_index=False), check_metadata=True)
        pd.testing.assert_frame_equal(table.to_pandas(), frame.reset_index(drop=True))
