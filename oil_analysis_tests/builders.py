"""Builders of small raw lab files for tests (the real format, a handful of columns)."""

from __future__ import annotations

import datetime as dt
import pathlib

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
) -> pathlib.Path:
    """A workbook in the Finning layout: header row, empty row 2, then ``rows``."""
    header = header or FINNING_HEADER
    wb = Workbook()
    ws = wb.active
    ws.title = sheet
    ws.append(header)
    ws.append([None] * len(header))
    seen: dict[str, int] = {}
    keys = []
    for h in header:  # repeated headers read the same dict key (the copies agree)
        n = seen.get(h, 0)
        seen[h] = n + 1
        keys.append(h if n == 0 or h in ("Fe", "Si") else f"{h}.{n}")
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
