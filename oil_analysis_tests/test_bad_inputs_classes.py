"""The bad-input suite, one test per class of failure (issue 15): each asserts the error text, the
record written (reject ledger row, quarantine reason, intake warning or repair), and that every good
sample of the same run reached gold.

Each test that runs the graph adds a line to the suite report (``OIL_BAD_INPUT_REPORT``: good
samples expected, good samples lost), read by ``python -m oil_analysis_tests.bad_input_report``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pathlib
import re
import shutil
import zipfile

import pandas as pd
import pytest
from dagster import DagsterInstance, materialize
from python_calamine import CalamineWorkbook

from oil_analysis.definitions import all_assets, build_resources
from oil_analysis.domain.clients import load_clients
from oil_analysis.domain.labs import LAB_FORMATS
from oil_analysis.pipeline.bronze import ReaderLimits, ingest_client
from oil_analysis.storage import manifest
from oil_analysis.storage.filesystem import FileEntry, Storage

from .builders import als_frame, finning_row, write_finning

SHARED = pathlib.Path(__file__).resolve().parents[1].parent.parent / "shared" / "data" / "finning"
if not SHARED.exists():
    SHARED = pathlib.Path("/work/shared/data/finning")
CDA = load_clients()["cda"]


def rows(prefix: int, n: int = 5, **first) -> list[dict]:
    out = [
        finning_row(i, **{"No. de control de laboratorio": f"R{prefix:03d}-00000-{i:04d}"}) for i in range(n)
    ]
    out[0].update(first)
    return out


def ids(prefix: int, n: int = 5) -> set[str]:
    return {f"R{prefix:03d}-00000-{i:04d}" for i in range(n)}


def report(case: str, expected: set[str], gold: set[str]) -> None:
    """Append this case's good-sample figures to the suite report (when one is being collected)."""
    path = os.environ.get("OIL_BAD_INPUT_REPORT")
    lost = sorted(expected - gold)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"case": case, "good": len(expected), "lost": len(lost)}) + "\n")
    assert not lost, f"good samples lost: {lost[:10]}"


def run(root: pathlib.Path, client: str = "cda", *, raise_on_error: bool = True):
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            all_assets,
            partition_key=client,
            instance=instance,
            resources=build_resources(str(root)),
            raise_on_error=raise_on_error,
        )
        mats = {
            e.asset_key.path[-1]: e.step_materialization_data.materialization.metadata
            for e in result.get_asset_materialization_events()
        }
        failures = [e.event_specific_data.error.message for e in result.all_events if e.is_step_failure]
        return result.success, mats, failures


def gold(root: pathlib.Path, client: str = "cda") -> pd.DataFrame:
    return pd.read_parquet(root / f"gold/{client}/classified_reports.parquet")


def ledger(root: pathlib.Path, client: str = "cda") -> pd.DataFrame:
    return pd.read_parquet(root / f"silver/rejects/{client}.parquet")


def patch_sheet(path: pathlib.Path, replace: dict[str, str], *, dimension: str | None = None) -> None:
    """Rewrite the first sheet's XML: ``<v>old</v>`` → ``<v>new</v>`` (values openpyxl cannot write)."""
    with zipfile.ZipFile(path) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    xml = parts["xl/worksheets/sheet1.xml"].decode()
    for old, new in replace.items():
        xml = xml.replace(f"<v>{old}</v>", f"<v>{new}</v>")
    if dimension:
        xml = re.sub(r'<dimension ref="[^"]*"', f'<dimension ref="{dimension}"', xml)
    parts["xl/worksheets/sheet1.xml"] = xml.encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in parts.items():
            z.writestr(n, d)


@pytest.fixture
def root(tmp_path) -> pathlib.Path:
    r = tmp_path / "data"
    (r / "bronze/cda").mkdir(parents=True)
    return r


# --- class 1: one bad cell never rejects a sample; "not determined" means the same everywhere ----


