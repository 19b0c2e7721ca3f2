"""The per-client manifest: ``gold/{client}/_manifest.json`` lists every file the product published
for a client (silver, limits, gold, legacy, and the side outputs: reject ledger, audit, change log,
history, fleet report, advisor cache) with sha256, size, rows, schema and limits versions, run
id and time, so a consumer can check what it downloaded.

Concurrency: clients never share a manifest. Inside one client, assets may be written by parallel
steps (multiprocess executor), so nobody edits the manifest in place. Each asset output (and each
side output, :func:`oil_analysis.storage.publication.publish_files`) writes its
own *part*, ``gold/{client}/_manifest.parts/{asset}.json`` (one writer per part); the manifest is a
pure function of the parts, republished after every part and then verified: the writer reads the
parts and the manifest again and republishes until they agree. The last writer therefore always
leaves a manifest that includes every part, without locks (S3 has no rename or lock to build on).
Re-running an asset replaces its part, hence the entries of its paths.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import random
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from ..domain.contracts import SCHEMA_VERSION
from . import layout
from .filesystem import FileEntry, Storage, json_bytes
from .layout import manifest_part_path as part_path
from .layout import manifest_parts_dir as parts_dir
from .layout import manifest_path

MANIFEST_VERSION = 1
PUBLISH_ATTEMPTS = 12


class ManifestConflictError(RuntimeError):
    """The manifest kept changing under us (more concurrent writers than attempts)."""


@dataclass(frozen=True)
class FileRecord:
    """One published file. ``shared``: a legacy file all clients write (its sha changes with theirs)."""

    path: str
    sha256: str
    bytes: int
    rows: int | None
    format: str
    legacy: bool = False
    shared: bool = False

    @classmethod
    def of(cls, path: str, data: bytes, rows: int | None, *, legacy: bool = False, shared: bool = False):
        fmt = posixpath.splitext(path)[1].lstrip(".") or "bin"
        return cls(path, hashlib.sha256(data).hexdigest(), len(data), rows, fmt, legacy, shared)


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_part(
    store: Storage,
    client: str,
    asset: str,
    files: list[FileRecord],
    *,
    run_id: str,
    limits_version: str | None,
    written_at: str | None = None,
    repairs: list[dict] | None = None,
) -> dict:
    """Record what one asset output published, then republish the client's manifest."""
    part = {
        "asset": asset,
        "client": client,
        "run_id": run_id,
        "written_at": written_at or now_utc(),
        "schema_version": SCHEMA_VERSION,
        "limits_version": limits_version,
        "files": [asdict(f) for f in sorted(files, key=lambda f: f.path)],
        # Size and arrival time of each file as written: a later run sees from a stat, without
        # reading it, that a file is still the one published (``part_problems``).
        "stamps": {
            f.path: [st.size, st.arrived_ns]
            for f in files
            if not f.shared and (st := store.stat(f.path)) is not None
        },
    }
    data = json_bytes(part)
    store.write_bytes(part_path(client, asset), data)
    return publish(store, client, repairs, own=json.loads(data))


PART_KEYS = {"asset", "client", "run_id", "written_at", "schema_version", "limits_version", "files"}


def _part_files(store: Storage, client: str) -> list[FileEntry]:
    return [e for e in store.list_files(parts_dir(client) + "/") if e.path.endswith(".json")]


