"""The advisor's cache: generated texts by cache key, in parquet shards (same on local disk and S3).

Layout: ``gold/{client}/_ai_cache/shard-{utc stamp}-{token}.parquet`` (:func:`layout.ai_cache_dir`).
Each run that generated something appends one shard with the new entries only; when more than
``MAX_SHARDS`` shards exist they are compacted into one. Failures are never cached, so a later run
retries them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from . import layout
from .filesystem import Storage, new_run_token, parquet_bytes
from .publication import publish_files

CACHE_COLUMNS = [
    "key",
    "kind",
    "subject",
    "text",
    "model",
    "prompt_version",
    "temperature",
    "generated_at",
    "tokens_in",
    "tokens_out",
]
MAX_SHARDS = 8


class AICache:
    """Generated texts by cache key, in parquet shards under ``gold/{client}/_ai_cache/``."""

    def __init__(self, storage: Storage | None, client: str, run_id: str = "no-run") -> None:
        self.storage, self.prefix = storage, layout.ai_cache_dir(client)
        self.client, self.run_id = client, run_id
        self._entries: pd.DataFrame | None = None
        self.unreadable: list[str] = []

    def _shards(self) -> list[str]:
        if self.storage is None:
            return []
        return [f.path for f in self.storage.list_files(self.prefix) if f.path.endswith(".parquet")]

    def entries(self) -> pd.DataFrame:
        """All entries, one per key (indexed by key)."""
        if self._entries is None:
            frames = []
            for path in self._shards():
                try:
                    frames.append(self.storage.read_parquet(path))
                except Exception:  # a damaged shard loses its entries only; compaction drops it
                    self.unreadable.append(path)
            frames = [f for f in frames if len(f)]
            df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CACHE_COLUMNS)
            self._entries = df.drop_duplicates("key", keep="last").set_index("key", drop=False)
        return self._entries

    def get(self, keys) -> pd.DataFrame:
        if self.storage is None:
            return pd.DataFrame(columns=CACHE_COLUMNS)
        e = self.entries()
        return e[e.index.isin(list(keys))]

    def append(self, rows: list[dict]) -> None:
        """Write the new entries as one shard; compact when shards pile up. Both are publications
        (manifest part ``ai_cache``, which lists every shard)."""
        if self.storage is None or not rows:
            return
        new = pd.DataFrame(rows, columns=CACHE_COLUMNS)
        new["generated_at"] = pd.to_datetime(new["generated_at"]).astype("datetime64[us]")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        self._publish([(f"{self.prefix}/shard-{stamp}-{new_run_token()}.parquet", new)], self._shards())
        self._entries = None
        shards = self._shards()
        if len(shards) > MAX_SHARDS:
            merged = self.entries().reset_index(drop=True)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
            # the old shards are deleted last: readers in between see duplicates, which they drop
            self._publish([(f"{self.prefix}/shard-{stamp}-{new_run_token()}.parquet", merged)], [], shards)
            self._entries = None

    def _publish(self, frames: list[tuple[str, pd.DataFrame]], listed: list[str], delete=()) -> None:
        files = [(path, parquet_bytes(frame), len(frame)) for path, frame in frames]
        publish_files(
            self.storage, self.client, "ai_cache", files, run_id=self.run_id, listed=listed, delete=delete
        )
