"""The reject ledger lasts: after every run it holds the rejects of every raw file that currently
feeds silver, and only those — the same rows a full rebuild would give — over a sequence of
arrivals, corrections and removals."""

from __future__ import annotations

import datetime as dt
import os

import pandas as pd

from oil_analysis.domain.clients import load_clients
from oil_analysis.pipeline.bronze import ingest_client
from oil_analysis.pipeline.silver import build_silver, save_state
from oil_analysis.storage import layout
from oil_analysis.storage.filesystem import Storage

from .builders import finning_row, write_finning

CDA = load_clients()["cda"]
NOW = pd.Timestamp("2026-11-28")
KEYS = ["file", "sheet", "row", "column", "value", "reason", "action", "sampleNumber", "stage"]


def rows(prefix: int, n: int = 4, bad: dict | None = None) -> list[dict]:
    out = [
        finning_row(i, **{"No. de control de laboratorio": f"R{prefix:03d}-00000-{i:04d}"}) for i in range(n)
    ]
    for i, over in (bad or {}).items():
        out[i].update(over)
    return out


def publish(store: Storage, build) -> None:
    """What the silver asset and the IO manager publish, without Dagster."""
    store.write_parquet(layout.harmonized_path("cda"), build.silver)
    store.write_parquet(layout.rejects_path("cda"), build.rejects)
    save_state(store, "cda", build)


def step(store: Storage) -> tuple[str, pd.DataFrame]:
    registry = ingest_client(store, CDA, workers=1).registry
    incremental = build_silver(store, "cda", registry, now=NOW)
    full = build_silver(store, "cda", registry, now=NOW, full_rebuild=True)
    a = incremental.rejects[KEYS].astype("string").fillna("∅")
    b = full.rejects[KEYS].astype("string").fillna("∅")
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    feeding = set(registry.loc[registry["status"] == "ok", "key"])
    assert set(incremental.rejects["file"]) <= feeding
    publish(store, incremental)
    return incremental.mode, pd.read_parquet(store.full(layout.rejects_path("cda")))


def test_ledger_exact_over_arrivals_corrections_and_removals(tmp_path):
    root = tmp_path / "data"
    d = root / "bronze/cda"
    store = Storage.local(str(root))
    write_finning(
        d / "a.xlsx",
        rows(1, bad={0: {"Cu": "abc"}, 1: {"Fecha de Toma de Muestra": dt.datetime(2031, 1, 1)}}),
    )
    mode, ledger = step(store)
    assert mode == "full" and len(ledger) == 2 and set(ledger["file"]) == {"bronze/cda/a.xlsx"}

    # arrival: a new file with its own rejects and a conflicting copy of one of a's samples
    write_finning(
        d / "b.xlsx",
        rows(2, bad={0: {"Cu": -3}, 2: {"No. de control de laboratorio": "R001-00000-0003", "Fe": 77}}),
    )
    mode, ledger = step(store)
    assert mode == "incremental"
    assert {"bronze/cda/a.xlsx", "bronze/cda/b.xlsx"} == set(ledger["file"])
    assert (ledger["stage"] == "duplicate").sum() == 1

    # an unchanged run keeps the ledger as it is (the registry still counts those rejects)
    mode, again = step(store)
    assert mode == "unchanged" and len(again) == len(ledger)

    # correction: a is re-exported with the text cell fixed and a new Excel error cell
    write_finning(d / "a.xlsx", rows(1, bad={2: {"V100": "#N/A"}}))
    os.utime(d / "a.xlsx", ns=(10**18, 10**18))
    mode, ledger = step(store)
    a_rows = ledger[ledger["file"] == "bronze/cda/a.xlsx"]
    assert list(a_rows["column"]) == ["V100"] and "Excel error cell #N/A" in a_rows.iloc[0]["reason"]

    # removal: b leaves, and so do its rejects (and the duplicate contest it lost or won)
    (d / "b.xlsx").unlink()
    mode, ledger = step(store)
    assert set(ledger["file"]) == {"bronze/cda/a.xlsx"} and not (ledger["stage"] == "duplicate").any()

    # a file turned unreadable feeds silver no more: its rejects leave the ledger too
    write_finning(d / "c.xlsx", rows(3, bad={1: {"W": "Z"}}))
    mode, ledger = step(store)
    assert "bronze/cda/c.xlsx" in set(ledger["file"])
    (d / "c.xlsx").write_bytes(b"PK\x03\x04 broken now")
    mode, ledger = step(store)
    assert "bronze/cda/c.xlsx" not in set(ledger["file"])


def test_resent_workbook_equals_a_full_build(tmp_path):
    """A cumulative re-send (rows moved down, a correction, a new row): silver, ledger and audit are
    those of a full build — also when the run day moves a sample in or out of the future (the one
    rule of harmonization that depends on the day)."""
    root = tmp_path / "data"
    path = root / "bronze/cda/a.xlsx"
    store = Storage.local(str(root))
    future = {
        "Fecha de Toma de Muestra": dt.datetime(2026, 12, 5),
        "Fecha de laboratorio": dt.datetime(2026, 12, 6),
    }
    month = rows(1, n=6, bad={1: {"Cu": -3}, 2: future})  # Cu cleared by harmonization; a future date

    def run(now: str, stamp: int):
        os.utime(path, ns=(stamp, stamp))
        registry = ingest_client(store, CDA, workers=1).registry
        inc = build_silver(store, "cda", registry, now=pd.Timestamp(now))
        full = build_silver(store, "cda", registry, now=pd.Timestamp(now), full_rebuild=True)
        assert inc.mode == "incremental"
        pd.testing.assert_frame_equal(inc.silver, full.silver)
        pd.testing.assert_frame_equal(inc.rejects, full.rejects)
        pd.testing.assert_frame_equal(inc.audit, full.audit)
        assert inc.changes == full.changes
        publish(store, inc)
        return inc

    write_finning(path, month)
    publish(store, build_silver(store, "cda", ingest_client(store, CDA, workers=1).registry, now=NOW))

    # re-sent with a row on top (every row moves down), a correction and a new row, 12 days later:
    # the future sample is due now, the corrected row changes a value
    month = [rows(1, n=8)[7], *month, rows(1, n=7)[6]]
    month[5]["Fe"] = 99
    write_finning(path, month)
    inc = run("2026-12-10", 10**18)
    assert inc.changes["samples_added"] == 3 and inc.changes["values_changed"] == 1
    assert inc.info["samples_in"] == 8
    assert "R001-00000-0002" in set(inc.silver["sampleNumber"])

    # the clock goes back: the sample that was due is in the future again (rejected)
    write_finning(path, [*month, rows(1, n=9)[8]])
    inc = run("2026-11-01", 10**18 + 1)
    assert "R001-00000-0002" not in set(inc.silver["sampleNumber"])
