"""The read API's report pages, built column by column (``api/snapshot.py``), against the plain
reading of the same rows: Arrow ``to_pylist``, one dict per item, ``orjson``. Edge values included:
nulls in every kind of column, NaN and infinities, timestamps with microseconds, quotes, commas and
non-ASCII text, empty / null / multi-line breach JSON, rows without a measured essay."""

from __future__ import annotations

import io
import json
import math
from datetime import datetime

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from oil_analysis.api.snapshot import BLOCK, ReportStore

ESSAYS = ["fe", "cu", "visc_100c"]
N = BLOCK * 3 + 5  # several breach blocks, the last one partial


def _table() -> pa.Table:
    rng = np.random.default_rng(18)
    stamps = [datetime(2024, 1, 1 + i % 28, 0, 0, 0, 0 if i % 3 else 123456) for i in range(N)]
    fe = [None if i % 5 == 0 else float(rng.integers(0, 300)) for i in range(N)]
    cu = [math.nan if i % 4 == 0 else (math.inf if i == 7 else 0.1 * i) for i in range(N)]
    visc = [None if i % 2 else 13.5 + i / 3 for i in range(N)]
    breaches = [
        None
        if i % 6 == 0
        else ""
        if i % 6 == 1
        else '[\n  {"essay": "fe", "level": "marginal", "value": 1.5}\n]'
        if i % 6 == 2
        else json.dumps([{"essay": "cu", "note": f'ñandú, "q" {i}'}])
        for i in range(N)
    ]
    return pa.table(
        {
            "client": pa.array(["CDA"] * N, pa.large_string()),
            "sampleNumber": pa.array([f"S{i:04d}" for i in range(N)], pa.large_string()),
            "sampleDate": pa.array([None if i == 3 else s for i, s in enumerate(stamps)], pa.timestamp("us")),
            "unitId": pa.array([None if i == 4 else f"U_{i % 3}" for i in range(N)], pa.large_string()),
            "machineHours": pa.array([None if i % 7 == 0 else 1000.5 + i for i in range(N)], pa.float64()),
            "oilChanged": pa.array([None if i % 9 == 0 else bool(i % 2) for i in range(N)], pa.bool_()),
            "daysSincePrevious": pa.array([None if i % 8 == 0 else i for i in range(N)], pa.int64()),
            "labComment": pa.array(
                [None if i % 2 else f'dice "hola", {i} — ok\n' for i in range(N)], pa.large_string()
            ),
            "censoredEssays": pa.array(
                [None if i % 3 else ('{"fe": "<5"}' if i % 2 else "not json") for i in range(N)],
                pa.large_string(),
            ),
            "fe": pa.array(fe, pa.float64()),
            "cu": pa.array(cu, pa.float64()),
            "visc_100c": pa.array(visc, pa.float64()),
            "breached_essays": pa.array(breaches, pa.large_string()),
            "report_status": pa.array(["Normal", "Alerta", "Anormal"] * (N // 3) + ["Normal"] * (N % 3)),
        }
    )


def _reference(table: pa.Table, rows: list[int]) -> bytes:
    """The page the plain way: one dict per row from Arrow's Python values."""
    items = []
    for r in rows:
        row = {k: v[0] for k, v in table.slice(r, 1).to_pydict().items()}
        item = {k: v for k, v in row.items() if k not in (*ESSAYS, "breached_essays", "censoredEssays")}
        item["essays"] = {e: row[e] for e in ESSAYS if row[e] is not None and math.isfinite(row[e])}
        try:
            censored = json.loads(row["censoredEssays"]) if row["censoredEssays"] is not None else {}
        except ValueError:
            censored = {}
        item["censored"] = censored or {}
        item["breaches"] = orjson.Fragment((row["breached_essays"] or "[]").encode())
        items.append(item)
    return orjson.dumps(items)


def test_a_page_is_byte_for_byte_the_plain_serialization_of_its_rows():
    table = _table()
    buf = io.BytesIO()
    pq.write_table(table, buf)
    store = ReportStore(buf.getvalue(), ESSAYS)
    for rows in ([0], list(range(N)), [N - 1, 2, 17, 33, 3, 4, 7, 1], list(range(N - 1, -1, -2))):
        got = store.page_json(np.array(rows))
        assert got == _reference(table, rows)
        items = orjson.loads(got)
        assert [i["sampleNumber"] for i in items] == [f"S{r:04d}" for r in rows]
    assert store.page_json(np.array([], dtype=np.int64)) == b"[]"
    one = orjson.loads(store.page_json(np.array([3, 7, 0])))
    assert one[0]["sampleDate"] is None and one[2]["sampleDate"] == "2024-01-01T00:00:00.123456"
    assert "cu" not in one[1]["essays"]  # infinity is not a measurement
    assert one[2]["breaches"] == [] and one[2]["machineHours"] is None and one[2]["oilChanged"] is None
    # the export keeps the file's columns: an empty breach text reads back as null, like a null
    back = store.table(np.arange(N))
    assert back.column("breached_essays").to_pylist() == [
        v or None for v in table.column("breached_essays").to_pylist()
    ]
    assert back.select(["fe", "sampleDate", "daysSincePrevious"]).equals(
        table.select(["fe", "sampleDate", "daysSincePrevious"])
    )


def test_settled_heap_is_frozen_and_a_replaced_snapshot_is_still_freed():
    """After a snapshot load the long-lived objects leave the cyclic collector's scans (no
    generation-2 pause walks them during requests), and what a replaced snapshot held is still freed."""
    import gc
    import weakref

    from oil_analysis.api.snapshot import _settle_heap

    class Held:  # stands for an object of a loaded snapshot
        pass

    old = Held()
    ref = weakref.ref(old)
    try:
        _settle_heap()
        assert gc.get_freeze_count() > 0
        del old  # the snapshot is replaced: reference counting frees what it held, frozen or not
        assert ref() is None
    finally:
        gc.unfreeze()