def read_parts(
    store: Storage, client: str, repairs: list[dict] | None = None, listed: list[FileEntry] | None = None
) -> list[dict]:
    """Every manifest part of the client (``listed``: the part files, when just listed). A part that
    cannot be read is rebuilt from the files it stands for (their current bytes) and rewritten, or
    dropped when its asset is unknown; each repair is appended to ``repairs``."""
    parts = []
    for e in _part_files(store, client) if listed is None else listed:
        try:
            part = store.read_json(e.path)
            if (
                not isinstance(part, dict)
                or not set(part) >= PART_KEYS
                or not isinstance(part["files"], list)
            ):
                raise ValueError("not a manifest part (keys missing)")
            for f in part["files"]:
                if not {"path", "sha256", "bytes"} <= set(f):
                    raise ValueError("a file entry lacks path, sha256 or bytes")
        except Exception as exc:
            asset = posixpath.basename(e.path)[: -len(".json")]
            part = rebuild_part(store, client, asset)
            if part is None:
                store.delete(e.path)
                action = (
                    "dropped (unknown asset): its files are listed again when the asset is next published"
                )
            else:
                store.write_bytes(e.path, json_bytes(part))
                action = f"rebuilt from the {len(part['files'])} files of {asset} as they are now"
            if repairs is not None:
                repairs.append(
                    {
                        "path": store.display(e.path),
                        "error": f"{type(exc).__name__}: {exc}"[:300],
                        "action": action,
                    }
                )
            if part is None:
                continue
        parts.append(part)
    return parts


def _asset_files(store: Storage, client: str, asset: str) -> list[str] | None:
    """The paths an asset publishes for a client, as they stand (None: an asset not known here)."""
    from .healing import read_limits_pointer

    if asset == "silver_harmonized":
        return [layout.harmonized_path(client), layout.rejects_path(client)]
    if asset == "stewart_limits":
        pointer = read_limits_pointer(store, client)
        if pointer is None:
            return []
        folder = str(pointer["path"]).rstrip("/")
        return [
            layout.limits_file(folder),
            layout.limits_file(folder, "json"),
            layout.limits_latest(client),
        ]
    if asset in ("classified_reports", "machine_status_current", "limit_quality"):
        return [layout.gold_path(client, asset)]
    if asset == "fleet_report":
        return [layout.fleet_report_path(client)]
    return None


def rebuild_part(store: Storage, client: str, asset: str) -> dict | None:
    """A manifest part made from the files of ``asset`` as they are now (None: unknown asset)."""
    import io

    import pyarrow.parquet as pq

    paths = _asset_files(store, client, asset)
    if paths is None:
        return None
    files, version = [], None
    for path in paths:
        if not store.exists(path):
            continue
        data = store.read_bytes(path)
        rows = pq.ParquetFile(io.BytesIO(data)).metadata.num_rows if path.endswith(".parquet") else None
        files.append(asdict(FileRecord.of(path, data, rows)))
        if asset == "stewart_limits" and path.endswith("latest.json"):
            version = json.loads(data).get("version")
    return {
        "asset": asset,
        "client": client,
        "run_id": "rebuilt",
        "written_at": now_utc(),
        "schema_version": SCHEMA_VERSION,
        "limits_version": version,
        "files": sorted(files, key=lambda f: f["path"]),
    }


def build(client: str, parts: list[dict]) -> dict:
    """The manifest document of a set of parts (deterministic: same parts → same bytes)."""
    files: dict[str, dict] = {}
    for part in sorted(parts, key=lambda p: (p["written_at"], p["asset"])):
        for f in part["files"]:
            files[f["path"]] = {
                **f,
                "asset": part["asset"],
                "schema_version": part["schema_version"],
                "limits_version": part["limits_version"],
                "run_id": part["run_id"],
                "written_at": part["written_at"],
            }
    limits = next((p for p in parts if p["asset"] == "stewart_limits"), None)
    return {
        "manifest_version": MANIFEST_VERSION,
        "client": client,
        "schema_version": SCHEMA_VERSION,
        "limits_version": limits["limits_version"] if limits else None,
        "updated_at": max((p["written_at"] for p in parts), default=None),
        "assets": {
            p["asset"]: {k: p[k] for k in ("run_id", "written_at", "limits_version")}
            for p in sorted(parts, key=lambda p: p["asset"])
        },
        "files": [files[k] for k in sorted(files)],
    }


# The parts of each (storage, client) as this process last saw them in a manifest it verified, and
# their files' (path, size, time) as listed then. A publish that follows its own part's write starts
# from that view with the part in place when a listing shows the other parts' files unchanged,
# instead of reading every part again (on S3 ~2 requests a part, for each of a run's ~9 publishes).
# The manifest built from it is verified against the parts read back all the same, so a change the
# listing cannot show (rewritten within the backend's time resolution at the same size) costs one
# more round, never a wrong manifest left behind.
_VIEWS: dict[tuple[str, str], tuple[list[dict], list[FileEntry]]] = {}


