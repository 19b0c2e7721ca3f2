"""The storage resource: where the layout lives (local folder, S3 prefix, or both during migration)."""

import os
import threading

from dagster import ConfigurableResource

from ..settings import aws_identity, get_settings, storage_mode
from ..storage.filesystem import DualStorage, Storage
from .effective import ShowsEffectiveConfig

_OPEN: dict[tuple, Storage] = {}
_LOCK = threading.Lock()


class StorageResource(ShowsEffectiveConfig, ConfigurableResource):
    """Local folder, S3 prefix, or both (``dual``). Empty fields take the settings
    (``OIL_DATA_ROOT``, ``STORAGE_MODE`` / ``USE_S3``, ``S3_BUCKET``, ``S3_PREFIX``, ``AWS_REGION``,
    ``AWS_ENDPOINT_URL``, ``LEGACY_EXPORTS``; see docs/STORAGE.md). There is no credential field on
    purpose: S3 credentials come only from the standard AWS chain."""

    data_root: str = ""
    use_s3: bool | None = None
    max_raw_file_mb: float = 0.0
    mode: str = ""
    s3_bucket: str = ""
    s3_prefix: str | None = None
    aws_region: str = ""
    aws_endpoint_url: str = ""
    legacy_exports: bool | None = None

    def storage_mode(self) -> str:
        if self.mode or self.use_s3 is not None:
            return storage_mode(self.mode, bool(self.use_s3))
        return get_settings().storage_mode

    def get(self) -> Storage:
        """The storage, opened once per process and configuration; S3 access is checked on opening,
        so wrong credentials fail with one clear error before anything is written."""
        s = get_settings()
        mode = self.storage_mode()
        root = os.path.abspath(self.data_root or s.data_root)
        bucket = self.s3_bucket or s.s3_bucket
        prefix = self.s3_prefix if self.s3_prefix is not None else s.s3_prefix
        region = self.aws_region or s.aws_region
        endpoint = self.aws_endpoint_url or s.aws_endpoint_url
        if mode == "local":
            return Storage.local(root)
        key = (mode, root, bucket, prefix, region, endpoint, aws_identity())
        with _LOCK:
            store = _OPEN.get(key)
            if store is None:
                s3 = Storage.s3(bucket, prefix, region, endpoint)
                store = s3 if mode == "s3" else DualStorage(Storage.local(root), s3)
                store.check_access()
                _OPEN[key] = store
        return store

    def max_file_mb(self) -> float:
        return self.max_raw_file_mb or get_settings().max_raw_file_mb

    def legacy_enabled(self) -> bool:
        """Whether the deprecated v1 paths (``processed/``, ``to_consume/``) are written too."""
        return self.legacy_exports if self.legacy_exports is not None else get_settings().legacy_exports

    def effective_config(self) -> dict[str, str]:
        """Mode, where the layout lives, and the limits this resource applies (no credential)."""
        s = get_settings()
        mode = self.storage_mode()
        out = {"mode": mode}
        if mode != "s3":
            out["data_root"] = os.path.abspath(self.data_root or s.data_root)
        if mode != "local":
            prefix = self.s3_prefix if self.s3_prefix is not None else s.s3_prefix
            out["s3"] = f"s3://{self.s3_bucket or s.s3_bucket}/{prefix.strip('/')}"
            out["aws_region"] = self.aws_region or s.aws_region
            out["aws_endpoint_url"] = self.aws_endpoint_url or s.aws_endpoint_url or "(AWS)"
        out["max_raw_file_mb"] = f"{self.max_file_mb():g}"
        out["legacy_exports"] = str(self.legacy_enabled()).lower()
        return out
