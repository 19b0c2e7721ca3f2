"""Environment → one typed settings object. Every variable the product reads is named here."""

from __future__ import annotations

import os
from dataclasses import dataclass

TRUE = {"1", "true", "yes", "on"}


def _flag(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in TRUE


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

    @property
    def storage_uri(self) -> str:
        if self.use_s3:
            return f"s3://{self.s3_bucket}/{self.s3_prefix.strip('/')}"
        return os.path.abspath(self.data_root)


def get_settings() -> Settings:
    """Read the environment now (not at import: tests and CLIs change it)."""
    return Settings(
        data_root=os.environ.get("OIL_DATA_ROOT", "./data"),
        use_s3=_flag("USE_S3"),
        s3_bucket=os.environ.get("S3_BUCKET", "mining-data-mesh"),
        s3_prefix=os.environ.get("S3_PREFIX", "oil-analysis"),
        aws_region=os.environ.get("AWS_REGION", "us-east-1"),
        aws_endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
        max_raw_file_mb=float(os.environ.get("OIL_MAX_RAW_FILE_MB", "200")),
        freshness_days=int(os.environ.get("OIL_FRESHNESS_DAYS", "40")),
    )
