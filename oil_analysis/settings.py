"""Environment → one typed settings object. Every variable the product reads is named here.

Values come from ``environments.resolve()``: process environment > env file > ``OIL_ENV`` defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime

from . import environments

TRUE = {"1", "true", "yes", "on"}
STORAGE_MODES = ("local", "s3", "dual")


def _flag(environ: Mapping[str, str], name: str, default: bool = False) -> bool:
    return environ.get(name, str(default)).strip().lower() in TRUE


def storage_mode(mode: str | None, use_s3: bool) -> str:
    """``STORAGE_MODE`` when set (local / s3 / dual), else ``s3`` if ``USE_S3`` else ``local``.

    A mode that contradicts ``USE_S3=true`` (``local``) is a configuration error, not a silent pick.
    """
    mode = (mode or "").strip().lower()
    if not mode:
        return "s3" if use_s3 else "local"
    if mode not in STORAGE_MODES:
        raise ValueError(f"STORAGE_MODE={mode!r}: expected one of {', '.join(STORAGE_MODES)}")
    if use_s3 and mode == "local":
        raise ValueError("USE_S3=true contradicts STORAGE_MODE=local: unset one of them")
    return mode


@dataclass(frozen=True)
class Settings:
    data_root: str
    use_s3: bool
    s3_bucket: str
    s3_prefix: str
    aws_region: str
    aws_endpoint_url: str | None
    max_raw_file_mb: float
    freshness_days: int
    storage_mode: str = "local"  # local | s3 | dual (dual: local is read, both are written)
    legacy_exports: bool = False
    environment: str = "dev"  # OIL_ENV: dev | staging | prod
    min_sample_date: str = "1990-01-01"  # OIL_MIN_SAMPLE_DATE: older sample dates are rejected
    max_sheet_xml_mb: float = 256.0  # OIL_MAX_SHEET_XML_MB: uncompressed size of one workbook part
    max_sheet_cells: int = 5_000_000  # OIL_MAX_SHEET_CELLS: rows × columns a sheet may span
    parser_memory_mb: int = 1024  # OIL_PARSER_MEMORY_MB: memory one parser process may add
    report_date_override: str | None = None  # OIL_REPORT_DATE (YYYY-MM-DD); None: today (UTC)

    def report_date(self) -> date:
        """The run's report date: every age (fleet report, freshness check) is measured against it.
        ``OIL_REPORT_DATE`` fixes it (tests, re-rendering a past report); otherwise today in UTC."""
        if self.report_date_override:
            try:
                return date.fromisoformat(self.report_date_override)
            except ValueError as exc:
                raise ValueError(
                    f"OIL_REPORT_DATE={self.report_date_override!r}: expected YYYY-MM-DD"
                ) from exc
        return datetime.now(UTC).date()

    @property
    def storage_uri(self) -> str:
        if self.storage_mode == "s3":
            return f"s3://{self.s3_bucket}/{self.s3_prefix.strip('/')}"
        return os.path.abspath(self.data_root)


def get_settings() -> Settings:
    """Read the environment now (not at import: tests and CLIs change it).

    AWS credentials are deliberately absent: pyarrow reads them from the standard AWS chain
    (environment, profile, instance role), so they never pass through our code or config.
    """
    resolved = environments.resolve()
    environ = resolved.values
    use_s3 = _flag(environ, "USE_S3")
    mode = storage_mode(environ.get("STORAGE_MODE"), use_s3)
    return Settings(
        data_root=environ.get("OIL_DATA_ROOT", "./data"),
        use_s3=mode == "s3",
        s3_bucket=environ.get("S3_BUCKET", "mining-data-mesh"),
        s3_prefix=environ.get("S3_PREFIX", "oil-analysis"),
        aws_region=environ.get("AWS_REGION", "us-east-1"),
        aws_endpoint_url=environ.get("AWS_ENDPOINT_URL") or None,
        max_raw_file_mb=float(environ.get("OIL_MAX_RAW_FILE_MB", "200")),
        freshness_days=int(environ.get("OIL_FRESHNESS_DAYS", "40")),
        storage_mode=mode,
        legacy_exports=_flag(environ, "LEGACY_EXPORTS"),
        environment=resolved.environment.name,
        report_date_override=environ.get("OIL_REPORT_DATE") or None,
        min_sample_date=environ.get("OIL_MIN_SAMPLE_DATE", "1990-01-01"),
        max_sheet_xml_mb=float(environ.get("OIL_MAX_SHEET_XML_MB", "256")),
        max_sheet_cells=int(float(environ.get("OIL_MAX_SHEET_CELLS", "5000000"))),
        parser_memory_mb=int(float(environ.get("OIL_PARSER_MEMORY_MB", "1024"))),
    )


# Code that reads os.environ directly (LLM resource, sensors, clients registry) follows the same order.
environments.export()