def test_class01_bad_cell_is_cleared_and_not_determined_markers_are_no_value(root):
    d = root / "bronze/cda"
    markers = ["N/D", "ND", "<LD", "n/a", "--"]
    bad = rows(1, 6)
    for i, m in enumerate(markers):
        bad[i]["Cu"] = m
    bad[5]["ISO"] = "ZZ-9?"
    write_finning(d / "cells.xlsx", bad)
    ok, _, _ = run(root)
    assert ok
    g = gold(root).set_index("sampleNumber")
    assert ids(1, 6) <= set(g.index)
    assert g.loc[sorted(ids(1, 6))[:5], "cu"].isna().all()
    rej = ledger(root)
    iso = rej[rej["column"] == "ISO"].iloc[0]
    assert iso["action"] == "cell cleared" and iso["value"] == "ZZ-9?" and int(iso["row"]) == 8
    assert "expected an ISO 4406 code" in iso["reason"] and iso["sampleNumber"] == "R001-00000-0005"
    assert not (rej["column"] == "Cu").any()  # markers are "not determined", not errors
    assert g.loc["R001-00000-0005", "cellsCleared"] == 1 and g.loc["R001-00000-0000", "cellsCleared"] == 0
    # the ALS reader reads the same markers the same way
    from oil_analysis.domain.labs.als import read_als_parquet

    path = root / "als.parquet"
    als_frame(
        [{"sampleNumber": f"S{i}", "tests": [("Hierro", m), ("Silicio", "4")]} for i, m in enumerate(markers)]
    ).to_parquet(path)
    res = read_als_parquet(str(path))
    assert len(res.samples) == 5 and res.samples["fe"].isna().all() and len(res.rejects) == 0
    report("class01_cells", ids(1, 6), set(g.index))


# --- class 2: Excel error cells are cell rejects ------------------------------------------------


def test_class02_excel_error_cells_are_recorded(root):
    write_finning(root / "bronze/cda/errors.xlsx", rows(2, 5, Fe="#N/A", Si="#DIV/0!", V100="#VALUE!"))
    ok, _, _ = run(root)
    assert ok
    rej = ledger(root)
    mine = rej[rej["sampleNumber"] == "R002-00000-0000"].set_index("column")
    assert mine.loc["Fe", "reason"] == "Excel error cell #N/A; cell cleared, sample kept"
    assert "Excel error cell #DIV/0!" in mine.loc["Si", "reason"]
    assert "Excel error cell #VALUE!" in mine.loc["V100", "reason"]
    assert (mine["action"] == "cell cleared").all() and (mine["sheet"] == "OIL").all()
    g = gold(root).set_index("sampleNumber")
    assert g.loc["R002-00000-0000", "cellsCleared"] >= 3
    report("class02_excel_errors", ids(2), set(g.index))


# --- class 3: dates --------------------------------------------------------------------------


def test_class03_day_first_text_dates_and_implausible_dates(root):
    col = "Fecha de Toma de Muestra"
    good = rows(3, 6)
    good[0][col], good[1][col], good[2][col] = "15/01/2024", "15-01-2024", "15/01/2024 08:30"
    write_finning(root / "bronze/cda/text_dates.xlsx", good)
    bad = rows(4, 6)
    bad[0][col], bad[1][col], bad[2][col] = "01/01/1800", dt.datetime(1900, 1, 1), dt.datetime(2030, 1, 1)
    write_finning(root / "bronze/cda/bad_dates.xlsx", bad)
    ok, _, _ = run(root)
    assert ok
    g = gold(root).set_index("sampleNumber")
    assert (
        g.loc[[f"R003-00000-000{i}" for i in range(3)], "sampleDate"].dt.date == dt.date(2024, 1, 15)
    ).all()
    rej = ledger(root).set_index("sampleNumber")
    assert "before 1990-01-01" in rej.loc["R004-00000-0000", "reason"]
    assert "before 1990-01-01" in rej.loc["R004-00000-0001", "reason"]
    assert "(in the future)" in rej.loc["R004-00000-0002", "reason"]
    assert (rej.loc[[f"R004-00000-000{i}" for i in range(3)], "action"] == "sample rejected").all()
    assert not {f"R004-00000-000{i}" for i in range(3)} & set(g.index)
    good_ids = ids(3, 6) | {f"R004-00000-000{i}" for i in range(3, 6)}
    report("class03_dates", good_ids, set(g.index))


# --- class 4: non-finite and impossible numbers --------------------------------------------------


