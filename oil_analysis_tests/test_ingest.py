"""Bronze ingestion: parse once per content, quarantine bad files with a reason, keep the rest."""

from __future__ import annotations

import json
import os

from oil_analysis.domain.clients import load_clients
from oil_analysis.domain.labs import LAB_FORMATS
from oil_analysis.pipeline.bronze import ReaderLimits, ingest_client
from oil_analysis.storage.filesystem import Storage
from oil_analysis.storage.registry import READER_VERSION, load_parsed

from .builders import finning_row, write_finning

CDA = load_clients()["cda"]


def test_good_file_parsed_once_then_reused(data_root):
    write_finning(
        data_root / "bronze/cda/2024-01-01/T-01.xlsx", [finning_row(i) for i in range(5)], coolant_rows=2
    )
    store = Storage.local(str(data_root))
    first = ingest_client(store, CDA, workers=1)
    assert first.parsed_now == 1 and first.registry.iloc[0]["status"] == "ok"
    assert first.registry.iloc[0]["rows_parsed"] == 5
    store.write_parquet("bronze/_registry/cda/registry.parquet", first.registry)
    second = ingest_client(store, CDA, workers=1)
    assert second.parsed_now == 0 and second.reused == 1
    samples, rejects = load_parsed(store, second.registry)
    assert len(samples) == 1 and len(samples[0]) == 5 and len(rejects) == 0
    assert samples[0]["sourceFile"].iloc[0] == "bronze/cda/2024-01-01/T-01.xlsx"


def test_identical_copy_under_other_name_is_not_parsed_again(data_root):
    rows = [finning_row(i) for i in range(3)]
    write_finning(data_root / "bronze/cda/a/T-01.xlsx", rows)
    store = Storage.local(str(data_root))
    reg = ingest_client(store, CDA, workers=1).registry
    store.write_parquet("bronze/_registry/cda/registry.parquet", reg)
    (data_root / "bronze/cda/b").mkdir()
    (data_root / "bronze/cda/b/T-01-copy.xlsx").write_bytes(
        (data_root / "bronze/cda/a/T-01.xlsx").read_bytes()
    )
    batch = ingest_client(store, CDA, workers=1)
    assert batch.parsed_now == 0 and len(batch.registry) == 2


def test_corrupt_file_quarantined_and_others_still_read(data_root):
    write_finning(data_root / "bronze/cda/T-01.xlsx", [finning_row(i) for i in range(4)])
    (data_root / "bronze/cda/T-02.xlsx").write_bytes(b"PK\x03\x04 truncated zip")
    store = Storage.local(str(data_root))
    batch = ingest_client(store, CDA, workers=2)
    reg = batch.registry.set_index("key")
    assert reg.loc["bronze/cda/T-01.xlsx", "status"] == "ok"
    assert reg.loc["bronze/cda/T-02.xlsx", "status"] == "quarantined"
    reason = json.loads((data_root / "bronze/_quarantine/cda/T-02.xlsx.reason.json").read_text())
    assert reason["file"] == "T-02.xlsx" and "not a readable .xlsx" in reason["error"]
    assert (data_root / "bronze/_quarantine/cda/T-02.xlsx").read_bytes() == b"PK\x03\x04 truncated zip"


def test_missing_oil_sheet_and_missing_column_name_sheet_and_column(data_root):
    write_finning(data_root / "bronze/cda/no_oil.xlsx", [finning_row(1)], sheet="DATA")
    header = [h for h in write_finning.__globals__["FINNING_HEADER"] if h != "Compartimento"]
    write_finning(data_root / "bronze/cda/no_comp.xlsx", [finning_row(1)], header=header)
    store = Storage.local(str(data_root))
    q = {x["key"]: x for x in ingest_client(store, CDA, workers=1).quarantined_now}
    assert (
        q["bronze/cda/no_oil.xlsx"]["sheet"] == "OIL"
        and "no sheet 'OIL'" in q["bronze/cda/no_oil.xlsx"]["error"]
    )
    miss = q["bronze/cda/no_comp.xlsx"]
    assert miss["column"] == "Compartimento" and miss["row"] == 1 and miss["sheet"] == "OIL"


