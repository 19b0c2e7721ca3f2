"""A re-sent workbook read through its rows' XML: row elements whose XML (row numbers aside) the
earlier parse read are not read again by python-calamine, and the result is exactly a full parse's
(samples with their dtypes, order and sourceRow; the ledger; every info figure). Workbooks the XML
path cannot prove right (shared strings, formulas, odd XML) are read in full."""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import load_workbook

from oil_analysis.domain.labs.finning import read_finning_workbook
from oil_analysis.domain.labs.xlsx_guard import scan_workbook
from oil_analysis.domain.labs.xlsx_rows import sheet_head, split
from oil_analysis.pipeline.bronze import EarlierParse, EncodedParse

from .builders import finning_row, write_finning
from .conftest import needs_shared, real_workbooks
from .test_resent_workbook import with_fe_copies

COUNTERS = ("rows_reused", "rows_parsed", "sheet_rows_read")


def rows(numbers, **changes) -> list[dict]:
    """Sample rows ``numbers`` (in that order), the copies of Fe/Si agreeing; ``changes``: row
    number → its cells changed."""
    out = []
    for n in numbers:
        row = finning_row(n, **changes.get(f"r{n}", {}))
        out.append(row)
    return with_fe_copies(out)


def write(path: Path, body: list[dict]) -> Path:
    return write_finning(path, body, dup_keys=True, coolant_rows=2)


def stored(result):
    """The row cache as the next run gets it: encoded by bronze, decoded by a parse child."""
    enc = EncodedParse.of(result, "bronze/cda/T-01.xlsx", [])
    notes: list[str] = []
    cache = EarlierParse("bronze/cda/T-01.xlsx", enc.rows, enc.cache).decode(notes)
    assert notes == [] and cache is not None
    return cache


def resend(path: Path, previous) -> tuple:
    """The re-sent file read with the row cache and in full; asserts they are the same."""
    again = read_finning_workbook(str(path), previous=stored(previous))
    full = read_finning_workbook(str(path))
    pd.testing.assert_frame_equal(again.samples, full.samples)
    pd.testing.assert_frame_equal(again.rejects, full.rejects)
    info = {k: v for k, v in again.info.items() if k not in COUNTERS}
    assert info == {k: v for k, v in full.info.items() if k not in COUNTERS}
    assert full.info["sheet_rows_read"] == full.info["rows_read"] + full.info["empty_rows_skipped"]
    return again, full


OLD = list(range(7, -1, -1))  # the lab's order: newest sample first


def test_rows_added_at_the_top_are_the_only_ones_read(tmp_path):
    path = write(tmp_path / "T-01.xlsx", rows(OLD))
    first = read_finning_workbook(str(path))
    write(path, rows([10, 9, 8, *OLD]))
    again, full = resend(path, first)
    assert (again.info["sheet_rows_read"], full.info["sheet_rows_read"]) == (3, 12)
    assert (again.info["rows_reused"], again.info["rows_parsed"]) == (8, 3)
    assert again.samples["sourceRow"].tolist() == list(range(3, 14))
    assert full.info["coolant_samples_ignored"] == 2


def test_rows_added_at_the_bottom_and_an_empty_row_between(tmp_path):
    path = write(tmp_path / "T-01.xlsx", rows(OLD))
    first = read_finning_workbook(str(path))
    body = rows([*OLD, 8, 9])
    body.insert(8, {})  # an empty row between the old and the new rows
    write(path, body)
    again, full = resend(path, first)
    assert again.info["sheet_rows_read"] == 2
    assert full.info["empty_rows_skipped"] == 2  # row 2 and the one between


def test_an_old_row_corrected_and_one_deleted(tmp_path):
    path = write(tmp_path / "T-01.xlsx", rows(OLD))
    first = read_finning_workbook(str(path))
    body = rows([9, 8, *OLD], r3={"Si": 40})
    del body[8]  # sample 1 withdrawn by the lab
    write(path, body)
    again, full = resend(path, first)
    assert again.info["sheet_rows_read"] == 3  # two new rows, the corrected one
    assert (again.info["rows_reused"], again.info["rows_parsed"]) == (6, 3)
    assert full.samples.set_index("sampleNumber").loc["R120-00000-0003", "si"] == 40
    assert "R120-00000-0001" not in set(full.samples["sampleNumber"])


