"""Shared fixtures: paths to the real lab files beside the repo, temporary data roots."""

from __future__ import annotations

import os
import pathlib
import shutil

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FINNING_DIR = SHARED / "data" / "finning"
DEMO_BRONZE = REPO / "data" / "bronze"


def real_workbooks() -> list[pathlib.Path]:
    return sorted(FINNING_DIR.glob("T-*.xlsx")) if FINNING_DIR.is_dir() else []


needs_shared = pytest.mark.skipif(not real_workbooks(), reason="../shared/data/finning not present")


@pytest.fixture
def data_root(tmp_path, monkeypatch) -> pathlib.Path:
    """An empty data root, set as OIL_DATA_ROOT for the test."""
    root = tmp_path / "data"
    (root / "bronze").mkdir(parents=True)
    monkeypatch.setenv("OIL_DATA_ROOT", str(root))
    monkeypatch.setenv("USE_S3", "false")
    return root


@pytest.fixture
def real_cda_root(data_root) -> pathlib.Path:
    """A data root whose bronze/cda/ holds the three real Finning workbooks."""
    if not real_workbooks():
        pytest.skip("../shared/data/finning not present")
    target = data_root / "bronze" / "cda"
    target.mkdir(parents=True)
    for f in real_workbooks():
        shutil.copy(f, target / f.name)
    return data_root


@pytest.fixture
def demo_root(data_root) -> pathlib.Path:
    """A data root holding a copy of the bundled demo bronze files."""
    shutil.copytree(DEMO_BRONZE, data_root / "bronze", dirs_exist_ok=True)
    for reserved in ("_registry", "_quarantine"):
        shutil.rmtree(data_root / "bronze" / reserved, ignore_errors=True)
    return data_root


os.environ.setdefault("DAGSTER_HOME", str(REPO / ".dagster_home"))
# Never call a real LLM API from the tests, whatever the developer's shell holds.
os.environ["OIL_LLM_OFFLINE"] = "true"
