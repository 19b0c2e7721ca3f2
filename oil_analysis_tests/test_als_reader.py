"""The ALS reader: slot layout melted and pivoted, censored values kept, repeated tests reported."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from oil_analysis.domain.labs.als import read_als_parquet
from oil_analysis.domain.labs.common import LabFileError

from .builders import als_frame


def write(tmp_path, df: pd.DataFrame) -> str:
    path = tmp_path / "muestrasAlsHistoricos.parquet"
    df.to_parquet(path, index=False)
    return str(path)


def test_slots_in_any_order_pivot_to_one_column_per_essay(tmp_path):
    df = als_frame(
        [
            {"tests": [("Hierro", "12"), ("Viscosidad 100°C", "14,2"), ("Silicio", "8")]},
            {"tests": [("Silicio", "3"), ("Hierro", "40")]},
        ]
    )
    r = read_als_parquet(write(tmp_path, df), timezone="America/Santiago")
    s = r.samples
    assert s["fe"].tolist() == [12.0, 40.0]
    assert s["si"].tolist() == [8.0, 3.0]
    assert s["visc_100c"].iloc[0] == pytest.approx(14.2) and np.isnan(s["visc_100c"].iloc[1])
    assert r.info["test_slots"] == 3


def test_censored_values_kept_with_marker_and_signs_kept(tmp_path):
    df = als_frame([{"tests": [("Hierro", "<1"), ("Silicio", ">100"), ("Sodio", "<0.05"), ("TBN", "-0,4")]}])
    s = read_als_parquet(write(tmp_path, df)).samples
    assert s.loc[0, "fe"] == 1.0 and s.loc[0, "si"] == 100.0 and s.loc[0, "na"] == 0.05
    assert s.loc[0, "tbn"] == -0.4
    assert json.loads(s.loc[0, "censoredEssays"]) == {"fe": "<", "na": "<", "si": ">"}


def test_accents_and_case_of_test_names_do_not_matter(tmp_path):
    df = als_frame([{"tests": [("indice pq", "55"), ("NÍQUEL", "2")]}])
    s = read_als_parquet(write(tmp_path, df)).samples
    assert s.loc[0, "pq_index"] == 55 and s.loc[0, "ni"] == 2


def test_flags_as_letters_or_words(tmp_path):
    df = als_frame(
        [
            {"tests": [("Agua", "P"), ("Combustible", "Negativo")]},
            {"tests": [("Agua", "Trazas"), ("Combustible", "E")]},
        ]
    )
    s = read_als_parquet(write(tmp_path, df)).samples
    assert s["water"].tolist() == [2.0, 1.0] and s["fuel"].tolist() == [0.0, 3.0]


def test_repeated_test_with_different_values_clears_only_that_value(tmp_path):
    df = als_frame(
        [
            {"sampleNumber": "1", "tests": [("Hierro", "12"), ("Hierro", "15")]},
            {"sampleNumber": "2", "tests": [("Hierro", "9"), ("Hierro", "9")]},
            {"sampleNumber": "3", "tests": [("Hierro", "4")]},
        ]
    )
    r = read_als_parquet(write(tmp_path, df))
    assert r.samples["sampleNumber"].tolist() == ["1", "2", "3"]
    assert np.isnan(r.samples["fe"][0]) and r.samples["fe"].tolist()[1:] == [9.0, 4.0]
    assert r.samples["cellsCleared"].tolist() == [1, 0, 0]
    rej = r.rejects.iloc[0]
    assert rej["row"] == 1 and "Hierro" in rej["column"] and "repeated" in rej["reason"]
    assert rej["action"] == "cell cleared" and rej["value"] == "12 | 15"


def test_text_in_numeric_test_clears_the_cell_with_column_named(tmp_path):
    df = als_frame([{"tests": [("Hierro", "doce")]}, {"tests": [("Hierro", "3")]}])
    r = read_als_parquet(write(tmp_path, df))
    assert len(r.samples) == 2 and r.rejects.iloc[0]["row"] == 1
    assert r.rejects.iloc[0]["reason"] == "expected a number; cell cleared, sample kept"
    assert r.rejects.iloc[0]["value"] == "doce" and r.rejects.iloc[0]["column"] == "test 'Hierro'"


def test_utc_midnight_becomes_local_date(tmp_path):
    df = als_frame([{"date": pd.Timestamp("2024-05-02 04:00", tz="UTC"), "tests": [("Hierro", "1")]}])
    s = read_als_parquet(write(tmp_path, df), timezone="America/Santiago").samples
    assert s.loc[0, "sampleDate"] == pd.Timestamp("2024-05-02")


def test_unknown_tests_are_counted_not_fatal(tmp_path):
    df = als_frame([{"tests": [("pH", "8.1"), ("Urea", "3"), ("Hierro", "2")]}])
    r = read_als_parquet(write(tmp_path, df))
    assert r.info["unknown_tests_skipped"] == {"pH": 1, "Urea": 1}


def test_missing_required_column_names_it(tmp_path):
    df = als_frame([{"tests": [("Hierro", "1")]}]).drop(columns=["equipment_tag"])
    with pytest.raises(LabFileError, match="equipment_tag"):
        read_als_parquet(write(tmp_path, df))


def test_not_a_parquet_file(tmp_path):
    p = tmp_path / "x.parquet"
    p.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(LabFileError, match="not a readable parquet"):
        read_als_parquet(str(p))


def test_visual_levels_in_words_and_dash_means_not_performed(tmp_path):
    df = als_frame(
        [
            {"tests": [("Partículas magnéticas", "Moderado"), ("Agua", "-"), ("Hierro", "-")]},
            {"tests": [("Partículas no magnéticas", "Ausente"), ("Agua", "Excesivo")]},
        ]
    )
    r = read_als_parquet(write(tmp_path, df))
    s = r.samples
    assert len(r.rejects) == 0
    assert s["debris_magnetic"].iloc[0] == 2.0 and np.isnan(s["water"].iloc[0]) and np.isnan(s["fe"].iloc[0])
    assert s["debris_nonmagnetic"].iloc[1] == 0.0 and s["water"].iloc[1] == 3.0


def test_bare_utc_date_is_kept_not_shifted(tmp_path):
    df = als_frame(
        [
            {"date": pd.Timestamp("2023-06-01 00:00", tz="UTC"), "tests": [("Hierro", "1")]},
            {"date": pd.Timestamp("2024-08-01 04:00", tz="UTC"), "tests": [("Hierro", "1")]},
        ]
    )
    s = read_als_parquet(write(tmp_path, df), timezone="America/Santiago").samples
    assert s["sampleDate"].tolist() == [pd.Timestamp("2023-06-01"), pd.Timestamp("2024-08-01")]
