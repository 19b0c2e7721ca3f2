"""The fast paths of incremental silver and reclassification equal the general ones they replace.

``among`` / ``locate`` (Arrow) against the Python-set and pandas-index answers, and ``audit``
(columns told equal in one vectorized pass) against the column-by-column comparison it had before,
on random silvers with random corrections, additions and removals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pandas.api.types import is_float_dtype

from oil_analysis.domain.catalog import load_catalog
from oil_analysis.domain.changes import report_changes
from oil_analysis.domain.harmonize import harmonize
from oil_analysis.domain.incremental import (
    AUDIT_COLUMNS,
    among,
    audit,
    empty_audit,
    interleave,
    locate,
    repeats,
    rows_differ,
)

from .test_harmonize import tidy

CAT = load_catalog()
D = pd.Timestamp


def reference_among(values: pd.Series, pool) -> np.ndarray:
    members = set(pool.tolist() if isinstance(pool, pd.Series) else pool)
    return np.fromiter((v in members for v in values.to_numpy(object)), dtype=bool, count=len(values))


def reference_audit(previous, current, changed_at, catalog=CAT):
    """``audit`` as it was: every watched column compared in pandas (floats as one array first)."""
    prev_ids = pd.Index(previous["sampleNumber"].to_numpy(object))
    cur_ids = current["sampleNumber"].to_numpy(object)
    at = prev_ids.get_indexer(cur_ids)
    now_at = np.flatnonzero(at >= 0)
    before_at = at[now_at]
    watched = ["sampleDate", "unitId", "componentName", "machineHours", "oilMeter", "labVerdict"]
    watched += catalog.essays
    before, now = previous.dtypes, current.dtypes
    floats = [c for c in watched if is_float_dtype(before[c]) and is_float_dtype(now[c])]
    x_all = previous[floats].to_numpy(float)[before_at]
    y_all = current[floats].to_numpy(float)[now_at]
    same = (x_all == y_all) | (np.isnan(x_all) & np.isnan(y_all))
    quiet = {c for c, ok in zip(floats, same.all(axis=0), strict=True) if ok}
    ids, records = cur_ids[now_at], []
    for col in watched:
        if col in quiet:
            continue
        x = previous[col].iloc[before_at].reset_index(drop=True)
        y = current[col].iloc[now_at].reset_index(drop=True)
        differ = (~((x == y).fillna(False) | (x.isna() & y.isna()))).to_numpy(bool)
        if differ.any():
            records.append(
                pd.DataFrame(
                    {
                        "sampleNumber": ids[differ],
                        "column": col,
                        "old_value": x[differ].astype("string").to_numpy(),
                        "new_value": y[differ].astype("string").to_numpy(),
                        "file": current["sourceFile"].iloc[now_at[differ]].astype("string").to_numpy(),
                        "changed_at": changed_at,
                    }
                )
            )
    if not records:
        return empty_audit()
    table = pd.concat(records, ignore_index=True)
    table = table.sort_values(["sampleNumber", "column"], kind="mergesort").reset_index(drop=True)
    for c in AUDIT_COLUMNS[:-1]:
        table[c] = table[c].astype("string")
    table["changed_at"] = pd.to_datetime(table["changed_at"]).astype("datetime64[us]")
    return table


def random_silver(rng: np.random.Generator, n: int) -> pd.DataFrame:
    rows = []
    for i in range(n):
        row = {
            "sampleNumber": f"S{i:05d}",
            "sampleDate": D("2023-01-01") + pd.Timedelta(days=int(rng.integers(0, 700))),
            "unitId": f"T-{int(rng.integers(1, 4)):02d}",
            "componentName": str(rng.choice(["MOTOR", "TRANSMISION", "MANDO FINAL"])),
            "labVerdict": rng.choice([None, "Normal", "Alerta"]),
            "sourceFile": f"{rng.choice(['a', 'b', 'c'])}.xlsx",
        }
        for e in rng.choice(CAT.essays, size=6, replace=False):
            row[str(e)] = float(rng.choice([np.nan, 0.0, -0.0, rng.uniform(0, 50)]))
        rows.append(row)
    return harmonize([tidy(rows)], "cda", as_of=D("2026-01-01"))[0]


def perturb(rng: np.random.Generator, silver: pd.DataFrame) -> pd.DataFrame:
    """Corrections of every watched kind (a value, a missing value set or filled, a text, a date),
    some samples removed, some added, rows in another order."""
    out = silver.copy()
    n = len(out)
    for _ in range(int(rng.integers(0, 6))):
        r = int(rng.integers(0, n))
        col = str(rng.choice(["fe", "si", "machineHours", "oilMeter", "visc_100c", "water"]))
        out.loc[r, col] = rng.choice([np.nan, -0.0, float(rng.uniform(0, 99))])
    for _ in range(int(rng.integers(0, 3))):
        r = int(rng.integers(0, n))
        col = str(rng.choice(["labVerdict", "unitId", "componentName"]))
        out.loc[r, col] = rng.choice([pd.NA, "Anormal", "T_09"])
    if rng.random() < 0.5:
        r = int(rng.integers(0, n))
        out.loc[r, "sampleDate"] = out.loc[r, "sampleDate"] + pd.Timedelta(days=1)
    drop = rng.choice(n, size=int(rng.integers(0, 3)), replace=False)
    out = out.drop(index=drop)
    extra = out.head(int(rng.integers(0, 3))).assign(sampleNumber=lambda f: "N" + f["sampleNumber"])
    out = pd.concat([out, extra], ignore_index=True)
    return out.sample(frac=1.0, random_state=int(rng.integers(0, 1000))).reset_index(drop=True)


def reference_rows_differ(current, previous, columns):
    """``rows_differ`` as it was: the float columns as one 2-D array, the others in Arrow."""
    import pyarrow as pa
    import pyarrow.compute as pc

    at = pd.Index(previous["sampleNumber"].to_numpy(object)).get_indexer(
        current["sampleNumber"].to_numpy(object)
    )
    known = at >= 0
    take = at[known]
    differ = np.zeros(int(known.sum()), dtype=bool)
    floats = [c for c in columns if is_float_dtype(current[c]) and is_float_dtype(previous[c])]
    if floats:
        x = current[floats].to_numpy(float)[known]
        y = previous[floats].to_numpy(float)[take]
        rows, cols = np.nonzero(x.view(np.uint64) != y.view(np.uint64))
        differ[rows[~(np.isnan(x[rows, cols]) & np.isnan(y[rows, cols]))]] = True
    rows_now, rows_before = pa.array(np.flatnonzero(known)), pa.array(take)
    for c in columns:
        if c in floats:
            continue
        x = pa.array(current[c].array).take(rows_now)
        y = pa.array(previous[c].array).take(rows_before)
        if x.type != y.type:
            x, y = x.cast(pa.large_string()), y.cast(pa.large_string())
        same = pc.or_(pc.fill_null(pc.equal(x, y), False), pc.and_(x.is_null(), y.is_null()))
        differ |= ~same.to_numpy(zero_copy_only=False)
    out = np.ones(len(current), dtype=bool)
    out[known] = differ
    return out


@pytest.mark.parametrize("seed", range(12))
def test_rows_differ_equals_the_two_dimensional_comparison(seed):
    rng = np.random.default_rng(100 + seed)
    before = random_silver(rng, int(rng.integers(1, 60)))
    after = perturb(rng, before)
    cols = [c for c in before.columns if c not in ("sourceFile", "sourceRow")]
    assert (rows_differ(after, before, cols) == reference_rows_differ(after, before, cols)).all()


@pytest.mark.parametrize("seed", range(12))
def test_audit_equals_the_column_by_column_comparison(seed):
    rng = np.random.default_rng(seed)
    before = random_silver(rng, int(rng.integers(1, 60)))
    after = perturb(rng, before)
    at = D("2026-11-29 10:00")
    table, summary = audit(before, after, at)
    expected = reference_audit(before, after, at)
    pd.testing.assert_frame_equal(table, expected, check_exact=True)
    assert summary["values_changed"] == len(expected)
    assert summary["samples_added"] == int((~after["sampleNumber"].isin(before["sampleNumber"])).sum())


def test_audit_sees_a_retyped_column_and_a_change_of_missing_value():
    """Columns whose types differ between the two silvers (or hold objects) take the pandas path."""
    rng = np.random.default_rng(7)
    before = random_silver(rng, 20)
    after = before.copy()
    after["labVerdict"] = after["labVerdict"].astype(object)  # same texts, another dtype
    after.loc[3, "labVerdict"] = "otro"
    after.loc[5, "fe"] = np.nan if pd.notna(before.loc[5, "fe"]) else 1.0
    at = D("2026-11-29")
    table, _ = audit(before, after, at)
    pd.testing.assert_frame_equal(table, reference_audit(before, after, at), check_exact=True)
    assert set(table["column"]) == {"labVerdict", "fe"}


@pytest.mark.parametrize("seed", range(8))
def test_among_and_locate_equal_python_sets_and_pandas_indexes(seed):
    rng = np.random.default_rng(seed)
    names = [f"S{i}" for i in range(40)]
    dtype = ["string[pyarrow]", "string[python]", object][seed % 3]
    values = pd.Series(rng.choice(names, size=int(rng.integers(0, 50))), dtype=dtype)
    pool = pd.Series(rng.choice(names, size=20, replace=False), dtype=["string[pyarrow]", object][seed % 2])
    assert (among(values, pool) == reference_among(values, pool)).all()
    as_set = set(pool.tolist()[: seed + 1])
    assert (among(values, as_set) == reference_among(values, as_set)).all()
    expected = pd.Index(pool.to_numpy(object)).get_indexer(values.to_numpy(object))
    assert (locate(values, pool) == expected).all()
    assert locate(values, pool).dtype == expected.dtype


def test_among_and_locate_with_missing_values_or_repeats_keep_the_general_answer():
    values = pd.Series(["A", None, "B", "C"], dtype="string")
    pool = pd.Series(["B", None, "A"], dtype="string")
    assert (among(values, pool) == reference_among(values, pool)).all()
    assert (among(values, {"A", pd.NA}) == reference_among(values, {"A", pd.NA})).all()
    numbers = pd.Series([1, 2, 3])
    assert (among(numbers, {2, 5}) == [False, True, False]).all()
    expected = pd.Index(pool.to_numpy(object)).get_indexer(values.to_numpy(object))
    assert (locate(values, pool) == expected).all()
    with pytest.raises(Exception, match="uniquely valued"):
        locate(pd.Series(["A"], dtype="string"), pd.Series(["A", "A"], dtype="string"))


def test_silver_is_published_from_the_bytes_rendered_in_the_background(data_root, monkeypatch):
    """The silver step hands its parquet rendering to the other core; the IO manager publishes those
    very bytes, which are the bytes of rendering the published frame on the spot."""
    import shutil

    from dagster import DagsterInstance

    from oil_analysis.storage import runstate
    from oil_analysis.storage.filesystem import parquet_bytes

    from .builders import run_cda
    from .conftest import DEMO_BRONZE

    shutil.copytree(DEMO_BRONZE / "cda", data_root / "bronze/cda")
    taken, original = {}, runstate.take_prepared

    def spy(run_id, client, asset, frame):
        data = original(run_id, client, asset, frame)
        taken[asset] = (data, frame)
        return data

    monkeypatch.setattr(runstate, "take_prepared", spy)
    with DagsterInstance.ephemeral() as instance:
        run_cda(data_root, instance)
    data, frame = taken["silver_harmonized"]
    assert data is not None  # rendered in the background, not again in the IO manager
    published = (data_root / "silver/harmonized/CDA.parquet").read_bytes()
    assert published == data == parquet_bytes(frame)


@pytest.mark.parametrize(
    "first,second",
    [
        (pd.Series(["a", None, "c"], dtype="string"), pd.Series(["X", "Y"], dtype="string")),
        (pd.Series([1.0, np.nan, -0.0]), pd.Series([np.nan, 2.5])),
        (pd.Series(["v1", "v1", "v1"], dtype=object), pd.Series(["v2", None], dtype="string")),
        (pd.Series([1, 2, 3], dtype="Int64"), pd.Series([pd.NA, 5], dtype="Int64")),
        (
            pd.Series(pd.to_datetime(["2024-01-01", None, "2024-03-01"])),
            pd.Series(pd.to_datetime([None, "2025-01-01"])),
        ),
    ],
)
def test_interleave_equals_a_concatenation_in_position_order(first, second):
    rng = np.random.default_rng(len(first) + len(second))
    where = rng.permutation(len(first) + len(second))
    first_at, second_at = np.sort(where[: len(first)]), np.sort(where[len(first) :])
    got = interleave(first_at, first.set_axis(first_at * 7), second_at, second)
    expected = pd.concat([first, second], ignore_index=True).take(
        np.argsort(np.concatenate([first_at, second_at]), kind="stable")
    )
    pd.testing.assert_series_equal(got, expected.reset_index(drop=True), check_exact=True)


@pytest.mark.parametrize(
    "values",
    [["a", "b", "a"], ["a", "b", "c"], ["a", None, None], [], [1, 2, 1]],
)
def test_repeats_equals_duplicated_any(values):
    for dtype in ("string[pyarrow]", "string[python]", object):
        if values and isinstance(values[0], int) and dtype is not object:
            continue
        s = pd.Series(values, dtype=dtype)
        assert repeats(s) == bool(s.duplicated().any())


def test_report_changes_with_a_repeated_sample_counts_its_last_row():
    def frame(numbers, statuses):
        return pd.DataFrame(
            {
                "sampleNumber": pd.array(numbers, dtype="string"),
                "unitId": "T1",
                "componentName": "motor",
                "severity_score": 0.0,
                "report_status": pd.array(statuses, dtype="string"),
                "breached_essays": "[]",
                "limits_version": "v1",
            }
        )

    before = frame(["S1", "S2", "S2"], ["Normal", "Alerta", "Normal"])
    after = frame(["S1", "S2", "S3"], ["Normal", "Anormal", "Alerta"])
    c = report_changes(before, after)
    assert c["reports_before"] == 2 and c["samples_added"] == 1
    assert c["report_status_transitions"] == {"Normal → Anormal": 1}
    assert [s["sampleNumber"] for s in c["new_non_normal_samples"]] == ["S2", "S3"]


def test_load_parsed_names_the_source_file_without_touching_the_runs_parse(tmp_path):
    """The parse kept in memory for the run is handed out with its source file named, as read from
    storage, and stays as it was (a later step of the run reads it again)."""
    from oil_analysis.domain.labs.common import empty_rejects
    from oil_analysis.storage import runstate
    from oil_analysis.storage.filesystem import Storage
    from oil_analysis.storage.registry import load_parsed

    store = Storage.local(str(tmp_path))
    parse = pd.DataFrame({"sampleNumber": pd.array(["S1", "S2"], dtype="string"), "fe": [1.0, 2.0]})
    store.write_parquet("parsed/a.parquet", parse)
    registry = pd.DataFrame({"status": ["ok"], "key": ["cda/a.xlsx"], "parsed_path": ["parsed/a.parquet"]})
    runstate.remember_parsed("run-x", store.uri, {"parsed/a.parquet": (parse, empty_rejects())})
    (memo,), _ = load_parsed(store, registry, "run-x")
    (stored,), _ = load_parsed(store, registry)
    pd.testing.assert_frame_equal(memo, stored)
    assert memo["sourceFile"].tolist() == ["cda/a.xlsx", "cda/a.xlsx"]
    assert memo is not parse and list(parse.columns) == ["sampleNumber", "fe"]  # no new column there


def test_a_prefetched_table_is_used_only_while_the_file_holds_the_bytes_it_decoded(tmp_path, monkeypatch):
    from oil_analysis.storage import runstate
    from oil_analysis.storage.filesystem import Storage

    store = Storage.local(str(tmp_path))
    first = pd.DataFrame({"sampleNumber": pd.array(["S1", "S2"], dtype="string"), "x": [1.0, np.nan]})
    store.write_parquet("gold/t.parquet", first)
    reads = []
    original = Storage.read_parquet
    monkeypatch.setattr(
        Storage, "read_parquet", lambda self, p, columns=None: reads.append(p) or original(self, p)
    )

    runstate.prefetch("run-1", store, "gold/t.parquet")
    got = runstate.read_table("run-1", store, "gold/t.parquet")
    pd.testing.assert_frame_equal(got, original(store, "gold/t.parquet"), check_exact=True)
    assert reads == []  # the prefetch's frame, no second read

    runstate.prefetch("run-2", store, "gold/t.parquet")
    runstate.settle()
    second = first.assign(x=[1.0, 2.0])
    store.write_parquet("gold/t.parquet", second)  # published after the prefetch read it
    pd.testing.assert_frame_equal(runstate.read_table("run-2", store, "gold/t.parquet"), second)
    assert reads == ["gold/t.parquet"]

    runstate.prefetch("run-3", store, "gold/t.parquet")
    assert runstate.read_table("run-4", store, "gold/t.parquet") is not None  # another run's: read
    assert reads == ["gold/t.parquet"] * 2
    assert runstate.read_table("run-3", store, "gold/missing.parquet") is None
    runstate.prefetch("run-5", store, "gold/missing.parquet")
    assert runstate.read_table("run-5", store, "gold/missing.parquet") is None


def test_md_table_rows_are_the_values_itertuples_gives():
    from oil_analysis.assets.common import md_table

    frame = pd.DataFrame(
        {
            "text": pd.array(["a|b", None, "x" * 60], dtype="string"),
            "obj": ["uno", 2, None],
            "f64": [1.5, np.nan, -0.0],
            "f32": np.array([0.1, 2.0, np.nan], dtype="float32"),
            "i64": [1, 2, 3],
            "Int64": pd.array([1, None, 3], dtype="Int64"),
            "flag": [True, False, True],
            "when": pd.to_datetime(["2024-01-01 10:00", None, "2025-02-03 00:00"]),
            "line": ["a\nb", "c", "d"],
        }
    )
    head = frame.head(8)

    def cell(v) -> str:
        if v is None or (isinstance(v, float) and pd.isna(v)) or v is pd.NA or v is pd.NaT:
            return ""
        s = str(v)
        return (s[:40] + "…" if len(s) > 41 else s).replace("|", "\\|").replace("\n", " ")

    expected = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    expected += ["| " + " | ".join(cell(v) for v in row) + " |" for row in head.itertuples(index=False)]
    assert md_table(frame).value == "\n".join(expected)
    assert md_table(frame.iloc[:0]).value == "\n".join(expected[:2])


def reference_conform_problems(df: pd.DataFrame, table: str) -> list[str]:
    """The type and null problems ``conform`` found when it read every column as a Series."""
    from oil_analysis.domain.contracts import I64, TS, B, F, S, tables

    problems = []
    for c in tables()[table][1]:
        s = df[c.name]
        if not c.nullable and s.hasnans:
            problems.append(f"{c.name} has {int(s.isna().sum())} nulls")
        kind = s.dtype.kind
        if c.type == S:
            ok = pd.api.types.is_string_dtype(s) or s.isna().all()
        elif c.type == F:
            ok = kind == "f" or s.isna().all()
        elif c.type == I64:
            ok = kind in "iu"
        elif c.type == B:
            ok = kind == "b" or str(s.dtype) == "boolean"
        elif c.type == TS:
            ok = kind == "M"
        else:
            ok = True
        if not ok:
            problems.append(f"{c.name} has dtype {s.dtype}, expected {c.type}")
    return problems


def test_conform_finds_the_problems_it_found_reading_every_column():
    from oil_analysis.domain.contracts import ContractError, conform

    rng = np.random.default_rng(5)
    silver = random_silver(rng, 30)
    assert conform(silver, "silver_harmonized") is silver and not reference_conform_problems(
        silver, "silver_harmonized"
    )
    broken = [
        silver.assign(unitId=[1] * len(silver)),  # numbers in an object column of texts
        silver.assign(unitId=silver["unitId"].astype(object)),  # texts as objects: fine
        silver.assign(unitId=pd.Series([None] * len(silver), dtype=object)),  # all missing, non-null
        silver.assign(fe=silver["fe"].astype(object)),  # floats as objects
        silver.assign(fe=pd.Series([None] * len(silver), dtype=object)),  # an empty column: fine
        silver.assign(sampleNumber=silver["sampleNumber"].where(silver.index > 0)),  # a null key
        silver.assign(sampleDate=silver["sampleDate"].astype(str)),  # dates as texts
        silver.assign(cellsCleared=silver["cellsCleared"].astype(float)),
        silver.assign(labVerdict=pd.Categorical(silver["labVerdict"])),
        silver.assign(labVerdict=pd.Categorical([1] * len(silver))),  # categories that are not texts
        silver.assign(unitId=silver["unitId"].astype("string[python]")),
        silver.assign(unitId=silver["unitId"].astype("str")),
        silver.assign(unitId=silver["unitId"].astype("string[pyarrow]").astype(pd.ArrowDtype(pa.string()))),
        silver.assign(fe=silver["fe"].astype("Float64")),
    ]
    for frame in broken:
        expected = reference_conform_problems(frame, "silver_harmonized")
        if expected:
            with pytest.raises(ContractError) as err:
                conform(frame, "silver_harmonized")
            assert str(err.value) == "silver_harmonized: " + "; ".join(expected)
        else:
            conform(frame, "silver_harmonized")


@pytest.mark.parametrize("seed", range(6))
def test_readings_per_group_equal_a_bincount_per_essay(seed):
    from oil_analysis.domain.quality import _present_per_group

    rng = np.random.default_rng(seed)
    groups = int(rng.integers(0, 6))
    rows = int(rng.integers(groups, 40)) if groups else 0
    # Every group number holds a row (as in limit_quality), in any order.
    group_of = rng.permutation(
        np.concatenate([np.arange(groups), rng.integers(0, max(groups, 1), rows - groups)])
    )
    group_of = group_of.astype(np.intp)
    notna = (rng.random((rows, 4)) < 0.6).astype(float)
    got = _present_per_group(notna, group_of, groups)
    expected = np.column_stack(
        [np.bincount(group_of, weights=notna[:, j], minlength=groups) for j in range(4)]
    ).reshape(groups, 4)
    assert got.shape == (groups, 4) and np.array_equal(got, expected)


def test_prepare_clears_out_of_range_cells_without_touching_its_input():
    from oil_analysis.domain.harmonize import prepare

    raw = tidy(
        [
            {"sampleNumber": "S1", "fe": -5.0, "machineHours": 2e7, "sourceFile": "a.xlsx"},
            {"sampleNumber": "S2", "fe": 3.0, "si": np.inf, "sourceFile": "a.xlsx"},
            {"sampleNumber": "S3", "fe": 4.0, "sourceFile": "a.xlsx"},
        ]
    )
    before = raw.copy()
    cand, rejects, _ = prepare([raw], "cda", as_of=D("2026-01-01"))
    pd.testing.assert_frame_equal(raw, before)  # the parse stays as it was read
    assert cand.set_index("sampleNumber")["cellsCleared"].to_dict() == {"S1": 2, "S2": 1, "S3": 0}
    assert cand["fe"].isna().tolist() == [True, False, False] and cand["si"].isna().tolist()[1]
    assert sorted(rejects["column"]) == ["fe", "machineHours", "si"]
