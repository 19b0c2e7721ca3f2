"""Deterministic demo data that mimics the raw exports of the labs.

- :mod:`oil_analysis.demo.finning`: one ``T-XX.xlsx`` workbook per truck in the exact Finning
  (Cat S·O·S) export format of client CDA.
- :mod:`oil_analysis.demo.als`: ``muestrasAlsHistoricos.parquet`` in the ALS wide test-slot layout
  of client EMIN, plus ``Equipamiento.parquet``.
- :mod:`oil_analysis.demo.profiles`: the summary statistics of the real data that drive both.

``python -m oil_analysis.demo --out data`` writes the bundled demo data under ``data/bronze``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from oil_analysis.demo.als import AlsSummary, generate_emin_client, write_als_parquet
from oil_analysis.demo.finning import (
    Fault,
    WorkbookSummary,
    default_fault_plan,
    generate_finning_client,
    synthetic_truck_ids,
    write_finning_workbook,
)

__all__ = [
    "AlsSummary",
    "DemoData",
    "Fault",
    "WorkbookSummary",
    "default_fault_plan",
    "generate_demo_data",
    "generate_emin_client",
    "generate_finning_client",
    "synthetic_truck_ids",
    "write_als_parquet",
    "write_finning_workbook",
]


@dataclass
class DemoData:
    """What :func:`generate_demo_data` wrote."""

    cda: list[WorkbookSummary]
    emin: AlsSummary | None


def generate_demo_data(
    out_root: Path | str,
    seed: int = 7,
    cda_trucks: int = 3,
    cda_samples: int = 600,
    emin_units: int = 200,
    emin_samples: int = 5000,
) -> DemoData:
    """Write the demo bronze layer under ``out_root/bronze`` (``cda/`` and ``emin/``).

    ``cda_trucks=0`` or ``emin_units=0`` skips that client.
    """
    bronze = Path(out_root) / "bronze"
    cda = (
        generate_finning_client(bronze / "cda", cda_trucks, seed, n_samples=cda_samples) if cda_trucks else []
    )
    emin = (
        generate_emin_client(bronze / "emin", emin_units, seed, n_samples=emin_samples)
        if emin_units
        else None
    )
    return DemoData(cda=cda, emin=emin)