def test_bad_cell_is_cleared_with_file_row_column_and_the_sample_kept(data_root):
    rows = [finning_row(i) for i in range(4)]
    rows[2]["Cu"] = "doce"
    rows[1]["Cu"] = "n/a"  # "not determined": no value, no record
    write_finning(data_root / "bronze/cda/T-01.xlsx", rows)
    store = Storage.local(str(data_root))
    batch = ingest_client(store, CDA, workers=1)
    samples, rejects = load_parsed(store, batch.registry)
    assert len(samples[0]) == 4 and samples[0]["cellsCleared"].tolist() == [0, 0, 1, 0]
    assert len(rejects) == 1 and batch.registry["cells_cleared"].tolist() == [1]
    r = rejects.iloc[0]
    assert r["file"] == "bronze/cda/T-01.xlsx" and int(r["row"]) == 5 and r["column"] == "Cu"
    assert r["reason"] == "expected a number; cell cleared, sample kept" and r["value"] == "doce"
    assert r["action"] == "cell cleared" and r["sampleNumber"] == "R120-00000-0002"


def test_zero_byte_wrong_format_and_oversize(data_root):
    (data_root / "bronze/cda").mkdir(parents=True)
    (data_root / "bronze/cda/empty.xlsx").write_bytes(b"")
    (data_root / "bronze/cda/notes.csv").write_text("a,b\n1,2\n")
    (data_root / "bronze/cda/big.xlsx").write_bytes(b"x" * 3_000_000)
    store = Storage.local(str(data_root))
    q = {x["key"]: x["error"] for x in ingest_client(store, CDA, workers=1, max_file_mb=2).quarantined_now}
    assert "0 bytes" in q["bronze/cda/empty.xlsx"]
    assert "wrong lab format" in q["bronze/cda/notes.csv"]
    assert "over the 2 MB limit" in q["bronze/cda/big.xlsx"]


def test_unchanged_file_is_not_even_read_and_equipment_metadata_is_ignored(data_root, monkeypatch):
    write_finning(data_root / "bronze/cda/T-01.xlsx", [finning_row(i) for i in range(3)])
    store = Storage.local(str(data_root))
    store.write_parquet(
        "bronze/_registry/cda/registry.parquet", ingest_client(store, CDA, workers=1).registry
    )
    reads = []
    original = Storage.read_bytes
    monkeypatch.setattr(Storage, "read_bytes", lambda self, p: reads.append(p) or original(self, p))
    batch = ingest_client(store, CDA, workers=1)
    assert batch.parsed_now == 0 and "bronze/cda/T-01.xlsx" not in reads

    from oil_analysis.domain.clients import load_clients

    (data_root / "bronze/emin").mkdir(parents=True)
    (data_root / "bronze/emin/Equipamiento.parquet").write_bytes(b"PAR1")
    reg = ingest_client(store, load_clients()["emin"], workers=1).registry
    assert reg.iloc[0]["status"] == "ignored" and not batch.quarantined_now


def test_parse_cached_under_older_reader_rules_is_parsed_again(data_root):
    write_finning(data_root / "bronze/cda/T-01.xlsx", [finning_row(i) for i in range(3)])
    store = Storage.local(str(data_root))
    first = ingest_client(store, CDA, workers=1)
    assert first.registry["reader_version"].tolist() == [READER_VERSION]
    store.write_parquet(
        "bronze/_registry/cda/registry.parquet", first.registry.assign(reader_version="readers-1")
    )
    again = ingest_client(store, CDA, workers=1)
    assert again.parsed_now == 1 and again.registry["reader_version"].tolist() == [READER_VERSION]