def test_class04_non_finite_and_impossible_numbers_are_cleared_and_the_run_succeeds(root):
    path = write_finning(
        root / "bronze/cda/numbers.xlsx", rows(5, 6, Fe=111111.25, Si=222222.25, Cu=333333.25)
    )
    patch_sheet(path, {"111111.25": "1e308", "222222.25": "9" * 400, "333333.25": "2000000"})
    ok, mats, _ = run(root)
    assert ok, "a huge or non-finite value must never fail the run"
    rej = ledger(root)
    mine = rej[rej["sampleNumber"] == "R005-00000-0000"].set_index("column")
    assert "physical range [0, 100000]" in mine.loc["fe", "reason"]
    assert "not a finite number" in mine.loc["Si", "reason"] or "physical range" in mine.loc["si", "reason"]
    assert "physical range [0, 100000]" in mine.loc["cu", "reason"]
    g = gold(root).set_index("sampleNumber")
    assert g.loc["R005-00000-0000", ["fe", "si", "cu"]].isna().all()
    assert g.loc["R005-00000-0000", "cellsCleared"] >= 3  # Si is two copies in the sheet: two cells
    json.dumps(mats["silver_harmonized"]["reject_reasons"].value)
    report("class04_numbers", ids(5, 6), set(g.index))


# --- class 5: resource bombs and parser crashes ------------------------------------------------


