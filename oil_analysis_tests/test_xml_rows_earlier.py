"""The earlier version of a re-sent workbook cut through the new version's rows
(:func:`split_earlier`): the same rows, keys and spans as :func:`split` of it, or None where
:func:`split` is None; only the earlier rows that are not a new row renumbered are cut again."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from oil_analysis.domain.labs import xlsx_rows
from oil_analysis.domain.labs.xlsx_guard import scan_workbook
from oil_analysis.domain.labs.xlsx_rows import sheet_head, split, split_earlier, workbook_head

from .conftest import needs_shared, real_workbooks
from .test_resent_xml_rows import BAD_XML, OLD, drop_top_rows, rewrite, rows, styled, write


def cut_rows(monkeypatch) -> list[int]:
    """Records how many row elements each ``_cut`` call is given."""
    seen: list[int] = []
    cut = xlsx_rows._cut

    def counting(part: bytes, lo: int, hi: int):
        seen.append(part.count(b"<row ", lo, hi))
        return cut(part, lo, hi)

    monkeypatch.setattr(xlsx_rows, "_cut", counting)
    return seen


def new_sheet(path: Path):
    scan = scan_workbook(str(path), ["OIL"], max_xml_mb=64, max_cells=10**7, keep=("OIL",))["OIL"]
    sheet = split(sheet_head(str(path), scan))
    assert sheet is not None
    return sheet


def check(earlier: Path, now: Path, monkeypatch) -> tuple[object, list[int]]:
    """``split_earlier`` of ``earlier`` against ``now``, equal to ``split``; returns it and the row
    elements it cut again."""
    head = workbook_head(earlier.read_bytes(), "OIL")
    assert head is not None
    sheet = new_sheet(now)
    expected = split(head)
    seen = cut_rows(monkeypatch)
    got = split_earlier(head, sheet)
    monkeypatch.undo()
    if expected is None:
        assert got is None
    else:
        assert got is not None
        assert (got.numbers, got.keys, got.spans) == (expected.numbers, expected.keys, expected.spans)
        assert (got.member, got.context, got.rows) == (expected.member, expected.context, expected.rows)
    return got, seen


CASES = {
    # new body, the rows of the earlier version cut again
    "rows added on top": (lambda: rows([10, 9, 8, *OLD]), []),
    "rows added at the bottom": (lambda: rows([*OLD, 8, 9]), []),
    "an old row corrected, one deleted": (
        lambda: [r for k, r in enumerate(rows([9, *OLD], r3={"Si": 40})) if k != 8],
        [2],
    ),
    "an old row corrected, one at the top": (lambda: rows([8, *OLD], r0={"Cu": 7}, r7={"Fe": 9}), [2]),
    "nothing changed": (lambda: rows(OLD), []),
    "every row changed": (lambda: rows(OLD, **{f"r{n}": {"Cu": 50 + n} for n in OLD}), [8]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_earlier_version_cut_through_the_new_rows(tmp_path, monkeypatch, case):
    body, again = CASES[case]
    earlier = write(tmp_path / "earlier" / "T-01.xlsx", rows(OLD))
    now = write(tmp_path / "now" / "T-01.xlsx", body())
    got, seen = check(earlier, now, monkeypatch)
    assert got is not None and len(got.numbers) == 9  # row 2 (empty) and the 8 samples
    assert seen == again  # the fast path: only the rows that are no new row renumbered


def test_whitespace_between_the_earlier_rows(tmp_path, monkeypatch):
    earlier = write(tmp_path / "earlier" / "T-01.xlsx", rows(OLD))
    rewrite(earlier, lambda x: x.replace(b"</row><row", b"</row>\n  <row"))
    now = write(tmp_path / "now" / "T-01.xlsx", rows([8, *OLD]))
    got, seen = check(earlier, now, monkeypatch)
    assert got is not None and seen == []


def test_a_style_change_in_an_old_row(tmp_path, monkeypatch):
    earlier = styled(tmp_path / "earlier" / "T-01.xlsx", rows(OLD), date_row=5)
    now = styled(tmp_path / "now" / "T-01.xlsx", rows([8, *OLD]), date_row=4)
    got, seen = check(earlier, now, monkeypatch)
    assert got is not None and seen == [2]  # the row styled then (now row 6) and the one styled now


@pytest.mark.parametrize("name", list(BAD_XML))
def test_an_earlier_version_the_xml_path_cannot_prove(tmp_path, monkeypatch, name):
    """What :func:`split` refuses in the earlier version, ``split_earlier`` refuses too."""
    earlier = write(tmp_path / "earlier" / "T-01.xlsx", rows(OLD))
    rewrite(earlier, BAD_XML[name])
    now = write(tmp_path / "now" / "T-01.xlsx", rows([8, *OLD]))
    got, _ = check(earlier, now, monkeypatch)
    assert got is None


def test_a_duplicated_earlier_row_number(tmp_path, monkeypatch):
    """Two elements of the same row number (calamine would merge their cells) are refused."""
    earlier = write(tmp_path / "earlier" / "T-01.xlsx", rows(OLD))
    rewrite(
        earlier, lambda x: x.replace(b'<row r="4">', b'<row r="3">', 1).replace(b'<c r="A4"', b'<c r="A3"')
    )
    now = write(tmp_path / "now" / "T-01.xlsx", rows([8, *OLD]))
    got, _ = check(earlier, now, monkeypatch)
    assert got is None


@needs_shared
def test_the_real_workbooks_earlier_versions(tmp_path, monkeypatch):
    from .test_bench_harness import _load

    cut_workbook = _load("monthly_bench").cut_workbook
    for src in real_workbooks():
        cut, whole = tmp_path / "cut" / src.name, tmp_path / "whole" / src.name
        cut_workbook(src, cut, dt.date(2025, 12, 1))
        cut_workbook(src, whole, dt.date.max)
        got, seen = check(cut, whole, monkeypatch)
        assert got is not None and seen == [], src.name
        # The lab's own XML, five samples earlier.
        earlier = drop_top_rows(src, tmp_path / "earlier" / src.name, 5)
        got, seen = check(earlier, src, monkeypatch)
        assert got is not None and seen == [], src.name


def test_a_row_renumbered_by_a_plain_replace_is_renumbered_by_its_references(tmp_path):
    """``_renumbered`` (the earlier rows compared, the mini workbook's rows) replaces the row number
    wherever it stands when it stands in the references only, else the references' digits only:
    the same bytes as renumbering every reference."""
    body = rows([8, *OLD], r7={"Interpretacion": 'tubo 4" roto'}, r5={"Interpretacion": 'tubo 6" roto'})
    sheet = new_sheet(write(tmp_path / "T-01.xlsx", body))
    assert sheet.plain is not None and not all(sheet.plain)  # rows 4 and 6 hold their number elsewhere
    for i, n in enumerate(sheet.numbers):
        xml = sheet.xml(i)
        for digits in (b"2", b"%d" % n, b"45", b"1000000"):
            by_reference = re.sub(rb'(<row r="|<c r="[A-Z]{1,3})[0-9]+"', rb"\g<1>" + digits + b'"', xml)
            assert xlsx_rows._renumbered(sheet, i, digits) == by_reference