def _others(listed: list[FileEntry], mine: str) -> list[tuple]:
    """(path, size, time) of the listed part files but ``mine``."""
    return [(e.path, e.size, e.arrived_ns) for e in listed if e.path != mine]


def publish(
    store: Storage, client: str, repairs: list[dict] | None = None, *, own: dict | None = None
) -> dict:
    """Write the manifest from the parts and verify it still matches them; retry if a concurrent
    writer published from an older view. Damaged parts are rebuilt (see :func:`read_parts`).
    ``own``: the part just written by the caller (as read back), laid over this process's last view."""
    key, listed = (store.uri, client), _part_files(store, client)
    view = _VIEWS.get(key) if own is not None else None
    mine = part_path(client, own["asset"]) if own is not None else ""
    if view is not None and _others(view[1], mine) == _others(listed, mine):
        parts = [p for p in view[0] if p["asset"] != own["asset"]] + [own]
    else:
        parts = read_parts(store, client, repairs, listed)
    for attempt in range(PUBLISH_ATTEMPTS):
        doc = build(client, parts)
        data = json_bytes(doc)
        store.write_bytes(manifest_path(client), data)
        listed = _part_files(store, client)
        fresh = read_parts(store, client, repairs, listed)
        if _same(fresh, parts) and store.read_bytes(manifest_path(client)) == data:
            _VIEWS[key] = (fresh, listed)
            return doc
        parts = fresh
        backoff(attempt)
    raise ManifestConflictError(
        f"{store.display(manifest_path(client))} still changing after {PUBLISH_ATTEMPTS} attempts"
    )


def backoff(attempt: int) -> None:
    """Jittered exponential pause, so concurrent writers stop overwriting each other in lockstep."""
    time.sleep(random.uniform(0, min(0.01 * 2**attempt, 1.0)))


def _same(a: list[dict], b: list[dict]) -> bool:
    key = lambda p: p["asset"]  # noqa: E731
    return sorted(a, key=key) == sorted(b, key=key)


def read_manifest(store: Storage, client: str) -> dict | None:
    path = manifest_path(client)
    return store.read_json(path) if store.exists(path) else None


def verify(store: Storage, client: str) -> list[str]:
    """What a consumer would check: every listed file exists with its size and sha256 (shared legacy
    files only need to exist: other clients rewrite them). Returns the problems (empty: consistent)."""
    doc = read_manifest(store, client)
    if doc is None:
        return [f"no manifest at {store.display(manifest_path(client))}"]
    return [p for f in doc["files"] if (p := _file_problem(store, f))]


def _file_problem(store: Storage, f: dict) -> str | None:
    """What is wrong with one listed file as stored now (None: as published)."""
    if not store.exists(f["path"]):
        return f"missing: {f['path']}"
    if f.get("shared"):
        return None
    data = store.read_bytes(f["path"])
    sha = hashlib.sha256(data).hexdigest()
    if sha != f["sha256"] or len(data) != f["bytes"]:
        return f"differs: {f['path']} (manifest {f['sha256'][:12]}, stored {sha[:12]})"
    return None


def part_problems(store: Storage, client: str, asset: str) -> list[str] | None:
    """The files of one asset's part that are missing or differ from what was published (an edit
    by hand, a restore of another day's copy); None when the asset has no readable part.

    A file whose size and arrival time are those stamped at publication is not read; any other is
    read and its sha256 compared (a file touched but identical is fine)."""
    path = part_path(client, asset)
    try:
        part = store.read_json(path)
        files, stamps = part["files"], part.get("stamps") or {}
    except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
        return None
    problems = []
    for f in files:
        st = store.stat(f["path"])
        if st is None:
            problems.append(f"missing: {f['path']}")
        elif f.get("shared") or stamps.get(f["path"]) == [st.size, st.arrived_ns]:
            continue
        elif problem := _file_problem(store, f):
            problems.append(problem)
    return problems
