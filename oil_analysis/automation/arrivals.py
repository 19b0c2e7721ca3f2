"""Which raw files are new since the last sensor tick (pure, no dagster).

A listing yields :class:`RawObject` records (key relative to the data root, a content tag, a
modification time). The cursor keeps a high-water mark of modification times plus the
``key@tag`` tokens seen exactly at that mark: S3 times have one-second resolution, so time alone
would miss a file written in the same second as the last one seen. Work per tick is bounded: at
most ``max_keys`` objects are listed (the scan resumes after the last key next tick) and at most
``max_runs`` run requests are planned. The mark only moves after a complete pass with nothing left
over, and never past one second before the pass started (a file rewritten while a long pass was
listing other pages is found by the next pass). Files seen again are recognized by their
``key@tag`` token (``already_requested``), so identical content never starts a second run.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..storage import layout


@dataclass(frozen=True)
class RawObject:
    key: str  # relative to the data root: bronze/{client}/...
    tag: str  # S3 ETag, or the content hash of a local file
    mtime: float  # seconds since the epoch
    size: int = 0

    @property
    def token(self) -> str:
        return f"{self.key}@{self.tag}"


@dataclass
class Cursor:
    hw: float = 0.0
    at_hw: list[str] = field(default_factory=list)
    scan_after: str | None = None
    pass_max: float = 0.0
    pass_at_max: list[str] = field(default_factory=list)
    pass_capped: bool = False
    pass_started: float = 0.0

    @classmethod
    def load(cls, text: str | None) -> Cursor:
        return cls(**json.loads(text)) if text else cls()

    def dump(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


@dataclass
class TickPlan:
    requests: dict[str, list[RawObject]]  # client → its new files
    skipped: list[tuple[str, str]]  # (key, reason)
    cursor: Cursor
    listed: int


def file_tag_key(key: str) -> str:
    """Run tag naming one raw file: its value is the file's content tag."""
    return "oil/file." + hashlib.sha1(key.encode()).hexdigest()[:16]


def run_key(client: str, files: list[RawObject]) -> str:
    digest = hashlib.sha256("\n".join(sorted(f.token for f in files)).encode()).hexdigest()[:20]
    return f"{client}:{digest}" if len(files) > 1 else f"{files[0].key}@{files[0].tag}"


def client_of(key: str, clients: Iterable[str]) -> tuple[str | None, str | None]:
    """``(client, None)`` for a raw file of a registered client, else ``(None, reason)``."""
    parts = key.split("/")
    if len(parts) < 3 or parts[0] != layout.BRONZE:
        return None, "outside the bronze/ prefix"
    if parts[1] in layout.RESERVED_BRONZE:
        return None, "product output (registry or quarantine)"
    if ".." in parts or any(p == "" for p in parts):
        return None, "unsafe key"
    if parts[1] not in set(clients):
        return None, f"unknown client {parts[1]!r}"
    return parts[1], None


def plan_tick(
    listing: Callable[[str | None, int], tuple[list[RawObject], bool]],
    cursor: Cursor,
    clients: Iterable[str],
    already_requested: Callable[[RawObject], bool],
    *,
    max_keys: int = 20_000,
    max_runs: int = 10,
    max_files_per_run: int = 500,
    now: float | None = None,
) -> TickPlan:
    """Plan one tick. ``listing(after, limit)`` returns objects sorted by key after ``after`` and
    whether the listing reached the end; ``already_requested`` says whether a run was already
    requested for that exact content."""
    new = Cursor(**{**cursor.__dict__})
    if cursor.scan_after is None:
        new.pass_started = time.time() if now is None else now
    objects, complete = listing(cursor.scan_after, max_keys)
    for o in objects:
        if o.mtime > new.pass_max:
            new.pass_max, new.pass_at_max = o.mtime, [o.token]
        elif o.mtime == new.pass_max:
            new.pass_at_max.append(o.token)
    seen_at_hw = set(cursor.at_hw)
    fresh = [
        o for o in objects if o.mtime > cursor.hw or (o.mtime == cursor.hw and o.token not in seen_at_hw)
    ]
    by_client: dict[str, list[RawObject]] = {}
    skipped: list[tuple[str, str]] = []
    for o in sorted(fresh, key=lambda o: (o.mtime, o.key)):
        client, reason = client_of(o.key, clients)
        if client is None:
            if reason != "product output (registry or quarantine)":
                skipped.append((o.key, reason))
            continue
        if already_requested(o):
            continue
        by_client.setdefault(client, []).append(o)
    # Each file is named by a run tag (how identical re-uploads are recognized), so a run carries at
    # most max_files_per_run files; the rest of a large backlog goes to the next runs.
    planned = {c: files[:max_files_per_run] for c, files in list(by_client.items())[:max_runs]}
    overflow = any(len(files) > max_files_per_run for files in by_client.values())
    new.pass_capped = cursor.pass_capped or len(by_client) > max_runs or overflow
    if complete:
        if not new.pass_capped:
            mark = min(new.pass_max, new.pass_started - 1.0)
            if mark > cursor.hw:
                at_mark = set(new.pass_at_max) if mark == new.pass_max else set()
                new.hw, new.at_hw = mark, sorted(at_mark)
            elif mark == cursor.hw and mark == new.pass_max:
                new.at_hw = sorted(set(cursor.at_hw) | set(new.pass_at_max))
        new.scan_after, new.pass_max, new.pass_at_max, new.pass_capped = None, 0.0, [], False
    else:
        new.scan_after = objects[-1].key if objects else None
    return TickPlan(planned, skipped, new, len(objects))
