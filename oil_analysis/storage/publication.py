"""The one publication path: every file the product publishes for a client is written here.

A publication is a :class:`Commit`: each path's previous bytes are kept, every file is written
atomically (local: temp file + rename; S3: one PUT), and if any write fails every path is restored,
so the published files and the manifest always match. The IO manager publishes the table assets
through it; side outputs (reject ledger, silver audit, change logs, history snapshots, fleet report,
advisor cache) go through :func:`publish_files`, which lists them in the client's manifest with
their sha256 under a manifest part of their own. No dagster.
"""

from __future__ import annotations

import contextlib
import io

import pandas as pd
import pyarrow.parquet as pq

from . import layout, manifest
from .healing import read_limits_pointer
from .manifest import FileRecord

LIMITS_ASSET = "stewart_limits"


def asset_path(asset: str, client: str) -> str:
    """The file of a table asset's output (limits: see :func:`published_path`)."""
    if asset == "bronze_lab_files":
        return layout.registry_path(client)
    if asset == "silver_harmonized":
        return layout.harmonized_path(client)
    return layout.gold_path(client, asset)


def load_published(store, client: str, asset: str) -> pd.DataFrame:
    """The published table of ``asset`` for ``client`` (limits: the version ``latest.json`` names)."""
    if asset == LIMITS_ASSET:
        latest = read_limits_pointer(store, client)
        if latest is None:
            raise FileNotFoundError(
                f"no limits published for {client}: {store.display(layout.limits_latest(client))}"
            )
        return store.read_parquet(layout.limits_file(latest["path"]))
    return store.read_parquet(asset_path(asset, client))


def published_path(client: str, asset: str) -> str:
    """The file whose presence says ``asset`` is published (limits: the ``latest.json`` pointer)."""
    return layout.limits_latest(client) if asset == LIMITS_ASSET else asset_path(asset, client)


class PublicationError(RuntimeError):
    """An output could not be published; its files were restored to their previous version."""


class Commit:
    """The writes of one output: each path's previous bytes are kept so that a failure later in the
    same output restores them all (all-or-nothing publication of an output and its manifest part)."""

    def __init__(self, store) -> None:
        self.store = store
        self.previous: list[tuple[str, bytes | None]] = []

    def keep(self, path: str) -> None:
        """Remember ``path``'s current bytes (None: absent) before it is written."""
        self.previous.append((path, self.store.read_bytes(path) if self.store.exists(path) else None))

    def write(self, path: str, data: bytes) -> None:
        self.keep(path)
        self.store.write_bytes(path, data)

    def abandon(self, client: str, what: str, exc: BaseException) -> PublicationError:
        """Roll back after ``exc`` and republish the manifest from the restored parts; returns the
        error to raise (``raise commit.abandon(...) from exc``)."""
        restored = self.rollback()
        if self.previous:  # something was written: the manifest must match the restored files
            with contextlib.suppress(Exception):
                manifest.publish(self.store, client)
        return PublicationError(
            f"publishing {what} of {client} failed ({type(exc).__name__}: {exc}); "
            f"{restored} files restored to their previous version, the manifest matches them"
        )

    def rollback(self) -> int:
        """Put every kept path back as it was (newest first); returns how many were restored."""
        restored = 0
        for path, data in reversed(self.previous):
            with contextlib.suppress(Exception):  # best effort: the folder may be what fails
                if data is None:
                    self.store.delete(path)
                else:
                    self.store.write_bytes(path, data)
                restored += 1
        return restored


def write_files(
    commit: Commit, files: list[tuple[str, bytes, int | None]], is_legacy: bool = False
) -> list[FileRecord]:
    """Write rendered files in order, each atomically; returns their manifest records."""
    records = []
    for path, data, rows in files:
        commit.write(path, data)
        records.append(FileRecord.of(path, data, rows, legacy=is_legacy))
    return records


def parquet_rows(data: bytes) -> int:
    """Rows of a parquet file's bytes (from its footer)."""
    return pq.ParquetFile(io.BytesIO(data)).metadata.num_rows


def publish_files(
    store,
    client: str,
    part: str,
    files: list[tuple[str, bytes, int | None]],
    *,
    run_id: str,
    limits_version: str | None = None,
    listed: list[str] = (),
    delete: list[str] = (),
) -> list[FileRecord]:
    """Publish side files of a client as one commit and list them in its manifest under ``part``.

    ``files`` (path, bytes, rows) are written in order, each atomically; ``listed`` are files already
    in place that the part also names (read for their sha256); ``delete`` are removed last (a
    compaction). The part replaces the previous one of the same name. If any step fails, every path
    is restored, the manifest republished from the restored parts, and :class:`PublicationError`
    raised: readers never see a side file the manifest does not describe.
    """
    commit = Commit(store)
    try:
        records = write_files(commit, files)
        for path in listed:
            data, rows = store.read_bytes(path), None
            if path.endswith(".parquet"):
                with contextlib.suppress(Exception):  # a damaged file is listed as it is: no row count
                    rows = parquet_rows(data)
            records.append(FileRecord.of(path, data, rows))
        for path in delete:
            commit.keep(path)
            store.delete(path)
        commit.keep(layout.manifest_part_path(client, part))
        manifest.write_part(store, client, part, records, run_id=run_id, limits_version=limits_version)
    except BaseException as exc:
        raise commit.abandon(client, part, exc) from exc
    return records
