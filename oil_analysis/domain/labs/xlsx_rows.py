"""A sheet's rows by their XML, so that a re-sent workbook's unchanged rows are not read again.

A lab re-sends its cumulative workbook with rows inserted (at the top, in the lab's order): every
old row moves down, its XML otherwise unchanged. :func:`sheet_head` (:func:`workbook_head` for an
earlier version kept as bytes) takes the context that gives a row's XML its meaning
(``xl/workbook.xml``: date1904; ``xl/styles.xml``: date formats; the shared strings; the sheet
part outside ``<sheetData>`` but its layout: dimension, column widths, views; the header row):
cheap, so that workbooks of different contexts are never split. :func:`split` cuts the rows into
their elements and keys each by a digest of its XML with the row number taken out of ``<row r>``
and of every ``<c r>`` (styles, types, values and error cells kept): in one context, equal keys
read as equal cells wherever the row stands. :func:`mini_workbook` builds the small in-memory
workbook python-calamine reads the other rows from: the same parts, the sheet reduced to its header
row and those rows, numbered consecutively. :func:`split_earlier` cuts an earlier version (the bytes a
first parse kept) through the rows :func:`split` proved in the new one: an earlier row that is a new
row renumbered is that row; only the others are cut with :func:`split`'s checks. A split also gives
the sheet's real extent, which spares the guard's streaming pass (:func:`~.xlsx_guard.scan_workbook`).

The split is used only when that is provably so; :func:`split` returns None (the caller reads the
whole sheet) on anything else: a shared-string cell or a shared-strings part with entries, a
formula, a comment, CDATA or processing instruction in the rows, an element with a namespace prefix
named like one calamine reads, a row without ``r`` (as its first attribute) or out of order, a cell
without ``r`` (as its first attribute) or whose reference is not exactly column letters and its
row's number.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from dataclasses import dataclass

import numpy as np

from .xlsx_guard import MAX_ERROR_CELLS, MAX_KEPT_XML, SheetScan, _sheet_members

# Bump when the key or the context changes meaning (the XML row caches are then ignored).
XML_ROWS_VERSION = b"xml-rows-1"

_ROW_REF = re.compile(rb'r="([1-9][0-9]{0,6})"')
# ``<x:c>`` is a cell to calamine (it matches local names): a prefixed element it reads is refused.
_PREFIXED = re.compile(rb":(?:c|row|v|is|t|f|r|rPh|sheetData)[\s/>]")
# A cell reference's row number (group 1: ``<c r="`` and the column letters): taken out for a
# row's key, replaced to renumber a row.
_CELL_ROW = re.compile(rb'(<c r="[A-Z]{1,3})[0-9]+"')
# What calamine does not read for a cell's value and a writer rewrites as rows come (the extent,
# column widths fitted to the content, the selected cell): left out of the context.
_LAYOUT = re.compile(rb"<dimension\b[^>]*/>|<cols>.*?</cols>|<sheetViews>.*?</sheetViews>", re.S)
_DIMENSION = re.compile(rb"<dimension\b[^>]*/>")

_SST_ENTRY = re.compile(rb"<(?:\w+:)?si[\s>/]")
# What the guard's streaming pass reads rows and last cells from (see :attr:`SheetRows.extent`).
_OUTSIDE = re.compile(rb"<row\b|</row>")
_CELL = re.compile(rb"<c\b")


@dataclass
class SheetRows:
    """A sheet part cut into its row elements (below the header row)."""

    member: str  # the sheet's zip member
    context: str  # digest of what gives equal rows equal cells (see the module docstring)
    part: bytes  # the sheet part
    rows: tuple[int, int]  # where ``<sheetData>``'s content starts and ends in ``part``
    numbers: list[int]  # the Excel row number of each row element below the header, increasing
    keys: list[str]  # its key: a digest of its XML without the row numbers of ``<row>`` and ``<c>``
    spans: list[tuple[int, int]]  # where its XML stands in ``part``
    # Whether its row number stands in its references only (``N"`` nowhere else: a plain replace
    # renumbers it); None when not known (a sheet of :func:`split_earlier`).
    plain: list[bool] | None = None
    # The sheet part's real extent as :func:`~.xlsx_guard.scan_workbook`'s streaming pass finds it
    # (the last row number, the last column of a row's last cell); None when not known.
    extent: tuple[int, int] | None = None

    def xml(self, i: int) -> bytes:
        """The XML of the ``i``-th row element below the header, as it is."""
        lo, hi = self.spans[i]
        return self.part[lo:hi]


def _digest(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return h.hexdigest()


def _name_end(b: np.ndarray) -> np.ndarray:
    """Bytes that end an element's name: whitespace, ``/`` or ``>``."""
    return (b == 32) | (b == 62) | (b == 47) | (b == 9) | (b == 10) | (b == 13)


