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

Calls run concurrently on ``openai.AsyncOpenAI`` behind a semaphore; the client's own retries are
off (``max_retries=0``) so the retry policy below is the only one: exponential backoff with jitter
on 429, 408/409, 5xx, timeouts and connection errors, never shorter than the server's
``Retry-After``. An outage never raises: after ``breaker_after`` requests in a row fail (429s aside), the
rest of the run skips the endpoint (``CircuitOpen``).

Cache layout (same on local disk and S3, through ``Storage``)::

    gold/{client}/_ai_cache/shard-{utc stamp}-{token}.parquet

Each run that generated something appends one shard with the new entries only; when more than
``MAX_SHARDS`` shards exist they are compacted into one. Failures are never cached, so a later run
retries them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import hashlib
import json
import random
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

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
from ..storage.filesystem import Storage, new_run_token

if TYPE_CHECKING:
    import openai

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

# USD per million tokens (input, output), list prices; a model not listed has no cost estimate.
MODEL_PRICES = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5": (1.25, 10.00),
}


@dataclass(frozen=True)
class LLMConfig:
    """How to reach an OpenAI-compatible chat-completions endpoint, and how hard to try."""

    api_key: str
    base_url: str | None = None  # None: api.openai.com
    model: str = "gpt-4o-mini"
    temperature: float = 0.2
    max_tokens: int = 400
    timeout_s: float = 30.0  # per request
    concurrency: int = 16  # requests in flight
    max_retries: int = 4  # retries per prompt after the first attempt
    max_calls: int | None = 5000  # requests per run, retries included; None: no cap
    backoff_base_s: float = 0.5
    backoff_max_s: float = 20.0
    max_retry_after_s: float = 60.0  # a longer Retry-After gives up on the prompt (fallback)
    breaker_after: int = 20  # requests failing in a row (429 aside) that stop calls for the rest of the run


def estimate_cost(model: str, tokens_in: int, tokens_out: int) -> float | None:
    """Estimated USD of the tokens at list price (longest matching model prefix); ``None`` if unknown."""
    match = max((m for m in MODEL_PRICES if model == m or model.startswith(m + "-")), key=len, default=None)
    if match is None:
        return None
    price_in, price_out = MODEL_PRICES[match]
    return round((tokens_in * price_in + tokens_out * price_out) / 1e6, 6)


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


# -- cache ----------------------------------------------------------------------------------------

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


def cache_dir(client: str) -> str:
    return f"gold/{client}/_ai_cache"


class AICache:
    """Generated texts by cache key, in parquet shards under ``gold/{client}/_ai_cache/``."""

    def __init__(self, storage: Storage | None, client: str) -> None:
        self.storage, self.prefix = storage, cache_dir(client)
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
        """Write the new entries as one shard; compact when shards pile up."""
        if self.storage is None or not rows:
            return
        new = pd.DataFrame(rows, columns=CACHE_COLUMNS)
        new["generated_at"] = pd.to_datetime(new["generated_at"]).astype("datetime64[us]")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        self.storage.write_parquet(f"{self.prefix}/shard-{stamp}-{new_run_token()}.parquet", new)
        self._entries = None
        shards = self._shards()
        if len(shards) > MAX_SHARDS:
            merged = self.entries().reset_index(drop=True)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
            self.storage.write_parquet(f"{self.prefix}/shard-{stamp}-{new_run_token()}.parquet", merged)
            for old in shards:  # readers in between see duplicates, which they drop
                self.storage.delete(old)
            self._entries = None


# -- calling the endpoint -------------------------------------------------------------------------


class MalformedResponse(Exception):
    """The endpoint answered 2xx but not with a usable chat completion."""


class CallCapReached(Exception):
    """The run's request budget (``max_calls``) is spent."""


class CircuitOpen(Exception):
    """Too many prompts failed in a row: the endpoint is not called again in this run."""


def _retryable(err: Exception) -> bool:
    # openai is imported where it is used: an offline run (and the code location) never loads it.
    import openai

    retryable = (
        openai.RateLimitError,
        openai.InternalServerError,
        openai.APITimeoutError,
        openai.APIConnectionError,
        openai.ConflictError,
    )
    if isinstance(err, retryable):
        return True
    return isinstance(err, openai.APIStatusError) and (
        err.status_code in (408, 409) or err.status_code >= 500
    )


