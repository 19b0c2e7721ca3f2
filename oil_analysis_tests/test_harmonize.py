"""Harmonization: names, dates, duplicates and previous-sample links."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from oil_analysis.domain.catalog import load_catalog
from oil_analysis.domain.harmonize import harmonize, silver_columns
from oil_analysis.domain.names import normalize_component

CAT = load_catalog()


def tidy(rows: list[dict]) -> pd.DataFrame:
    base = {
        "sampleNumber": "S1",
        "sampleDate": pd.Timestamp("2024-01-10"),
        "labDate": pd.NaT,
        "reportDate": pd.Timestamp("2024-01-15"),
        "unitId": "T-01",
        "machineName": None,
        "machineModel": "789C",
        "machineBrand": "CAT",
        "machineSerialNumber": "X",
        "machineHours": 1000.0,
        "componentName": "MOTOR",
        "componentSerialNumber": None,
        "componentHours": np.nan,
        "oilMeter": 300.0,
        "oilBrand": "MOBIL",
        "oilType": "HD ",
        "oilWeight": "15W-40",
        "oilChanged": pd.NA,
        "site": None,
        "isoCode": None,
        "particleCode": None,
        "countPreventedByWater": False,
        "censoredEssays": None,
        "labVerdict": None,
        "labComment": None,
        "sourceFile": "a.xlsx",
        "sourceRow": 3,
        "si": 5.0,
    }
    out = []
    for i, r in enumerate(rows):
        row = {**base, "sourceRow": 3 + i, **r}
        for e in CAT.essays:
            row.setdefault(e, np.nan)
        out.append(row)
    return pd.DataFrame(out)


def test_columns_and_names():
    s, rej, info = harmonize([tidy([{"componentName": "MANDO FINAL TRASERO IZQUIERDO", "fe": 5.0}])], "cda")
    assert list(s.columns) == silver_columns(CAT)
    r = s.iloc[0]
    assert r["client"] == "CDA" and r["unitId"] == "T_01" and r["machineName"] == "camion"
    assert r["machineBrand"] == "caterpillar" and r["oilType"] == "HD"
    assert r["componentName"] == "mando final trasero izquierdo"
    assert r["componentNameNormalized"] == "mando final trasero"
    assert r["oilHourRange"] == "LT_1000"


def test_component_rule_removes_side_words_maps_synonyms_keeps_front_rear():
    assert normalize_component("Rueda Delantera Derecha") == "rueda delantera"
    assert normalize_component("sistema hidráulico") == "hidraulico"
    assert normalize_component("transmisión") == "transmision"
    assert normalize_component("diferencial trasero") != normalize_component("diferencial delantero")
    # no substring grouping: an engine-oil compartment is not lumped into "aceite"
    assert normalize_component("aceite motor") == "aceite motor"


def test_future_and_missing_dates_rejected_with_reason():
    rows = [
        {"sampleNumber": "A", "sampleDate": pd.Timestamp("2030-01-01")},
        {"sampleNumber": "B", "sampleDate": pd.NaT},
        {"sampleNumber": "C"},
    ]
    s, rej, info = harmonize([tidy(rows)], "cda", as_of=pd.Timestamp("2025-01-01"))
    assert s["sampleNumber"].tolist() == ["C"]
    assert info["future_dates_rejected"] == 1
    reasons = dict(zip(rej["value"].astype(str), rej["reason"], strict=True))
    assert "in the future" in next(v for k, v in reasons.items() if k.startswith("2030"))
    assert any("empty" in v for v in rej["reason"])


def test_duplicate_identical_kept_once_conflicting_resolved_deterministically():
    a = tidy([{"sampleNumber": "D1", "fe": 5.0}, {"sampleNumber": "D2", "fe": 1.0}])
    b = tidy(
        [
            {"sampleNumber": "D1", "fe": 5.0, "sourceFile": "b.xlsx"},
            {
                "sampleNumber": "D2",
                "fe": 9.0,
                "sourceFile": "b.xlsx",
                "reportDate": pd.Timestamp("2024-02-01"),
            },
        ]
    )
    s1, rej1, info1 = harmonize([a, b], "cda")
    s2, _, _ = harmonize([b, a], "cda")
    assert s1["sampleNumber"].is_unique and len(s1) == 2
    assert s1.set_index("sampleNumber").loc["D2", "fe"] == 9.0  # newest lab report wins
    assert info1["duplicates_identical_dropped"] == 1 and info1["duplicates_conflicting"] == ["D2"]
    assert len(rej1) == 1 and "kept b.xlsx" in rej1.iloc[0]["reason"]
    pd.testing.assert_frame_equal(s1.drop(columns=["sourceRow"]), s2.drop(columns=["sourceRow"]))


def test_previous_sample_links_with_tie_break():
    rows = [
        {"sampleNumber": "S3", "sampleDate": pd.Timestamp("2024-03-01")},
        {"sampleNumber": "S1", "sampleDate": pd.Timestamp("2024-01-01")},
        {
            "sampleNumber": "S2b",
            "sampleDate": pd.Timestamp("2024-02-01"),
            "reportDate": pd.Timestamp("2024-02-09"),
        },
        {
            "sampleNumber": "S2a",
            "sampleDate": pd.Timestamp("2024-02-01"),
            "reportDate": pd.Timestamp("2024-02-09"),
        },
        {"sampleNumber": "X1", "sampleDate": pd.Timestamp("2024-02-15"), "componentName": "TRANSMISION"},
    ]
    s, _, _ = harmonize([tidy(rows)], "cda")
    m = s[s["componentName"] == "motor"]
    assert m["sampleNumber"].tolist() == ["S1", "S2a", "S2b", "S3"]
    assert m["previousSampleNumber"].tolist()[1:] == ["S1", "S2a", "S2b"]
    assert pd.isna(m["previousSampleNumber"].iloc[0]) and pd.isna(m["daysSincePrevious"].iloc[0])
    assert m["daysSincePrevious"].tolist()[1:] == [31, 0, 29]
    x = s[s["sampleNumber"] == "X1"].iloc[0]
    assert pd.isna(x["previousSampleNumber"])  # other component: its own chain


def test_coolant_excluded_and_counted():
    s, _, info = harmonize(
        [tidy([{"sampleNumber": "C1", "componentName": "Refrigerante"}, {"sampleNumber": "O1"}])], "emin"
    )
    assert s["sampleNumber"].tolist() == ["O1"] and info["coolant_samples_excluded"] == 1


def test_machine_types_from_family_or_model():
    s, _, _ = harmonize(
        [
            tidy(
                [
                    {"sampleNumber": "1", "machineName": "BULLDOZERS DE ORUGA", "machineModel": "D10T"},
                    {"sampleNumber": "2", "machineName": None, "machineModel": "D11T"},
                    {"sampleNumber": "3", "machineName": "CAMIÓN", "machineModel": "793F"},
                ]
            )
        ],
        "emin",
    )
    assert s.set_index("sampleNumber")["machineName"].to_dict() == {
        "1": "bulldozer",
        "2": "bulldozer",
        "3": "camion",
    }


def test_out_of_physical_range_cell_cleared_sample_kept():
    s, rej, _ = harmonize([tidy([{"sampleNumber": "N1", "fe": -4.0, "si": 7.0, "water": 5.0}])], "cda")
    r = s.iloc[0]
    assert np.isnan(r["fe"]) and r["si"] == 7.0 and np.isnan(r["water"])
    assert set(rej["column"]) == {"fe", "water"}
    fe = rej[rej["column"] == "fe"].iloc[0]
    assert (
        fe["value"] == "-4.0"
        and "physical range [0, 100000]" in fe["reason"]
        and "sample kept" in fe["reason"]
    )
    assert fe["action"] == "cell cleared" and fe["stage"] == "harmonize" and r["cellsCleared"] == 2


def test_clean_text_per_distinct_value_equals_the_column_wide_rule():
    """Texts are cleaned once per distinct value with the same string operations as on the whole
    column (so the same whitespace rules: no-break and em spaces included)."""
    from oil_analysis.domain.harmonize import _clean_text

    raw = pd.Series(
        [" a  b ", "a\xa0\xa0b", "\xa0x\xa0", None, "nan", "-", "", "  ", "x\u2003y", "t\tt", "ok", "ok", 3],
        dtype=object,
        name="site",
    )
    text = raw.astype("string")
    whole = text.str.strip().str.replace(r"\s+", " ", regex=True)
    whole = whole.mask(whole.isin(["", "nan", "None", "-"]))
    pd.testing.assert_series_equal(_clean_text(raw), whole)


def test_clean_text_equals_the_column_wide_rule_on_random_whitespace():
    """The whitespace rule per distinct text (split/join, a fast path for printable texts) equals
    pandas' on the column for every kind of whitespace Python's ``\\s`` knows, at either end too."""
    from oil_analysis.domain.harmonize import _clean_text, _squeeze

    rng = np.random.default_rng(7)
    alphabet = list("ab-é ") + [
        "\t",
        "\n",
        "\r",
        "\x0b",
        "\x0c",
        "\x1c",
        "\x1f",
        "\x85",
        "\xa0",
        "\u2003",
        "\u2028",
    ]
    values = ["".join(rng.choice(alphabet, int(rng.integers(0, 7)))) for _ in range(3000)] + [None]
    raw = pd.Series(values, dtype="string", name="labComment")
    whole = raw.str.strip().str.replace(r"\s+", " ", regex=True)
    whole = whole.mask(whole.isin(["", "nan", "None", "-"]))
    pd.testing.assert_series_equal(_clean_text(raw), whole)
    squeezed = [_squeeze(v) for v in values[:-1]]  # untrimmed texts too
    assert squeezed == [re.sub(r"\s+", " ", v) for v in values[:-1]]


def test_sort_order_equals_pandas_stable_sort_with_missing_keys_and_ties():
    from oil_analysis.domain.harmonize import ORDER_KEYS, sort_order

    rng = np.random.default_rng(3)
    n = 2000
    df = pd.DataFrame(
        {
            "unitId": pd.array(rng.choice(["T_1", "T_2", "t_1", "Ñ", None], n), dtype="string"),
            "componentName": pd.array(
                rng.choice(["motor", "mando final", "é", "e\u0301", None], n), dtype="string"
            ),
            "sampleDate": pd.to_datetime(rng.choice(["2024-01-01", "2024-02-01", None], n)).astype(
                "datetime64[us]"
            ),
            "reportDate": pd.to_datetime(rng.choice(["2024-01-05", None], n)).astype("datetime64[us]"),
            "sampleNumber": pd.array(rng.choice(["S1", "S2", "S10", None], n), dtype="string"),
        }
    )
    for na in ("first", "last"):
        want = df.sort_values(ORDER_KEYS, kind="mergesort", na_position=na).index.to_numpy()
        np.testing.assert_array_equal(sort_order(df, ORDER_KEYS, na_position=na), want)
