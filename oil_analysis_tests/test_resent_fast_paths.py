"""A re-sent workbook's samples joined from runs of earlier and parsed rows (no join of everything
then reordering): equal to a full parse, and the joins taken as said."""

from __future__ import annotations

import pandas as pd
import pytest

from oil_analysis.domain.labs import finning
from oil_analysis.domain.labs.finning import read_finning_workbook

from .test_resent_xml_rows import OLD, resend, rows, write


@pytest.fixture
def takes(monkeypatch) -> list[int]:
    """The lengths of the frames ``DataFrame.take`` reorders (the join-then-reorder path)."""
    seen: list[int] = []
    take = pd.DataFrame.take

    def spy(self, indices, *args, **kwargs):
        seen.append(len(self))
        return take(self, indices, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "take", spy)
    return seen


def test_rows_on_top_a_correction_and_a_deletion_are_joined_from_runs(tmp_path, takes):
    path = write(tmp_path / "T-01.xlsx", rows(OLD))
    first = read_finning_workbook(str(path))
    body = rows([10, 9, 8, *OLD], r3={"Si": 40})
    del body[9]  # sample 1 withdrawn
    write(path, body)
    takes.clear()
    again, full = resend(path, first)  # equal to the full parse (dtypes, order, sourceRow)
    assert (again.info["rows_reused"], again.info["rows_parsed"]) == (6, 4)
    assert takes == []  # a few runs (new rows, earlier rows, the corrected one, earlier rows) joined


def test_more_runs_than_joined_take_the_reorder(tmp_path, takes):
    numbers = list(range(2 * finning._MAX_RUNS + 4, -1, -1))
    path = write(tmp_path / "T-01.xlsx", rows(numbers))
    first = read_finning_workbook(str(path))
    corrected = {f"r{n}": {"Cu": 90 + n} for n in numbers[::2]}  # every other row corrected
    write(path, rows(numbers, **corrected))
    takes.clear()
    again, _ = resend(path, first)
    assert again.info["rows_parsed"] == len(numbers[::2])
    assert len(takes) == 1  # the earlier and parsed rows joined, then reordered once


def test_an_empty_ledger_is_encoded_once_as_a_fresh_conversion_would(tmp_path):
    """The usual parse has no ledger record: its ledger's parquet bytes (converted and written once
    per process) are the bytes of that empty ledger converted now, and its row cache's too."""
    import pyarrow as pa

    from oil_analysis.domain.labs.common import empty_rejects
    from oil_analysis.pipeline import bronze

    path = write(tmp_path / "T-01.xlsx", rows(OLD))
    result = read_finning_workbook(str(path))
    assert len(result.rejects) == 0
    first = bronze.EncodedParse.of(result, "bronze/cda/T-01.xlsx", [])
    again = bronze.EncodedParse.of(result, "bronze/cda/T-02.xlsx", [])
    fresh = pa.Table.from_pandas(empty_rejects(), preserve_index=False)
    assert first.rejects == again.rejects == bronze.table_parquet_bytes(fresh, bronze._CACHE_PARQUET)
    assert bronze._unpack(first.cache)["rejects"].drop_columns(["_call"]).equals(fresh)
    assert len(first.frames[1]) == 0 and list(first.frames[1].columns) == list(empty_rejects().columns)
