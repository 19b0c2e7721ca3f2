"""The demo data's published outputs, byte for byte: refactors move code, they never change results.

The digests below were recorded from main before the structure change of issue 19 (and are kept
by the speed work of issues 14 and 16). A test that fails here means a *result* changed: if that is
intended (a method change), say so in the commit and record the new digests with
``python -m oil_analysis_tests.test_golden_outputs``.
"""

from __future__ import annotations

import hashlib
import pathlib
import shutil
import sys

from dagster import DagsterInstance, materialize

from .conftest import DEMO_BRONZE

REPORT_DATE = "2026-11-29"  # every age in the outputs is measured against it

# Data files only: manifests, change logs and run-state files carry run ids and timestamps.
GOLDEN = {
    "gold/cda/classified_reports.parquet": (
        "292b0343a2f72a3c5d29e9cb9498d07bb895c6986545f9117b7e0f5084a1aea5"
    ),
    "gold/cda/fleet_report.html": ("272a07214eeca5f0e70367d647addbe33e66eb7845efd0ee06254aee30da0b8e"),
    "gold/cda/limit_quality.parquet": ("9edb43d3a4b6adff8ae0272d1276b48a2d065f171f7be97b4a831c5aa903091f"),
    "gold/cda/machine_status_current.parquet": (
        "983ddd8e229fa34e4f9b525a5f3b4d18365b38162ae69f33750a8d2fbce2062f"
    ),
    "gold/emin/classified_reports.parquet": (
        "21521669497f27d172521bdaf50f08b12e0470fb33c6982030d3282c83393ea0"
    ),
    "gold/emin/fleet_report.html": ("8b424a2fc0c8126ecbf0300c62517f79d8645bb066cd7b7666d078b0aeacc54e"),
    "gold/emin/limit_quality.parquet": ("e35d2bd8ce286846ea9292368b5d07d820d4a7ca1194d2299c67838311c0be9d"),
    "gold/emin/machine_status_current.parquet": (
        "e581497ea422af9fc6b2263c4ba21a710c95fdf9a36404572eb300879f6ca5f9"
    ),
    "silver/harmonized/CDA.parquet": ("6923a4cd54595233e7dc2b643df289ba69e60bc7ef837a387c5ae8bae3e175ae"),
    "silver/harmonized/EMIN.parquet": ("e240a3bb57350d0bce78c0138ead7bb428dd62cf2c0efca7b83717abbe7822fb"),
    "silver/rejects/cda.parquet": ("39b5873b44c5908dc353dfdd531f091e4403e93ea8ffc60202d369b271ba07c4"),
    "silver/rejects/emin.parquet": ("5f3244171dd6c62c6180b9bd5858572cdbf7155040ca97efd4b715441f196368"),
    "silver/stewart_limits/cda/limits-a7400e01cd478778/stewart_limits.parquet": (
        "0f13a8359fb30fbe4f52663adcb2aa7d03c728060b392e57817f7cb84c487842"
    ),
    "silver/stewart_limits/emin/limits-1adbb8025f609801/stewart_limits.parquet": (
        "921be4cfcec60cf8ce2ed2d655bc0bc838dfb047b77e06ce015e5b0b48558d66"
    ),
}


def materialize_demo(root: pathlib.Path) -> dict[str, str]:
    """Run every asset for both demo clients under ``root`` and return the digests of GOLDEN's files."""
    from oil_analysis.definitions import all_assets, build_resources

    shutil.copytree(DEMO_BRONZE, root / "bronze", dirs_exist_ok=True)
    for reserved in ("_registry", "_quarantine"):
        shutil.rmtree(root / "bronze" / reserved, ignore_errors=True)
    with DagsterInstance.ephemeral() as instance:
        for client in ("cda", "emin"):
            result = materialize(
                all_assets, partition_key=client, instance=instance, resources=build_resources(str(root))
            )
            assert result.success, client
    return {
        path: hashlib.sha256((root / path).read_bytes()).hexdigest() if (root / path).exists() else "missing"
        for path in GOLDEN
    }


def test_demo_outputs_are_byte_identical_to_the_recorded_digests(data_root, monkeypatch):
    monkeypatch.setenv("OIL_REPORT_DATE", REPORT_DATE)
    got = materialize_demo(data_root)
    changed = {p: got[p][:12] for p, want in GOLDEN.items() if got[p] != want}
    assert not changed, f"outputs differ from the recorded digests: {changed}"


if __name__ == "__main__":  # pragma: no cover - prints the digests to record
    import os
    import tempfile

    os.environ["OIL_REPORT_DATE"] = REPORT_DATE
    os.environ["OIL_LLM_OFFLINE"] = "true"
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["OIL_DATA_ROOT"] = tmp
        for path, digest in materialize_demo(pathlib.Path(tmp)).items():
            sys.stdout.write(f'    "{path}": "{digest}",\n')
