"""The IO manager: asset outputs ↔ files of the layout (same paths on local disk and S3)."""

import pandas as pd
from dagster import ConfigurableIOManager, InputContext, OutputContext, ResourceDependency

from ..resources.storage import StorageResource
from . import layout

LIMITS_ASSET = "stewart_limits"


def _path(asset: str, client: str) -> str:
    if asset == "bronze_lab_files":
        return layout.registry_path(client)
    if asset == "silver_harmonized":
        return layout.harmonized_path(client)
    return layout.gold_path(client, asset)


class LayoutIOManager(ConfigurableIOManager):
    """Writes each partitioned asset to its place in the layout; limits are versioned folders."""

    storage: ResourceDependency[StorageResource]

    def handle_output(self, context: OutputContext, obj: pd.DataFrame) -> None:
        asset, client = context.asset_key.path[-1], context.partition_key
        store = self.storage.get()
        if asset == LIMITS_ASSET:
            from ..domain.limits import limits_to_nested

            version = str(obj.attrs.get("version") or obj["version"].iloc[0])
            folder = layout.limits_dir(client, version)
            store.write_parquet(f"{folder}/stewart_limits.parquet", obj)
            store.write_json(f"{folder}/stewart_limits.json", limits_to_nested(obj))
            store.write_json(
                layout.limits_latest(client), {"client": client, "version": version, "path": folder}
            )
            context.add_output_metadata({"path": store.display(folder), "limits_version": version})
            return
        path = _path(asset, client)
        sha, size = store.write_parquet(path, obj)
        context.add_output_metadata({"path": store.display(path), "sha256": sha, "bytes": size})

    def load_input(self, context: InputContext) -> pd.DataFrame:
        asset, client = context.asset_key.path[-1], context.partition_key
        store = self.storage.get()
        if asset == LIMITS_ASSET:
            latest = store.read_json(layout.limits_latest(client))
            return store.read_parquet(f"{latest['path']}/stewart_limits.parquet")
        return store.read_parquet(_path(asset, client))
