"""The bench harness on tiny sizes: it runs end to end and its output has the promised structure.

No timing is asserted here (timings belong to ``make bench``, never to the tests).
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from .conftest import needs_shared

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


def _load(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _is_spread(s: dict) -> bool:
    return set(s) == {"median", "min", "max", "n"} and s["n"] >= 1 and s["min"] <= s["median"] <= s["max"]


def test_synthetic_silver_meets_the_silver_contract():
    from oil_analysis.domain.contracts import conform
    from oil_analysis.domain.harmonize import silver_columns

    scale = _load("scale")
    silver = scale.generate_silver(3_000, seed=1)
    assert list(conform(silver, "silver_harmonized").columns) == silver_columns()
    assert len(silver) == 3_000 and silver["sampleNumber"].is_unique
    assert silver["componentName"].nunique() == 10 and silver["unitId"].nunique() == scale._units(3_000)
    assert silver["previousSampleNumber"].notna().mean() > 0.9  # series of one unit and component
    again = scale.generate_silver(3_000, seed=1)
    assert silver.equals(again), "deterministic for a given size and seed"


def test_scale_bench_structure(tmp_path):
    scale = _load("scale")
    sizes = [2_000, 4_000]
    for n in sizes:  # generated here: the harness then only spawns the measuring children
        scale.generate_silver(n, seed=7).to_parquet(scale.silver_file(n, 7, tmp_path), index=False)
    doc = scale.run_scale(sizes, repeat=1, out_dir=tmp_path)
    assert [r["samples"] for r in doc["sizes"]] == sizes
    for r in doc["sizes"]:
        assert set(r["steps"]) == {"load_silver", *scale.STEPS}
        assert all(_is_spread(s) for s in r["steps"].values())
        assert _is_spread(r["target"]) and _is_spread(r["peak_rss_mb"]) and r["peak_rss_mb"]["median"] > 0
        assert r["limit_rows"] > 0 and sum(r["status"].values()) == r["samples"]
        run = r["runs"][0]
        assert set(run["cpu_seconds"]) == set(run["seconds"]) and run["peak_rss_target_mb"] > 0
    assert set(doc["exponents"]) >= {"target", "with_quality", "peak_rss", *scale.STEPS}
    assert all(isinstance(v, float) and not math.isnan(v) for v in doc["exponents"].values())
    table = scale.scale_table(doc)
    assert "| samples |" in table and "2,000" in table and "Growth exponent" in table


@needs_shared
def test_run_bench_prints_and_writes_the_table(tmp_path, capsys):
    run_bench = _load("run_bench")
    code = run_bench.main(["--only", "full", "--trucks", "1", "--repeat", "1", "--out", str(tmp_path)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| bench | median (min–max) | peak RSS |" in printed
    assert "full run / parse floor" in printed and "step `classified_reports`" in printed
    doc = json.loads((tmp_path / "bench.json").read_text())
    full = doc["full"]
    assert full["trucks"] == 1 and full["real_files"] == 1 and full["samples"] > 0
    assert set(full["floor"]) == {"seq", "seq_cpu", "seq_pandas", "par2"} and _is_spread(full["floor"]["seq"])
    assert _is_spread(full["run"]["materialize"]) and _is_spread(full["run"]["materialize_cpu"])
    assert full["ratio"] > 0 and full["cpu_ratio"] > 0
    assert {"bronze_lab_files", "silver_harmonized", "classified_reports"} <= set(full["run"]["steps"])
    assert (tmp_path / "bench.md").read_text().startswith("Machine:")
    assert doc["machine"]["cores"] and doc["machine"]["rss_method"]


def test_other_benches_are_found_but_never_the_harness_itself():
    run_bench = _load("run_bench")
    others = run_bench.other_benches()
    assert "run" not in others and "advisor" in others
    assert all(script.startswith("bench/") and script.endswith("_bench.py") for script in others.values())


def test_readme_results_section_is_replaced(tmp_path):
    run_bench = _load("run_bench")
    readme = tmp_path / "README.md"
    readme.write_text(f"# Bench\n\nintro\n\n{run_bench.BEGIN}\nold figures\n{run_bench.END}\n\nafter\n")
    run_bench.update_readme("new figures\n", readme)
    text = readme.read_text()
    assert "old figures" not in text and "new figures" in text
    assert text.startswith("# Bench") and text.rstrip().endswith("after")
    bad = tmp_path / "missing-markers.md"
    bad.write_text("no markers")
    with pytest.raises(SystemExit):
        run_bench.update_readme("x", bad)


def test_monthly_bench_cuts_a_workbook_at_a_date_in_the_finning_format(tmp_path):
    """The cut copy keeps the header, the empty row 2 and exactly the rows sampled before the cut,
    whatever their order in the sheet; the reader reads it like the lab's own file."""
    from openpyxl import load_workbook

    from oil_analysis.domain.labs.finning import read_finning_workbook

    from .builders import finning_row, write_finning

    monthly = _load("monthly_bench")
    rows = [finning_row(n) for n in range(12)][::-1]  # newest first, as the lab sends them
    rows.insert(3, finning_row(40))  # a late row in the middle of the sheet
    src = write_finning(tmp_path / "T-01.xlsx", rows)
    kept, dropped = monthly.cut_workbook(src, tmp_path / "cut" / "T-01.xlsx", monthly.date(2024, 1, 10))
    assert (kept, dropped) == (8, 6)  # 7 rows sampled 2024-01-03..09, the empty row 2; 5 + 1 later
    cut = read_finning_workbook(str(tmp_path / "cut" / "T-01.xlsx")).samples
    full = read_finning_workbook(str(src)).samples
    assert sorted(cut["sampleNumber"]) == sorted(f"R120-00000-{n:04d}" for n in range(7))
    assert (cut["sampleDate"] < "2024-01-10").all() and len(full) == 13
    original, copy = load_workbook(src)["OIL"], load_workbook(tmp_path / "cut" / "T-01.xlsx")["OIL"]
    assert [c.value for c in original[1]] == [c.value for c in copy[1]]
    assert all(c.value is None for c in copy[2])


