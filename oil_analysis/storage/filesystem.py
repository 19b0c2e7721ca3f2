"""One filesystem layer for local disk and S3, on pyarrow filesystems.

Paths are always relative to the data root (``OIL_DATA_ROOT`` or ``s3://{bucket}/{prefix}``) and
use ``/``. Writes are atomic for readers: locally a temp file in the same folder then a rename;
on S3 a single PUT (pyarrow completes a multipart upload only on close).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import tempfile
import uuid
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 3, "write_statistics": True}


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the root
    size: int
    mtime_ns: int


class UnsafePathError(ValueError):
    """A relative path that would escape the data root."""


def check_relative(path: str) -> str:
    """Reject absolute paths, ``..`` segments and NULs: every path stays under the root."""
    norm = posixpath.normpath(path.replace("\\", "/"))
    if path.startswith("/") or norm.startswith("..") or "/../" in f"/{norm}/" or "\x00" in path:
        raise UnsafePathError(f"path {path!r} leaves the data root")
    return norm


class Storage:
    """Read and write the layout under one root, on a local folder or an S3 prefix."""

    def __init__(self, fs: pafs.FileSystem, base: str, uri: str) -> None:
        self.fs, self.base, self.uri = fs, base.rstrip("/"), uri
        self.is_local = isinstance(fs, pafs.LocalFileSystem)

    @classmethod
    def local(cls, root: str) -> Storage:
        root = os.path.abspath(root)
        return cls(pafs.LocalFileSystem(), root, root)

    @classmethod
    def s3(cls, bucket: str, prefix: str, region: str, endpoint_url: str | None = None) -> Storage:
        kwargs = {"region": region}
        if endpoint_url:
            scheme, _, host = endpoint_url.partition("://")
            kwargs.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
        fs = pafs.S3FileSystem(**kwargs)
        base = f"{bucket}/{prefix.strip('/')}" if prefix.strip("/") else bucket
        return cls(fs, base, f"s3://{base}")

    @classmethod
    def from_settings(cls, settings) -> Storage:
        if settings.use_s3:
            return cls.s3(
                settings.s3_bucket, settings.s3_prefix, settings.aws_region, settings.aws_endpoint_url
            )
        return cls.local(settings.data_root)

    def full(self, path: str) -> str:
        return f"{self.base}/{check_relative(path)}"

    def display(self, path: str) -> str:
        """Human-readable location of a path (for logs and metadata)."""
        return f"{self.uri}/{check_relative(path)}"

    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(self.full(path)).type == pafs.FileType.File

    def read_bytes(self, path: str) -> bytes:
        with self.fs.open_input_stream(self.full(path)) as f:
            return f.read()

    def write_bytes(self, path: str, data: bytes) -> str:
        """Write atomically; returns the sha256 of the bytes."""
        full = self.full(path)
        if self.is_local:
            folder = os.path.dirname(full)
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, full)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        else:
            with self.fs.open_output_stream(full) as f:
                f.write(data)
        return hashlib.sha256(data).hexdigest()

    def delete(self, path: str) -> None:
        if self.exists(path):
            self.fs.delete_file(self.full(path))

    def list_files(self, prefix: str) -> list[FileEntry]:
        """Every file under ``prefix`` (recursive), sorted by path; temp files are skipped."""
        sel = pafs.FileSelector(self.full(prefix), recursive=True, allow_not_found=True)
        out = []
        for info in self.fs.get_file_info(sel):
            if info.type != pafs.FileType.File:
                continue
            rel = info.path[len(self.base) + 1 :]
            if posixpath.basename(rel).startswith(".tmp-"):
                continue
            out.append(FileEntry(rel, int(info.size or 0), int(info.mtime_ns or 0)))
        return sorted(out, key=lambda e: e.path)

    def local_copy(self, path: str) -> tuple[str, bool]:
        """A local file path for readers that need one: ``(path, is_temporary)``."""
        if self.is_local:
            return self.full(path), False
        fd, tmp = tempfile.mkstemp(suffix=posixpath.splitext(path)[1])
        with os.fdopen(fd, "wb") as f:
            f.write(self.read_bytes(path))
        return tmp, True

    # -- tables and documents -------------------------------------------------------------
    def write_parquet(self, path: str, df: pd.DataFrame) -> tuple[str, int]:
        """Deterministic parquet (same frame → same bytes). Returns ``(sha256, size)``."""
        data = parquet_bytes(df)
        return self.write_bytes(path, data), len(data)

    def read_parquet(self, path: str) -> pd.DataFrame:
        return pq.read_table(io.BytesIO(self.read_bytes(path))).to_pandas()

    def write_json(self, path: str, doc) -> tuple[str, int]:
        data = (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n").encode()
        return self.write_bytes(path, data), len(data)

    def read_json(self, path: str):
        return json.loads(self.read_bytes(path))


def parquet_bytes(df: pd.DataFrame) -> bytes:
    table = pa.Table.from_pandas(df, preserve_index=False)
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, **PARQUET_OPTIONS)
    return buf.getvalue().to_pybytes()


def new_run_token() -> str:
    return uuid.uuid4().hex[:12]
