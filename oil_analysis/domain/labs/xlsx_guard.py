"""Look inside an .xlsx before a parser touches it: bounded size, bounded extent, error cells.

A workbook is a zip of XML parts. Two hostile shapes hurt a parser that trusts it:

* a *zip bomb*: a small file whose sheet XML inflates to hundreds of MB (memory and time);
* a *stray far cell* (one value at ``XFD1048576``): python-calamine allocates the whole rectangle
  and the process aborts (a native abort: no exception to catch).

:func:`scan_workbook` checks, with zip metadata and one streaming pass over each sheet's XML (1 MB
at a time, never the whole part in memory): the uncompressed size of each part, the declared
``<dimension ref=...>`` (read from the first bytes), and the real extent (the highest row number and
the last column of every row). Over a limit, it raises :class:`LabFileError` and the file is
quarantined with that reason. The same pass collects the Excel *error cells* (``#N/A``, ``#DIV/0!``
...), which python-calamine returns as empty strings: the reader records them as cell rejects.
A sheet whose rows the reader has already proven (a re-sent workbook split by
:mod:`.xlsx_rows`) needs no streaming pass: ``prove`` gives its real extent from that proof, and only
its error cells are looked for (any other case is streamed, with the same refusals).
"""

from __future__ import annotations

import io
import os
import re
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from .common import LabFileError

CHUNK = 1 << 20
HEAD = 64 * 1024
MAX_ERROR_CELLS = 100_000
MAX_KEPT_XML = 64 * 1024 * 1024  # a sheet part ``keep`` asks for is kept up to this size only

_SHEET = re.compile(rb'<sheet\b[^>]*?\bname="([^"]*)"[^>]*?\br:id="([^"]*)"', re.S)
_SHEET_ALT = re.compile(rb'<sheet\b[^>]*?\br:id="([^"]*)"[^>]*?\bname="([^"]*)"', re.S)
_REL = re.compile(rb'<Relationship\b[^>]*?\bId="([^"]*)"[^>]*?\bTarget="([^"]*)"', re.S)
_REL_ALT = re.compile(rb'<Relationship\b[^>]*?\bTarget="([^"]*)"[^>]*?\bId="([^"]*)"', re.S)
_DIMENSION = re.compile(rb'<dimension\b[^>]*?\bref="([^"]*)"')
_ROW = re.compile(rb'<row\b[^>]*?\br="(\d+)"')
_REF = re.compile(rb'\br="([A-Z]{1,4})(\d+)"')
_ERROR_CELL = re.compile(rb'<c\b([^>]*?)\bt="e"([^>]*)>')
_ERROR_VALUE = re.compile(rb"\s*(?:<f\b[^>]*/>|<f\b[^>]*>.*?</f>)?\s*<v>([^<]*)</v>", re.S)
_CELL_REF = re.compile(r"^\$?([A-Z]{1,4})\$?(\d+)$")


@dataclass
class SheetScan:
    """What the streaming pass saw in one sheet."""

    name: str
    member: str
    xml_bytes: int
    rows: int = 0
    cols: int = 0
    declared: str | None = None
    errors: dict[tuple[int, int], str] = field(default_factory=dict)  # (excel row, 0-based column)
    xml: bytes | None = None  # the part as inflated, when asked to keep it


def column_index(letters: str) -> int:
    """``A`` → 1, ``Z`` → 26, ``AA`` → 27, ``XFD`` → 16384."""
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n


def _extent(ref: str) -> tuple[int, int] | None:
    """Rows × columns of a ``<dimension ref>`` such as ``A1:XFD1048576`` (None if unreadable)."""
    corners = [_CELL_REF.match(p.strip().upper()) for p in ref.split(":")]
    if not corners or not all(corners):
        return None
    rows = [int(m.group(2)) for m in corners]
    cols = [column_index(m.group(1)) for m in corners]
    return max(rows) - min(rows) + 1, max(cols) - min(cols) + 1


def _sheet_members(zf: zipfile.ZipFile) -> dict[str, str]:
    """Sheet name → zip member of its XML, from ``xl/workbook.xml`` and its relationships."""
    try:
        book = zf.read("xl/workbook.xml")
        rels = zf.read("xl/_rels/workbook.xml.rels")
    except KeyError:
        return {}
    ids = {rid: name for name, rid in _SHEET.findall(book)} | {
        rid: name for rid, name in _SHEET_ALT.findall(book)
    }
    targets = dict(_REL.findall(rels)) | {i: t for t, i in _REL_ALT.findall(rels)}
    out = {}
    for rid, name in ids.items():
        target = targets.get(rid)
        if target is None:
            continue
        t = target.decode("utf-8", "replace")
        member = t.lstrip("/") if t.startswith("/") else os.path.normpath("xl/" + t).replace("\\", "/")
        out[name.decode("utf-8", "replace")] = member
    return out


