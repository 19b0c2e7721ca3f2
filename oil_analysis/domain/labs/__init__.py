"""Lab readers: one module per lab format, each a pure function raw file → tidy samples."""

from __future__ import annotations

import re
from collections.abc import Callable

from .als import read_als_parquet
from .common import LabFileError, ReadResult
from .finning import read_finning_workbook

# lab format → (file suffixes it reads, reader(path, timezone) → ReadResult)
LAB_FORMATS: dict[str, tuple[tuple[str, ...], Callable[[str, str], ReadResult]]] = {
    "finning_xlsx": ((".xlsx",), lambda path, tz: read_finning_workbook(path)),
    "als_parquet": ((".parquet",), lambda path, tz: read_als_parquet(path, timezone=tz)),
}

# Files a lab delivers beside its sample exports that are not samples (registered as "ignored").
IGNORED_FILES: dict[str, re.Pattern] = {
    "als_parquet": re.compile(r"(?i)^equipamiento.*\.parquet$"),
}

__all__ = ["LAB_FORMATS", "LabFileError", "ReadResult", "read_als_parquet", "read_finning_workbook"]