def test_error_cells_in_a_new_row_and_in_old_rows(tmp_path):
    path = write(tmp_path / "T-01.xlsx", rows(OLD, r5={"Fe": "#N/A"}))
    first = read_finning_workbook(str(path))
    assert first.info["excel_error_cells"] == 2  # Fe and its copy
    # A new row with an error cell; an old row that kept its error; one that gets one now.
    write(path, rows([8, *OLD], r8={"Cu": "#DIV/0!"}, r5={"Fe": "#N/A"}, r2={"Horas": "#VALUE!"}))
    again, full = resend(path, first)
    assert again.info["sheet_rows_read"] == 2
    assert full.info["excel_error_cells"] == 4
    where = zip(full.rejects["row"], full.rejects["column"], strict=True)
    reasons = dict(zip(where, full.rejects["reason"], strict=True))
    assert reasons[(3, "Cu")].startswith("Excel error cell #DIV/0!")
    assert reasons[(6, "Fe")].startswith("Excel error cell #N/A")
    assert reasons[(9, "Horas")].startswith("Excel error cell #VALUE!")


def test_a_text_date_changes_the_column_wide_choice_and_every_row_is_read(tmp_path):
    path = write(tmp_path / "T-01.xlsx", rows(OLD))
    first = read_finning_workbook(str(path))
    write(path, rows([8, *OLD], r8={"Fecha de Toma de Muestra": "15/03/2024"}))
    again, full = resend(path, first)
    # The date column is no longer all dates: every row's context changed, all are read again.
    assert (again.info["sheet_rows_read"], again.info["rows_reused"]) == (10, 0)
    assert full.samples.set_index("sampleNumber").loc["R120-00000-0008", "sampleDate"] == pd.Timestamp(
        "2024-03-15"
    )


def styled(path: Path, body: list[dict], date_row: int) -> Path:
    """``body`` written, its ``Horas`` cell of Excel row ``date_row`` formatted as a date."""
    write(path, body)
    wb = load_workbook(path)
    ws = wb["OIL"]
    for r in range(3, ws.max_row + 1):  # the same two styles in every version of the file
        ws.cell(r, 9).number_format = "yyyy-mm-dd" if r == date_row else "0"
    wb.save(path)
    return path


def test_a_style_change_reads_that_row_again(tmp_path):
    path = styled(tmp_path / "T-01.xlsx", rows(OLD), date_row=5)
    first = read_finning_workbook(str(path))
    # One row on top: sample 5's formatted cell moves with it (row 6, its XML unchanged but for the
    # row number); sample 7 (row 4) is formatted now.
    path = styled(path, rows([8, *OLD]), date_row=4)
    wb = load_workbook(path)
    wb["OIL"].cell(6, 9).number_format = "yyyy-mm-dd"
    wb.save(path)
    again, full = resend(path, first)
    assert again.info["sheet_rows_read"] == 2  # the new row and the one whose style changed
    hours = full.samples.set_index("sampleNumber")["machineHours"]
    assert hours.isna().sum() == 2  # a date in the hours column: cleared, recorded
    assert hours.notna().sum() == 7


def rewrite(path: Path, sheet=None, extra: dict[str, bytes] | None = None) -> Path:
    """The workbook with its OIL sheet XML passed through ``sheet`` and ``extra`` parts set."""
    with zipfile.ZipFile(path) as zf:
        parts = {i.filename: zf.read(i) for i in zf.infolist()}
    if sheet is not None:
        parts["xl/worksheets/sheet1.xml"] = sheet(parts["xl/worksheets/sheet1.xml"])
    parts.update(extra or {})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    return path


SST_TYPE = b"application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"
SST_REL = b"http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings"


