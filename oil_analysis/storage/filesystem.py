"""One filesystem layer for local disk and S3, on pyarrow filesystems.

Paths are always relative to the data root (``OIL_DATA_ROOT`` or ``s3://{bucket}/{prefix}``) and
use ``/``. Writes are atomic for readers: locally a temp file in the same folder then a rename; on
S3 one PUT, or for large payloads a multipart upload that becomes visible only when completed. The
whole payload is rendered to bytes before anything is opened, so a serialization error writes
nothing.

Credentials are never handled here: pyarrow's S3 client reads the standard AWS chain (environment,
profile, instance role). Errors name the bucket, prefix, endpoint and region, never a credential.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import posixpath
import re
import stat
import tempfile
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..settings import secret_values

PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 3, "write_statistics": True}
CONTENT_TYPES = {
    ".parquet": "application/vnd.apache.parquet",
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
}


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the root
    size: int
    mtime_ns: int
    # Local files: the inode's status-change time. Creating, copying in or renaming a file sets it to
    # now even when the copy keeps an old modification time (``cp -p``, ``rsync -t``, unzip).
    ctime_ns: int = 0

    @property
    def arrived_ns(self) -> int:
        """When the file got its current content or place, as far as the backend tells."""
        return max(self.mtime_ns, self.ctime_ns)


class UnsafePathError(ValueError):
    """A relative path that would escape the data root."""


class StorageAccessError(OSError):
    """The S3 backend refused or could not be reached: names bucket, prefix and endpoint, and why."""


class StorageMismatchError(RuntimeError):
    """Dual mode: the two backends do not hold the same bytes for a path."""


def check_relative(path: str) -> str:
    """Reject absolute paths, ``..`` segments and NULs: every path stays under the root."""
    norm = posixpath.normpath(path.replace("\\", "/"))
    if path.startswith("/") or norm.startswith("..") or "/../" in f"/{norm}/" or "\x00" in path:
        raise UnsafePathError(f"path {path!r} leaves the data root")
    return norm


def public_endpoint(url: str | None, region: str | None = None) -> str:
    """The endpoint as it may be shown in logs: scheme, host and port only (no user info, no query)."""
    if not url:
        return f"https://s3.{region or 'us-east-1'}.amazonaws.com (AWS default)"
    parts = urlsplit(url if "://" in url else f"https://{url}")
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}"


# pyarrow's message carries the AWS error name (ACCESS_DENIED, SIGNATURE_DOES_NOT_MATCH, …).
_WHY = [
    (
        re.compile(r"ACCESS_DENIED|SIGNATURE_DOES_NOT_MATCH|INVALID_ACCESS_KEY|TOKEN|FORBIDDEN"),
        "access denied: check the AWS credentials of the standard chain (AWS_ACCESS_KEY_ID / "
        "AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the instance role) and the IAM policy "
        "(deploy/iam-product-policy.json)",
    ),
    (re.compile(r"NO_SUCH_BUCKET|NoSuchBucket"), "the bucket does not exist"),
    (
        re.compile(r"NETWORK_CONNECTION|Could not connect|curlCode|timed out|Timeout"),
        "the endpoint cannot be reached (check AWS_ENDPOINT_URL and the network)",
    ),
]


def _redacted(text: str) -> str:
    """Defence in depth: no credential of the environment survives in an error text."""
    for value in secret_values():
        text = text.replace(value, "***")
    return text


def parquet_frame(data: bytes, columns: list[str] | None = None) -> pd.DataFrame:
    """A parquet file's bytes as the frame :meth:`Storage.read_parquet` gives (one decoding for
    every reader of published tables)."""
    return pq.read_table(io.BytesIO(data), columns=columns).to_pandas()


class Storage:
    """Read and write the layout under one root, on a local folder or an S3 prefix."""

    def __init__(
        self,
        fs: pafs.FileSystem,
        base: str,
        uri: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        self.fs, self.base, self.uri = fs, base.rstrip("/"), uri
        self.is_local = isinstance(fs, pafs.LocalFileSystem)
        self.endpoint_url, self.region = endpoint_url, region

    @classmethod
    def local(cls, root: str) -> Storage:
        root = os.path.abspath(root)
        return cls(pafs.LocalFileSystem(), root, root)

    @classmethod
    def s3(cls, bucket: str, prefix: str, region: str, endpoint_url: str | None = None) -> Storage:
        """The layout under ``s3://{bucket}/{prefix}``; ``endpoint_url`` for S3-compatible servers."""
        kwargs: dict = {
            "region": region,
            # small objects become one PutObject on close instead of a three-request multipart upload
            "allow_delayed_open": True,
            "connect_timeout": 5,
            "request_timeout": 60,
        }
        if endpoint_url:
            scheme, _, host = endpoint_url.partition("://")
            kwargs.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
        fs = pafs.S3FileSystem(**kwargs)
        base = f"{bucket}/{prefix.strip('/')}" if prefix.strip("/") else bucket
        return cls(fs, base, f"s3://{base}", endpoint_url=endpoint_url, region=region)

    @classmethod
    def from_settings(cls, settings) -> Storage:
        """Local, S3 or dual (local read, both written) from :class:`~oil_analysis.settings.Settings`."""
        mode = getattr(settings, "storage_mode", "s3" if settings.use_s3 else "local")
        s3 = lambda: cls.s3(  # noqa: E731
            settings.s3_bucket, settings.s3_prefix, settings.aws_region, settings.aws_endpoint_url
        )
        if mode == "s3":
            return s3()
        if mode == "dual":
            return DualStorage(cls.local(settings.data_root), s3())
        return cls.local(settings.data_root)

    @property
    def kind(self) -> str:
        return "local" if self.is_local else "s3"

    @property
    def bucket(self) -> str | None:
        return None if self.is_local else self.base.split("/", 1)[0]

    def full(self, path: str) -> str:
        return f"{self.base}/{check_relative(path)}"

    def display(self, path: str) -> str:
        """Human-readable location of a path (for logs and metadata)."""
        return f"{self.uri}/{check_relative(path)}"

    @contextlib.contextmanager
    def _errors(self, action: str, path: str):
        """S3 failures other than a missing file become one :class:`StorageAccessError`."""
        try:
            yield
        except FileNotFoundError:
            raise
        except OSError as exc:
            if self.is_local or isinstance(exc, StorageAccessError):
                raise
            text = _redacted(str(exc))
            why = next((w for pattern, w in _WHY if pattern.search(text)), "S3 request failed")
            raise StorageAccessError(
                f"S3 {action} {self.display(path) if path else self.uri} failed: {why}. "
                f"Bucket {self.bucket!r}, endpoint {public_endpoint(self.endpoint_url, self.region)}, "
                f"region {self.region}. ({text})"
            ) from None

    def check_access(self) -> None:
        """Fail early, with one clear error, when the root cannot be listed (credentials, endpoint)."""
        if self.is_local:
            return
        with self._errors("listing", ""):
            self.fs.get_file_info(pafs.FileSelector(self.base, recursive=False, allow_not_found=True))

    def exists(self, path: str) -> bool:
        return self.stat(path) is not None

    def stat(self, path: str) -> FileEntry | None:
        """Size and times of the file at ``path`` (None when there is none), without reading it."""
        full = self.full(path)
        if self.is_local:
            with self._errors("reading", path):
                try:
                    st = os.stat(full)
                except (FileNotFoundError, NotADirectoryError):
                    return None
            return _entry(path, st) if stat.S_ISREG(st.st_mode) else None
        with self._errors("reading", path):
            try:
                info = self.fs.get_file_info(full)
                return _info_entry(path, info) if info.type == pafs.FileType.File else None
            except OSError as exc:
                if "ACCESS_DENIED" not in str(exc):
                    raise
        # AWS answers a HEAD of a missing key with 403, not 404, when s3:ListBucket is granted only
        # under a prefix (deploy/iam-product-policy.json): look the key up in its folder instead.
        parent = posixpath.dirname(check_relative(path))
        sel = pafs.FileSelector(
            f"{self.base}/{parent}" if parent else self.base, recursive=False, allow_not_found=True
        )
        with self._errors("listing", parent):
            infos = self.fs.get_file_info(sel)
        found = [i for i in infos if i.path == full and i.type == pafs.FileType.File]
        return _info_entry(path, found[0]) if found else None

    def read_bytes(self, path: str) -> bytes:
        with self._errors("reading", path), self.fs.open_input_stream(self.full(path)) as f:
            return f.read()

    def write_bytes(self, path: str, data: bytes) -> str:
        """Write atomically; returns the sha256 of the bytes."""
        full = self.full(path)
        if self.is_local:
            folder = os.path.dirname(full)
            os.makedirs(folder, exist_ok=True)
            # Not mkstemp: its 0600 would make every published file private. Mode 0666 lets the
            # kernel apply the process umask (0644 under the usual 022), as for any created file.
            # The target's name is in the temp name: a later run can tell whose stale temp it is.
            tmp = os.path.join(folder, f".tmp-{os.path.basename(full)}.{uuid.uuid4().hex}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
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
            meta = {
                "Content-Type": CONTENT_TYPES.get(posixpath.splitext(path)[1], "application/octet-stream")
            }
            # One write of the complete payload: nothing is sent before close(), which does the PUT
            # (or completes the multipart upload), so a reader sees the old object or the new one.
            with self._errors("writing", path), self.fs.open_output_stream(full, metadata=meta) as f:
                f.write(data)
        return hashlib.sha256(data).hexdigest()

    def probe_write(self, path: str) -> None:
        """Create and remove ``path``, an empty file, as a write there would; raises what it raises.

        Locally the file is opened as :meth:`write_bytes` opens its temp file (folders made, same
        flags and mode), then removed: no data, so no fsync or rename (~0.1 ms against ~3 ms). On S3
        it is a PUT and a DELETE.
        """
        if self.is_local:
            full = self.full(path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            os.close(os.open(full, flags, 0o666))
            os.unlink(full)
        else:
            self.write_bytes(path, b"")
            with self._errors("deleting", path):  # just written: no HEAD to find it first
                self.fs.delete_file(self.full(path))

    def delete(self, path: str) -> None:
        if self.exists(path):
            with self._errors("deleting", path):
                self.fs.delete_file(self.full(path))

    def list_files(self, prefix: str, skipped: list[str] | None = None) -> list[FileEntry]:
        """Every file under ``prefix`` (recursive), sorted by path; temp files are skipped.

        On S3 this is one paginated ListObjectsV2 over the prefix (no request per folder or file).
        Locally, symlinks are followed only inside the data root and never into a folder already
        listed (no cycles); each link left out is described in ``skipped`` when given.
        """
        if self.is_local:
            start = self.full(prefix.strip("/")) if prefix.strip("/") else self.base
            return _walk_local(self.base, start, skipped)
        sel = pafs.FileSelector(self.full(prefix), recursive=True, allow_not_found=True)
        out = []
        with self._errors("listing", prefix):
            infos = self.fs.get_file_info(sel)
        for info in infos:
            if info.type != pafs.FileType.File:
                continue
            rel = info.path[len(self.base) + 1 :]
            if posixpath.basename(rel).startswith(".tmp-"):
                continue
            out.append(_info_entry(rel, info))
        return sorted(out, key=lambda e: e.path)

    def local_copy(self, path: str, data: bytes | None = None) -> tuple[str, bool]:
        """A local file path for readers that need one: ``(path, is_temporary)``.

        ``data``: the file's bytes when the caller already has them (no second download).
        """
        if self.is_local:
            return self.full(path), False
        fd, tmp = tempfile.mkstemp(suffix=posixpath.splitext(path)[1])
        with os.fdopen(fd, "wb") as f:
            f.write(self.read_bytes(path) if data is None else data)
        return tmp, True

    # -- tables and documents -------------------------------------------------------------
    def write_parquet(self, path: str, df: pd.DataFrame) -> tuple[str, int]:
        """Deterministic parquet (same frame → same bytes). Returns ``(sha256, size)``."""
        data = parquet_bytes(df)
        return self.write_bytes(path, data), len(data)

    def read_parquet(self, path: str, columns: list[str] | None = None) -> pd.DataFrame:
        """The table at ``path`` (only ``columns`` when given: the others are not decoded)."""
        return parquet_frame(self.read_bytes(path), columns)

    def write_json(self, path: str, doc) -> tuple[str, int]:
        data = json_bytes(doc)
        return self.write_bytes(path, data), len(data)

    def read_json(self, path: str):
        return json.loads(self.read_bytes(path))


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _entry(path: str, st: os.stat_result) -> FileEntry:
    return FileEntry(path, int(st.st_size), int(st.st_mtime_ns), int(st.st_ctime_ns))


def _info_entry(path: str, info: pafs.FileInfo) -> FileEntry:
    return FileEntry(path, int(info.size or 0), int(info.mtime_ns or 0))


def _walk_local(base: str, start: str, skipped: list[str] | None) -> list[FileEntry]:
    """Files under ``start`` without leaving ``base``: real folders first, then linked folders whose
    target is inside the root and not listed yet; links out of the root and cycles are skipped."""
    skipped = skipped if skipped is not None else []
    root = os.path.realpath(base)
    out: list[FileEntry] = []
    seen: set[str] = set()
    linked: list[str] = []
    stack = [start]

    def rel(path: str) -> str:
        return path[len(base) + 1 :].replace(os.sep, "/")

    while stack or linked:
        folder = stack.pop() if stack else linked.pop(0)
        real = os.path.realpath(folder)
        if not _inside(real, root):  # only the listed folder itself can get here (links are checked)
            skipped.append(f"{rel(folder)}: symlink out of the data root, not followed")
            continue
        if real in seen:
            skipped.append(f"{rel(folder)}: symlink to a folder already listed (a cycle or an alias)")
            continue
        seen.add(real)
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for e in entries:
            try:
                if e.is_symlink():
                    target = os.path.realpath(e.path)
                    if not _inside(target, root):
                        skipped.append(f"{rel(e.path)}: symlink out of the data root, not followed")
                    elif os.path.isdir(target):
                        linked.append(e.path)
                    elif os.path.isfile(target) and not e.name.startswith(".tmp-"):
                        st = os.stat(e.path)
                        out.append(_entry(rel(e.path), st))
                    continue
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.is_file(follow_symlinks=False) and not e.name.startswith(".tmp-"):
                    st = e.stat(follow_symlinks=False)
                    out.append(_entry(rel(e.path), st))
            except FileNotFoundError:  # vanished while listing
                continue
    return sorted(out, key=lambda e: e.path)


class DualStorage(Storage):
    """Migration phase: reads come from ``primary`` (local); every write goes to both backends.

    The mirror (S3) is written first and read back, then the primary: a failing mirror leaves the
    primary untouched, and any difference between what was meant and what either backend holds
    raises :class:`StorageMismatchError` naming the path and both sha256.
    """

    def __init__(self, primary: Storage, mirror: Storage) -> None:
        super().__init__(
            primary.fs, primary.base, primary.uri, endpoint_url=primary.endpoint_url, region=primary.region
        )
        self.primary, self.mirror = primary, mirror

    @property
    def kind(self) -> str:
        return "dual"

    def check_access(self) -> None:
        self.primary.check_access()
        self.mirror.check_access()

    def write_bytes(self, path: str, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        for store in (self.mirror, self.primary):
            store.write_bytes(path, data)
            held = hashlib.sha256(store.read_bytes(path)).hexdigest()
            if held != sha:
                raise StorageMismatchError(
                    f"dual write of {path!r}: {store.display(path)} holds sha256 {held}, expected {sha} "
                    f"(primary {self.primary.uri}, mirror {self.mirror.uri})"
                )
        return sha

    def delete(self, path: str) -> None:
        self.mirror.delete(path)
        self.primary.delete(path)

    def probe_write(self, path: str) -> None:
        for store in (self.mirror, self.primary):
            store.probe_write(path)

    def diff(self, prefix: str) -> list[str]:
        """Paths under ``prefix`` that are missing on one side or differ in content (empty: in sync)."""
        left = {e.path: e for e in self.primary.list_files(prefix)}
        right = {e.path: e for e in self.mirror.list_files(prefix)}
        out = [f"only in {self.primary.uri}: {p}" for p in sorted(left.keys() - right.keys())]
        out += [f"only in {self.mirror.uri}: {p}" for p in sorted(right.keys() - left.keys())]
        for p in sorted(left.keys() & right.keys()):
            a, b = (hashlib.sha256(s.read_bytes(p)).hexdigest() for s in (self.primary, self.mirror))
            if a != b:
                out.append(f"differs: {p} ({a[:12]} ≠ {b[:12]})")
        return out


def parquet_bytes(df: pd.DataFrame) -> bytes:
    return table_parquet_bytes(pa.Table.from_pandas(df, preserve_index=False))


def table_parquet_bytes(table: pa.Table, options: dict | None = None) -> bytes:
    """The bytes :func:`parquet_bytes` writes for the frame ``table`` was made from (with other
    writer ``options`` when given)."""
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, **(PARQUET_OPTIONS if options is None else options))
    return buf.getvalue().to_pybytes()


def json_bytes(doc) -> bytes:
    """Stable JSON (sorted keys, indented, UTF-8, trailing newline). Never fails on a value:
    non-finite numbers (NaN, inf) become null, and unknown types their text."""
    return (
        json.dumps(json_safe(doc), indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"
    ).encode()


def json_safe(obj):
    """``obj`` with every non-finite float (and numpy scalar) made valid JSON: NaN/inf → None."""
    if isinstance(obj, dict):
        return {
            k if isinstance(k, str | int | float | bool) or k is None else str(k): json_safe(v)
            for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if hasattr(obj, "item") and hasattr(obj, "dtype"):  # numpy scalar
        return json_safe(obj.item())
    return obj


def new_run_token() -> str:
    return uuid.uuid4().hex[:12]
