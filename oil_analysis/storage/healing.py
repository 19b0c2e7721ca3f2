"""Self-healing state: what a run does before it publishes, and how it rebuilds damaged pointers.

* :func:`remove_stale_temps` — a write killed mid-way (kill -9) leaves a ``.tmp-*`` file beside its
  target; a run starts by removing those of its client (in shared folders, only the temps of the
  client's own files: their names carry the target's name).
* :func:`check_writable` — before anything of a client is published, every folder the run will
  write is probed with a temp file: a folder that cannot be written fails the run *before* silver
  is replaced, so silver, gold and the manifest stay the previous, consistent set.
* :func:`read_limits_pointer` — ``latest.json`` that cannot be read (or names missing files) is
  reported and rebuilt from the limits versions present.

Every repair is a dict ``{path, error, action}`` the asset puts in its run metadata.
"""

from __future__ import annotations

import os
import time
import uuid

from . import layout
from .filesystem import Storage

# Temps of shared folders whose name does not say whose they are (older writers): removed when
# older than this, so that a concurrent run's in-flight write is never touched.
ANONYMOUS_TEMP_MAX_AGE_S = 3600


def client_folders(client: str) -> list[str]:
    """Folders only this client's runs write (every temp file in them is the client's)."""
    return [
        f"{layout.BRONZE}/_registry/{client}",
        f"{layout.BRONZE}/_quarantine/{client}",
        layout.silver_state_dir(client),
        layout.audit_dir(client),
        layout.limits_client_dir(client),
        layout.gold_dir(client),
    ]


def shared_folders(client: str) -> dict[str, tuple[str, ...]]:
    """Folders shared by clients → the names of this client's files there."""
    return {
        "silver/harmonized": (os.path.basename(layout.harmonized_path(client)),),
        "silver/rejects": (os.path.basename(layout.rejects_path(client)),),
    }


def remove_stale_temps(store: Storage, client: str) -> list[str]:
    """Delete the ``.tmp-*`` files earlier runs of ``client`` left behind (local storage; S3 writes
    leave no temp objects). Returns the removed paths, relative to the root."""
    if not store.is_local:
        return []
    removed: list[str] = []
    now = time.time()

    def sweep(folder: str, recursive: bool, mine) -> None:
        top = os.path.join(store.base, folder)
        if not os.path.isdir(top) or os.path.islink(top):
            return
        for here, dirs, files in os.walk(top, followlinks=False):
            for name in files:
                if not name.startswith(".tmp-"):
                    continue
                full = os.path.join(here, name)
                try:
                    if mine(name, os.lstat(full).st_mtime):
                        os.unlink(full)
                        removed.append(os.path.relpath(full, store.base).replace(os.sep, "/"))
                except FileNotFoundError:
                    continue
            if not recursive:
                dirs.clear()

    for folder in client_folders(client):
        sweep(folder, True, lambda name, mtime: True)
    for folder, targets in shared_folders(client).items():

        def mine(name: str, mtime: float, targets=targets) -> bool:
            named = any(name.startswith(f".tmp-{t}.") for t in targets)
            anonymous = name.count(".") <= 1 and now - mtime > ANONYMOUS_TEMP_MAX_AGE_S
            return named or anonymous

        sweep(folder, False, mine)
    return sorted(removed)


def check_writable(store: Storage, client: str, *, legacy: bool = False) -> list[str]:
    """Probe every folder a run of ``client`` publishes to; returns the problems (empty: all good).

    Each probe creates and removes an empty temp file (``.tmp-probe-…``) where a real write would
    (:meth:`Storage.probe_write`).
    A file standing where a folder should be, a read-only folder or a refused S3 prefix fails here.
    """
    folders = [
        os.path.dirname(layout.harmonized_path(client)),
        os.path.dirname(layout.rejects_path(client)),
        layout.silver_state_dir(client),
        layout.audit_dir(client),
        layout.limits_client_dir(client),
        layout.gold_dir(client),
        layout.manifest_parts_dir(client),
        layout.changes_dir(client),
        layout.history_dir(client),
    ]
    if legacy:
        folders += ["processed", "to_consume"]
    problems = []
    token = uuid.uuid4().hex[:8]
    for folder in folders:
        probe = f"{folder}/.tmp-probe-{token}"
        try:
            store.probe_write(probe)
        except Exception as exc:
            problems.append(f"{store.display(folder)}: {type(exc).__name__}: {exc}")
    return problems


def read_limits_pointer(store: Storage, client: str, repairs: list[dict] | None = None) -> dict | None:
    """The client's ``latest.json`` pointer (None before the first limits publish).

    A pointer that cannot be read or names a version whose files are gone is rebuilt from the
    versions present: the one the manifest names, else the newest folder with a complete
    ``stewart_limits.parquet``; the repair is appended to ``repairs`` and the pointer rewritten.
    """
    path = layout.limits_latest(client)
    error = None
    if store.exists(path):
        try:
            doc = store.read_json(path)
            if not isinstance(doc, dict) or not {"version", "path"} <= set(doc):
                raise ValueError("expected an object with 'version' and 'path'")
            if store.exists(layout.limits_file(doc["path"])):
                return doc
            raise FileNotFoundError(f"it names {doc['path']}, whose stewart_limits.parquet is missing")
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
    prefix = layout.limits_client_dir(client) + "/"
    versions = {}
    for e in store.list_files(prefix):
        parts = e.path[len(prefix) :].split("/")
        if len(parts) == 2 and parts[1] == "stewart_limits.parquet":
            versions[parts[0]] = e.mtime_ns
    if not versions:
        if error is not None and repairs is not None:
            repairs.append(
                {
                    "path": store.display(path),
                    "error": error,
                    "action": "no limits version present: limits computed anew",
                }
            )
        return None
    chosen = None
    try:
        manifest = layout.manifest_path(client)  # read here: the manifest module uses this one
        named = (store.read_json(manifest) if store.exists(manifest) else {}).get("limits_version")
        chosen = named if named in versions else None
    except Exception:
        chosen = None
    chosen = chosen or max(versions, key=lambda v: (versions[v], v))
    doc = {"client": client, "version": chosen, "path": layout.limits_dir(client, chosen)}
    store.write_json(path, doc)
    if repairs is not None:
        repairs.append(
            {
                "path": store.display(path),
                "error": error or "missing while limits versions exist",
                "action": f"latest.json rebuilt from the versions present: {chosen}",
            }
        )
    return doc