def _is_letter(b: np.ndarray) -> np.ndarray:
    return (b >= 65) & (b <= 90)


def _cut(
    part: bytes, lo: int, hi: int
) -> tuple[list[int], list[str], list[tuple[int, int]], list[bool], tuple[int, int]] | None:
    """The row elements of ``<sheetData>``'s content (``part[lo:hi]``): number, key, span and
    whether the number stands in its references only; and the extent of the rows (the last row
    number, the largest column of a row's last cell).

    With no comment, CDATA or processing instruction (refused), every ``<`` starts a tag (XML
    allows no ``<`` in text or attribute values): the tags are told apart by the bytes after it,
    all at once (what follows ``hi``, at least ``</sheetData>``, pads the look-ahead)."""
    a = np.frombuffer(part, dtype=np.uint8)
    lt = lo + np.flatnonzero(a[lo:hi] == 60)
    n1, n2 = a[lt + 1], a[lt + 2]
    if ((n1 == 33) | (n1 == 63)).any():  # <! <?
        return None
    name_end = _name_end(n2)
    if ((n1 == ord("f")) & name_end).any():  # a formula
        return None
    cells = lt[(n1 == ord("c")) & name_end]
    rows = lt[(n1 == ord("r")) & (n2 == ord("o"))]
    rows = rows[(a[rows + 3] == ord("w")) & _name_end(a[rows + 4])]
    closes = lt[(n1 == ord("/")) & (n2 == ord("r"))]
    closes = int(((a[closes + 3] == ord("o")) & (a[closes + 4] == ord("w"))).sum())
    nested = lt[(n1 == ord("s")) & (n2 == ord("h"))]  # another <sheetData
    del lt, n1, n2, name_end
    if len(nested):
        return None
    # ``<c r="`` and ``<row r="``: the reference is the first attribute, double-quoted.
    for at, tag in ((cells, b'<c r="'), (rows, b'<row r="')):
        for k, byte in enumerate(tag[2:], start=2):
            if not (a[at + k] == byte).all():
                return None
    if not len(rows) or part[lo : rows[0]].strip():
        return None  # no row, or something before the first
    numbers, digits = [], []
    for at in rows.tolist():
        m = _ROW_REF.match(part, at + 5)
        if m is None:
            return None
        numbers.append(int(m.group(1)))
        digits.append(m.group(1))
    if any(b <= a_ for a_, b in zip(numbers, numbers[1:], strict=False)):
        return None
    # A cell's reference: 1-3 column letters, then its row's number exactly (calamine places a cell
    # by its own reference), then the closing quote.
    ref = cells + 6
    first, second, third, fourth = (_is_letter(a[ref + k]) for k in range(4))
    if not (first & ~(second & third & fourth)).all():
        return None
    letters = 1 + second + (second & third)
    row_of = np.searchsorted(rows, cells) - 1
    if len(cells) and row_of[0] < 0:
        return None
    width = np.array([len(d) for d in digits])
    span = np.arange(int(width.max()) + 1)  # the longest row number and its quote
    wanted = a[(rows + 8)[:, None] + span][row_of]  # each cell's row's number and quote
    found = a[(ref + letters)[:, None] + span]
    if not ((found == wanted) | (span > width[row_of][:, None])).all():
        return None
    per_row = np.bincount(row_of, minlength=len(rows)).tolist()
    bounds = rows.tolist() + [hi]
    keys, spans, plain, closed = [], [], [], 0
    for k, d in enumerate(digits):
        xml = part[bounds[k] : bounds[k + 1]].rstrip()
        if xml.endswith(b"</row>"):
            closed += 1
        elif not (xml.endswith(b"/>") and xml.find(b">") == len(xml) - 1):
            return None  # something after the row's end
        # The XML without row numbers: every ``N"`` taken out when those are the references' and the
        # row's own only; else (a style ``s="N"``, a text) the references' digits only.
        stripped = xml.replace(d + b'"', b'"')
        plain.append((len(xml) - len(stripped)) // len(d) == per_row[k] + 1)
        if not plain[-1]:
            stripped = _CELL_ROW.sub(rb'\1"', xml.replace(b'<row r="' + d + b'"', b'<row r=""', 1))
        keys.append(hashlib.sha256(stripped).hexdigest()[:32])
        spans.append((bounds[k], bounds[k] + len(xml)))
    if closed != closes:
        return None
    last = np.cumsum(per_row)[np.asarray(per_row) > 0] - 1  # each row's last cell, if it has one
    column = np.zeros(len(last), dtype=np.int64)
    for k in range(3):  # its column letters (1 to 3, checked) as a number: A → 1, XFD → 16384
        more = letters[last] > k
        column[more] = column[more] * 26 + a[ref[last[more]] + k].astype(np.int64) - 64
    return numbers, keys, spans, plain, (numbers[-1], int(column.max()) if len(column) else 0)


@dataclass
class SheetHead:
    """A sheet part with the context of its rows (cheap: the rows are not looked at yet)."""

    member: str
    context: str  # digest of what gives equal rows equal cells (see the module docstring)
    part: bytes
    lo: int  # where ``<sheetData>``'s content starts and ends in ``part``
    hi: int
    header: bytes  # the first row element as the context took it (``split`` checks it is row 1's)


def sheet_head(path: str, scan: SheetScan) -> SheetHead | None:
    """The head of the sheet of ``scan`` (a guarded workbook, the sheet's XML kept by the guard), or
    None when the sheet cannot be read through its rows' XML."""
    # The XML path holds the sheet and arrays of a few bytes per tag in memory: a sheet larger than
    # the guard keeps is read in full, as is one whose error cells the guard stopped recording.
    if len(scan.errors) >= MAX_ERROR_CELLS or scan.xml is None:
        return None
    with zipfile.ZipFile(path) as zf:
        return part_head(zf, scan.member, scan.xml)


def workbook_head(data: bytes, sheet: str) -> SheetHead | None:
    """:func:`sheet_head` of the sheet named ``sheet`` of a workbook given as its bytes (an earlier
    version of a file, kept with its row cache: it passed the guard when it was parsed)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            member = _sheet_members(zf).get(sheet)
            if member is None or zf.getinfo(member).file_size > MAX_KEPT_XML:
                return None
            return part_head(zf, member, zf.read(member))
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, EOFError):
        return None


def part_head(zf: zipfile.ZipFile, member: str, part: bytes) -> SheetHead | None:
    """:func:`sheet_head` of the sheet part ``member`` of the open workbook ``zf``, inflated."""
    names = set(zf.namelist())
    book = zf.read("xl/workbook.xml") if "xl/workbook.xml" in names else b""
    styles = zf.read("xl/styles.xml") if "xl/styles.xml" in names else b""
    sst = zf.read("xl/sharedStrings.xml") if "xl/sharedStrings.xml" in names else b""
    if _SST_ENTRY.search(sst):
        return None
    start, end = part.find(b"<sheetData>"), part.rfind(b"</sheetData>")
    if start < 0 or end < start:
        return None
    lo = start + len(b"<sheetData>")
    prefix, suffix = part[:lo], part[end:]
    if b"<!" in prefix or b"<sheetData" in prefix[:start]:
        return None
    first = part.find(b"<row", lo, end)
    second = part.find(b"<row", first + 1, end) if first >= 0 else -1
    header = part[first : second if second >= 0 else end].strip()  # row 1 (checked by ``split``)
    context = _digest(XML_ROWS_VERSION, book, styles, sst, _LAYOUT.sub(b"", prefix), suffix, header)
    return SheetHead(member, context, part, lo, end, header)


def split(head: SheetHead) -> SheetRows | None:
    """The row elements of the sheet of ``head``, or None when the sheet does not provably allow
    reading some rows only."""
    part, lo, end = head.part, head.lo, head.hi
    if part.find(b't="s"', lo, end) >= 0 or _prefixed(part, lo, end):
        return None
    got = _cut(part, lo, end)
    if got is None:
        return None
    numbers, keys, spans, plain, extent = got
    if numbers[0] != 1 or part[spans[0][0] : spans[0][1]] != head.header:
        return None
    # Outside ``<sheetData>``, what the streaming pass would count: then the extent is not known.
    if _OUTSIDE.search(part, 0, lo) or _OUTSIDE.search(part, end) or _CELL.search(part, 0, lo):
        extent = None
    return SheetRows(
        head.member, head.context, part, (lo, end), numbers[1:], keys[1:], spans[1:], plain[1:], extent
    )


def split_earlier(earlier: SheetHead, sheet: SheetRows) -> SheetRows | None:
    """:func:`split` of ``earlier`` (the head of an earlier version of the workbook of ``sheet``, in
    the same context), without cutting again what ``sheet`` already proved.

    A cumulative re-send holds the earlier rows renumbered: each earlier row element is first
    compared with the next row of ``sheet`` (then with the row of ``sheet`` its key names) with
    that row's numbers replaced by its own; equal bytes are that row, as proven as it is (its cells
    reference their row, no formula, shared string or comment), and take its key. The other
    elements (a corrected or deleted row) are cut by :func:`split`'s own checks, together. Every byte
    of the earlier rows is in one of these or whitespace between them: the result is
    :func:`split`'s (None where it is None)."""
    if earlier.context != sheet.context or sheet.plain is None or not sheet.spans:
        return split(earlier)
    part, lo, hi = earlier.part, earlier.lo, earlier.hi
    pos = _skip_space(part, lo, hi)
    if earlier.header != sheet.part[sheet.rows[0] : sheet.spans[0][0]].strip():
        return None
    if not part.startswith(earlier.header, pos):
        return None
    pos += len(earlier.header)
    first: dict[str, int] = {}
    for i, key in enumerate(sheet.keys):
        first.setdefault(key, i)
    numbers, keys, spans = [], [], []
    loose: list[int] = []  # positions (in the lists above) of the elements cut below
    guess, sha = 0, hashlib.sha256
    while (pos := _skip_space(part, pos, hi)) < hi:
        m = _ROW_REF.match(part, pos + 5) if part.startswith(b'<row r="', pos) else None
        if m is None:
            return None
        digits = m.group(1)
        own = _renumbered(sheet, guess, digits) if guess < len(sheet.keys) else None
        if own is None or not part.startswith(own, pos):
            end = part.find(b"<row", pos + 1, hi)
            xml = part[pos : hi if end < 0 else end].rstrip()
            at = first.get(sha(xml.replace(digits + b'"', b'"')).hexdigest()[:32])  # a candidate only
            own = _renumbered(sheet, at, digits) if at is not None else None
            if own != xml:
                loose.append(len(numbers))
                numbers.append(int(digits))
                keys.append("")
                spans.append((pos, pos + len(xml)))
                pos += len(xml)
                continue
            guess = at
        numbers.append(int(digits))
        keys.append(sheet.keys[guess])
        spans.append((pos, pos + len(own)))
        pos += len(own)
        guess += 1
    if any(b <= a for a, b in zip([1, *numbers], numbers, strict=False)):
        return None
    if loose:  # split's checks on these elements, as one sheet
        rest = b"".join(part[spans[k][0] : spans[k][1]] for k in loose)
        if rest.find(b't="s"') >= 0 or _prefixed(rest, 0, len(rest)):
            return None
        got = _cut(rest + b"</sheetData>", 0, len(rest))
        if got is None or got[0] != [numbers[k] for k in loose]:
            return None
        joined = 0  # where each element stands in ``rest``
        for k, key, (a, b) in zip(loose, got[1], got[2], strict=True):
            if a != joined or b - a != spans[k][1] - spans[k][0]:
                return None
            joined = b
            keys[k] = key
    return SheetRows(earlier.member, earlier.context, part, (lo, hi), numbers, keys, spans)


