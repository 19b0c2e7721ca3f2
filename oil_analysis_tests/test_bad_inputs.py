"""Bad inputs lose nothing: each is caught, explained (file, sheet, row, column) and contained.

One run of the whole graph per client over a bronze folder holding good files and every kind of bad
file at once; each case then asserts its error text, its quarantine or reject record, and that every
good sample of the same run reached gold.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib

import pandas as pd
import pytest
from dagster import DagsterInstance, materialize

from oil_analysis.definitions import all_assets, build_resources
from oil_analysis.domain.clients import load_clients
from oil_analysis.storage.filesystem import Storage, UnsafePathError, check_relative

from .builders import FINNING_HEADER, als_frame, finning_row, write_finning
from .test_bad_inputs_classes import report

GOOD_ROWS = 6


def rows(prefix: int, n: int = GOOD_ROWS, **bad) -> list[dict]:
    """``n`` good rows with sample numbers unique to the file (prefix), the first one made bad."""
    out = [
        finning_row(i, **{"No. de control de laboratorio": f"R{prefix:03d}-00000-{i:04d}"}) for i in range(n)
    ]
    out[0].update(bad)
    return out


def good_ids(prefix: int, n: int = GOOD_ROWS, skip_first: bool = True) -> list[str]:
    return [f"R{prefix:03d}-00000-{i:04d}" for i in range(1 if skip_first else 0, n)]


# case → (file name, what the quarantine reason or reject must say)
QUARANTINED = {
    "corrupt_xlsx": ("corrupt.xlsx", "not a readable .xlsx workbook"),
    "no_oil_sheet": ("no_oil_sheet.xlsx", "no sheet 'OIL'"),
    "missing_required_column": (
        "missing_column.xlsx",
        "required column missing; expected a header named 'Compartimento'",
    ),
    "renamed_column": ("renamed_column.xlsx", "expected a header named 'Fecha de Toma de Muestra'"),
    "empty_workbook": ("empty_workbook.xlsx", "no sample rows below the header"),
    "blank_sheet": ("blank_sheet.xlsx", "the sheet is empty; expected a header row"),
    "zero_byte_object": ("zero_byte.xlsx", "the file is empty (0 bytes)"),
    "over_size_limit": ("too_big.xlsx", "over the 0.5 MB limit"),
    "wrong_lab_format": ("export.parquet", "wrong lab format for client 'cda'"),
    "stops_mid_stream": ("truncated.xlsx", "not a readable .xlsx workbook"),
}
# case → (file name, file prefix, column named in the reject, reason text, sample kept?)
# Only an invalid identity (sample number, date, unit, component) rejects a sample; any other bad
# cell is cleared and recorded, and the sample reaches gold.
REJECTED = {
    "text_in_numeric_cell": (
        "text_cell.xlsx",
        11,
        "Fe",
        "expected a number; cell cleared, sample kept",
        True,
    ),
    "negative_value": (
        "negative.xlsx",
        12,
        "fe",
        "outside the physical range [0, 100000]; cell cleared, sample kept",
        True,
    ),
    "future_date": ("future.xlsx", 13, "sampleDate", "(in the future)", False),
    "unparseable_date": ("bad_date.xlsx", 14, "Fecha de Toma de Muestra", "expected a date", False),
    "missing_sample_number": (
        "no_id.xlsx",
        15,
        "No. de control de laboratorio",
        "sample number is empty",
        False,
    ),
    "unknown_flag_letter": ("bad_flag.xlsx", 16, "W", "expected a flag letter N, T, P or E", True),
    "unknown_particle_code": ("bad_iso.xlsx", 17, "ISO", "expected an ISO 4406 code", True),
    "every_value_empty": ("all_empty.xlsx", 18, "(all essays)", "sample has no measured value", False),
    "repeated_column_disagrees": ("repeated.xlsx", 19, "Fe.1", "repeated column disagrees with 'Fe'", True),
}
ESSAY_COLUMNS = ("Fe", "Si", "Cu", "V100", "W", "F", "ISO", "PQI")


def build_cda(bronze: pathlib.Path) -> None:
    d = bronze / "cda"
    write_finning(d / "2024-01-01/T-01.xlsx", rows(10, 30), coolant_rows=3)
    (d / "corrupt.xlsx").write_bytes(b"PK\x03\x04\x14\x00 definitely not a workbook")
    write_finning(d / "no_oil_sheet.xlsx", rows(20), sheet="RESULTADOS")
    write_finning(
        d / "missing_column.xlsx", rows(21), header=[h for h in FINNING_HEADER if h != "Compartimento"]
    )
    renamed = ["Fecha Muestra" if h == "Fecha de Toma de Muestra" else h for h in FINNING_HEADER]
    write_finning(d / "renamed_column.xlsx", rows(22), header=renamed)
    write_finning(d / "empty_workbook.xlsx", [])
    write_finning(d / "blank_sheet.xlsx", [], header=[""])
    (d / "zero_byte.xlsx").write_bytes(b"")
    (d / "too_big.xlsx").write_bytes(b"\x00" * 700_000)
    pd.DataFrame({"a": [1]}).to_parquet(d / "export.parquet")
    whole = write_finning(d / "whole.xlsx.tmp", rows(23)).read_bytes()
    (d / "truncated.xlsx").write_bytes(whole[: len(whole) // 2])
    (d / "whole.xlsx.tmp").unlink()
    write_finning(d / "text_cell.xlsx", rows(11, Fe="abc"))
    write_finning(d / "negative.xlsx", rows(12, Fe=-5))
    write_finning(d / "future.xlsx", rows(13, **{"Fecha de Toma de Muestra": dt.datetime(2030, 1, 1)}))
    write_finning(d / "bad_date.xlsx", rows(14, **{"Fecha de Toma de Muestra": "31/31/2024"}))
    write_finning(d / "no_id.xlsx", rows(15, **{"No. de control de laboratorio": None}))
    write_finning(d / "bad_flag.xlsx", rows(16, W="Z"))
    write_finning(d / "bad_iso.xlsx", rows(17, ISO="??"))
    write_finning(d / "all_empty.xlsx", rows(18, **{c: None for c in ESSAY_COLUMNS}))
    repeated = FINNING_HEADER + ["Fe"]
    bad_rep = rows(19)
    for r in bad_rep:
        r["Fe.1"] = r["Fe"]
    bad_rep[0]["Fe.1"] = 999
    write_finning(d / "repeated.xlsx", bad_rep, header=repeated, dup_keys=True)
    # The same sample in two files with different values: one copy wins, the other is a reject.
    write_finning(
        d / "dup_a.xlsx", rows(30, **{"No. de control de laboratorio": "R999-00000-0001", "Fe": 10})
    )
    write_finning(
        d / "dup_b.xlsx", rows(31, **{"No. de control de laboratorio": "R999-00000-0001", "Fe": 70})
    )
    # BOM, stray spaces and NFC accents in headers are read like the clean header.
    bom = ["\ufeff" + h if h == "Estado" else (h + "  " if h == "Fe" else h) for h in FINNING_HEADER]
    write_finning(d / "bom_header.xlsx", rows(40), header=bom, keys=FINNING_HEADER)
    # An unregistered client folder is never read.
    write_finning(bronze / "acme" / "T-99.xlsx", rows(50))


def build_emin(bronze: pathlib.Path) -> None:
    d = bronze / "emin"
    d.mkdir(parents=True, exist_ok=True)
    samples = [
        {"sampleNumber": f"2400{i:06d}", "tests": [("Hierro", str(5 + i % 7)), ("Silicio", "9")]}
        for i in range(40)
    ]
    als_frame(samples).to_parquet(d / "good.parquet", index=False)
    wrong_types = als_frame(samples[:3])
    for c in [c for c in wrong_types.columns if c.endswith("_test_translation_name")]:
        wrong_types[c] = 7
    wrong_types.to_parquet(d / "wrong_types.parquet", index=False)
    rep = [
        {"sampleNumber": "2500000001", "tests": [("Hierro", "3"), ("Hierro", "30")]},
        {"sampleNumber": "2500000002", "tests": [("Hierro", "4")]},
    ]
    als_frame(rep).to_parquet(d / "repeated_test.parquet", index=False)
    whole = als_frame(samples[:5])
    whole.to_parquet(d / "whole.tmp", index=False)
    data = (d / "whole.tmp").read_bytes()
    (d / "whole.tmp").unlink()
    (d / "cut.parquet").write_bytes(data[: len(data) // 2])
    als_frame(samples[:2]).drop(columns=["equipment_tag"]).to_parquet(d / "no_tag.parquet", index=False)
    write_finning(d / "lab_sheet.xlsx", rows(60))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad") / "data"
    build_cda(root / "bronze")
    build_emin(root / "bronze")
    mp = pytest.MonkeyPatch()
    mp.setenv("OIL_MAX_RAW_FILE_MB", "0.5")
    out = {}
    try:
        with DagsterInstance.ephemeral() as instance:
            for client in ("cda", "emin"):
                result = materialize(
                    all_assets, partition_key=client, instance=instance, resources=build_resources(str(root))
                )
                assert result.success, client
                out[client] = {
                    e.asset_key.path[-1]: e.step_materialization_data.materialization.metadata
                    for e in result.get_asset_materialization_events()
                }
    finally:
        mp.undo()
    return root, out


def _reason(root, client, name) -> dict:
    return json.loads((root / f"bronze/_quarantine/{client}/{name}.reason.json").read_text())


def _gold(root, client) -> set[str]:
    return set(pd.read_parquet(root / f"gold/{client}/classified_reports.parquet")["sampleNumber"])


def _rejects(root, client) -> pd.DataFrame:
    return pd.read_parquet(root / f"silver/rejects/{client}.parquet")


def test_good_files_reach_gold_despite_bad_neighbours(runs):
    root, _ = runs
    gold = _gold(root, "cda")
    assert set(good_ids(10, 30, skip_first=False)) <= gold
    assert set(good_ids(40, skip_first=False)) <= gold  # BOM header file read like a clean one
    assert set(f"2400{i:06d}" for i in range(40)) <= _gold(root, "emin")
    expected = set(good_ids(10, 30, skip_first=False)) | set(good_ids(40, skip_first=False))
    for _, prefix, _, _, kept in REJECTED.values():  # every other sample of a file with a bad row
        expected |= set(good_ids(prefix, skip_first=not kept))
    report("mixed_bad_files_cda", expected, gold)
    report("mixed_bad_files_emin", {f"2400{i:06d}" for i in range(40)}, _gold(root, "emin"))


@pytest.mark.parametrize("case", sorted(QUARANTINED))
def test_bad_file_quarantined_with_reason(runs, case):
    root, _ = runs
    name, text = QUARANTINED[case]
    reason = _reason(root, "cda", name)
    assert text in reason["error"]
    assert reason["file"] == name and reason["client"] == "cda" and reason["source_key"].endswith(name)
    registry = pd.read_parquet(root / "bronze/_registry/cda/registry.parquet").set_index("key")
    assert registry.loc[f"bronze/cda/{name}", "status"] == "quarantined"
    if case != "over_size_limit":  # too big to duplicate: the reason names it, the copy is skipped
        assert (root / f"bronze/_quarantine/cda/{name}").exists()


def test_quarantine_reasons_name_sheet_row_and_column(runs):
    root, _ = runs
    missing = _reason(root, "cda", "missing_column.xlsx")
    assert (missing["sheet"], missing["row"], missing["column"]) == ("OIL", 1, "Compartimento")
    no_sheet = _reason(root, "cda", "no_oil_sheet.xlsx")
    assert no_sheet["sheet"] == "OIL" and "RESULTADOS" in no_sheet["error"]


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_bad_row_rejected_with_file_row_column_and_rest_of_file_kept(runs, case):
    root, _ = runs
    name, prefix, column, text, kept = REJECTED[case]
    rej = _rejects(root, "cda")
    mine = rej[rej["file"].str.endswith(name)]
    assert set(mine["column"]) <= {column, f"{column}.1"}, mine  # a repeated column: both copies
    r = mine[mine["column"] == column].iloc[0]
    assert len(mine[mine["column"] == column]) == 1 and text in r["reason"]
    assert r["action"] == ("cell cleared" if kept else "sample rejected")
    assert int(r["row"]) == 3  # the first data row of the sheet (row 2 is the empty one)
    gold = _gold(root, "cda")
    assert set(good_ids(prefix)) <= gold
    first = f"R{prefix:03d}-00000-0000"
    assert (first in gold) == kept


def test_duplicate_sample_with_different_values_keeps_one_and_reports(runs):
    root, _ = runs
    reports = pd.read_parquet(root / "gold/cda/classified_reports.parquet")
    assert (reports["sampleNumber"] == "R999-00000-0001").sum() == 1
    rej = _rejects(root, "cda")
    dup = rej[rej["reason"].str.startswith("duplicate sampleNumber with different values")]
    assert len(dup) == 1 and dup.iloc[0]["value"] == "R999-00000-0001"
    assert set(good_ids(30)) | set(good_ids(31)) <= set(reports["sampleNumber"])


def test_unknown_client_folder_ignored_and_reported(runs):
    root, mats = runs
    assert mats["cda"]["bronze_lab_files"]["unregistered_client_folders"].value == ["acme"]
    assert not (root / "bronze/_registry/acme").exists()
    assert not set(good_ids(50, skip_first=False)) & (_gold(root, "cda") | _gold(root, "emin"))


def test_als_wrong_column_types_quarantined(runs):
    root, _ = runs
    reason = _reason(root, "emin", "wrong_types.parquet")
    assert "expected text test names" in reason["error"] and reason["column"].endswith(
        "_test_translation_name"
    )


def test_als_repeated_test_clears_only_that_value(runs):
    root, _ = runs
    rej = _rejects(root, "emin")
    r = rej[rej["file"].str.endswith("repeated_test.parquet")].iloc[0]
    assert "repeated within the sample" in r["reason"] and "Hierro" in r["column"] and int(r["row"]) == 1
    assert r["action"] == "cell cleared" and r["value"] == "3 | 30"
    gold = pd.read_parquet(root / "gold/emin/classified_reports.parquet").set_index("sampleNumber")
    assert {"2500000002", "2500000001"} <= set(gold.index)
    assert pd.isna(gold.loc["2500000001", "fe"]) and gold.loc["2500000001", "cellsCleared"] == 1


def test_als_truncated_missing_column_and_wrong_format_quarantined(runs):
    root, _ = runs
    assert "not a readable parquet file" in _reason(root, "emin", "cut.parquet")["error"]
    no_tag = _reason(root, "emin", "no_tag.parquet")
    assert no_tag["column"] == "equipment_tag" and "required column missing" in no_tag["error"]
    assert "wrong lab format for client 'emin'" in _reason(root, "emin", "lab_sheet.xlsx")["error"]


def test_reject_counts_in_metadata(runs):
    root, mats = runs
    assert mats["cda"]["silver_harmonized"]["rows_rejected"].value == len(_rejects(root, "cda"))
    assert mats["cda"]["bronze_lab_files"]["files_quarantined"].value == len(QUARANTINED)


def test_path_traversal_rejected(tmp_path):
    for bad in ("../etc/passwd", "bronze/../../x", "/abs/path", "bronze/cda/\x00.xlsx"):
        with pytest.raises(UnsafePathError):
            check_relative(bad)
    store = Storage.local(str(tmp_path))
    with pytest.raises(UnsafePathError):
        store.write_bytes("gold/../../escape.txt", b"x")
    assert not (tmp_path.parent / "escape.txt").exists()


@pytest.mark.parametrize("key", ["../evil", "Upper", "with space", "x" * 33, ""])
def test_client_keys_validated(tmp_path, key):
    reg = tmp_path / "clients.yaml"
    reg.write_text(
        f"clients:\n  - key: '{key}'\n    display_name: X\n    lab_format: finning_xlsx\n"
        "    timezone: America/Santiago\n"
    )
    with pytest.raises(ValueError, match="client"):
        load_clients(str(reg))


def test_unknown_lab_format_in_registry(tmp_path):
    reg = tmp_path / "clients.yaml"
    reg.write_text(
        "clients:\n  - key: acme\n    display_name: X\n    lab_format: csv_dump\n"
        "    timezone: America/Santiago\n"
    )
    with pytest.raises(ValueError, match="unknown lab_format 'csv_dump'"):
        load_clients(str(reg))