def retry_after_s(err: Exception) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` or ``Retry-After``: seconds or date)."""
    response = getattr(err, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max((when - datetime.now(when.tzinfo or UTC)).total_seconds(), 0.0)


def retry_delay(err: Exception, attempt: int, llm: LLMConfig, rng: random.Random) -> float | None:
    """Exponential backoff with jitter (``base·2^attempt``, capped, × 0.5–1), never shorter than
    ``Retry-After``; ``None`` when the server asks for more than ``max_retry_after_s``."""
    backoff = min(llm.backoff_max_s, llm.backoff_base_s * 2**attempt) * (0.5 + rng.random() / 2)
    asked = retry_after_s(err)
    if asked is None:
        return backoff
    if asked > llm.max_retry_after_s:
        return None
    return max(asked, backoff)


@dataclass
class _Result:
    text: str | None = None
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    generated_at: datetime | None = None


@dataclass
class _CallStats:
    requests: int = 0
    prompts: int = 0
    retries: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    errors: Counter = field(default_factory=Counter)


def _classify(e: Exception) -> Exception:
    """The SDK's exception, or :class:`MalformedResponse` for a 2xx body that is not a completion."""
    import openai

    if isinstance(e, openai.APIResponseValidationError):
        return MalformedResponse("validation")
    if isinstance(e, openai.OpenAIError | MalformedResponse):
        return e
    if isinstance(e, ValueError | TypeError | AttributeError | KeyError):  # a body that is not JSON
        return MalformedResponse(type(e).__name__)
    return e


def _parse(resp) -> tuple[str, int, int]:
    try:
        text = resp.choices[0].message.content
        usage = getattr(resp, "usage", None)
        tin = int(getattr(usage, "prompt_tokens", 0) or 0)
        tout = int(getattr(usage, "completion_tokens", 0) or 0)
    except Exception as e:  # any shape the SDK could not build a completion from
        raise MalformedResponse(type(e).__name__) from e
    if not isinstance(text, str) or not text.strip():
        raise MalformedResponse("empty content")
    return text.strip(), tin, tout


class _Runner:
    """One run's concurrent calls: semaphore, request budget, circuit breaker, counters."""

    def __init__(self, llm: LLMConfig) -> None:
        self.llm = llm
        self.stats = _CallStats()
        self.budget = llm.max_calls if llm.max_calls is not None else float("inf")
        self.failures_in_row = 0
        self.rng = random.Random()

    @property
    def open(self) -> bool:
        return self.failures_in_row >= self.llm.breaker_after

    async def _complete(
        self, client: openai.AsyncOpenAI, sem: asyncio.Semaphore, messages: list[dict]
    ) -> _Result:
        import openai

        llm, attempt, err = self.llm, 0, None
        while True:
            async with sem:
                # A prompt already tried reports its own last error rather than the run's state.
                if self.open:
                    raise err or CircuitOpen()
                if self.budget <= 0:
                    raise err or CallCapReached()
                self.budget -= 1
                self.stats.requests += 1
                self.stats.prompts += attempt == 0
                self.stats.retries += attempt > 0
                try:
                    resp = await client.chat.completions.create(
                        model=llm.model,
                        messages=messages,
                        temperature=llm.temperature,
                        max_tokens=llm.max_tokens,
                    )
                    text, tin, tout = _parse(resp)
                except Exception as e:
                    err = _classify(e)
                    # 429 asks us to slow down, it is not an outage: it neither opens nor resets the circuit.
                    if not isinstance(err, openai.RateLimitError):
                        self.failures_in_row += 1
                    if not _retryable(err):
                        if err is e:
                            raise
                        raise err from e
                else:
                    self.failures_in_row = 0
                    return _Result(
                        text=text,
                        tokens_in=tin,
                        tokens_out=tout,
                        generated_at=datetime.now(UTC).replace(tzinfo=None),
                    )
            # Sleep outside the semaphore: a waiting prompt does not hold a slot.
            delay = retry_delay(err, attempt, llm, self.rng) if attempt < llm.max_retries else None
            if delay is None:
                raise err
            attempt += 1
            await asyncio.sleep(delay)

    async def run(self, tasks: list[tuple[str, list[dict]]]) -> dict[str, _Result]:
        import openai

        client = openai.AsyncOpenAI(
            api_key=self.llm.api_key, base_url=self.llm.base_url, max_retries=0, timeout=self.llm.timeout_s
        )
        sem = asyncio.Semaphore(max(1, self.llm.concurrency))

        async def one(key: str, messages: list[dict]) -> tuple[str, _Result]:
            try:
                result = await self._complete(client, sem, messages)
            except Exception as e:  # an outage or a bug in one call must not fail the run
                self.stats.errors[type(e).__name__] += 1
                return key, _Result(
                    error=type(e).__name__, generated_at=datetime.now(UTC).replace(tzinfo=None)
                )
            self.stats.tokens_in += result.tokens_in
            self.stats.tokens_out += result.tokens_out
            return key, result

        try:
            done = await asyncio.gather(*(one(k, m) for k, m in tasks))
        finally:
            await client.close()
        return dict(done)


def _run_sync(coro):
    """Run a coroutine from sync code, also when the calling thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


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
    items: list[_Item], kind: str, storage: Storage | None, client: str, llm: LLMConfig | None
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
        stats["estimated_cost_usd"] = 0.0 if llm is None else estimate_cost(llm.model, 0, 0)
        stats["elapsed_s"] = round(time.perf_counter() - t0, 3)
        return out, stats

    keys = {it.row: cache_key(kind, it.inputs, llm.model, llm.temperature) for it in items}
    cache = AICache(storage, client)
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
    results: dict[str, _Result] = {}
    if chosen:
        runner = _Runner(llm)
        tasks = [(k, prompts.messages(_render(kind, it.inputs), kind)) for k, it in chosen]
        results = _run_sync(runner.run(tasks))
        cs = runner.stats
        stats.update(
            calls=cs.requests,
            prompts_sent=cs.prompts,
            retries=cs.retries,
            tokens_in=cs.tokens_in,
            tokens_out=cs.tokens_out,
        )
        stats["errors"] = dict(cs.errors)
    for k, _it in list(pending.items())[cap:]:
        results[k] = _Result(
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
    cost = estimate_cost(llm.model, stats["tokens_in"], stats["tokens_out"])
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


def _records(frame: pd.DataFrame, rows) -> dict[int, dict]:
    rows = sorted(set(int(r) for r in rows))
    return dict(zip(rows, frame.iloc[rows].to_dict("records"), strict=True))


# -- public API -----------------------------------------------------------------------------------


def recommend_reports(
    reports: pd.DataFrame,
    storage: Storage | None,
    client: str,
    llm: LLMConfig | None,
    catalog: Catalog | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Add a maintenance recommendation to every classified report.

    Returns the frame (same rows, same order) with ``REPORT_COLUMNS`` added, and run statistics
    (``sources`` counts, ``calls`` = requests sent incl. retries, ``prompts_sent``, ``cache_hits``,
    ``retries``, ``fallbacks``, ``errors`` by class, ``tokens_in``/``tokens_out``,
    ``estimated_cost_usd``, ``elapsed_s``). ``storage=None`` disables the cache; ``llm=None`` uses
    the offline advisor. Never raises because of the LLM endpoint.
    """
    catalog = catalog or load_catalog()
    status = reports["report_status"].astype("string").fillna("Normal").to_numpy(dtype=object)
    flagged = np.flatnonzero(status != "Normal")
    normal = np.flatnonzero(status == "Normal")
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
    advice, stats = _advise(items, "report", storage, client, llm)
    out = _fill(reports, REPORT_COLUMNS, NORMAL_REPORT_TEXT, normal, advice)
    return out, _summary(stats, out["ai_source"], len(out))


def _context(reports: pd.DataFrame, pos: int | None) -> dict:
    """Report fields the offline advisor reads besides the breaches."""
    if pos is None or "countPreventedByWater" not in reports:
        return {}
    return {"countPreventedByWater": reports["countPreventedByWater"].iat[pos]}


def _machine_components(
    machine_row: Mapping, reports: pd.DataFrame, by_number: dict[str, int], latest: pd.DataFrame | None
) -> list[dict]:
    """Latest report of each compartment of one unit: from ``component_status`` when present."""
    comps = []
    raw = machine_row.get("component_status")
    if isinstance(raw, str) and raw.strip():
        for c in json.loads(raw):
            pos = by_number.get(str(c.get("sampleNumber")))
            comps.append(
                {
                    "component": c.get("component"),
                    "status": c.get("status"),
                    "severity_score": c.get("severity_score"),
                    "sample_date": c.get("sample_date"),
                    "breaches": reports["breached_essays"].iat[pos] if pos is not None else "[]",
                    "context": _context(reports, pos),
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
    llm: LLMConfig | None,
    catalog: Catalog | None = None,
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
    by_number = {str(n): i for i, n in enumerate(reports["sampleNumber"].astype(str))}
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
    advice, stats = _advise(items, "machine", storage, client, llm)
    out = _fill(machine_status, MACHINE_COLUMNS, NORMAL_MACHINE_TEXT, normal, advice)
    return out, _summary(stats, out["machine_ai_source"], len(out))
