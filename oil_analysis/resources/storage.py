"""The storage resource: which root the layout lives under (local folder or S3 prefix)."""

from dagster import ConfigurableResource

from ..settings import get_settings
from ..storage.filesystem import Storage


class StorageResource(ConfigurableResource):
    """Local folder or S3 prefix. Empty fields fall back to the environment (see README)."""

    data_root: str = ""
    use_s3: bool | None = None
    max_raw_file_mb: float = 0.0

    def get(self) -> Storage:
        s = get_settings()
        if self.use_s3 if self.use_s3 is not None else s.use_s3:
            return Storage.s3(s.s3_bucket, s.s3_prefix, s.aws_region, s.aws_endpoint_url)
        return Storage.local(self.data_root or s.data_root)

    def max_file_mb(self) -> float:
        return self.max_raw_file_mb or get_settings().max_raw_file_mb
