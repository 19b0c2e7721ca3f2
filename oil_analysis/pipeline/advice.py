"""Maintenance recommendations for classified reports and machines: cache, LLM calls, fallbacks.

No dagster here: the gold assets call :func:`recommend_reports` and :func:`recommend_machines` with a
:class:`~oil_analysis.storage.filesystem.Storage` (for the cache) and an :class:`LLMConfig` (``None``:
offline advisor). Every row ends with a text and an ``ai_source``:

- ``normal``   — Normal report / machine: a fixed text;
- ``offline``  — the rule-based advisor: no LLM configured, or a report whose only breaches are
  additives (the model is not asked: additives never justify an oil or component change);
- ``cache``    — same prompt inputs, prompt version, model and temperature as an earlier call;
- ``llm``      — generated in this run;
- ``fallback`` — the LLM was wanted but failed (retries exhausted, malformed answer, call cap, open
  circuit): the rule-based text, with the error class in ``ai_error``. Never the exception text.

The endpoint is reached through the ``llm`` object only (:meth:`LLMConfig.complete`, :meth:`LLMConfig.cost`
of :mod:`oil_analysis.resources.llm_client`: concurrency, retries, circuit breaker); this module
defines what a call gives back (:class:`CallResult`). The cache is :class:`~oil_analysis.storage.ai_cache.AICache`
(``gold/{client}/_ai_cache/``); failures are never cached, so a later run retries them.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from ..domain.advice import prompts
from ..domain.advice.offline import (
    NORMAL_MACHINE_TEXT,
    NORMAL_REPORT_TEXT,
    OFFLINE_MODEL,
    OFFLINE_VERSION,
    offline_machine_recommendation,
    offline_recommendation,
)
from ..domain.catalog import Catalog, load_catalog
from ..storage.ai_cache import CACHE_COLUMNS, AICache
from ..storage.filesystem import Storage

if TYPE_CHECKING:
    from collections import Counter

REPORT_COLUMNS = (
    "ai_recommendation",
    "ai_source",
    "ai_model",
    "ai_prompt_version",
    "ai_generated_at",
    "ai_error",
    "ai_input_hash",
)
MACHINE_COLUMNS = tuple("machine_" + c for c in REPORT_COLUMNS)
SOURCES = ("llm", "cache", "fallback", "offline", "normal")


class CallCapReached(Exception):
    """The run's request budget (``max_calls``) is spent."""


@dataclass
class CallResult:
    """What one prompt gave: its text, or the class name of the error that ended it."""

    text: str | None = None
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    generated_at: datetime | None = None


class CallStats(Protocol):
    """The counters of one run's calls."""

    requests: int
    prompts: int
    retries: int
    tokens_in: int
    tokens_out: int
    errors: Counter


class LLM(Protocol):
    """What the advice needs of an endpoint (:class:`oil_analysis.resources.llm_client.LLMConfig`)."""

    model: str
    temperature: float
    max_calls: int | None

    def complete(self, tasks: list[tuple[str, list[dict]]]) -> tuple[dict[str, CallResult], CallStats]: ...

    def cost(self, tokens_in: int, tokens_out: int) -> float | None: ...


def cache_key(kind: str, inputs: Mapping, model: str, temperature: float) -> str:
    """sha256 of (kind, prompt inputs, prompt version, model, temperature)."""
    doc = {
        "kind": kind,
        "inputs": inputs,
        "prompt_version": prompts.PROMPT_VERSION,
        "model": model,
        "temperature": round(float(temperature), 4),
    }
    text = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# -- shared orchestration -------------------------------------------------------------------------


@dataclass
class _Item:
    row: int  # position in the output frame
    subject: str  # sampleNumber or unitId (cache entries name it, for people)
    inputs: dict
    offline: str
    priority: float  # higher is called first when the cap bites
    rules_only: bool = False  # only additives breached: the rules answer, the model is not asked