def _zip_bomb(path: pathlib.Path, inflated_mb: int) -> None:
    """A workbook whose sheet XML inflates to ``inflated_mb`` MB of valid-looking rows."""
    write_finning(path, rows(99, 2))
    with zipfile.ZipFile(path) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    head = b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
    row = b'<row r="3"><c r="A3" t="inlineStr"><is><t>x</t></is></c></row>' + b" " * 4000
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for n, d in parts.items():
            if n != "xl/worksheets/sheet1.xml":
                z.writestr(n, d)
        with z.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as f:
            f.write(head)
            block = row * 256
            for _ in range(inflated_mb * 1024 * 1024 // len(block)):
                f.write(block)
            f.write(b"</sheetData></worksheet>")


def test_class05_zip_bomb_and_far_cell_quarantined_others_published(root):
    d = root / "bronze/cda"
    write_finning(d / "good.xlsx", rows(6, 6))
    _zip_bomb(d / "bomb.xlsx", 483)
    assert (d / "bomb.xlsx").stat().st_size < 3_000_000
    far = write_finning(d / "far_cell.xlsx", rows(7, 3, Horas=424242.5))
    patch_sheet(far, {}, dimension="A1:XFD1048576")
    lying = write_finning(d / "lying_dimension.xlsx", rows(8, 3))
    with zipfile.ZipFile(lying) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    parts["xl/worksheets/sheet1.xml"] = parts["xl/worksheets/sheet1.xml"].replace(
        b"</sheetData>", b'<row r="1048576"><c r="XFD1048576"><v>1</v></c></row></sheetData>'
    )
    with zipfile.ZipFile(lying, "w", zipfile.ZIP_DEFLATED) as z:
        for n, data in parts.items():
            z.writestr(n, data)
    ok, mats, _ = run(root)
    assert ok
    q = root / "bronze/_quarantine/cda"
    assert "inflates to 50" in json.loads((q / "bomb.xlsx.reason.json").read_text())["error"]
    assert "OIL_MAX_SHEET_XML_MB" in json.loads((q / "bomb.xlsx.reason.json").read_text())["error"]
    assert (
        "declares the dimension A1:XFD1048576"
        in json.loads((q / "far_cell.xlsx.reason.json").read_text())["error"]
    )
    lie = json.loads((q / "lying_dimension.xlsx.reason.json").read_text())
    assert "reaches row 1,048,576 and column 16,384" in lie["error"] and lie["sheet"] == "OIL"
    report("class05_bombs", ids(6, 6), set(gold(root)["sampleNumber"]))


def _aborting_reader(path, tz, **limits):
    if path.endswith("crash.xlsx"):
        os.abort()  # what python-calamine does on an allocation failure
    if path.endswith("hog.xlsx"):
        blocks = []
        while True:  # allocates until the memory budget stops it
            blocks.append(bytearray(64 * 1024 * 1024))
    return LAB_FORMATS_ORIGINAL(path, tz, **limits)


LAB_FORMATS_ORIGINAL = LAB_FORMATS["finning_xlsx"][1]


def test_class05_parser_crash_quarantines_only_that_file(root, monkeypatch):
    d = root / "bronze/cda"
    for name, prefix in (("a.xlsx", 9), ("crash.xlsx", 90), ("hog.xlsx", 91), ("b.xlsx", 10)):
        write_finning(d / name, rows(prefix, 4))
    monkeypatch.setitem(LAB_FORMATS, "finning_xlsx", ((".xlsx",), _aborting_reader))
    batch = ingest_client(Storage.local(str(root)), CDA, workers=2, limits=ReaderLimits(memory_mb=256))
    reg = batch.registry.set_index("key")
    assert reg.loc["bronze/cda/crash.xlsx", "status"] == "quarantined"
    assert "died of SIGABRT" in reg.loc["bronze/cda/crash.xlsx", "reason"]
    assert reg.loc["bronze/cda/hog.xlsx", "status"] == "quarantined"
    assert (
        "memory" in reg.loc["bronze/cda/hog.xlsx", "reason"]
        or "died of" in reg.loc["bronze/cda/hog.xlsx", "reason"]
    )
    assert (reg.loc[["bronze/cda/a.xlsx", "bronze/cda/b.xlsx"], "status"] == "ok").all()
    assert (root / "bronze/_quarantine/cda/crash.xlsx.reason.json").exists()


# --- class 6: quarantine keeps the relative path -------------------------------------------------


def test_class06_same_name_in_two_folders_two_quarantine_entries(root):
    d = root / "bronze/cda"
    for sub in ("2024", "2025"):
        (d / sub).mkdir()
        (d / sub / "broken.xlsx").write_bytes(b"PK\x03\x04 not a workbook " + sub.encode())
    write_finning(d / "good.xlsx", rows(11))
    ok, _, _ = run(root)
    assert ok
    q = root / "bronze/_quarantine/cda"
    for sub in ("2024", "2025"):
        assert (q / sub / "broken.xlsx").read_bytes().endswith(sub.encode())
        reason = json.loads((q / sub / "broken.xlsx.reason.json").read_text())
        assert (
            reason["source_key"] == f"bronze/cda/{sub}/broken.xlsx"
            and "not a readable .xlsx" in reason["error"]
        )
    report("class06_quarantine", ids(11), set(gold(root)["sampleNumber"]))


# --- class 7: symlinks -------------------------------------------------------------------------


def test_class07_symlinks_never_leave_the_root_nor_loop(root, tmp_path):
    d = root / "bronze/cda"
    write_finning(d / "real/good.xlsx", rows(12))
    outside = tmp_path / "outside"
    write_finning(outside / "secret.xlsx", rows(13))
    (outside / "junk.xlsx").write_bytes(b"not a workbook")
    (d / "secret.xlsx").symlink_to(outside / "secret.xlsx")
    (d / "outdir").symlink_to(outside, target_is_directory=True)
    (d / "real/loop").symlink_to(d, target_is_directory=True)
    (d / "alias.xlsx").symlink_to(d / "real/good.xlsx")  # inside the root: followed, same content
    ok, mats, _ = run(root)
    assert ok
    reg = pd.read_parquet(root / "bronze/_registry/cda/registry.parquet")
    assert sorted(reg["key"]) == ["bronze/cda/alias.xlsx", "bronze/cda/real/good.xlsx"]
    warnings = mats["bronze_lab_files"]["intake_warnings"].value
    assert any("secret.xlsx: symlink out of the data root" in w for w in warnings)
    assert any("outdir: symlink out of the data root" in w for w in warnings)
    assert any("loop: symlink to a folder already listed" in w for w in warnings)
    assert not (root / "bronze/_quarantine").exists() or not any(
        (root / "bronze/_quarantine").rglob("*junk*")
    )
    g = set(gold(root)["sampleNumber"])
    assert not ids(13) & g
    report("class07_symlinks", ids(12), g)


# --- class 8: a file that vanishes ----------------------------------------------------------------


def test_class08_vanished_file_skipped_with_warning(root, monkeypatch):
    write_finning(root / "bronze/cda/good.xlsx", rows(14))
    store = Storage.local(str(root))
    real = Storage.list_files

    def listing(self, prefix, skipped=None):
        out = real(self, prefix, skipped)
        return out + [FileEntry("bronze/cda/gone.xlsx", 1000, 1)] if prefix.startswith("bronze/cda") else out

    monkeypatch.setattr(Storage, "list_files", listing)
    batch = ingest_client(store, CDA, workers=1)
    assert "skipped bronze/cda/gone.xlsx: the file vanished between listing and reading" in batch.warnings
    assert list(batch.registry["key"]) == ["bronze/cda/good.xlsx"]
    ok, mats, _ = run(root)
    assert ok and any("vanished" in w for w in mats["bronze_lab_files"]["intake_warnings"].value)
    report("class08_vanished", ids(14), set(gold(root)["sampleNumber"]))


# --- class 9: interrupted writes --------------------------------------------------------------------


def test_class09_stale_temps_removed_and_unwritable_folder_publishes_nothing(root):
    write_finning(root / "bronze/cda/first.xlsx", rows(15))
    ok, _, _ = run(root)
    assert ok
    stale = [root / "gold/cda/.tmp-abc123", root / "silver/harmonized/.tmp-CDA.parquet.x1y2"]
    for p in stale:
        p.write_bytes(b"half a write")
    other = root / "silver/harmonized/.tmp-EMIN.parquet.zz"  # another client's write in flight
    other.write_bytes(b"theirs")
    write_finning(root / "bronze/cda/second.xlsx", rows(16))
    ok, mats, _ = run(root)
    assert ok and not any(p.exists() for p in stale) and other.exists()
    assert "gold/cda/.tmp-abc123" in mats["bronze_lab_files"]["stale_temps_removed"].value
    before = {
        p: p.read_bytes()
        for p in [
            root / "silver/harmonized/CDA.parquet",
            root / "gold/cda/classified_reports.parquet",
            root / "gold/cda/_manifest.json",
        ]
    }
    # A file where a folder must be: fails for root too (chmod would not). The change logs removed
    # here are published files: the manifest lists the latest one, which verify reports as missing.
    listed = manifest.read_manifest(Storage.local(str(root)), "cda")["files"]
    removed_logs = [f"missing: {f['path']}" for f in listed if f["path"].startswith("gold/cda/_changes/")]
    assert len(removed_logs) == 1
    shutil.rmtree(root / "gold/cda/_changes")
    (root / "gold/cda/_changes").write_bytes(b"in the way")
    write_finning(root / "bronze/cda/third.xlsx", rows(17))
    ok, _, failures = run(root, raise_on_error=False)
    assert not ok and any("gold/cda/_changes" in f and "Nothing was published" in f for f in failures)
    assert all(p.read_bytes() == data for p, data in before.items())
    assert manifest.verify(Storage.local(str(root)), "cda") == removed_logs
    (root / "gold/cda/_changes").unlink()
    ok, _, _ = run(root)
    assert ok
    report("class09_interrupted", ids(15) | ids(16) | ids(17), set(gold(root)["sampleNumber"]))


# --- class 10: corrupt internal state ---------------------------------------------------------------


def test_class10_corrupt_state_reported_and_rebuilt(root):
    write_finning(root / "bronze/cda/first.xlsx", rows(18))
    ok, _, _ = run(root)
    assert ok
    damaged = {
        "bronze/_registry/cda/registry.parquet": b"PAR1 garbage",
        "silver/_state/cda/files.json": b"{not json",
        "silver/stewart_limits/cda/latest.json": b"\x00\x01",
        "gold/cda/_manifest.parts/limit_quality.json": b"[truncated",
    }
    for rel, data in damaged.items():
        (root / rel).write_bytes(data)
    write_finning(root / "bronze/cda/second.xlsx", rows(19))
    ok, mats, _ = run(root)
    assert ok
    repairs = (
        mats["bronze_lab_files"]["state_repairs"].value
        + mats["silver_harmonized"]["state_repairs"].value
        + mats["stewart_limits"]["state_repairs"].value
    )
    repaired = (
        " ".join(r["path"] for r in repairs)
        + " "
        + " ".join(json.dumps(m["manifest_repairs"].value) for m in mats.values() if "manifest_repairs" in m)
    )
    for rel in damaged:
        assert rel in repaired, rel
    assert json.loads((root / "silver/stewart_limits/cda/latest.json").read_text())["version"]
    assert manifest.verify(Storage.local(str(root)), "cda") == []
    report("class10_state", ids(18) | ids(19), set(gold(root)["sampleNumber"]))


# --- class 11: types that change meaning ---------------------------------------------------------------


def test_class11_numeric_ids_and_epoch_dates_keep_their_meaning(root):
    d = root / "bronze/emin"
    d.mkdir(parents=True)
    samples = [
        {"sampleNumber": f"22100225{i:02d}", "tests": [("Hierro", "5"), ("Silicio", "7")]} for i in range(6)
    ]
    frame = als_frame(samples)
    frame["sampleNumber"] = frame["sampleNumber"].astype("float64")  # 2210022500.0
    ms = int(pd.Timestamp("2024-05-02 04:00", tz="UTC").timestamp() * 1000)
    frame["collectionData_dateSampled"] = ms
    frame.to_parquet(d / "numeric.parquet", index=False)
    seconds = als_frame([{"sampleNumber": "2210099999", "tests": [("Hierro", "3")]}])
    seconds["sampleNumber"] = seconds["sampleNumber"].astype("int64")
    seconds["collectionData_dateSampled"] = ms // 1000
    seconds.to_parquet(d / "seconds.parquet", index=False)
    ok, _, _ = run(root, "emin")
    assert ok
    g = gold(root, "emin").set_index("sampleNumber")
    expected = {f"22100225{i:02d}" for i in range(6)} | {"2210099999"}
    assert expected <= set(g.index)
    assert not any(s.endswith(".0") for s in g.index)
    assert (g.loc[sorted(expected), "sampleDate"].dt.date == dt.date(2024, 5, 2)).all()
    report("class11_types", expected, set(g.index))


# --- the real trucks and the real-world particle codes ------------------------------------------------


def _oil_samples(path: pathlib.Path) -> int:
    """Oil samples of a workbook counted from the raw sheet: rows with a lab control number."""
    sheet = CalamineWorkbook.from_path(str(path)).get_sheet_by_name("OIL").to_python()
    col = [str(h).strip() for h in sheet[0]].index("No. de control de laboratorio")
    return sum(1 for r in sheet[1:] if col < len(r) and str(r[col]).strip())


@pytest.mark.skipif(not SHARED.exists(), reason="the shared real workbooks are not here")
def test_real_trucks_one_gold_row_per_oil_sample(root):
    expected = 0
    for name in ("T-09.xlsx", "T-10.xlsx", "T-11.xlsx"):
        shutil.copy(SHARED / name, root / "bronze/cda" / name)
        expected += _oil_samples(SHARED / name)
    ok, _, _ = run(root)
    assert ok
    g = gold(root)
    assert len(g) == expected and g["sampleNumber"].is_unique
    assert (g["cellsCleared"] == 0).all()


def test_real_world_particle_codes_reach_gold(root):
    r = rows(20, 4)
    r[0].update(ISO="H2O/E", W="E", Interpretacion="ATENDER URGENTE: agua en exceso")
    r[1].update(ISO="N", Fe=180, Interpretacion="HIERRO ALTO")
    write_finning(root / "bronze/cda/codes.xlsx", r)
    ok, _, _ = run(root)
    assert ok
    g = gold(root).set_index("sampleNumber")
    water, iron = g.loc["R020-00000-0000"], g.loc["R020-00000-0001"]
    assert water["particleCode"] == "H2O/E" and bool(water["countPreventedByWater"])
    assert iron["particleCode"] == "N" and iron["debris_magnetic"] == 0 and iron["fe"] == 180
    assert water["cellsCleared"] == 0 and iron["cellsCleared"] == 0
    assert not len(ledger(root))
    report("real_world_codes", ids(20, 4), set(g.index))


def test_class09_failed_write_inside_an_output_restores_its_files(tmp_path):
    """A write that fails after some files of an output were written (here: the manifest part, with
    a file where its folder should be) puts every file of the output back as it was."""
    from dagster import AssetKey, build_output_context

    from oil_analysis.resources.io_manager import LayoutIOManager
    from oil_analysis.resources.storage import StorageResource
    from oil_analysis.storage.publication import PublicationError

    io_manager = LayoutIOManager(storage=StorageResource(data_root=str(tmp_path)))
    ctx = build_output_context(asset_key=AssetKey("limit_quality"), partition_key="cda")
    first = pd.DataFrame({"essay": ["fe"], "samples": [1]})
    io_manager.handle_output(ctx, first)
    path = tmp_path / "gold/cda/limit_quality.parquet"
    before = path.read_bytes()
    shutil.rmtree(tmp_path / "gold/cda/_manifest.parts")
    (tmp_path / "gold/cda/_manifest.parts").write_bytes(b"in the way")
    with pytest.raises(PublicationError, match="files restored to their previous version"):
        io_manager.handle_output(ctx, pd.DataFrame({"essay": ["fe", "si"], "samples": [1, 2]}))
    assert path.read_bytes() == before
