"""The Finning reader on the real shared workbooks: every format quirk of DOMAIN.md §1.1."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from python_calamine import CalamineWorkbook

from oil_analysis.domain.labs.common import (
    by_value,
    identifier_text,
    parse_flags,
    parse_number_cells,
    parse_numbers,
)
from oil_analysis.domain.labs.finning import read_finning_workbook
from oil_analysis.domain.labs.particles import parse_particle_field

from .conftest import needs_shared, real_workbooks


@pytest.fixture(scope="module")
def real():
    results = [read_finning_workbook(str(p)) for p in real_workbooks()]
    return results, pd.concat([r.samples for r in results], ignore_index=True)


@needs_shared
def test_one_row_per_real_sample_and_empty_second_row_skipped(real):
    results, samples = real
    assert len(samples) == 1945
    assert samples["sampleNumber"].is_unique
    assert all(r.info["empty_rows_skipped"] == 1 for r in results)
    assert all(len(r.rejects) == 0 for r in results)
    # Excel row numbers: the first sample sits on row 3 (row 2 is the empty one).
    assert sorted(samples.groupby("sourceFile")["sourceRow"].min().unique()) == [3]


@needs_shared
def test_repeated_element_columns_agree_and_one_is_kept(real):
    results, samples = real
    path = str(real_workbooks()[0])
    header = CalamineWorkbook.from_path(path).get_sheet_by_name("OIL").to_python()[0]
    assert header.count("Si") == 3 and header.count("Fe") == 2 and header.count("Estado") == 2
    assert all(r.info["repeated_column_disagreements"] == {} for r in results)
    assert samples["si"].notna().sum() > 1900 and samples["fe"].notna().sum() > 1900


@needs_shared
def test_lab_verdict_is_first_estado_not_sample_state(real):
    _, samples = real
    verdicts = set(samples["labVerdict"].dropna())
    assert "Nuevo" not in verdicts
    assert {"No se requiere acción", "Monitorear Compartimento", "Acción requerida"} <= verdicts
    assert samples["labComment"].notna().all()


@needs_shared
def test_letter_flags_become_ordered_levels(real):
    _, samples = real
    assert set(samples["water"].dropna().unique()) <= {0.0, 1.0, 2.0, 3.0}
    assert (samples["water"] >= 1).sum() == 30  # 21 T + 8 P + 1 E in the three trucks
    assert (samples["fuel"] == 2).sum() == 6
    assert samples["glycol"].isna().sum() > 1000  # A is mostly empty: kept as missing, not 0


@needs_shared
def test_water_excessive_means_no_elements(real):
    _, samples = real
    e = samples[samples["water"] == 3]
    assert len(e) == 1 and e["fe"].isna().all() and e["visc_100c"].isna().all()


@needs_shared
def test_iso_field_split_into_code_or_visual(real):
    _, samples = real
    iso = samples[samples["isoCode"].notna()]
    assert (iso["iso_4um"] >= iso["iso_6um"]).all() and (iso["iso_6um"] >= iso["iso_14um"]).all()
    assert iso["particleCode"].isna().all() and iso["debris_magnetic"].isna().all()
    vis = samples[samples["particleCode"].notna()]
    assert vis["isoCode"].isna().all() and vis["iso_4um"].isna().all()
    assert (vis.loc[vis["particleCode"] == "S-M", "debris_magnetic"] == 1).all()
    assert (vis.loc[vis["particleCode"] == "G-NM1", "debris_nonmagnetic"] == 1).all()
    assert vis.loc[vis["particleCode"].str.contains("H2O"), "countPreventedByWater"].all()
    assert len(iso) + len(vis) == 1244


@needs_shared
def test_text_columns_keep_values_not_nan_strings(real):
    _, samples = real
    assert not samples["oilType"].isin(["nan", "None"]).any()
    assert set(samples["oilWeight"].dropna().unique()) >= {"60", "30", "10W", "15W-40"}
    assert samples["sampleDate"].dtype.kind == "M" and samples["sampleDate"].notna().all()


@needs_shared
def test_coolant_sheet_ignored_with_count(real):
    results, _ = real
    assert sum(r.info["coolant_samples_ignored"] for r in results) == 41


def test_particle_codes_and_typos():
    assert parse_particle_field("22/19/14")[:5] == ("22/19/14", None, 22.0, 19.0, 14.0)
    assert parse_particle_field("G/NM1")[1] == "G-NM1"
    assert parse_particle_field("GNM-1")[1] == "G-NM1"
    code = parse_particle_field("S-M/G-M2")
    assert code[1] == "S-M/G-M2" and code[5] == 2.0 and code[6] == 0.0
    assert parse_particle_field("H2O / G-NM1")[7] is True
    with pytest.raises(ValueError, match="unknown particle code"):
        parse_particle_field("XYZ??")


def test_number_parsing_keeps_censoring_signs_and_commas():
    value, censor, bad = parse_numbers(pd.Series(["<0.05", ">100", "-3,5", "12", None, "abc", 7.0]))
    assert value.tolist()[:4] == [0.05, 100.0, -3.5, 12.0]
    assert np.isnan(value[4]) and np.isnan(value[5]) and value[6] == 7.0
    assert censor.tolist()[:4] == ["<", ">", "", ""]
    assert [b is not None for b in bad] == [False, False, False, False, False, True, False]
    assert bad[5] == "expected a number"


# Cells Python finds equal across types (1 == 1.0 == True, a date and a datetime hash alike).
MIXED = [
    "7",
    "7",
    7.0,
    7,
    True,
    1,
    1.0,
    " 7 ",
    None,
    float("nan"),
    "",
    dt.date(2024, 1, 2),
    dt.datetime(2024, 1, 2),
]


def test_by_value_equals_cell_by_cell_across_types():
    cells = np.array(MIXED * 3, dtype=object)
    assert list(by_value(cells, repr)) == [repr(v) for v in cells]
    calls = []
    by_value(np.array(["N"] * 50 + [None] * 9 + ["T"] * 50, dtype=object), lambda v: calls.append(v))
    assert len(calls) == 3 and set(calls) == {None, "N", "T"}  # once per distinct text, once for empty


def test_number_cells_by_distinct_text_equal_a_cell_by_cell_parse():
    from oil_analysis.domain.labs.common import _number_cells

    cells = np.array(
        [*MIXED, "<0.05", "1,5", "abc", "inf", "1e400", "#N/A", "N/D", "9007199254740993"] * 2, dtype=object
    )
    for block in (cells, cells[cells != None], np.array(["12", "9007199254740993"], dtype=object)):  # noqa: E711
        fast, slow = parse_number_cells(block), _number_cells(block)
        np.testing.assert_array_equal(fast[0], slow[0])
        assert list(fast[1]) == list(slow[1]) and list(fast[2]) == list(slow[2])


def test_identifier_text_fast_path_follows_the_general_rules():
    class Text(str):  # not exactly str: takes the general path
        pass

    for v in [
        "R120-1",
        "  R120  1 ",
        "",
        "  ",
        "N/D",
        " n/d ",
        "#N/A",
        " #n/a ",
        "#N /A",
        "\u00a0X\u2003Y ",
        "nan",
        "--",
    ]:
        assert identifier_text(v) == identifier_text(Text(v)), repr(v)


def test_oil_changed_cells_read_like_upper_cased_text():
    from oil_analysis.domain.labs.finning import _oil_changed, _text_cell

    cells = np.array(["Y", "y", " n ", "N", "x", "", None, "ñ", "ẙ", "ŉ", "YES", 1.0, True], dtype=object)
    texts = pd.Series([_text_cell(v) for v in cells], dtype="string")
    expected = texts.str.upper().map({"Y": True, "N": False}).astype("boolean")
    got = pd.array(by_value(cells, _oil_changed), dtype="boolean")
    pd.testing.assert_extension_array_equal(got, expected.array)


def test_flag_parsing():
    level, bad = parse_flags(pd.Series(["N", "t", "P", "E", None, "X"]))
    assert level.tolist()[:4] == [0, 1, 2, 3] and np.isnan(level[4])
    assert [b is not None for b in bad] == [False] * 5 + [True]


def test_censored_markers_are_json(tmp_path):
    from oil_analysis.domain.labs.common import censored_json

    out = censored_json({"fe": pd.Series(["<", ""]), "si": pd.Series([">", ""])}, pd.RangeIndex(2))
    assert json.loads(out[0]) == {"fe": "<", "si": ">"} and pd.isna(out[1])