def _scan(zf: zipfile.ZipFile, scan: SheetScan, file: str, max_cells: int, keep: bool = False) -> None:
    """Stream one sheet part: declared dimension, real extent and error cells (``keep``: and keep
    the inflated part, within the size limit already checked, in ``scan.xml``)."""
    with zf.open(scan.member) as f:
        _stream(f.read, scan, file, max_cells, keep)


def _stream(read: Callable[[int], bytes], scan: SheetScan, file: str, max_cells: int, keep: bool) -> None:
    """:func:`_scan`'s pass over the part ``read`` returns, 1 MB at a time (cut after a row's end)."""
    pieces = []
    head = read(HEAD)
    _declared(head, scan, file, max_cells)
    buffer = head
    while True:
        chunk = read(CHUNK)
        buffer += chunk
        cut = buffer.rfind(b"</row>") + len(b"</row>") if chunk else len(buffer)
        if cut < len(b"</row>"):
            if chunk:
                continue
            cut = len(buffer)
        part, buffer = buffer[:cut], buffer[cut:]
        _scan_part(part, scan)
        if keep:
            pieces.append(part)
        if scan.rows * max(scan.cols, 1) > max_cells:
            raise LabFileError(
                file,
                f"the sheet reaches row {scan.rows:,} and column {scan.cols:,} "
                f"({scan.rows * max(scan.cols, 1):,} cells), over the limit of {max_cells:,} cells "
                "(OIL_MAX_SHEET_CELLS); not parsed",
                sheet=scan.name,
            )
        if not chunk:
            break
    if keep:
        scan.xml = b"".join(pieces)


def _declared(head: bytes, scan: SheetScan, file: str, max_cells: int) -> None:
    """The sheet's declared dimension (in the first bytes of its part), refused over the limit."""
    m = _DIMENSION.search(head)
    if m:
        scan.declared = m.group(1).decode("ascii", "replace")
        size = _extent(scan.declared)
        if size and size[0] * size[1] > max_cells:
            raise LabFileError(
                file,
                f"the sheet declares the dimension {scan.declared} ({size[0]:,} rows × {size[1]:,} "
                f"columns = {size[0] * size[1]:,} cells), over the limit of {max_cells:,} cells "
                "(OIL_MAX_SHEET_CELLS); not parsed",
                sheet=scan.name,
            )


def _proven(
    zf: zipfile.ZipFile, scan: SheetScan, file: str, max_cells: int, prove: Callable
) -> SheetScan | None:
    """The scan of a kept sheet part, inflated once: from the real extent ``prove`` gives from its
    XML (the streaming pass then adds nothing: same rows, columns, error cells and XML), else (no
    extent, over the limit, too many error cells) the streaming pass over the inflated part, with
    its own refusals. None when the part does not inflate cleanly: the zip is streamed then."""
    try:
        with zf.open(scan.member) as f:
            # One read of the size the zip declares (checked against the limit): zipfile inflates no
            # more than that, and a part that is not that size fails its CRC check.
            xml = f.read(scan.xml_bytes)
            if f.read(1):
                return None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error):
        return None
    _declared(xml[:HEAD], scan, file, max_cells)
    extent = prove(zf, scan.member, xml)
    if extent is not None and extent[0] * max(extent[1], 1) <= max_cells:
        scan.rows, scan.cols = extent
        _error_cells(xml, scan)
        if len(scan.errors) < MAX_ERROR_CELLS:  # the streaming pass stops recording at a chunk's end
            scan.xml = xml
            return scan
    streamed = SheetScan(scan.name, scan.member, scan.xml_bytes)
    _stream(io.BytesIO(xml).read, streamed, file, max_cells, True)
    return streamed


