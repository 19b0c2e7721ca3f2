"""The guard of a re-sent workbook read through its rows' XML: its sheet part is inflated once and
the extent of the rows it split stands for the streaming pass (same rows, columns, error cells,
declared dimension and XML); every refusal is the streaming pass's, with its message."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import pytest

from oil_analysis.domain.labs import xlsx_guard
from oil_analysis.domain.labs.common import LabFileError
from oil_analysis.domain.labs.finning import read_finning_workbook
from oil_analysis.domain.labs.xlsx_guard import scan_workbook

from .conftest import needs_shared, real_workbooks
from .test_resent_xml_rows import OLD, resend, rewrite, rows, stored, write

LIMITS = {"max_xml_mb": 64, "max_cells": 5_000_000}


def same_scans(path: Path, previous) -> list[str]:
    """The reader's guard of ``path`` re-sent after ``previous`` equals the plain guard's; returns
    the sheets it streamed (from the zip or from the part it inflated)."""
    from oil_analysis.domain.labs.finning import COOLANT_SHEET, OIL_SHEET, _ResentRows

    plain = scan_workbook(str(path), [OIL_SHEET, COOLANT_SHEET], keep=(OIL_SHEET,), **LIMITS)
    seen: list[str] = []
    stream = xlsx_guard._stream

    def spy(read, sheet_scan, *args, **kwargs):
        seen.append(sheet_scan.name)
        return stream(read, sheet_scan, *args, **kwargs)

    xlsx_guard._stream = spy
    try:
        rows_of = _ResentRows(stored(previous))
        proven = scan_workbook(
            str(path), [OIL_SHEET, COOLANT_SHEET], keep=(OIL_SHEET,), prove=rows_of.prove, **LIMITS
        )
    finally:
        xlsx_guard._stream = stream
    assert proven.keys() == plain.keys()
    for sheet, a in plain.items():
        b = proven[sheet]
        assert (a.member, a.xml_bytes, a.rows, a.cols, a.declared, a.errors, a.xml) == (
            b.member,
            b.xml_bytes,
            b.rows,
            b.cols,
            b.declared,
            b.errors,
            b.xml,
        ), sheet
    return seen


def test_a_resend_is_guarded_through_its_rows(tmp_path):
    path = write(tmp_path / "T-01.xlsx", rows(OLD, r5={"Fe": "#N/A"}))
    first = read_finning_workbook(str(path))
    write(path, rows([9, 8, *OLD], r5={"Fe": "#N/A"}, r8={"Cu": "#DIV/0!"}))
    assert same_scans(path, first) == ["COOLANT"]  # the OIL part not streamed
    again, full = resend(path, first)
    assert again.info["sheet_rows_read"] == 2 and again.info["excel_error_cells"] == 3  # Fe twice, Cu


def test_a_resend_of_another_writer_is_streamed(tmp_path, monkeypatch):
    """A context the earlier parse does not share (another style part): nothing split, streamed."""
    path = write(tmp_path / "T-01.xlsx", rows(OLD))
    first = read_finning_workbook(str(path))
    write(path, rows([8, *OLD]))
    rewrite(path, extra={"xl/styles.xml": zipfile.ZipFile(path).read("xl/styles.xml") + b" "})
    assert same_scans(path, first) == ["OIL", "COOLANT"]
    # The part is inflated once: the streaming pass reads what the proof attempt inflated.
    previous = stored(first)
    opened: list[tuple] = []
    zip_open = zipfile.ZipFile.open

    def spy(self, name, *args, **kwargs):
        opened.append((self.filename, getattr(name, "filename", name)))
        return zip_open(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    again = read_finning_workbook(str(path), previous=previous)
    assert again.info["rows_reused"] == 8  # the values' digests still serve
    assert opened.count((str(path), "xl/worksheets/sheet1.xml")) == 1


def far_cell(path: Path) -> Path:
    """A stray cell at XFD1048576 (valid row XML: the rows split, their extent is absurd)."""
    return rewrite(
        path,
        lambda x: x.replace(
            b"</sheetData>", b'<row r="1048576"><c r="XFD1048576"><v>1</v></c></row></sheetData>'
        ),
    )


def declared(path: Path) -> Path:
    return rewrite(path, lambda x: x.replace(b'<dimension ref="', b'<dimension ref="A1:XFD1048576" x="', 1))


def bomb(path: Path) -> Path:
    """The sheet inflating past the limit (valid rows, padded)."""
    return rewrite(path, lambda x: x.replace(b"</row>", b"</row>" + b" " * (2 * 1024 * 1024), 1))


@pytest.mark.parametrize("hostile", [far_cell, declared, bomb], ids=["far cell", "declared", "bomb"])
def test_a_hostile_resend_is_refused_as_a_first_parse(tmp_path, hostile):
    path = write(tmp_path / "T-01.xlsx", rows(OLD))
    first = read_finning_workbook(str(path))
    hostile(write(path, rows([8, *OLD])))
    limits = {"max_xml_mb": 1.0} if hostile is bomb else {}
    with pytest.raises(LabFileError) as plain:
        read_finning_workbook(str(path), **limits)
    with pytest.raises(LabFileError) as again:
        read_finning_workbook(str(path), previous=stored(first), **limits)
    assert str(again.value) == str(plain.value)
    assert again.value.as_dict() == plain.value.as_dict()


@needs_shared
def test_the_real_workbooks_resent_are_guarded_through_their_rows(tmp_path):
    from .test_bench_harness import _load

    cut_workbook = _load("monthly_bench").cut_workbook
    for src in real_workbooks():
        cut, whole = tmp_path / "cut" / src.name, tmp_path / "whole" / src.name
        cut_workbook(src, cut, dt.date(2025, 12, 1))
        cut_workbook(src, whole, dt.date.max)
        first = read_finning_workbook(str(cut))
        assert same_scans(whole, first) == ["COOLANT"], src.name
