"""API keys scoped per client. Only the SHA-256 of a key is stored; the key itself is shown once.

The keys file (``OIL_API_KEYS_FILE``, default ``.oil_api_keys.yaml`` beside the Dagster instance, i.e.
in the parent folder of ``DAGSTER_HOME``, or in the working directory when ``DAGSTER_HOME`` is unset)::

    keys:
      - id: k-3f9a2b1c            # public handle for `keys list` / `keys revoke`
        sha256: 5e88…             # SHA-256 of the key, hex
        clients: [cda]            # or ['*']: every registered client
        name: fusion-service      # optional label
        created_at: 2026-11-28T22:00:00Z

The service re-reads the file when its modification time or size changes, so ``keys add`` and
``keys revoke`` take effect without a restart.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from ..settings import get_settings

KEYS_FILE_VAR = "OIL_API_KEYS_FILE"
DEFAULT_NAME = ".oil_api_keys.yaml"
ALL = "*"
KEY_PREFIX = "oilk_"
# Anything shaped like one of our keys; the log filter redacts it wherever it appears.
KEY_PATTERN = re.compile(re.escape(KEY_PREFIX) + r"[A-Za-z0-9_\-]{16,}")


def keys_file() -> Path:
    """``OIL_API_KEYS_FILE``, else ``.oil_api_keys.yaml`` in the parent folder of ``DAGSTER_HOME``
    (the repository root under the Makefile), else in the working directory."""
    s = get_settings()
    if s.api_keys_file:
        return Path(s.api_keys_file).expanduser().resolve()
    return s.instance_home().parent / DEFAULT_NAME


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    """One stored key: its public id, digest and scope."""

    id: str
    sha256: str
    clients: tuple[str, ...]
    name: str = ""
    created_at: str = ""

    @property
    def all_clients(self) -> bool:
        return ALL in self.clients

    def may_read(self, client: str) -> bool:
        return self.all_clients or client in self.clients

    def scope(self, registered: list[str]) -> list[str]:
        """The registered clients this key may read, sorted."""
        return sorted(c for c in registered if self.may_read(c))


def _load(path: Path) -> list[ApiKey]:
    if not path.exists():
        return []
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(doc, dict) or not isinstance(doc.get("keys", []), list):
        raise ValueError(f"{path}: expected a mapping with a 'keys' list")
    out = []
    for i, k in enumerate(doc.get("keys") or []):
        try:
            out.append(
                ApiKey(
                    id=str(k["id"]),
                    sha256=str(k["sha256"]).lower(),
                    clients=tuple(str(c) for c in k["clients"]),
                    name=str(k.get("name") or ""),
                    created_at=str(k.get("created_at") or ""),
                )
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path}: key entry {i + 1} is missing {exc}") from None
    return out


def _save(path: Path, keys: list[ApiKey]) -> None:
    """Atomic rewrite, mode 0600 (digests only, but nobody else needs to read them)."""
    doc = {
        "keys": [
            {
                "id": k.id,
                "sha256": k.sha256,
                "clients": list(k.clients),
                "name": k.name,
                "created_at": k.created_at,
            }
            for k in keys
        ]
    }
    header = (
        "# oil_analysis API keys: SHA-256 digests only (python -m oil_analysis.api keys add|list|revoke)\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(header + yaml.safe_dump(doc, sort_keys=False))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def add_key(path: Path, clients: list[str], name: str = "") -> tuple[str, ApiKey]:
    """Create a key for ``clients`` (or ``['*']``); returns ``(key, record)``. The key is not stored."""
    if not clients:
        raise ValueError("a key needs at least one --client, or --all")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    keys = _load(path)
    record = ApiKey(
        id=f"k-{secrets.token_hex(4)}",
        sha256=digest(key),
        clients=tuple(dict.fromkeys(clients)),
        name=name,
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    _save(path, [*keys, record])
    return key, record


def list_keys(path: Path) -> list[ApiKey]:
    return _load(path)


def revoke_key(path: Path, key_id: str) -> ApiKey:
    """Remove the key with this id (``KeyError`` if there is none)."""
    keys = _load(path)
    hit = next((k for k in keys if k.id == key_id), None)
    if hit is None:
        raise KeyError(key_id)
    _save(path, [k for k in keys if k.id != key_id])
    return hit


class KeyRing:
    """The keys of a file, re-read when the file changes (checked on each lookup: one ``stat``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple | None = None
        self._by_digest: dict[str, ApiKey] = {}
        self._lock = threading.Lock()

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return
        with self._lock:
            keys = _load(self.path) if stamp else []
            self._by_digest = {k.sha256: k for k in keys}
            self._stamp = stamp

    def lookup(self, key: str) -> ApiKey | None:
        """The stored key whose digest matches, or None."""
        self._refresh()
        return self._by_digest.get(digest(key))
