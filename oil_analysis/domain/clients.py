"""The clients registry (``reference/clients.yaml``, or the file named by ``OIL_CLIENTS_FILE``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from zoneinfo import ZoneInfo

import yaml

from .labs import LAB_FORMATS

CLIENT_KEY = re.compile(r"^[a-z0-9_]{1,32}$")


@dataclass(frozen=True)
class Client:
    key: str
    display_name: str
    lab_format: str
    timezone: str


def _validate(entry: dict, where: str) -> Client:
    missing = [k for k in ("key", "display_name", "lab_format", "timezone") if not entry.get(k)]
    if missing:
        raise ValueError(f"{where}: client entry {entry!r} lacks {missing}")
    key = str(entry["key"])
    if not CLIENT_KEY.match(key):
        raise ValueError(f"{where}: client key {key!r} must match {CLIENT_KEY.pattern}")
    if entry["lab_format"] not in LAB_FORMATS:
        raise ValueError(
            f"{where}: client {key!r} has unknown lab_format {entry['lab_format']!r}; "
            f"known: {sorted(LAB_FORMATS)}"
        )
    ZoneInfo(str(entry["timezone"]))  # raises on an unknown zone
    return Client(key, str(entry["display_name"]), str(entry["lab_format"]), str(entry["timezone"]))


def load_clients(path: str | None = None) -> dict[str, Client]:
    """Read and validate the registry at ``path`` (the bundled ``reference/clients.yaml`` when None;
    callers pass the ``OIL_CLIENTS_FILE`` setting); keys are unique lowercase partition keys."""
    if path:
        with open(path, encoding="utf-8") as f:
            doc, where = yaml.safe_load(f), path
    else:
        doc = yaml.safe_load(
            resources.files("oil_analysis.reference").joinpath("clients.yaml").read_text("utf-8")
        )
        where = "clients.yaml"
    out: dict[str, Client] = {}
    for entry in (doc or {}).get("clients", []):
        c = _validate(entry, where)
        if c.key in out:
            raise ValueError(f"{where}: client key {c.key!r} appears twice")
        out[c.key] = c
    if not out:
        raise ValueError(f"{where}: no clients defined")
    return out