def _advise(
    items: list[_Item],
    kind: str,
    storage: Storage | None,
    client: str,
    llm: LLM | None,
    run_id: str = "no-run",
) -> tuple[dict[int, dict], dict]:
    """Text and provenance for every item: cache, then LLM, falling back to the offline text."""
    t0 = time.perf_counter()
    out: dict[int, dict] = {}
    stats = {
        "cache_hits": 0,
        "calls": 0,
        "prompts_sent": 0,
        "retries": 0,
        "fallbacks": 0,
        "errors": {},
        "tokens_in": 0,
        "tokens_out": 0,
        "estimated_cost_usd": 0.0,
        "model": llm.model if llm else OFFLINE_MODEL,
    }
    for it in items:
        if llm is None or it.rules_only:
            out[it.row] = {
                "text": it.offline,
                "source": "offline",
                "model": OFFLINE_MODEL,
                "version": OFFLINE_VERSION,
                "at": None,
                "error": None,
                "hash": cache_key(kind, it.inputs, OFFLINE_MODEL, 0.0),
            }
    items = [it for it in items if it.row not in out]
    if llm is None or not items:
        stats["estimated_cost_usd"] = 0.0 if llm is None else llm.cost(0, 0)
        stats["elapsed_s"] = round(time.perf_counter() - t0, 3)
        return out, stats

    keys = {it.row: cache_key(kind, it.inputs, llm.model, llm.temperature) for it in items}
    cache = AICache(storage, client, run_id)
    hits = pd.DataFrame(columns=CACHE_COLUMNS)
    try:
        hits = cache.get(set(keys.values()))
    except Exception as e:  # an unreadable cache costs calls, never the run
        stats["cache_read_error"] = type(e).__name__
    if cache.unreadable:
        stats["cache_unreadable_shards"] = list(cache.unreadable)
    hit = {k: r for k, r in zip(hits.index, hits.to_dict("records"), strict=True)}

    # One request per distinct prompt, most severe first (they get the budget when the cap bites).
    pending: dict[str, _Item] = {}
    for it in sorted(items, key=lambda i: -i.priority):
        k = keys[it.row]
        if k not in hit and k not in pending:
            pending[k] = it
    cap = llm.max_calls if llm.max_calls is not None else len(pending)
    chosen = list(pending.items())[:cap]
    results: dict[str, CallResult] = {}
    if chosen:
        tasks = [(k, prompts.messages(_render(kind, it.inputs), kind)) for k, it in chosen]
        results, cs = llm.complete(tasks)
        stats.update(
            calls=cs.requests,
            prompts_sent=cs.prompts,
            retries=cs.retries,
            tokens_in=cs.tokens_in,
            tokens_out=cs.tokens_out,
        )
        stats["errors"] = dict(cs.errors)
    for k, _it in list(pending.items())[cap:]:
        results[k] = CallResult(
            error=CallCapReached.__name__, generated_at=datetime.now(UTC).replace(tzinfo=None)
        )
        stats["errors"][CallCapReached.__name__] = stats["errors"].get(CallCapReached.__name__, 0) + 1

    new_entries = []
    for k, r in results.items():
        if r.text is not None:
            it = pending[k]
            new_entries.append(
                {
                    "key": k,
                    "kind": kind,
                    "subject": it.subject,
                    "text": r.text,
                    "model": llm.model,
                    "prompt_version": prompts.PROMPT_VERSION,
                    "temperature": float(llm.temperature),
                    "generated_at": r.generated_at,
                    "tokens_in": r.tokens_in,
                    "tokens_out": r.tokens_out,
                }
            )
    try:
        cache.append(new_entries)
    except Exception as e:  # a cache that cannot be written costs calls next run, not this run
        stats["cache_write_error"] = type(e).__name__

    for it in items:
        k = keys[it.row]
        if k in hit:
            h = hit[k]
            out[it.row] = {
                "text": h["text"],
                "source": "cache",
                "model": h["model"],
                "version": h["prompt_version"],
                "at": h["generated_at"],
                "error": None,
                "hash": k,
            }
            stats["cache_hits"] += 1
        elif results[k].text is not None:
            r = results[k]
            out[it.row] = {
                "text": r.text,
                "source": "llm",
                "model": llm.model,
                "version": prompts.PROMPT_VERSION,
                "at": r.generated_at,
                "error": None,
                "hash": k,
            }
        else:
            r = results[k]
            out[it.row] = {
                "text": it.offline,
                "source": "fallback",
                "model": OFFLINE_MODEL,
                "version": OFFLINE_VERSION,
                "at": r.generated_at,
                "error": r.error,
                "hash": k,
            }
            stats["fallbacks"] += 1
    cost = llm.cost(stats["tokens_in"], stats["tokens_out"])
    stats["estimated_cost_usd"] = cost
    stats["elapsed_s"] = round(time.perf_counter() - t0, 3)
    return out, stats


def _render(kind: str, inputs: dict) -> str:
    return (
        prompts.render_machine_prompt(inputs) if kind == "machine" else prompts.render_report_prompt(inputs)
    )


