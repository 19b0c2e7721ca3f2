"""The IO manager: asset outputs ↔ files of the layout (same paths on local disk, S3, or both).

An output is published in three steps, so readers never see a mix of old and new:

1. render every file of the output to bytes (a serialization error writes nothing);
2. write the data files, each atomically, and pointers last (``latest.json`` names a limits version
   only once its files exist), then the deprecated legacy copies when ``LEGACY_EXPORTS`` is on;
3. record the files in the client's manifest (``gold/{client}/_manifest.json``).

An asset that raises (a failed contract or blocking check) never reaches ``handle_output``: its
previous files stay published, untouched.

Steps 2 and 3 are one commit: the previous bytes of every path written are kept, and if any write
of the output fails (a full disk, a folder that cannot be written, a file where a folder should be)
every path is restored and the manifest part too, so the published files and the manifest still
match. Side files of an output (silver's reject ledger and audit: :func:`runstate.set_side_files`)
are committed with it and listed in its manifest part.

An output that is the *unchanged* placeholder (``runstate``: the inputs have the fingerprint of the
published output) writes nothing. After a write, the input fingerprint of the output is recorded
beside it, and the frame is kept in this process for the next steps of the same run (no read back).
"""

import contextlib

import pandas as pd
from dagster import ConfigurableIOManager, InputContext, MetadataValue, OutputContext, ResourceDependency

from ..storage import layout, legacy, manifest, runstate
from ..storage.filesystem import json_bytes, parquet_bytes
from ..storage.healing import read_limits_pointer
from ..storage.manifest import FileRecord
from ..storage.publication import (
    LIMITS_ASSET,
    Commit,
    asset_path,
    load_published,
    published_path,
    write_files,
)
from .storage import StorageResource


def _limits_version(obj: pd.DataFrame) -> str | None:
    if obj.attrs.get("limits_version"):
        return str(obj.attrs["limits_version"])
    if "limits_version" in obj.columns and len(obj):
        return str(obj["limits_version"].iloc[0])
    return None


class LayoutIOManager(ConfigurableIOManager):
    """Writes each partitioned asset to its place in the layout; limits are versioned folders.
    Every file written for silver, limits and gold is listed in the client's manifest."""

    storage: ResourceDependency[StorageResource]

    def handle_output(self, context: OutputContext, obj: pd.DataFrame) -> None:
        asset, client = context.asset_key.path[-1], context.partition_key
        store = self.storage.get()
        run_id = _run_id(context)
        runstate.remember(run_id, store.uri, client, asset, obj)
        pending = runstate.pop_pending(run_id, client, asset)
        side = runstate.pop_side_files(run_id, client, asset)
        if runstate.is_unchanged(obj) or runstate.is_kept(obj):
            # The published files are still right: nothing written; the fingerprint moves on when
            # new inputs gave the same output (limits kept by the refresh decision).
            if pending is not None and runstate.is_kept(obj):
                runstate.write_state(store, client, asset, pending)
            context.add_output_metadata({"path": store.display(published_path(client, asset))})
            return
        runstate.clear_state(store, client, asset)  # until the new files and their state are written
        if asset == "bronze_lab_files":  # the raw side: not part of the published manifest
            path = asset_path(asset, client)
            sha, size = store.write_parquet(path, obj)
            context.add_output_metadata({"path": store.display(path), "sha256": sha, "bytes": size})
            if pending is not None:
                runstate.write_state(store, client, asset, pending)
            return
        commit = Commit(store)
        try:
            if asset == LIMITS_ASSET:
                records, version = self._publish_limits(commit, client, obj)
                metadata = {
                    "path": store.display(layout.limits_dir(client, version)),
                    "limits_version": version,
                }
            else:
                records, version = self._publish_table(commit, asset, client, obj, run_id)
                records += write_files(commit, side)  # e.g. silver's reject ledger and audit
                metadata = {
                    "path": store.display(records[0].path),
                    "sha256": records[0].sha256,
                    "bytes": records[0].bytes,
                }
            commit.keep(manifest.part_path(client, asset))
            repairs: list[dict] = []
            manifest.write_part(
                store,
                client,
                asset,
                records,
                run_id=run_id,
                limits_version=version,
                repairs=repairs,
            )
            if repairs:
                with contextlib.suppress(Exception):  # a context built outside a run has no log
                    context.log.warning(f"manifest of {client} repaired: {repairs}")
                metadata["manifest_repairs"] = MetadataValue.json(repairs)
        except BaseException as exc:
            raise commit.abandon(client, asset, exc) from exc
        if pending is not None:  # last: the recorded fingerprint names files that exist
            runstate.write_state(store, client, asset, pending)
        context.add_output_metadata({**metadata, "manifest": store.display(manifest.manifest_path(client))})

    def _publish_limits(self, commit, client: str, obj: pd.DataFrame) -> tuple[list[FileRecord], str]:
        from ..domain.limits import limits_to_nested

        version = str(obj.attrs.get("version") or obj["version"].iloc[0])
        folder = layout.limits_dir(client, version)
        pointer = {"client": client, "version": version, "path": folder}
        if obj.attrs.get("refreshed_at"):  # when the limits were last computed (age trigger)
            pointer["refreshed_at"] = str(obj.attrs["refreshed_at"])
        files = [
            (layout.limits_file(folder), parquet_bytes(_without_clock(obj)), len(obj)),
            (layout.limits_file(folder, "json"), json_bytes(limits_to_nested(obj)), len(obj)),
            (layout.limits_latest(client), json_bytes(pointer), None),  # last: names complete files
        ]
        records = write_files(commit, files)
        if self.storage.legacy_enabled():
            from ..domain.clients import load_clients
            from ..settings import get_settings

            records += legacy.publish_shared_limits(
                commit.store, sorted(load_clients(get_settings().clients_file))
            )
        return records, version

    def _publish_table(
        self, commit, asset: str, client: str, obj: pd.DataFrame, run_id: str
    ) -> tuple[list[FileRecord], str | None]:
        store = commit.store
        # Bytes the step had rendered in the background for this very frame, else rendered now.
        data = runstate.take_prepared(run_id, client, asset, obj) or parquet_bytes(obj)
        records = write_files(commit, [(asset_path(asset, client), data, len(obj))])
        if self.storage.legacy_enabled():
            copies = [(p, data, len(obj)) for p in legacy.copy_paths(asset, client)]
            records += write_files(commit, copies, is_legacy=True)
        if asset == "silver_harmonized":
            return records, None
        version = _limits_version(obj)
        if version is None:
            pointer = read_limits_pointer(store, client)
            version = str(pointer["version"]) if pointer else None
        return records, version

    def load_input(self, context: InputContext) -> pd.DataFrame:
        asset, client = context.asset_key.path[-1], context.partition_key
        store = self.storage.get()
        upstream = context.upstream_output
        run_id = upstream.run_id if upstream is not None else None
        memo = runstate.recall(run_id, store.uri, client, asset) if run_id else None
        if memo is not None:
            return memo
        return load_published(store, client, asset)


def _without_clock(obj: pd.DataFrame) -> pd.DataFrame:
    """The limits table as written: pandas keeps ``attrs`` in the parquet metadata, and the wall-clock
    ``refreshed_at`` (it belongs in ``latest.json``) would make identical limits differ in bytes."""
    if "refreshed_at" not in obj.attrs:
        return obj
    out = obj.copy(deep=False)
    out.attrs = {k: v for k, v in obj.attrs.items() if k != "refreshed_at"}
    return out


def _run_id(context: OutputContext) -> str:
    try:
        return context.run_id
    except Exception:  # a context built outside a run (unit tests)
        return "no-run"
