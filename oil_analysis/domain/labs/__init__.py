"""Lab readers: one module per lab format, each a pure function raw file → tidy samples."""

from __future__ import annotations

import re
from collections.abc import Callable

from .als import read_als_parquet
from .common import LabFileError, ReadResult
from .finning import read_finning_workbook

# lab format → (file suffixes it reads, reader(path, timezone, **limits) → ReadResult); ``limits``:
# ``max_xml_mb`` (uncompressed size) and ``max_cells`` (sheet extent) checked before parsing.
LAB_FORMATS: dict[str, tuple[tuple[str, ...], Callable[..., ReadResult]]] = {
    "finning_xlsx": ((".xlsx",), lambda path, tz, **limits: read_finning_workbook(path, **limits)),
    "als_parquet": ((".parquet",), lambda path, tz, **limits: read_als_parquet(path, timezone=tz, **limits)),
}

# Files a lab delivers beside its sample exports that are not samples (registered as "ignored").
IGNORED_FILES: dict[str, re.Pattern] = {
    "als_parquet": re.compile(r"(?i)^equipamiento.*\.parquet$"),
}

__all__ = ["LAB_FORMATS", "LabFileError", "ReadResult", "read_als_parquet", "read_finning_workbook"]