def _fill(
    frame: pd.DataFrame,
    columns: tuple[str, ...],
    normal_text: str,
    normal_rows: np.ndarray,
    advice: dict[int, dict],
) -> pd.DataFrame:
    n = len(frame)
    text = np.full(n, None, dtype=object)
    source = np.full(n, None, dtype=object)
    model = np.full(n, None, dtype=object)
    version = np.full(n, None, dtype=object)
    at = np.full(n, None, dtype=object)
    error = np.full(n, None, dtype=object)
    digest = np.full(n, None, dtype=object)
    text[normal_rows], source[normal_rows] = normal_text, "normal"
    model[normal_rows], version[normal_rows] = OFFLINE_MODEL, OFFLINE_VERSION
    for row, a in advice.items():
        text[row], source[row], model[row], version[row] = a["text"], a["source"], a["model"], a["version"]
        at[row], error[row], digest[row] = a["at"], a["error"], a["hash"]
    out = frame.copy()
    c_text, c_source, c_model, c_version, c_at, c_error, c_hash = columns
    out[c_text] = pd.array(text, dtype="string")
    out[c_source] = pd.array(source, dtype="string")
    out[c_model] = pd.array(model, dtype="string")
    out[c_version] = pd.array(version, dtype="string")
    out[c_at] = pd.to_datetime(pd.Series(at, index=out.index, dtype=object)).astype("datetime64[us]")
    out[c_error] = pd.array(error, dtype="string")
    out[c_hash] = pd.array(digest, dtype="string")
    return out


def _summary(stats: dict, sources: pd.Series, rows: int) -> dict:
    counts = sources.value_counts()
    return {
        "rows": rows,
        "sources": {s: int(counts.get(s, 0)) for s in SOURCES},
        "prompt_version": prompts.PROMPT_VERSION,
        **stats,
    }


class _Columns:
    """A frame's columns as object arrays, each converted on its first use (values as
    ``DataFrame.to_dict("records")`` gives them). The advisors read a dozen of ~100 columns."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame
        self.names = list(frame.columns)
        self.known = set(self.names)
        self.arrays: dict[str, np.ndarray] = {}

    def value(self, column: str, row: int):
        arr = self.arrays.get(column)
        if arr is None:
            col = self.frame[column]
            # Timestamps and Timedeltas boxed as to_dict boxes them; other dtypes as plain objects.
            arr = np.array(list(col), dtype=object) if col.dtype.kind in "mM" else col.to_numpy(dtype=object)
            self.arrays[column] = arr
        return arr[row]


class _Row(Mapping):
    """One row of a frame as a read-only mapping over :class:`_Columns` (no copy of the row)."""

    __slots__ = ("_cols", "_row")

    def __init__(self, cols: _Columns, row: int):
        self._cols, self._row = cols, row

    def __getitem__(self, column: str):
        if column not in self._cols.known:
            raise KeyError(column)
        return self._cols.value(column, self._row)

    def __contains__(self, column: object) -> bool:
        return column in self._cols.known

    def __iter__(self):
        return iter(self._cols.names)

    def __len__(self) -> int:
        return len(self._cols.names)


def _records(frame: pd.DataFrame, rows) -> dict[int, Mapping]:
    """Row position → the row as a mapping, for the given positions."""
    cols = _Columns(frame)
    return {r: _Row(cols, r) for r in sorted(set(int(r) for r in rows))}


# -- public API -----------------------------------------------------------------------------------


def recommend_reports(
    reports: pd.DataFrame,
    storage: Storage | None,
    client: str,
    llm: LLM | None,
    catalog: Catalog | None = None,
    run_id: str = "no-run",
    only: np.ndarray | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Add a maintenance recommendation to every classified report.

    Returns the frame (same rows, same order) with ``REPORT_COLUMNS`` added, and run statistics
    (``sources`` counts, ``calls`` = requests sent incl. retries, ``prompts_sent``, ``cache_hits``,
    ``retries``, ``fallbacks``, ``errors`` by class, ``tokens_in``/``tokens_out``,
    ``estimated_cost_usd``, ``elapsed_s``). ``storage=None`` disables the cache; ``llm=None`` uses
    the offline advisor. Never raises because of the LLM endpoint. ``only`` (boolean per row):
    advise those rows alone; the others are there as previous samples (the trend of a prompt) and
    get no text.
    """
    catalog = catalog or load_catalog()
    status = reports["report_status"].astype("string").fillna("Normal").to_numpy(dtype=object)
    flagged = np.flatnonzero(status != "Normal")
    normal = np.flatnonzero(status == "Normal")
    if only is not None:
        flagged, normal = flagged[only[flagged]], normal[only[normal]]
    numbers = reports["sampleNumber"].astype("string").to_numpy(dtype=object)
    position = {n: i for i, n in enumerate(numbers) if n is not pd.NA}
    prev_pos = {}
    if "previousSampleNumber" in reports:
        prev_numbers = reports["previousSampleNumber"].astype("string").to_numpy(dtype=object)
        for i in flagged:
            p = prev_numbers[i]
            if p is not pd.NA and p in position:
                prev_pos[int(i)] = position[p]
    rec = _records(reports, list(flagged) + list(prev_pos.values()))
    score = pd.to_numeric(reports["severity_score"], errors="coerce").fillna(0).to_numpy(float)

    items = []
    for i in flagged:
        i = int(i)
        row = rec[i]
        previous = rec.get(prev_pos[i]) if i in prev_pos else None
        items.append(
            _Item(
                row=i,
                subject=str(numbers[i]),
                inputs=prompts.report_inputs(row, previous, catalog),
                offline=offline_recommendation(
                    row.get("breached_essays"),
                    row.get("componentName"),
                    catalog,
                    status=row.get("report_status"),
                    context=row,
                ),
                priority=float(score[i]),
            )
        )
        items[-1].rules_only = not items[-1].inputs["breaches"]
    advice, stats = _advise(items, "report", storage, client, llm, run_id)
    out = _fill(reports, REPORT_COLUMNS, NORMAL_REPORT_TEXT, normal, advice)
    return out, _summary(stats, out["ai_source"], len(out))