def test_corrupt_registry_reported_and_rebuilt_from_bronze(data_root):
    write_finning(data_root / "bronze/cda/T-01.xlsx", [finning_row(i) for i in range(3)])
    (data_root / "bronze/_registry/cda").mkdir(parents=True)
    (data_root / "bronze/_registry/cda/registry.parquet").write_bytes(b"not parquet")
    batch = ingest_client(Storage.local(str(data_root)), CDA, workers=1)
    assert batch.registry["status"].tolist() == ["ok"] and batch.parsed_now == 1
    (repair,) = batch.repairs
    assert repair["path"].endswith("bronze/_registry/cda/registry.parquet") and "rebuilt" in repair["action"]
    assert any("registry.parquet could not be read" in w for w in batch.warnings)


def test_replaced_file_of_same_size_and_old_modification_time_is_read_again(data_root, tmp_path):
    """A re-sent file copied in with its sender's old modification time (``cp -p``, ``rsync -t``) and,
    by chance, the same size as the previous one is still read: its arrival time changed."""
    target = data_root / "bronze/cda/T-01.xlsx"
    write_finning(target, [finning_row(i, Cu=10) for i in range(3)])
    sizes = {}
    for v in range(11, 40):  # another value with the same compressed size
        other = write_finning(tmp_path / f"v{v}.xlsx", [finning_row(i, Cu=v) for i in range(3)])
        sizes.setdefault(other.stat().st_size, other)
    replacement = sizes[target.stat().st_size]
    store = Storage.local(str(data_root))
    store.write_parquet(
        "bronze/_registry/cda/registry.parquet", ingest_client(store, CDA, workers=1).registry
    )
    stamp = target.stat().st_mtime_ns
    replacement.replace(target)
    os.utime(target, ns=(stamp, stamp))
    assert target.stat().st_mtime_ns == stamp
    batch = ingest_client(store, CDA, workers=1)
    assert batch.parsed_now == 1
    samples, _ = load_parsed(store, batch.registry)
    assert samples[0]["cu"].tolist() != [10.0, 10.0, 10.0]


_PARSED_HERE: list[str] = []  # the files this worker process has parsed (empty in each fresh fork)


def _reader_hurt_by_earlier_files(path, tz, **kwargs):
    """Dies of a native abort (``fragile``) or runs out of memory (``hog``) in a worker that parsed
    another file before; ``hog`` also in a fresh one."""
    if path.endswith("hog.xlsx"):
        blocks = []
        while True:
            blocks.append(bytearray(64 * 1024 * 1024))
    if path.endswith("fragile.xlsx") and _PARSED_HERE:
        os.abort()
    _PARSED_HERE.append(path)
    return _FINNING(path, tz, **kwargs)


_FINNING = LAB_FORMATS["finning_xlsx"][1]


def test_a_file_is_failed_only_by_a_fresh_worker(data_root, monkeypatch):
    """Workers parse one file after another: a file that dies or runs out of memory in a worker
    that parsed other files first is parsed again in a fresh one, and only a fresh worker's outcome
    counts (``fragile`` dies only after another file: ok; ``hog`` fails anyway: quarantined)."""
    for i, name in enumerate(("a.xlsx", "b.xlsx", "fragile.xlsx", "hog.xlsx", "z.xlsx")):
        write_finning(data_root / "bronze/cda" / name, [finning_row(10 * i + k) for k in range(3)])
    monkeypatch.setitem(LAB_FORMATS, "finning_xlsx", ((".xlsx",), _reader_hurt_by_earlier_files))
    batch = ingest_client(Storage.local(str(data_root)), CDA, workers=1, limits=ReaderLimits(memory_mb=256))
    status = dict(
        zip(batch.registry["key"].str.rsplit("/", n=1).str[-1], batch.registry["status"], strict=True)
    )
    assert status == {
        "a.xlsx": "ok",
        "b.xlsx": "ok",
        "fragile.xlsx": "ok",
        "hog.xlsx": "quarantined",
        "z.xlsx": "ok",
    }
    reason = batch.registry.set_index("key").loc["bronze/cda/hog.xlsx", "reason"]
    assert "memory" in reason or "died of" in reason
    assert batch.registry["rows_parsed"].sum() == 12
