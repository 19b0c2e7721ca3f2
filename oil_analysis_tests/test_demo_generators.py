"""The demo generators write each lab's raw format exactly, deterministically, with faults in it."""

from __future__ import annotations

import json
import re
import warnings
from datetime import date
from importlib import resources

import openpyxl
import pandas as pd
import pyarrow.parquet as pq
import pytest

from oil_analysis.demo import (
    Fault,
    generate_emin_client,
    generate_finning_client,
    synthetic_truck_ids,
    write_finning_workbook,
)
from oil_analysis.demo.als import FLAG_LEVELS, N_SLOTS, SLOT_SUFFIXES, VISUAL_LEVELS
from oil_analysis.demo.profiles import derive_profiles, load_profiles, write_profiles

from .conftest import SHARED, needs_shared, real_workbooks

ACTION = {"Acción requerida", "Se requiere acción urgente"}
MAGNETIC = re.compile(r"(?:^|/)(?:S-M|G-M\d|P-M\d)")


def raw_rows(path, sheet: str) -> list[tuple]:
    """All rows of a sheet as stored (no header handling), like the lab file really is."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wb = openpyxl.load_workbook(path, read_only=True)
        ws = wb[sheet]
        ws.reset_dimensions()  # the exporter declares a 1x1 dimension
        rows = list(ws.iter_rows(values_only=True))
        wb.close()
    return rows


@pytest.fixture(scope="module")
def cda(tmp_path_factory):
    out = tmp_path_factory.mktemp("cda")
    summaries = generate_finning_client(out, n_trucks=3, seed=11, n_samples=300)
    frames = [pd.read_excel(s.path, sheet_name=None, engine="calamine") for s in summaries]
    oil = pd.concat([f["OIL"].iloc[1:] for f in frames], ignore_index=True)
    coolant = pd.concat([f["COOLANT"].iloc[1:] for f in frames], ignore_index=True)
    return summaries, oil, coolant


@pytest.fixture(scope="module")
def emin(tmp_path_factory):
    out = tmp_path_factory.mktemp("emin")
    summary = generate_emin_client(out, n_units=60, seed=11, n_samples=1500)
    return summary, pd.read_parquet(summary.samples_path)


# ---- Finning ---------------------------------------------------------------------------------


@needs_shared
def test_oil_and_coolant_headers_equal_the_real_ones(cda):
    summaries, _, _ = cda
    real = real_workbooks()[0]
    for sheet, width in (("OIL", 294), ("COOLANT", 133)):
        expected = list(raw_rows(real, sheet)[0])
        got = list(raw_rows(summaries[0].path, sheet)[0])
        assert len(got) == width
        assert got == expected


def test_header_keeps_the_duplicated_names(cda):
    header = list(raw_rows(cda[0][0].path, "OIL")[0])
    counts = pd.Series(header).value_counts()
    assert counts["Si"] == 3 and counts["Estado"] == 2
    for name in ("Cu", "Fe", "Pb", "Al", "P", "Mo", "Ca", "Zn", "B", "Na", "Be", "Li", "S", "Oil Color"):
        assert counts[name] == 2, name


def test_second_row_is_empty_and_data_starts_on_row_three(cda):
    for s in cda[0]:
        for sheet in ("OIL", "COOLANT"):
            rows = raw_rows(s.path, sheet)
            assert all(v is None for v in rows[1])
            assert rows[2][0] is not None and re.fullmatch(r"R\d{3}-\d{5}-\d{4}", rows[2][1])


def test_duplicated_element_columns_carry_identical_values(cda):
    _, oil, _ = cda
    pairs = [(c.split(".")[0], c) for c in oil.columns if re.fullmatch(r"[A-Z][a-z]?\.\d", c)]
    assert len(pairs) >= 15
    for base, dup in pairs:
        assert oil[base].equals(oil[dup]), dup
    assert (oil["Estado.1"] == "Nuevo").all()
    assert (
        oil["Estado"]
        .isin(["No se requiere acción", "Monitorear Compartimento", *ACTION, "Sin comentarios"])
        .all()
    )


def test_values_are_text_meters_are_numbers_and_dates_are_dates(cda):
    rows = raw_rows(cda[0][0].path, "OIL")
    header = rows[0]
    col = {
        name: header.index(name)
        for name in ("Fe", "V100", "Horas", "Fecha de Toma de Muestra", "Fluid Weight")
    }
    data = rows[2:]
    assert all(isinstance(r[col["Fe"]], str) for r in data if r[col["Fe"]] is not None)
    assert all(isinstance(r[col["V100"]], str) for r in data if r[col["V100"]] is not None)
    assert all(isinstance(r[col["Horas"]], float) for r in data if r[col["Horas"]] is not None)
    assert all(hasattr(r[col["Fecha de Toma de Muestra"]], "year") for r in data)
    weights = {type(r[col["Fluid Weight"]]) for r in data if r[col["Fluid Weight"]] is not None}
    assert weights == {float, str}  # 60 / 30 as numbers, '10W' / '15W-40' as text


def test_format_quirks_are_reproduced(cda):
    _, oil, coolant = cda
    iso = oil["ISO"].dropna()
    assert iso.str.fullmatch(r"\d{1,2}/\d{1,2}/\d{1,2}").any()
    assert iso.isin(["S-M", "G-NM1"]).any()  # visual/patch codes share the field
    assert set(oil["W"].dropna()) <= {"N", "T", "P", "E"} and {"N", "T"} <= set(oil["W"].dropna())
    assert set(oil["F"].dropna()) <= {"N", "P"}
    assert oil.loc[oil["Compartimento"] != "MOTOR", "F"].isna().all()
    # W=E: water prevents the analysis, every element and V100 are empty.
    water = oil[oil["W"] == "E"]
    assert len(water) > 0
    assert water[["Fe", "Cu", "Si", "Zn", "V100"]].isna().all().all()
    # Fluid Type is often empty; the motor has the extra physico-chemical essays, wheels never do.
    assert 0.2 < oil["Fluid Type"].isna().mean() < 0.8
    assert oil.loc[oil["Compartimento"] == "MOTOR", "OXI"].notna().mean() > 0.9
    assert oil.loc[oil["Compartimento"] == "MOTOR", "ISO"].isna().all()
    assert set(oil["Compartimento"]) >= {"MOTOR", "MANDO FINAL TRASERO IZQUIERDO", "MANDO FINAL TRASERO DERECHO",
                                         "RUEDA DELANTERA DERECHA", "RUEDA DELANTERA IZQUIERDA", "TRANSMISION"}  # fmt: skip
    counts = oil["Compartimento"].value_counts()
    assert counts["MOTOR"] > 1.5 * counts["TRANSMISION"]
    assert (coolant["Compartimento"] == "REFRIGERANTE").all() and len(coolant) > 0


def test_machine_hours_mostly_increase(cda):
    summaries, oil, _ = cda
    for s in summaries:
        hours = (
            oil.loc[oil["ID de equipo"] == s.unit_id]
            .sort_values("Fecha de Toma de Muestra")["Horas"]
            .dropna()
        )
        steps = hours.diff().dropna()
        assert (steps >= 0).mean() > 0.95


def test_faults_show_up_as_lab_action_with_fitting_codes(cda):
    _, oil, _ = cda
    action = oil[oil["Estado"].isin(ACTION)]
    water_or_magnetic = action[
        (action["W"].isin(["P", "E"])) | action["ISO"].fillna("").str.contains(MAGNETIC)
    ]
    assert len(water_or_magnetic) >= 3
    assert action["Interpretacion"].str.contains("AGUA").any()
    assert action["Interpretacion"].str.contains("MAGNETIC|HIERRO").any()
    fuel = oil[(oil["Compartimento"] == "MOTOR") & (oil["F"] == "P")]
    assert len(fuel) > 0 and fuel["Estado"].isin(ACTION).all()
    # The lab's verdict mix stays close to the real one (~5% action, ~45% monitor).
    share = oil["Estado"].value_counts(normalize=True)
    assert 0.02 < share[list(ACTION)].sum() < 0.10
    assert 0.30 < share["Monitorear Compartimento"] < 0.60
    normal = oil.loc[oil["Estado"] == "No se requiere acción", "Interpretacion"]
    assert normal.str.startswith("LECTURAS").mean() > 0.9


def test_injected_wear_raises_iron_over_the_last_samples(tmp_path):
    path = tmp_path / "T-05.xlsx"
    write_finning_workbook(path, "T-05", n_samples=200, seed=3, failures=[Fault("MOTOR", "wear", 5)])
    oil = pd.read_excel(path, sheet_name="OIL", engine="calamine").iloc[1:]
    motor = oil[oil["Compartimento"] == "MOTOR"].sort_values("Fecha de Toma de Muestra")
    fe = pd.to_numeric(motor["Fe"])
    assert fe.iloc[-1] > 2 * fe.iloc[:-5].median()
    assert motor["Estado"].iloc[-1] in ACTION


def test_unknown_fault_kind_is_refused():
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("MOTOR", "meteor")


def test_sample_numbers_are_synthetic_and_unique_across_trucks(cda):
    _, oil, coolant = cda
    numbers = pd.concat([oil["No. de control de laboratorio"], coolant["No. de control de laboratorio"]])
    assert numbers.is_unique
    assert numbers.str.fullmatch(r"R140-\d{5}-\d{4}").all()
    assert not set(synthetic_truck_ids(12)) & {"T-09", "T-10", "T-11", "T-12", "T-18", "T-24"}


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    args = dict(unit_id="T-02", n_samples=120, start=date(2022, 1, 1), end=date(2023, 6, 30))
    a, b, c = tmp_path / "a.xlsx", tmp_path / "b.xlsx", tmp_path / "c.xlsx"
    write_finning_workbook(a, seed=5, **args)
    write_finning_workbook(b, seed=5, **args)
    write_finning_workbook(c, seed=6, **args)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


# ---- ALS -------------------------------------------------------------------------------------


def test_als_layout_has_identity_columns_and_test_slots(emin):
    _, df = emin
    identity = [
        "id", "sampleNumber", "externalCode", "equipment_id", "equipment_serial", "equipment_tag",
        "equipment_family_name", "equipment_maker_name", "equipment_model", "equipment_time", "compartment_name",
        "compartment_id", "collectionData_dateSampled", "collectionData_fluidTime",
        "collectionData_oil_manufacturer_name", "collectionData_oil_viscosity_name", "program_id", "program_name",
        "dateOfEntryIntoLaboratory", "validResult_evaluationDate",
    ]  # fmt: skip
    assert list(df.columns[: len(identity)]) == identity
    slots = [f"testResults_{n}_{s}" for n in range(N_SLOTS) for s in SLOT_SUFFIXES]
    assert list(df.columns[len(identity) :]) == slots
    assert df["sampleNumber"].str.fullmatch(r"\d{10}").all() and df["sampleNumber"].is_unique
    assert str(df["collectionData_dateSampled"].dt.tz) == "UTC"
    hours = set(df["collectionData_dateSampled"].dt.hour)
    assert hours <= {0, 3, 4} and {3, 4} & hours  # 00:00Z until mid-2024, then local midnight
    assert set(df["equipment_family_name"]) >= {"CAMIÓN", "EXCAVADORA", "BULLDOZERS DE ORUGA"}
    for n in range(N_SLOTS):
        assert pd.api.types.is_string_dtype(df[f"testResults_{n}_resultValue"])


def long_tests(df: pd.DataFrame) -> pd.DataFrame:
    parts = []
    for n in range(N_SLOTS):
        part = df[["sampleNumber", "compartment_name", "equipment_tag", "collectionData_dateSampled"]].copy()
        part["slot"] = n
        part["test"] = df[f"testResults_{n}_test_translation_name"]
        part["value"] = df[f"testResults_{n}_resultValue"]
        parts.append(part)
    return pd.concat(parts, ignore_index=True).dropna(subset=["test"])


def test_als_values_are_strings_with_censored_commas_and_signs(emin):
    _, df = emin
    tests = long_tests(df)
    values = tests["value"].dropna()
    assert values.map(type).eq(str).all()
    for censored in ("<1", "<0.05", "<10"):
        assert (values == censored).any(), censored
    assert values.str.fullmatch(r"-\d+([.,]\d+)?").any()  # freezing point / viscosity change
    assert values.str.fullmatch(r"\d+,\d+").any()  # decimal comma
    flags = tests.loc[tests["test"].isin(["Agua", "Combustible", "Glicol"]), "value"].dropna()
    assert set(flags) <= {*FLAG_LEVELS, "-"}
    visual = tests.loc[tests["test"] == "Partículas magnéticas", "value"].dropna()
    assert set(visual) <= {*VISUAL_LEVELS, "-"}


def test_als_test_names_come_from_the_catalog_and_slots_move(emin):
    _, df = emin
    tests = long_tests(df)
    catalog = pd.read_csv(resources.files("oil_analysis.reference").joinpath("essays.csv").open("rb"))
    known = set(catalog["als_test_name"].dropna())
    names = set(tests["test"])
    assert {"Hierro", "Viscosidad 100°C", "Índice PQ", "Agua", "Silicio"} <= names
    coolant_only = {
        "pH",
        "Concentración de glicol",
        "Sólidos disueltos totales",
        "Punto de congelación",
        "Nitritos",
        "Urea",
        "Apariencia",
    }
    assert names - known <= coolant_only | {"Variación viscosidad 100°C"}
    assert tests.loc[tests["test"] == "Hierro", "slot"].nunique() > 1  # no fixed slot per test
    assert not tests.duplicated(["sampleNumber", "test"]).any()
    coolant = df["compartment_name"].str.contains("refrig")
    assert (
        coolant.any()
        and tests.loc[tests["test"] == "pH", "sampleNumber"].isin(df.loc[coolant, "sampleNumber"]).all()
    )


def test_als_faults_raise_their_signals(emin):
    summary, df = emin
    tests = long_tests(df)
    assert len(summary.faults) >= 4
    for tag, comp, kind in summary.faults:
        own = tests[(tests["equipment_tag"] == tag) & (tests["compartment_name"] == comp)]
        last = own[own["collectionData_dateSampled"] == own["collectionData_dateSampled"].max()]
        value = dict(zip(last["test"], last["value"], strict=True))
        if kind == "wear":
            fe = pd.to_numeric(own.loc[own["test"] == "Hierro", "value"], errors="coerce")
            assert float(value["Hierro"]) > 2 * fe.iloc[:-4].median()
        elif kind == "fuel":
            assert value["Combustible"] == "Positivo"
        elif kind == "coolant_leak":
            assert value["Glicol"] in ("Positivo", "Excesivo")
        elif kind == "water":
            assert value["Agua"] in ("Positivo", "Excesivo")


def test_als_same_seed_same_bytes(tmp_path):
    a = generate_emin_client(tmp_path / "a", n_units=25, seed=4, n_samples=400)
    b = generate_emin_client(tmp_path / "b", n_units=25, seed=4, n_samples=400)
    assert a.samples_path.read_bytes() == b.samples_path.read_bytes()
    assert a.equipment_path.read_bytes() == b.equipment_path.read_bytes()
    equipment = pq.read_table(a.equipment_path).to_pandas()
    assert equipment["equipment_tag"].is_unique and len(equipment) == 25


# ---- Profiles --------------------------------------------------------------------------------


def test_shipped_profile_holds_no_real_identifiers():
    text = resources.files("oil_analysis.demo").joinpath("profiles.json").read_text(encoding="utf-8")
    assert not re.search(r"R120-\d{5}-\d{4}", text)  # real Finning lab numbers
    assert not re.search(r"\b2BW0\d{4}\b", text)  # real truck serials
    assert not re.search(r"\b2[2-5]10\d{6}\b", text)  # real ALS sample numbers
    profile = load_profiles()
    assert len(profile["finning"]["oil_header"]) == 294


@needs_shared
def test_shipped_profile_is_what_the_derivation_gives(tmp_path):
    if not (SHARED / "data" / "emin" / "EMIN_silver_reference.parquet").exists():
        pytest.skip("../shared/data/emin not present")
    out = tmp_path / "profiles.json"
    write_profiles(derive_profiles(SHARED / "data"), out)
    shipped = json.loads(
        resources.files("oil_analysis.demo").joinpath("profiles.json").read_text(encoding="utf-8")
    )
    assert json.loads(out.read_text(encoding="utf-8")) == shipped