def _cells(column: pd.Series):
    """The values of a column indexable by position, each as ``Series.iat`` gives it (a numpy
    scalar of a numpy column, the extension array's value otherwise), without a lookup per cell."""
    return column.to_numpy() if isinstance(column.dtype, np.dtype) else column.array


def _machine_components(
    machine_row: Mapping, reports: pd.DataFrame, by_number: dict[str, int], latest: pd.DataFrame | None
) -> list[dict]:
    """Latest report of each compartment of one unit: from ``component_status`` when present."""
    comps = []
    raw = machine_row.get("component_status")
    if isinstance(raw, str) and raw.strip():
        breaches = _cells(reports["breached_essays"])
        water = _cells(reports["countPreventedByWater"]) if "countPreventedByWater" in reports else None
        for c in json.loads(raw):
            pos = by_number.get(str(c.get("sampleNumber")))
            comps.append(
                {
                    "component": c.get("component"),
                    "status": c.get("status"),
                    "severity_score": c.get("severity_score"),
                    "sample_date": c.get("sample_date"),
                    "breaches": breaches[pos] if pos is not None else "[]",
                    # Report fields the offline advisor reads besides the breaches.
                    "context": {"countPreventedByWater": water[pos]}
                    if pos is not None and water is not None
                    else {},
                }
            )
        return comps
    if latest is not None:
        for r in latest[latest["unitId"].astype(str) == str(machine_row.get("unitId"))].itertuples(
            index=False
        ):
            comps.append(
                {
                    "component": r.componentName,
                    "status": r.report_status,
                    "severity_score": r.severity_score,
                    "sample_date": r.sampleDate,
                    "breaches": r.breached_essays,
                }
            )
    return comps


def recommend_machines(
    machine_status: pd.DataFrame,
    reports: pd.DataFrame,
    storage: Storage | None,
    client: str,
    llm: LLM | None,
    catalog: Catalog | None = None,
    run_id: str = "no-run",
) -> tuple[pd.DataFrame, dict]:
    """Add a machine-level recommendation to every unit of ``machine_status``.

    Alerta/Anormal machines get a recommendation built from the latest report of each compartment
    (``component_status`` JSON joined to ``reports`` by sampleNumber; without it, the latest report
    per unit and componentName); Normal machines a fixed text. Adds ``MACHINE_COLUMNS``; the
    statistics are those of :func:`recommend_reports`.
    """
    catalog = catalog or load_catalog()
    status = machine_status["machine_status"].astype("string").fillna("Normal").to_numpy(dtype=object)
    flagged = np.flatnonzero(status != "Normal")
    normal = np.flatnonzero(status == "Normal")
    by_number = {str(n): i for i, n in enumerate(reports["sampleNumber"].astype(str).tolist())}
    latest = None
    if "component_status" not in machine_status:
        latest = reports.sort_values("sampleDate", kind="mergesort").drop_duplicates(
            ["unitId", "componentName"], keep="last"
        )
    rec = _records(machine_status, flagged)
    score = (
        pd.to_numeric(
            machine_status.get("machine_score", pd.Series(0.0, index=machine_status.index)), errors="coerce"
        )
        .fillna(0)
        .to_numpy(float)
    )
    items = []
    for i in flagged:
        i = int(i)
        row = rec[i]
        comps = _machine_components(row, reports, by_number, latest)
        items.append(
            _Item(
                row=i,
                subject=str(row.get("unitId")),
                inputs=prompts.machine_inputs(row, comps, catalog),
                offline=offline_machine_recommendation(str(status[i]), comps, catalog),
                priority=float(score[i]),
            )
        )
    advice, stats = _advise(items, "machine", storage, client, llm, run_id)
    out = _fill(machine_status, MACHINE_COLUMNS, NORMAL_MACHINE_TEXT, normal, advice)
    return out, _summary(stats, out["machine_ai_source"], len(out))