def _scan_part(part: bytes, scan: SheetScan) -> None:
    numbers = _ROW.findall(part)
    if numbers:
        scan.rows = max(scan.rows, max(map(int, numbers)))
    # The last cell of each row: its reference (letters, row number). A sheet's rows end in the
    # same few columns: each distinct letters are converted once.
    find, rfind, search = part.find, part.rfind, _REF.search
    lasts = []
    start, end = 0, find(b"</row>")
    while end != -1:
        last = rfind(b"<c ", start, end)
        if last != -1:
            ref = search(part, last, min(end, last + 300))
            if ref:
                lasts.append(ref.groups())
        start = end + 6
        end = find(b"</row>", start)
    if lasts:
        letters = {c for c, _ in lasts}
        scan.cols = max(scan.cols, max(column_index(c.decode()) for c in letters))
        scan.rows = max(scan.rows, max(int(r) for _, r in lasts))
    if len(scan.errors) < MAX_ERROR_CELLS:
        _error_cells(part, scan)


def _error_cells(part: bytes, scan: SheetScan) -> None:
    """Record the Excel error cells of ``part`` (whole rows) in ``scan.errors``."""
    if b't="e"' in part:
        for m in _ERROR_CELL.finditer(part):
            ref = _REF.search(m.group(1) + b" " + m.group(2))
            value = _ERROR_VALUE.match(part, m.end())
            if ref and value:
                key = (int(ref.group(2)), column_index(ref.group(1).decode()) - 1)
                scan.errors[key] = value.group(1).decode("utf-8", "replace").strip() or "#ERROR"


def scan_workbook(
    path: str,
    sheets: list[str],
    *,
    max_xml_mb: float,
    max_cells: int,
    keep: tuple[str, ...] = (),
    prove: Callable[[zipfile.ZipFile, str, bytes], tuple[int, int] | None] | None = None,
) -> dict[str, SheetScan]:
    """Check a workbook's parts before parsing; returns the scan of each of ``sheets`` present
    (with its inflated XML for the sheets named in ``keep``, up to ``MAX_KEPT_XML`` bytes).

    ``prove(zip, member, xml)``: for a sheet of ``keep``, its real extent ``(rows, last column)``
    exactly as the streaming pass would find it, from its whole XML (e.g. rows whose structure it
    checked), or None. Such a part is inflated once: when ``prove`` gives an extent, only its error
    cells are looked for, else the streaming pass reads the inflated part; the declared dimension,
    the part sizes and the limits are checked as always.

    Raises :class:`LabFileError` (the file is quarantined) when the zip cannot be opened, a part
    inflates beyond ``max_xml_mb`` (``OIL_MAX_SHEET_XML_MB``), or a sheet's declared or real extent
    exceeds ``max_cells`` (``OIL_MAX_SHEET_CELLS``).
    """
    name = os.path.basename(path)
    limit = int(max_xml_mb * 1024 * 1024)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise LabFileError(name, f"not a readable .xlsx workbook ({type(exc).__name__}: {exc})") from None
    with zf:
        infos = zf.infolist()
        for info in infos:
            if info.file_size > limit:
                raise LabFileError(
                    name,
                    f"the part {info.filename} inflates to {info.file_size / 1e6:,.1f} MB "
                    f"({info.compress_size / 1e6:,.1f} MB compressed), over the limit of {max_xml_mb:g} MB "
                    "(OIL_MAX_SHEET_XML_MB); not parsed",
                )
        total = sum(i.file_size for i in infos)
        if total > 2 * limit:
            raise LabFileError(
                name,
                f"the workbook inflates to {total / 1e6:,.1f} MB, over twice the limit of {max_xml_mb:g} MB "
                "(OIL_MAX_SHEET_XML_MB); not parsed",
            )
        members = _sheet_members(zf)
        known = {i.filename for i in infos}
        out = {}
        try:
            for sheet in sheets:
                member = members.get(sheet)
                if member is None or member not in known:
                    continue
                scan = SheetScan(sheet, member, zf.getinfo(member).file_size)
                kept = sheet in keep and scan.xml_bytes <= MAX_KEPT_XML
                if kept and prove is not None:
                    proven = _proven(zf, SheetScan(sheet, member, scan.xml_bytes), name, max_cells, prove)
                    if proven is not None:  # else the part did not inflate cleanly: streamed below
                        out[sheet] = proven
                        continue
                _scan(zf, scan, name, max_cells, kept)
                out[sheet] = scan
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as exc:
            if isinstance(exc, LabFileError):
                raise
            raise LabFileError(name, f"not a readable .xlsx workbook ({type(exc).__name__}: {exc})") from None
        return out
