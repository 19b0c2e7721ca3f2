"""A sheet's rows by their XML, so that a re-sent workbook's unchanged rows are not read again.

A lab re-sends its cumulative workbook with rows inserted (at the top, in the lab's order): every
old row moves down, its XML otherwise unchanged. :func:`split_sheet` cuts the sheet part into its
row elements and keys each by a digest of its XML with the row number taken out of ``<row r>`` and
of every ``<c r>`` (styles, types, values and error cells kept). With the parts that give a row's
XML its meaning (``xl/workbook.xml``: date1904; ``xl/styles.xml``: date formats; the shared
strings; the sheet part outside ``<sheetData>``; the header row) in :attr:`SheetRows.context`,
equal keys read as equal cells wherever the row stands. :func:`mini_workbook` builds the small
in-memory workbook python-calamine reads the other rows from: the same parts, the sheet reduced to
its header row and those rows, numbered consecutively.

The split is used only when that is provably so; :func:`split_sheet` returns None (the caller reads
the whole sheet) on anything else: a shared-string cell or a shared-strings part with entries, a
formula, a comment, CDATA or processing instruction in the rows, an element with a namespace prefix
named like one calamine reads, a row without ``r`` or out of order, a cell without ``r`` (as its
first attribute) or whose reference is not in its row.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from dataclasses import dataclass

from .xlsx_guard import MAX_ERROR_CELLS, SheetScan

# Bump when the key or the context changes meaning (the XML row caches are then ignored).
XML_ROWS_VERSION = b"xml-rows-1"

_ROW_REF = re.compile(rb'r="([1-9][0-9]{0,6})"')
# A cell tag that is not ``<c r="LETTERS DIGITS``: no reference, or another first attribute.
_BAD_CELL = re.compile(rb'<c(?:[>/\t\r\n]| (?!r="[A-Z]{1,3}[0-9]))')
_FORMULA = re.compile(rb"<f[\s/>]")
# ``<x:c>`` is a cell to calamine (it matches local names): a prefixed element it reads is refused.
_PREFIXED = re.compile(rb":(?:c|row|v|is|t|f|r|rPh|sheetData)[\s/>]")
# In a row whose row number was taken out: a reference that is not letters only.
_LEFT_DIGITS = re.compile(rb'<c r="(?![A-Z]{1,3}")')
_REFS = re.compile(rb'<c r="[A-Z]{1,3}([0-9]+)"')
_RENUMBER = re.compile(rb'(<c r="[A-Z]{1,3})[0-9]+"')
_DIMENSION = re.compile(rb"<dimension\b[^>]*/>")
_SST_ENTRY = re.compile(rb"<(?:\w+:)?si[\s>/]")


@dataclass
class SheetRows:
    """A sheet part cut into its row elements (below the header row)."""

    member: str  # the sheet's zip member
    context: str  # digest of what gives equal rows equal cells (see the module docstring)
    prefix: bytes  # the part up to ``<sheetData>`` included
    suffix: bytes  # the part from ``</sheetData>``
    header: bytes  # the header row element (row 1), as it is
    numbers: list[int]  # the Excel row number of each row element below the header, increasing
    keys: list[str | None]  # its key (None: a row read every time, see ``_key``)
    bodies: list[bytes]  # its XML after ``<row `` (``r="…"`` and the rest, closing tag included)


def _digest(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return h.hexdigest()


def _key(number: bytes, rest: bytes) -> str | None:
    """The key of a row (``rest``: its XML after ``r="N"``), or None when the row number cannot be
    taken out exactly (``N"`` also stands elsewhere in the row, e.g. a style ``s="N"``): such a row
    is read by calamine every time."""
    stripped = rest.replace(number + b'"', b'"')
    # Every occurrence of N" taken out must be a cell reference's: as many as there are cells, and
    # no reference left with a character besides its column letters.
    if (len(rest) - len(stripped)) // len(number) != rest.count(b'<c r="'):
        return None
    if _LEFT_DIGITS.search(stripped):
        return None
    return hashlib.blake2b(stripped, digest_size=16).hexdigest()


def split_sheet(path: str, scan: SheetScan) -> SheetRows | None:
    """The rows of the sheet of ``scan`` (a guarded workbook: its parts are within the size limit),
    or None when the sheet does not provably allow reading some rows only."""
    if len(scan.errors) >= MAX_ERROR_CELLS:  # the guard stopped recording error cells
        return None
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        part = zf.read(scan.member)
        book = zf.read("xl/workbook.xml") if "xl/workbook.xml" in names else b""
        styles = zf.read("xl/styles.xml") if "xl/styles.xml" in names else b""
        sst = zf.read("xl/sharedStrings.xml") if "xl/sharedStrings.xml" in names else b""
    if _SST_ENTRY.search(sst):
        return None
    start, end = part.find(b"<sheetData>"), part.rfind(b"</sheetData>")
    if start < 0 or end < start or part.count(b"<sheetData") != 1:
        return None
    prefix, body, suffix = (
        part[: start + len(b"<sheetData>")],
        part[start + len(b"<sheetData>") : end],
        part[end:],
    )
    if b"<!" in prefix or b"<!" in body or b"<?" in body or b't="s"' in body:
        return None
    if _FORMULA.search(body) or _PREFIXED.search(body) or _BAD_CELL.search(body):
        return None
    chunks = body.split(b"<row ")
    if chunks[0].strip() or body.count(b"<row") != len(chunks) - 1 or len(chunks) < 2:
        return None
    closed = 0
    numbers, keys, bodies = [], [], []
    last = 0
    for chunk in chunks[1:]:
        m = _ROW_REF.match(chunk)
        if m is None:
            return None
        number = int(m.group(1))
        if number <= last:
            return None
        last = number
        chunk = chunk.rstrip()
        if chunk.endswith(b"</row>"):
            closed += 1
        elif not (chunk.endswith(b"/>") and chunk.find(b">") == len(chunk) - 1):
            return None  # something after the row's end
        rest = chunk[m.end() :]
        key = _key(m.group(1), rest)
        if key is None:  # read every time: its cells must still be in its row
            refs = _REFS.findall(rest)
            if len(refs) != rest.count(b'<c r="') or any(n != m.group(1) for n in refs):
                return None
        numbers.append(number)
        keys.append(key)
        bodies.append(chunk)
    if body.count(b"</row>") != closed or numbers[0] != 1:
        return None
    header = b"<row " + bodies[0]
    context = _digest(
        XML_ROWS_VERSION, book, styles, sst, _DIMENSION.sub(b"", prefix, count=1), suffix, header
    )
    return SheetRows(scan.member, context, prefix, suffix, header, numbers[1:], keys[1:], bodies[1:])


def mini_workbook(path: str, sheet: SheetRows, pick: list[int]) -> io.BytesIO:
    """The workbook of ``path`` with its sheet reduced to the header row and the row elements at
    positions ``pick`` (in ``sheet.numbers``), numbered 2, 3, … in that order: an uncompressed zip
    in memory, every other part as it is."""
    rows = [sheet.header]
    for k, i in enumerate(pick, start=2):
        body = sheet.bodies[i]
        m = _ROW_REF.match(body)
        new = b"%d" % k
        rows.append(b'<row r="' + new + b'"' + _RENUMBER.sub(rb"\g<1>" + new + b'"', body[m.end() :]))
    prefix = _DIMENSION.sub(b"", sheet.prefix, count=1)  # calamine sizes the sheet by its cells
    part = b"".join([prefix, *rows, sheet.suffix])
    out = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, part if info.filename == sheet.member else src.read(info))
    out.seek(0)
    return out