def test_monthly_bench_measures_dagster_on_the_same_graph_with_no_op_steps():
    """Dagster's own cost is measured on the product's graph: same assets, dependencies, partitions
    and asset checks; the no-op run materializes every asset and evaluates every check."""
    from dagster import DagsterInstance, materialize

    from oil_analysis.definitions import all_assets

    monthly = _load("monthly_bench")
    mirror, resources = monthly.noop_graph()
    real = {next(iter(a.keys)): a for a in all_assets if hasattr(a, "check_specs")}
    assert {next(iter(a.keys)) for a in mirror} == set(real)
    for a in mirror:
        twin = real[next(iter(a.keys))]
        assert a.dependency_keys == twin.dependency_keys
        assert {s.name for s in a.check_specs} == {s.name for s in twin.check_specs}
        assert a.partitions_def == twin.partitions_def
    with DagsterInstance.ephemeral() as instance:
        result = materialize(mirror, partition_key="cda", instance=instance, resources=resources)
        assert monthly.dagster_floor(instance) > 0
    assert result.success
    assert {e.asset_key for e in result.get_asset_materialization_events()} == set(real)
    checks = [e for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert len(checks) == sum(len(list(a.check_specs)) for a in real.values()) > 0


def test_orchestrated_bench_reports_the_cli_monthly_update_as_shares_of_the_cold_command():
    orchestrated = _load("orchestrated")
    monthly = {
        "cold_s": 10.0,
        "update_s": 5.0,
        "unchanged_s": 2.0,
        "cold_cpu_s": 8.0,
        "update_cpu_s": 6.0,
        "unchanged_cpu_s": 1.0,
        "update_share": 0.5,
        "unchanged_share": 0.2,
    }
    machine = {"cpu": "x", "cores": 2, "dagster": "1", "date": "d", "load_avg_1m": 0.5}
    text = orchestrated.table(
        {"machine": machine, "load_end": 0.6, "datasets": {"real11": {"monthly": monthly}}}
    )
    row = next(line for line in text.splitlines() if "monthly update with the CLI" in line)
    assert "cold 10.0 s, update 5.0 s, unchanged 2.0 s" in row
    assert "update **0.50×** cold (CPU 0.75×)" in row and "unchanged **0.20×** (CPU 0.12×)" in row