def shared_strings(path: Path, cells: bool) -> Path:
    """The workbook with a shared-strings part; ``cells``: its text cells refer to it (``t="s"``),
    else they stay inline and the part only holds entries."""
    texts: list[bytes] = []

    def to_shared(xml: bytes) -> bytes:
        def one(m: re.Match) -> bytes:
            texts.append(m.group(3))
            return m.group(1) + m.group(2) + b' t="s"><v>%d</v></c>' % (len(texts) - 1)

        return re.sub(
            rb'(<c r="[A-Z]+[0-9]+")((?: s="[0-9]+")?) t="inlineStr"><is><t>([^<]*)</t></is></c>', one, xml
        )

    with zipfile.ZipFile(path) as zf:
        types, rels = zf.read("[Content_Types].xml"), zf.read("xl/_rels/workbook.xml.rels")
    rewrite(path, to_shared if cells else None)
    entries = b"".join(b"<si><t>%s</t></si>" % t for t in texts or [b"unused"])
    sst = (
        b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="%d" uniqueCount="%d">%s</sst>'
        % (len(texts or [1]), len(texts or [1]), entries)
    )
    types = types.replace(
        b"</Types>", b'<Override PartName="/xl/sharedStrings.xml" ContentType="' + SST_TYPE + b'" /></Types>'
    )
    rels = rels.replace(
        b"</Relationships>",
        b'<Relationship Type="' + SST_REL + b'" Target="sharedStrings.xml" Id="rId99" /></Relationships>',
    )
    return rewrite(
        path,
        extra={"xl/sharedStrings.xml": sst, "[Content_Types].xml": types, "xl/_rels/workbook.xml.rels": rels},
    )


@pytest.mark.parametrize("cells", [True, False], ids=["shared-string cells", "shared-strings part"])
def test_shared_strings_take_the_full_read(tmp_path, cells):
    path = shared_strings(write(tmp_path / "T-01.xlsx", rows(OLD)), cells)
    first = read_finning_workbook(str(path))
    assert first.samples["sampleNumber"].notna().all()  # the workbook reads (through its table)
    shared_strings(write(path, rows([8, *OLD])), cells)
    again, full = resend(path, first)
    assert again.info["sheet_rows_read"] == full.info["sheet_rows_read"] == 10
    assert (again.info["rows_reused"], again.info["rows_parsed"]) == (8, 1)  # the value digests still serve


def test_a_formula_takes_the_full_read(tmp_path):
    path = write(tmp_path / "T-01.xlsx", rows(OLD))
    first = read_finning_workbook(str(path))
    write(path, rows([8, *OLD], r8={"Model": '="789C"'}))
    again, full = resend(path, first)
    assert again.info["sheet_rows_read"] == full.info["sheet_rows_read"] == 10
    assert again.info["rows_reused"] == 8


def test_a_resend_of_a_resend(tmp_path):
    """The row cache of a parse read through the XML serves the next re-send the same way."""
    path = write(tmp_path / "T-01.xlsx", rows(OLD))
    previous = read_finning_workbook(str(path))
    # A first parse keeps the workbook's bytes (its XML is split only when the file comes back);
    # a parse through the XML keeps its rows' keys instead.
    assert previous.row_cache.source is not None and previous.row_cache.xml is None
    months = [
        (rows([9, 8, *OLD]), 2),
        (rows([11, 10, 9, 8, *OLD], r4={"Cu": 3}), 3),  # two new rows, an old one corrected
        (rows([12, 11, 10, 9, 8, *OLD], r4={"Cu": 3}), 1),
    ]
    for body, read in months:
        write(path, body)
        again, _ = resend(path, previous)
        assert again.info["sheet_rows_read"] == read
        assert again.row_cache.xml is not None and again.row_cache.source is None
        previous = again


BAD_XML = {
    "a cell outside its row": lambda x: x.replace(b'<c r="E5"', b'<c r="E6"', 1),
    "CDATA": lambda x: x.replace(b"<t>T-01</t>", b"<t><![CDATA[T-01]]></t>", 1),
    "a comment": lambda x: x.replace(b"</row>", b"<!-- note --></row>", 1),
    "a prefixed cell": lambda x: x.replace(b'<c r="E5"', b'<x:c xmlns:x="urn:x" r="E9"/><c r="E5"', 1),
    "a cell without r first": lambda x: x.replace(b'<c r="E5" t=', b"<c t=", 1),
    "rows out of order": lambda x: x.replace(b'<row r="5">', b'<row r="50">', 1),
    "a shared-string cell": lambda x: x.replace(
        b'<c r="E5" t="inlineStr"><is><t>789C</t></is>', b'<c r="E5" t="s"><v>0</v>', 1
    ),
    "a formula": lambda x: x.replace(b'<c r="I5" t="n"><v>', b'<c r="I5" t="n"><f>1</f><v>', 1),
}


