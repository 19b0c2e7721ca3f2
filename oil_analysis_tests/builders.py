"""Builders of small raw lab files for tests (the real format, a handful of columns)."""

from __future__ import annotations

import datetime as dt
import pathlib

import pandas as pd
from openpyxl import Workbook

FINNING_HEADER = [
    "Estado",
    "No. de control de laboratorio",
    "Fecha de laboratorio",
    "Fecha de Toma de Muestra",
    "Model",
    "ID de equipo",
    "No. de serie del equipo",
    "Compartimento",
    "Horas",
    "Meter on Fluid",
    "Component Meter",
    "Fluid Brand",
    "Fluid Type",
    "Fluid Weight",
    "Estado",
    "Interpretacion",
    "Fe",
    "Si",
    "Cu",
    "V100",
    "Si",
    "Fe",
    "W",
    "F",
    "ISO",
    "PQI",
]


def finning_row(n: int, **over) -> dict:
    row = {
        "Estado": "No se requiere acción",
        "No. de control de laboratorio": f"R120-00000-{n:04d}",
        "Fecha de laboratorio": dt.datetime(2024, 1, 10) + dt.timedelta(days=n),
        "Fecha de Toma de Muestra": dt.datetime(2024, 1, 3) + dt.timedelta(days=n),
        "Model": "789C",
        "ID de equipo": "T-01",
        "No. de serie del equipo": "SER",
        "Compartimento": "MOTOR",
        "Horas": 1000.0 + n,
        "Meter on Fluid": 200.0 + n,
        "Component Meter": 900.0,
        "Fluid Brand": "MOBIL",
        "Fluid Type": "DELVAC",
        "Fluid Weight": "15W-40",
        "Estado.1": "Nuevo",
        "Interpretacion": "LECTURAS NORMALES/",
        "Fe": 10 + n % 5,
        "Si": 8,
        "Cu": 2,
        "V100": 14.5,
        "W": "N",
        "F": "N",
        "ISO": "S-M",
        "PQI": 20,
    }
    row.update(over)
    return row


def write_finning(
    path: pathlib.Path,
    rows: list[dict],
    *,
    header: list[str] | None = None,
    sheet: str = "OIL",
    coolant_rows: int = 0,
    keys: list[str] | None = None,
    dup_keys: bool = False,
) -> pathlib.Path:
    """A workbook in the Finning layout: header row, empty row 2, then ``rows``.

    Row dicts are keyed by header name; a repeated header reads the same key (the copies agree)
    unless ``dup_keys``, where the copies are keyed ``Fe.1``, ``Fe.2`` like pandas names them.
    ``keys`` gives the dict key of each column explicitly (for headers written differently).
    """
    header = header if header is not None else FINNING_HEADER
    wb = Workbook()
    ws = wb.active
    ws.title = sheet
    ws.append(header)
    ws.append([None] * len(header))
    if keys is None:
        seen: dict[str, int] = {}
        keys = []
        for h in header:
            n = seen.get(h, 0)
            seen[h] = n + 1
            keys.append(h if n == 0 or (h in ("Fe", "Si") and not dup_keys) else f"{h}.{n}")
    for r in rows:
        ws.append([r.get(k) for k in keys])
    if coolant_rows:
        cws = wb.create_sheet("COOLANT")
        cws.append(["No. de control de laboratorio", "Compartimento"])
        cws.append([None, None])
        for i in range(coolant_rows):
            cws.append([f"C{i}", "REFRIGERANTE"])
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


def als_frame(samples: list[dict]) -> pd.DataFrame:
    """Build an ALS export: each sample is identity fields plus a list of (test, value) slots."""
    rows = []
    for i, s in enumerate(samples):
        row = {
            "id": i,
            "sampleNumber": s.get("sampleNumber", f"25100{i:05d}"),
            "externalCode": None,
            "equipment_id": 1,
            "equipment_serial": "SER1",
            "equipment_tag": s.get("unit", "CAEX-01"),
            "equipment_family_name": "CAMIÓN",
            "equipment_maker_name": "CAT",
            "equipment_model": "793F",
            "equipment_time": "12000",
            "compartment_name": s.get("component", "Transmisión"),
            "compartment_id": 77.0,
            "collectionData_dateSampled": s.get("date", pd.Timestamp("2024-05-02 04:00", tz="UTC")),
            "collectionData_fluidTime": "250",
            "collectionData_oil_manufacturer_name": "MOBIL",
            "collectionData_oil_viscosity_name": "SAE 10W",
            "program_id": 1,
            "program_name": "Aceite",
            "dateOfEntryIntoLaboratory": pd.Timestamp("2024-05-05", tz="UTC"),
            "validResult_evaluationDate": pd.Timestamp("2024-05-08", tz="UTC"),
        }
        for n, (test, value) in enumerate(s["tests"]):
            row[f"testResults_{n}_test_translation_name"] = test
            row[f"testResults_{n}_resultValue"] = value
            row[f"testResults_{n}_test_order"] = str(n)
        rows.append(row)
    df = pd.DataFrame(rows)
    for c in df.columns:
        if c.endswith(("_test_translation_name", "_resultValue", "_test_order")):
            df[c] = df[c].astype("string")
    return df


def run_cda(root, instance, tags=None, **config) -> dict:
    """Materialize every asset of ``cda`` under ``root`` (``config``: the silver step's; ``tags``: the
    run's) and return each asset's materialization metadata by asset name; the run must succeed."""
    from dagster import materialize

    from oil_analysis.definitions import all_assets, build_resources

    run_config = {"ops": {"silver_harmonized": {"config": config}}} if config else None
    result = materialize(
        all_assets,
        partition_key="cda",
        instance=instance,
        resources=build_resources(str(root)),
        run_config=run_config,
        tags=tags,
    )
    assert result.success
    return {
        e.asset_key.path[-1]: e.step_materialization_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
