"""CLI: write the demo bronze data.

uv run python -m oil_analysis.demo --out data [--seed 7] [--cda-trucks 3] [--emin-units 200]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Sequence

from oil_analysis.demo import generate_demo_data


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the arguments, generate the data and print what was written."""
    parser = argparse.ArgumentParser(
        prog="python -m oil_analysis.demo", description="Write deterministic demo lab exports."
    )
    parser.add_argument(
        "--out", default="data", help="data root; files go to OUT/bronze/cda and OUT/bronze/emin"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cda-trucks", type=int, default=3, help="Finning workbooks to write (0 to skip)")
    parser.add_argument("--cda-samples", type=int, default=600, help="oil samples per truck")
    parser.add_argument("--emin-units", type=int, default=200, help="ALS units (0 to skip)")
    parser.add_argument("--emin-samples", type=int, default=5000, help="approximate ALS samples")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    data = generate_demo_data(
        args.out,
        seed=args.seed,
        cda_trucks=args.cda_trucks,
        cda_samples=args.cda_samples,
        emin_units=args.emin_units,
        emin_samples=args.emin_samples,
    )
    for wb in data.cda:
        faults = ", ".join(f"{f.component}:{f.kind}" for f in wb.faults) or "none"
        action = wb.estado.get("Acción requerida", 0) + wb.estado.get("Se requiere acción urgente", 0)
        print(
            f"{wb.path}: {wb.n_oil} oil + {wb.n_coolant} coolant samples, {wb.first_sample}..{wb.last_sample}, "
            f"model {wb.model}, lab action {action}, faults: {faults}"
        )
    if data.emin is not None:
        e = data.emin
        print(f"{e.samples_path}: {e.n_samples} samples ({e.n_coolant} coolant) from {e.n_units} units")
        print(f"{e.equipment_path}: {e.n_units} units")
        kinds = Counter(k for _, _, k in e.faults)
        print(
            "ALS faults: "
            + ", ".join(f"{tag} {comp}:{kind}" for tag, comp, kind in e.faults)
            + f" ({dict(kinds)})"
        )
    print(f"done in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