@pytest.mark.parametrize("name", list(BAD_XML))
def test_the_xml_path_refuses_what_it_cannot_prove(tmp_path, name):
    path = write(tmp_path / "T-01.xlsx", rows(OLD))
    scan = scan_workbook(str(path), ["OIL"], max_xml_mb=16, max_cells=10**6, keep=("OIL",))["OIL"]
    assert split(sheet_head(str(path), scan)) is not None
    rewrite(path, BAD_XML[name])
    scan = scan_workbook(str(path), ["OIL"], max_xml_mb=16, max_cells=10**6, keep=("OIL",))["OIL"]
    head = sheet_head(str(path), scan)
    assert head is None or split(head) is None


def test_a_row_whose_number_stands_elsewhere_keeps_a_key(tmp_path):
    """Row 3 holds ``s="3"``-like text: its key takes out the references' digits only."""
    path = write(tmp_path / "T-01.xlsx", rows(OLD, r7={"Interpretacion": 'tubo 3" roto'}))
    first = read_finning_workbook(str(path))
    write(path, rows([8, *OLD], r7={"Interpretacion": 'tubo 3" roto'}))
    again, _ = resend(path, first)
    assert again.info["sheet_rows_read"] == 1


@needs_shared
def test_the_real_workbooks_cut_at_a_date_and_complete(tmp_path):
    from .test_bench_harness import _load

    cut_workbook = _load("monthly_bench").cut_workbook
    for src in real_workbooks():
        cut, whole = tmp_path / "cut" / src.name, tmp_path / "whole" / src.name
        kept, dropped = cut_workbook(src, cut, dt.date(2025, 12, 1))
        cut_workbook(src, whole, dt.date.max)  # the same writer for both months
        first = read_finning_workbook(str(cut))
        again, full = resend(whole, first)
        # Only the OIL rows added since the cut are read (``dropped`` counts COOLANT rows too).
        added = full.info["sheet_rows_read"] - first.info["sheet_rows_read"]
        assert 0 < added <= dropped, src.name
        assert again.info["sheet_rows_read"] == added, src.name
        assert again.info["rows_reused"] == first.info["rows_read"], src.name


def drop_top_rows(src: Path, dst: Path, k: int) -> Path:
    """The lab's own workbook as it stood ``k`` samples earlier: its ``k`` newest rows (3 to 2+k)
    taken out of the XML and the rows below numbered up, every other byte as the lab wrote it."""

    def renumber(m: re.Match) -> bytes:
        n = int(m.group(2))
        return m.group(1) + b"%d" % (n - k if n >= 3 + k else n) + b'"'

    def sheet(xml: bytes) -> bytes:
        for n in range(3, 3 + k):
            xml = re.sub(rb'<row r="%d"[ >].*?</row>\s*' % n, b"", xml, count=1, flags=re.S)
        return re.sub(rb'(<row r="|<c r="[A-Z]{1,3})([0-9]+)"', renumber, xml)

    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes())
    return rewrite(dst, sheet)


@needs_shared
def test_the_real_workbooks_as_the_lab_wrote_them(tmp_path):
    """The lab's own XML (every empty cell written, merged header cells, no row 2): a month earlier
    had 5 rows fewer on top; the re-send reads those 5 only."""
    for src in real_workbooks():
        earlier = drop_top_rows(src, tmp_path / "earlier" / src.name, 5)
        first = read_finning_workbook(str(earlier))
        whole = tmp_path / "whole" / src.name
        whole.parent.mkdir(exist_ok=True)
        whole.write_bytes(src.read_bytes())
        again, full = resend(whole, first)
        assert again.info["sheet_rows_read"] == 5, src.name
        assert full.info["rows_read"] == first.info["rows_read"] + 5, src.name
