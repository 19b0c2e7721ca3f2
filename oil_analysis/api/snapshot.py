"""Per-client snapshots of the published gold, held in memory and refreshed from the manifest.

A snapshot is built only from files the client's manifest (``gold/{client}/_manifest.json``) names,
each checked against the manifest's sha256 and size, and only when the gold tables carry the
manifest's current limits version (a run that has published new limits but not yet the reports is
still in progress). Anything else is a half-published state: the previous snapshot keeps being
served and the problems are reported (``/health``). The manifest is re-read at most every
``OIL_API_REFRESH_S`` seconds (one small GET); the tables are re-read only when its sha256 changes.

Tables stay in Arrow (compact strings, no per-row Python objects). Reports are sorted once, newest
first, with integer codes for status, unit and component and a position index per unit, so a filtered
page is a few numpy comparisons, numpy takes of the page's rows column by column and one
``orjson.dumps`` (:meth:`ReportStore.page_json`).
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import logging
import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..domain.catalog import load_catalog
from ..domain.classify import STATUSES
from ..storage import layout, manifest
from ..storage.filesystem import Storage

log = logging.getLogger("oil_analysis.api")

REPORTS = "classified_reports"
MACHINES = "machine_status_current"
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ADVICE_SOURCES = ("llm", "cache", "fallback", "offline", "normal")


class NotPublished(LookupError):
    """The client has no manifest, or the manifest does not list the gold tables yet."""


class InconsistentPublication(RuntimeError):
    """Files named by the manifest do not match it (a publication in progress, or tampering)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _json_value(v):
    """Arrow → JSON-safe Python: NaN becomes null, timestamps ISO 8601."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, datetime | date):
        return v.isoformat()
    return v


def _parse_json(text, default):
    if text is None:
        return default
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return default


def _default(v):
    """What orjson does not serialize natively (pandas / numpy scalars)."""
    if isinstance(v, np.generic):
        return v.item()
    if hasattr(v, "isoformat"):
        return v.isoformat()
    raise TypeError(f"not JSON serializable: {type(v).__name__}")


def dumps(doc) -> bytes:
    """Compact JSON; NaN and infinities become null (orjson), datetimes ISO 8601."""
    return orjson.dumps(doc, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)


def _values(arr: pa.Array) -> list:
    """A column of a page as Python values, without a per-value Arrow scalar (floats keep NaN for
    null: the serializer writes null; naive timestamps go through numpy, ~20× faster than Arrow's
    ``to_pylist``, to the same ``datetime`` values or None)."""
    if pa.types.is_dictionary(arr.type):
        values = arr.dictionary.to_pylist()
        codes = pc.fill_null(arr.indices, -1).to_numpy(zero_copy_only=False).tolist()
        return [values[i] if i >= 0 else None for i in codes]
    if pa.types.is_floating(arr.type):
        return arr.to_numpy(zero_copy_only=False).tolist()
    if pa.types.is_timestamp(arr.type) and arr.type.tz is None and arr.type.unit != "ns":
        return arr.to_numpy(zero_copy_only=False).astype(object).tolist()
    return arr.to_pylist()


class _NumpyColumn:
    """A fixed-width Arrow column (numbers, booleans, naive timestamps) read through numpy: its data
    buffer as a zero-copy view (booleans unpacked), nulls as a validity mask. A page's values are one
    numpy take and ``tolist`` (timestamps to ``datetime``), ~20× cheaper than Arrow per page."""

    def __init__(self, data: np.ndarray, valid: np.ndarray | None, timestamp: bool) -> None:
        self.data, self.valid, self.timestamp = data, valid, timestamp

    @classmethod
    def of(cls, arr: pa.Array) -> _NumpyColumn | None:
        """The column, or None when its type is not read this way."""
        t = arr.type
        valid = arr.is_valid().to_numpy(zero_copy_only=False) if arr.null_count else None
        if pa.types.is_boolean(t):
            return cls(arr.fill_null(False).to_numpy(zero_copy_only=False), valid, False)
        if pa.types.is_integer(t) or pa.types.is_floating(t):
            dtype = np.dtype(t.to_pandas_dtype())
        elif pa.types.is_timestamp(t) and t.tz is None and t.unit != "ns":
            dtype = np.dtype(f"datetime64[{t.unit}]")
        else:
            return None
        data = np.frombuffer(arr.buffers()[1], dtype=dtype)[arr.offset : arr.offset + len(arr)]
        return cls(data, valid, pa.types.is_timestamp(t))

    def values(self, rows: np.ndarray) -> list:
        """Python values at these rows (None for a null)."""
        page = self.data[rows]
        out = page.astype(object).tolist() if self.timestamp else page.tolist()
        if self.valid is not None:
            for i in np.flatnonzero(~self.valid[rows]).tolist():
                out[i] = None
        return out


# Text columns whose values are (nearly) unique per row: read as plain strings. Every other text column
# is read as a dictionary (codes + distinct values), which holds a 1 M-row client in a fraction of the
# memory (bench/api_bench.py).
UNIQUE_TEXT = {
    "sampleNumber",
    "previousSampleNumber",
    "breached_essays",
    "censoredEssays",
    "labComment",
    "ai_input_hash",
}


BREACHES = "breached_essays"
BLOCK = 16  # rows per compressed block of breach JSON
# LZ4, not zstd: a block decompresses in ~3 µs instead of ~22 µs (Arrow's zstd sets up a context per
# call) for 1.5× the bytes (6× smaller than the text instead of 9.5×; 70 MB at 1 M samples).
_CODEC = pa.Codec("lz4")


class ReportStore:
    """The classified reports of a snapshot, in file order, in the layout a page is cheapest to build
    from: text columns as integer codes (numpy) plus their distinct values, essays as one row-major
    float grid (NaN = null) read one column at a time, ``breached_essays`` in a :class:`BreachStore`,
    and the remaining columns (dates, numbers, unique texts) in Arrow, the fixed-width ones also seen
    through zero-copy numpy views for pages. ``table(rows)`` gives back the file's exact columns."""

    def __init__(self, data: bytes, essays_known: list[str]) -> None:
        self.schema = pq.read_schema(io.BytesIO(data)).remove_metadata()
        names = self.schema.names
        self.essays = [e for e in essays_known if e in names]
        text = [
            f.name
            for f in self.schema
            if (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
            and f.name not in UNIQUE_TEXT
            and f.name not in self.essays
        ]
        rest = [n for n in names if n not in self.essays and n != BREACHES]
        table = pq.read_table(io.BytesIO(data), columns=rest, read_dictionary=text)
        self.num_rows = table.num_rows
        self.dicts: dict[str, tuple[np.ndarray, list]] = {}
        for name in text:
            arr = table.column(name).combine_chunks()
            if not pa.types.is_dictionary(arr.type):
                arr = arr.dictionary_encode()
            codes = pc.fill_null(arr.indices, -1).to_numpy(zero_copy_only=False).astype(np.int32)
            self.dicts[name] = (codes, arr.dictionary.to_pylist())
        self.arrow = table.drop_columns(text).combine_chunks()
        del table
        self.grid = np.full((self.num_rows, len(self.essays)), np.nan)
        f = pq.ParquetFile(io.BytesIO(data))
        for j, e in enumerate(self.essays):
            self.grid[:, j] = f.read(columns=[e], use_threads=False).column(0).to_numpy()
        self.breaches = BreachStore(data)
        # the JSON item's own columns, in file order
        self.plain = [n for n in names if n not in self.essays and n not in (BREACHES, "censoredEssays")]
        # Each text column's distinct values as an object array, the null code -1 picking the last
        # entry (None): a page's values are one numpy take, not a lookup per value.
        self.objects = {
            name: np.array([*values, None], dtype=object) for name, (_, values) in self.dicts.items()
        }
        self.essay_names = np.array(self.essays, dtype=object)
        # The other columns of an item: fixed-width ones as numpy views of their Arrow buffers, the
        # rest (unique texts) taken from Arrow in one call per page.
        self.numeric = {}
        for name in self.arrow.column_names:
            column = _NumpyColumn.of(self.arrow.column(name).combine_chunks())
            if column is not None:
                self.numeric[name] = column
        self.texts = self.arrow.select([n for n in self.arrow.column_names if n not in self.numeric])

    def codes(self, name: str) -> tuple[np.ndarray, list]:
        return self.dicts[name]

    def page_json(self, rows: np.ndarray) -> bytes:
        """The JSON array of the items of these file rows: each item's plain columns in file order,
        then ``essays`` (the measured ones), ``censored`` (parsed) and ``breaches``
        (``breached_essays``, already JSON in the file, spliced in as an :class:`orjson.Fragment`).
        Values are taken column by column (numpy takes, no per-value Arrow scalar) and the page is
        serialized by one ``orjson.dumps`` call."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return b"[]"
        take = self.texts.take(pa.array(rows, type=pa.int64()))
        columns: list[list] = []
        for name in self.plain:
            if name in self.objects:
                columns.append(self.objects[name][self.dicts[name][0][rows]].tolist())
            elif name in self.numeric:
                columns.append(self.numeric[name].values(rows))
            else:
                columns.append(_values(take.column(name).combine_chunks()))
        columns.append(self._essays(rows))
        if "censoredEssays" in take.column_names:
            censored = take.column("censoredEssays").to_pylist()
            columns.append([{} if v is None else (_parse_json(v, {}) or {}) for v in censored])
        else:
            columns.append([{}] * len(rows))
        columns.append([orjson.Fragment(b) for b in self.breaches.json(rows)])
        names = [*self.plain, "essays", "censored", "breaches"]
        return dumps([dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)])

    def _essays(self, rows: np.ndarray) -> list[dict]:
        """``{essay: value}`` of the measured (finite) essays of each row, in catalog order."""
        grid = self.grid[rows]
        measured = np.isfinite(grid)
        ends = np.cumsum(measured.sum(axis=1)).tolist()
        names = self.essay_names[np.nonzero(measured)[1]].tolist()
        values = grid[measured].tolist()
        out, start = [], 0
        for end in ends:
            out.append(dict(zip(names[start:end], values[start:end], strict=True)))
            start = end
        return out

    def table(self, rows: np.ndarray) -> pa.Table:
        """The file's columns at these file rows."""
        take = self.arrow.take(pa.array(rows, type=pa.int64()))
        idx = {e: j for j, e in enumerate(self.essays)}
        arrays = []
        for f in self.schema:
            if f.name in idx:
                arrays.append(pa.array(self.grid[rows, idx[f.name]], type=f.type, from_pandas=True))
            elif f.name in self.dicts:
                codes, values = self.dicts[f.name]
                arrays.append(
                    pa.array([values[c] if c >= 0 else None for c in codes[rows].tolist()], type=f.type)
                )
            elif f.name == BREACHES:
                arrays.append(pa.array(self.breaches.get(rows), type=f.type))
            else:
                arrays.append(take.column(f.name).combine_chunks().cast(f.type))
        return pa.Table.from_arrays(arrays, schema=self.schema)


class BreachStore:
    """``breached_essays`` (a JSON list per report, ~430 B at 1 M samples: a third of the table) kept
    LZ4-compressed in blocks of :data:`BLOCK` rows, read in batches so it never exists decoded in
    full. Each block is the UTF-8 bytes of its rows back to back; ``starts`` and ``sizes`` locate a
    row inside its block (size -1: null or empty). A page decompresses only the blocks of its rows
    (~3 µs each) and slices its rows' bytes out of them, ready to splice into the JSON items."""

    def __init__(self, data: bytes) -> None:
        self.blocks: list[tuple[bytes, int]] = []
        field_index = pq.read_schema(io.BytesIO(data)).get_field_index(BREACHES)
        starts, sizes = [], []
        if field_index >= 0:
            f = pq.ParquetFile(io.BytesIO(data))
            for batch in f.iter_batches(batch_size=BLOCK * 1024, columns=[BREACHES], use_threads=False):
                arr = batch.column(0)
                if not pa.types.is_large_string(arr.type):
                    arr = arr.cast(pa.large_string())
                offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[
                    arr.offset : arr.offset + len(arr) + 1
                ]
                chars = arr.buffers()[2]
                valid = arr.is_valid().to_numpy(zero_copy_only=False)
                for i in range(0, len(arr), BLOCK):
                    lo, hi = int(offsets[i]), int(offsets[min(i + BLOCK, len(arr))])
                    raw = chars[lo:hi].to_pybytes() if chars is not None and hi > lo else b""
                    self.blocks.append((_CODEC.compress(raw, asbytes=True), len(raw)))
                    rows = slice(i, i + BLOCK)
                    starts.append(offsets[rows] - lo)
                    size = np.diff(offsets[i : i + BLOCK + 1])
                    sizes.append(np.where(valid[rows] & (size > 0), size, -1))  # "" reads as null
        self.starts = np.concatenate(starts).astype(np.int32) if starts else np.empty(0, np.int32)
        self.sizes = np.concatenate(sizes).astype(np.int32) if sizes else np.empty(0, np.int32)

    def json(self, rows: np.ndarray) -> list[bytes]:
        """The JSON bytes of these file rows (``[]`` for a null)."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(self.blocks):
            return [b"[]"] * len(rows)
        blocks, slot = np.unique(rows // BLOCK, return_inverse=True)
        raws = [
            _CODEC.decompress(comp, decompressed_size=size, asbytes=True)
            for comp, size in (self.blocks[b] for b in blocks.tolist())
        ]
        return [
            raws[b][s : s + n] if n >= 0 else b"[]"
            for b, s, n in zip(
                slot.tolist(), self.starts[rows].tolist(), self.sizes[rows].tolist(), strict=True
            )
        ]

    def get(self, rows: np.ndarray) -> list[str | None]:
        """The JSON text of these file rows (None for a null)."""
        sizes = self.sizes[np.asarray(rows, dtype=np.int64)].tolist()
        return [v.decode() if n >= 0 else None for v, n in zip(self.json(rows), sizes, strict=True)]

    @property
    def nbytes(self) -> int:
        return sum(len(c) for c, _ in self.blocks) + self.starts.nbytes + self.sizes.nbytes


def _micros(col: pa.ChunkedArray) -> np.ndarray:
    arr = col.combine_chunks()
    if pa.types.is_timestamp(arr.type):
        arr = arr.cast(pa.timestamp("us"))
    return pc.fill_null(arr.cast(pa.int64()), np.iinfo(np.int64).min).to_numpy(zero_copy_only=False)


@dataclass
class Snapshot:
    """One consistent publication of a client, ready to query."""

    client: str
    manifest: dict
    manifest_sha256: str
    loaded_at: datetime
    reports: ReportStore  # file order; ``order`` lists its rows newest first
    machines: pa.Table  # priority order
    limits: pd.DataFrame
    limits_version: str | None
    fleet_html: bytes | None
    essay_columns: list[str]
    status_codes: np.ndarray
    status_dict: list
    unit_codes: np.ndarray
    unit_dict: dict[str, int]
    comp_codes: np.ndarray
    comp_norm_codes: np.ndarray
    comp_dict: dict[str, int]
    comp_norm_dict: dict[str, int]
    dates: np.ndarray  # sampleDate, µs since epoch
    order: np.ndarray  # position (newest first) → row of ``reports``
    unit_rows: dict[int, np.ndarray]  # unit code → positions in ``reports`` (newest first)
    everything: np.ndarray  # every position (an unfiltered page, without a new array per request)
    machine_items: list[bytes]  # JSON of each machine row, priority order
    machine_status: np.ndarray  # status of each machine row
    machine_index: dict[str, int]
    stats: dict = field(default_factory=dict)

    # -- reports --------------------------------------------------------------------------------
    def report_positions(
        self,
        statuses: list[str] | None = None,
        unit: str | None = None,
        component: str | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
    ) -> np.ndarray:
        """Positions (newest first) of the reports that pass every filter."""
        if unit is not None:
            code = self.unit_dict.get(unit)
            if code is None:
                return np.empty(0, dtype=np.int64)
            pos = self.unit_rows[code]
        else:
            pos = None

        def col(a: np.ndarray) -> np.ndarray:
            return a if pos is None else a[pos]

        mask = None

        def both(m):
            nonlocal mask
            mask = m if mask is None else (mask & m)

        if statuses:
            # a lookup table by code (the null code -1 reads the last entry, False): one take
            wanted = np.array([s in set(statuses) for s in self.status_dict] + [False])
            both(wanted[col(self.status_codes)])
        if component is not None:
            a, b = self.comp_dict.get(component, -2), self.comp_norm_dict.get(component, -2)
            both((col(self.comp_codes) == a) | (col(self.comp_norm_codes) == b))
        if date_from is not None:
            both(col(self.dates) >= _us(date_from))
        if date_to is not None:
            both(col(self.dates) < _us(date_to) + 86_400_000_000)
        if mask is None:
            return self.everything if pos is None else pos
        return np.flatnonzero(mask) if pos is None else pos[mask]

    def report_items(self, positions: np.ndarray) -> list[dict]:
        """The JSON items of these report positions (essays nested, breaches parsed)."""
        return orjson.loads(self.report_json(positions))

    def report_json(self, positions: np.ndarray) -> bytes:
        """The JSON array of the items of these positions (:meth:`ReportStore.page_json`)."""
        return self.reports.page_json(self.order[np.asarray(positions, dtype=np.int64)])

    def report_table(self, positions: np.ndarray) -> pa.Table:
        """The rows at these positions (newest first), with the file's exact columns."""
        return self.reports.table(self.order[np.asarray(positions, dtype=np.int64)])

    # -- machines -------------------------------------------------------------------------------
    def machine_positions(self, statuses: list[str] | None = None) -> np.ndarray:
        if not statuses:
            return np.arange(len(self.machine_items))
        return np.flatnonzero(np.isin(self.machine_status, list(statuses)))

    def machine_detail(self, unit: str, history: int) -> dict | None:
        """The machine, its components with their latest report, and the trend series of the essays
        breached in those reports with their limits."""
        i = self.machine_index.get(unit)
        if i is None:
            return None
        machine = json.loads(self.machine_items[i])
        code = self.unit_dict.get(unit)
        pos = self.unit_rows.get(code, np.empty(0, dtype=np.int64)) if code is not None else []
        hist = self.report_table(np.asarray(pos)).to_pandas() if len(pos) else None
        components, trends = [], []
        if hist is not None:
            latest_pos = hist.drop_duplicates("componentName", keep="first").index  # newest first
            items = self.report_items(np.asarray(pos)[latest_pos])
            by_comp = {it["componentName"]: it for it in items}
            for comp in sorted(by_comp, key=lambda c: (-_rank(by_comp[c]), c)):
                latest = by_comp[comp]
                components.append(
                    {
                        "componentName": comp,
                        "componentNameNormalized": latest.get("componentNameNormalized"),
                        "status": latest.get("report_status"),
                        "severity_score": latest.get("severity_score"),
                        "latest_report": latest,
                    }
                )
                trends += self._trends(latest, hist[hist["componentName"] == comp], history)
        return {"machine": machine, "components": components, "trends": trends}

    def _trends(self, latest: dict, hist: pd.DataFrame, history: int) -> list[dict]:
        scoring = [b for b in latest["breaches"] if (b.get("points") or 0) > 0]
        by_essay: dict[str, list[dict]] = {}
        for b in scoring:
            by_essay.setdefault(b["essay"], []).append(b)
        catalog = load_catalog()
        asc = hist.iloc[::-1]
        out = []
        for essay, breaches in by_essay.items():
            series = asc[asc[essay].notna()].tail(history) if essay in asc else asc.iloc[:0]
            key = (latest.get("machineName"), latest.get("componentNameNormalized"), essay)
            out.append(
                {
                    "componentName": latest["componentName"],
                    "essay": essay,
                    "essay_name": catalog.name_es(essay) if essay in catalog.essays else essay,
                    "unit": catalog.unit(essay) if essay in catalog.essays else "",
                    "breaches": breaches,
                    "limits": self._limit_rows.get(key, []),
                    "points": [
                        {
                            "sampleDate": pd.Timestamp(r.sampleDate).date().isoformat(),
                            "sampleNumber": r.sampleNumber,
                            "value": float(getattr(r, essay)),
                            "report_status": r.report_status,
                        }
                        for r in series.itertuples(index=False)
                    ],
                }
            )
        return out

    @property
    def _limit_rows(self) -> dict[tuple, list[dict]]:
        cached = self.stats.get("_limit_rows")
        if cached is None:
            cached = {}
            lim = self.limits
            if len(lim):
                keep = lim[lim["kind"].astype(str).isin(["level", "trend"])]
                cols = ["kind", "direction", "stratum", "marginal", "condemning", "critical", "comparison"]
                for key, g in keep.groupby(["machine", "component", "essay"], sort=False):
                    cached[tuple(str(k) for k in key)] = [
                        {c: _json_value(v) for c, v in zip(cols, row, strict=True)}
                        for row in g[cols].itertuples(index=False)
                    ]
            self.stats["_limit_rows"] = cached
        return cached


def _rank(item: dict) -> int:
    return {"Anormal": 2, "Alerta": 1}.get(item.get("report_status"), 0)


def _us(d: date) -> int:
    return int((datetime(d.year, d.month, d.day) - datetime(1970, 1, 1)).total_seconds()) * 1_000_000


def _entry(doc: dict, path: str) -> dict | None:
    return next((f for f in doc.get("files", []) if f["path"] == path), None)


def _verified(store: Storage, entry: dict) -> bytes:
    data = store.read_bytes(entry["path"])
    sha = hashlib.sha256(data).hexdigest()
    if sha != entry["sha256"] or len(data) != entry["bytes"]:
        raise InconsistentPublication(
            [
                f"{entry['path']}: stored sha256 {sha[:12]} ({len(data)} B) differs from the manifest's "
                f"{entry['sha256'][:12]} ({entry['bytes']} B)"
            ]
        )
    return data


def required_entries(client: str, doc: dict) -> dict[str, dict]:
    """The manifest entries a snapshot is built from (fleet report only when listed)."""
    out = {}
    for name in (REPORTS, MACHINES):
        e = _entry(doc, layout.gold_path(client, name))
        if e is None:
            raise NotPublished(f"the manifest of {client!r} does not list {name} yet")
        out[name] = e
    limits = [
        f
        for f in doc.get("files", [])
        if f.get("asset") == "stewart_limits" and f["path"].endswith("/stewart_limits.parquet")
    ]
    if limits:
        out["limits"] = limits[0]
    report = _entry(doc, layout.fleet_report_path(client))
    if report is not None:
        out["fleet_report"] = report
    return out


def build_snapshot(store: Storage, client: str, doc: dict, manifest_sha: str) -> Snapshot:
    """Read, verify and index what the manifest names. Raises :class:`InconsistentPublication`."""
    entries = required_entries(client, doc)
    current = doc.get("limits_version")
    problems = []
    for name in (REPORTS, MACHINES, "fleet_report"):
        e = entries.get(name)
        if e is not None and current and e.get("limits_version") and e["limits_version"] != current:
            problems.append(
                f"{e['path']} was published with limits {e['limits_version']}, the current limits are "
                f"{current} (publication in progress)"
            )
    data = {}
    for name, e in entries.items():
        try:
            data[name] = _verified(store, e)
        except InconsistentPublication as exc:
            problems += exc.problems
        except FileNotFoundError:
            problems.append(f"{e['path']}: listed in the manifest but missing")
    if problems:
        raise InconsistentPublication(problems)

    catalog = load_catalog()
    reports = ReportStore(data.pop(REPORTS), catalog.essays)
    # Newest first, as a permutation: the store stays in file order (no second copy of it).
    order = pc.sort_indices(
        reports.arrow,
        sort_keys=[("sampleDate", "descending"), ("reportDate", "descending"), ("sampleNumber", "ascending")],
    ).to_numpy()
    machines = pq.read_table(io.BytesIO(data.pop(MACHINES)))
    if machines.num_rows:
        machines = machines.take(
            pc.sort_indices(machines, sort_keys=[("priority", "descending"), ("unitId", "ascending")])
        )
    limits = pq.read_table(io.BytesIO(data.pop("limits"))).to_pandas() if "limits" in data else pd.DataFrame()

    essays = reports.essays

    def ordered(name: str) -> tuple[np.ndarray, list]:
        codes, values = reports.codes(name)
        return codes[order], values

    status_codes, status_dict = ordered("report_status")
    unit_codes, unit_list = ordered("unitId")
    comp_codes, comp_list = ordered("componentName")
    norm_codes, norm_list = ordered("componentNameNormalized")
    by_unit = np.argsort(unit_codes, kind="stable")
    bounds = np.flatnonzero(np.diff(unit_codes[by_unit])) + 1
    unit_rows = {int(unit_codes[g[0]]): g for g in np.split(by_unit, bounds) if len(g)}

    m_rows = machines.to_pylist()
    m_items = [dumps(_machine_item(r)) for r in m_rows]
    m_status = np.array([str(r["machine_status"]) for r in m_rows], dtype=object)

    n = reports.num_rows
    counts = {
        s: int(np.count_nonzero(status_codes == status_dict.index(s))) if s in status_dict else 0
        for s in STATUSES
    }
    sources: dict[str, int] = {}
    if "ai_source" in reports.dicts:
        codes, values = reports.codes("ai_source")
        for code, count in enumerate(np.bincount(codes[codes >= 0], minlength=len(values)).tolist()):
            if count:
                sources[str(values[code])] = count
    stats = {
        "samples": n,
        "reports_by_status": counts,
        "flagged_share": (n - counts["Normal"]) / n if n else 0.0,
        "machines_by_status": {s: int(np.count_nonzero(m_status == s)) for s in STATUSES},
        "advisor_sources": sources,
    }
    fleet = data.pop("fleet_report", None)
    return Snapshot(
        client=client,
        manifest=doc,
        manifest_sha256=manifest_sha,
        loaded_at=datetime.now(UTC),
        reports=reports,
        machines=machines,
        limits=limits,
        limits_version=current,
        fleet_html=fleet,
        essay_columns=essays,
        status_codes=status_codes,
        status_dict=status_dict,
        unit_codes=unit_codes,
        unit_dict={u: i for i, u in enumerate(unit_list)},
        comp_codes=comp_codes,
        comp_norm_codes=norm_codes,
        comp_dict={c: i for i, c in enumerate(comp_list)},
        comp_norm_dict={c: i for i, c in enumerate(norm_list)},
        dates=_micros(reports.arrow.column("sampleDate"))[order],
        order=order,
        unit_rows=unit_rows,
        everything=np.arange(n),
        machine_items=m_items,
        machine_status=m_status,
        machine_index={str(r["unitId"]): i for i, r in enumerate(m_rows)},
        stats=stats,
    )


def _machine_item(r: dict) -> dict:
    item = {k: _json_value(v) for k, v in r.items() if k != "component_status"}
    item["components"] = _parse_json(r.get("component_status"), [])
    return item


def published_at(doc: dict) -> datetime | None:
    stamp = doc.get("updated_at")
    if not stamp:
        return None
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@dataclass
class ClientState:
    """What the service knows of one client: the snapshot it serves and the last check's outcome."""

    client: str
    snapshot: Snapshot | None = None
    checked: float = 0.0  # monotonic time of the last manifest check
    seen_sha: str | None = None  # manifest sha256 of the last check
    failed_stamps: tuple | None = None  # file stamps of a rejected manifest (re-verify when they move)
    problems: list[str] = field(default_factory=list)  # why the newest manifest is not served
    pending: dict | None = None  # the newest manifest, when it is not the one served
    error: str | None = None  # storage error of the last check
    published: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def serving(self) -> str:
        if self.snapshot is None:
            return "none"
        return "previous" if self.problems or self.error else "current"


def _settle_heap() -> None:
    """Take the long-lived objects of the snapshots out of the cyclic collector's scans.

    A loaded snapshot holds millions of Python objects (the text columns' distinct values, the
    breach offsets, the indexes). Every page allocates a few thousand dicts and lists, which
    triggers generation-2 collections now and then; each one would walk the whole snapshot and
    pause every request for tens of milliseconds (the p95 of the reports page). Collecting once
    and freezing what is left moves those objects to the permanent generation. What a replaced
    snapshot held is still freed by reference counting (its objects form no cycles); the unfreeze
    first lets one full collection reclaim any cycle that did form since the last load.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class SnapshotCache:
    """One :class:`ClientState` per client, refreshed on access at most every ``refresh_s`` seconds."""

    def __init__(self, store: Storage, refresh_s: float = 5.0) -> None:
        self.store, self.refresh_s = store, refresh_s
        self._states: dict[str, ClientState] = {}
        self._guard = threading.Lock()

    def state(self, client: str, wait: bool = True) -> ClientState:
        """The client's state. A due check of a client already in memory runs in a background thread
        (callers keep the current snapshot meanwhile); the first load is waited for, unless ``wait``
        is false (then the caller gets the state as it is)."""
        with self._guard:
            st = self._states.get(client)
            if st is None:
                st = self._states[client] = ClientState(client)
        if time.monotonic() - st.checked < self.refresh_s:
            return st
        if st.snapshot is None:
            if wait:
                with st.lock:
                    if time.monotonic() - st.checked >= self.refresh_s:
                        self._refresh(st)
            return st
        if st.lock.acquire(blocking=False):
            threading.Thread(
                target=self._background, args=(st,), name=f"refresh-{client}", daemon=True
            ).start()
        return st

    def _background(self, st: ClientState) -> None:
        try:
            self._refresh(st)
        finally:
            st.lock.release()

    def _refresh(self, st: ClientState) -> None:
        path = manifest.manifest_path(st.client)
        try:
            try:
                raw = self.store.read_bytes(path)
            except FileNotFoundError:
                primary = getattr(self.store, "primary", self.store)
                if primary.is_local and not os.path.isdir(primary.base):
                    st.error = f"data root {primary.base} does not exist"
                elif st.snapshot is not None:  # gone after being served: keep the last one, say so
                    st.error, st.problems = None, [f"{path} no longer exists"]
                else:
                    st.published, st.error = False, None
                return
            st.published, st.error = True, None
            sha = hashlib.sha256(raw).hexdigest()
            if st.snapshot is not None and sha == st.snapshot.manifest_sha256:
                st.problems, st.pending, st.seen_sha = [], None, sha
                return
            doc = json.loads(raw)
            stamps = self._stamps(st.client, doc)
            if sha == st.seen_sha and st.failed_stamps == stamps:
                return  # same rejected manifest, same files: nothing new to verify
            st.seen_sha = sha
            started = time.monotonic()
            snap = build_snapshot(self.store, st.client, doc, sha)
            st.snapshot, st.problems, st.pending, st.failed_stamps = snap, [], None, None
            # Hand the decoding buffers and the previous snapshot back to the system now.
            pa.default_memory_pool().release_unused()
            _settle_heap()
            log.info(
                "client %s: snapshot %s loaded (%d reports, %d machines) in %.2f s",
                st.client,
                sha[:12],
                snap.reports.num_rows,
                snap.machines.num_rows,
                time.monotonic() - started,
            )
        except NotPublished as exc:
            st.published, st.problems = st.snapshot is not None, [str(exc)]
        except InconsistentPublication as exc:
            st.problems, st.pending = exc.problems, doc
            st.failed_stamps = stamps
            log.warning(
                "client %s: manifest %s not served (%s); serving %s",
                st.client,
                sha[:12],
                "; ".join(exc.problems),
                f"snapshot {st.snapshot.manifest_sha256[:12]}" if st.snapshot else "nothing",
            )
        except (OSError, ValueError) as exc:
            st.error = f"{type(exc).__name__}: {exc}"
            log.warning("client %s: manifest check failed: %s", st.client, st.error)
        finally:
            st.checked = time.monotonic()

    def _stamps(self, client: str, doc: dict) -> tuple:
        """(path, size, mtime) of the files a snapshot needs: a rejected manifest is verified again
        only when one of them changes."""
        try:
            paths = [e["path"] for e in required_entries(client, doc).values()]
        except NotPublished:
            return ()
        infos = self.store.fs.get_file_info([self.store.full(p) for p in paths])
        return tuple(
            (p, i.size, i.mtime_ns) if i.type == pafs.FileType.File else (p, None, None)
            for p, i in zip(paths, infos, strict=True)
        )

    def known(self) -> dict[str, ClientState]:
        with self._guard:
            return dict(self._states)


def past_limits(store: Storage, client: str, version: str) -> pd.DataFrame | None:
    """A past limits version from its folder (``silver/stewart_limits/{client}/{version}/``).

    Only the current version is named by the manifest. A version folder is immutable (the version is
    a hash of the inputs and parameters), and every row states its client and version: rows that do
    not match are refused rather than served.
    """
    if not VERSION_RE.match(version):
        return None
    path = layout.limits_file(layout.limits_dir(client, version))
    if not store.exists(path):
        return None
    df = store.read_parquet(path)
    if len(df) and (
        not (df["version"].astype(str) == version).all()
        or not (df["client"].astype(str).str.lower() == client.lower()).all()
    ):
        raise InconsistentPublication(
            [f"{path}: rows do not all carry client {client} and version {version}"]
        )
    return df


def limit_versions(store: Storage, client: str) -> list[str]:
    """Every limits version folder of the client, sorted."""
    prefix = layout.limits_client_dir(client) + "/"
    out = set()
    for e in store.list_files(prefix):
        rest = e.path[len(prefix) :]
        if rest.endswith("/stewart_limits.parquet"):
            out.add(rest.split("/", 1)[0])
    return sorted(out)