def _prefixed(part: bytes, lo: int, hi: int) -> bool:
    """Whether ``part[lo:hi]`` holds what :data:`_PREFIXED` matches (from each ``:``: a sheet holds
    few, and ``bytes.find`` skips to them far faster than a regular expression's search)."""
    at = part.find(b":", lo, hi)
    while at >= 0:
        if _PREFIXED.match(part, at, hi):
            return True
        at = part.find(b":", at + 1, hi)
    return False


def _skip_space(part: bytes, pos: int, hi: int) -> int:
    while pos < hi and part[pos] in b" \t\r\n":
        pos += 1
    return pos


def _renumbered(sheet: SheetRows, i: int, digits: bytes) -> bytes:
    """The XML of ``sheet``'s ``i``-th row element with its row number (of ``<row r>`` and every
    ``<c r>``, checked to be its own) made ``digits``."""
    xml, own = sheet.xml(i), b"%d" % sheet.numbers[i]
    if own == digits:
        return xml
    if sheet.plain is not None and sheet.plain[i]:
        return xml.replace(own + b'"', digits + b'"')
    body = xml[len(b'<row r="') + len(own) + 1 :]
    return b'<row r="' + digits + b'"' + _CELL_ROW.sub(rb"\g<1>" + digits + b'"', body)


def mini_workbook(path: str, sheet: SheetRows, pick: list[int]) -> io.BytesIO:
    """The workbook of ``path`` with its sheet reduced to the header row and the row elements at
    positions ``pick`` (in ``sheet.numbers``), numbered 2, 3, … in that order: an uncompressed zip
    in memory, every other part as it is."""
    lo, hi = sheet.rows
    rows = [sheet.part[lo : sheet.spans[0][0]] if sheet.spans else sheet.part[lo:hi]]  # the header
    rows += [_renumbered(sheet, i, b"%d" % k) for k, i in enumerate(pick, start=2)]
    prefix = _DIMENSION.sub(b"", sheet.part[:lo], count=1)  # calamine sizes the sheet by its cells
    part = b"".join([prefix, *rows, sheet.part[hi:]])
    out = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, part if info.filename == sheet.member else src.read(info))
    out.seek(0)
    return out
