"""The code location: assets, resources and jobs assembled in one place."""

from __future__ import annotations

import warnings
from pathlib import Path

from dagster import (
    AnchorBasedFilePathMapping,
    AssetSelection,
    BetaWarning,
    Definitions,
    define_asset_job,
    in_process_executor,
    link_code_references_to_git,
    load_assets_from_modules,
    with_source_code_references,
)

from .assets import asset_modules
from .automation.failures import run_failure_notification
from .automation.retention import gold_history_retention, gold_history_retention_schedule
from .automation.sensors import raw_files_local_sensor, raw_files_s3_sensor, weekly_limits_refresh
from .resources.heap import freeze_imports, quick_exit_gc
from .resources.io_manager import LayoutIOManager
from .resources.llm import LLMResource
from .resources.sqlite_instance import install as install_sqlite_instance_tuning
from .resources.storage import StorageResource
from .settings import get_settings


def _with_code_references(assets: list) -> list:
    """Each asset linked to the file and line of its function (the UI's "Source" of an asset), on
    the hosted repository when ``OIL_CODE_GIT_URL`` is set. Code references are a Dagster beta
    feature: its warning is silenced here, once."""
    settings = get_settings()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BetaWarning)
        assets = with_source_code_references(assets)
        if settings.code_git_url:
            assets = link_code_references_to_git(
                assets,
                git_url=settings.code_git_url,
                git_branch=settings.code_git_branch,
                file_path_mapping=AnchorBasedFilePathMapping(
                    local_file_anchor=Path(__file__).parent, file_anchor_path_in_repository="oil_analysis/"
                ),
            )
    return list(assets)


# Registered first so it runs last at exit: no final walk of the imported heap (see module).
quick_exit_gc()
# Every process that runs our steps writes its events into the local instance cheaply (see module).
install_sqlite_instance_tuning()

all_assets = _with_code_references(load_assets_from_modules(asset_modules()))

oil_analysis_job = define_asset_job(
    "oil_analysis_job",
    selection=AssetSelection.all(),  # partitioned per client: inferred from the assets
    description="Bronze → silver → gold for one client partition.",
)


def build_resources(data_root: str = "") -> dict:
    """The resources of the code location; ``data_root`` overrides OIL_DATA_ROOT (tests)."""
    storage = StorageResource(data_root=data_root)
    return {"storage": storage, "layout_io_manager": LayoutIOManager(storage=storage), "llm": LLMResource()}


defs = Definitions(
    assets=all_assets,
    jobs=[oil_analysis_job, gold_history_retention],
    sensors=[raw_files_s3_sensor, raw_files_local_sensor, run_failure_notification],
    schedules=[weekly_limits_refresh, gold_history_retention_schedule],
    resources=build_resources(),
    # Every job (oil_analysis_job, the UI's asset jobs, retention) runs its steps in the run's own
    # process: a step subprocess re-imports the code location (seconds) for sub-second work.
    # Parallelism between clients comes from concurrent runs (docs/ARCHITECTURE.md, "Executor").
    executor=in_process_executor,
)
# Built once per process and kept to its end: later collections skip them (see module).
freeze_imports()
