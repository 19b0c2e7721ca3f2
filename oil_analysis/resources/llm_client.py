"""The LLM client and runner: an OpenAI-compatible chat endpoint, called concurrently (no dagster).

Calls run concurrently on ``openai.AsyncOpenAI`` behind a semaphore; the client's own retries are
off (``max_retries=0``) so the retry policy below is the only one: exponential backoff with jitter
on 429, 408/409, 5xx, timeouts and connection errors, never shorter than the server's
``Retry-After``. An outage never raises: after ``breaker_after`` requests in a row fail (429s aside), the
rest of the run skips the endpoint (``CircuitOpen``).

The advice step (:mod:`oil_analysis.pipeline.advice`) reaches the endpoint only through
:meth:`LLMConfig.complete` and :meth:`LLMConfig.cost`: it never imports this module, which sits in a
higher layer; :class:`~oil_analysis.resources.llm.LLMResource` builds the :class:`LLMConfig`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..pipeline.advice import CallCapReached, CallResult

if TYPE_CHECKING:
    import openai

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

    def complete(self, tasks: list[tuple[str, list[dict]]]) -> tuple[dict[str, CallResult], _CallStats]:
        """One run's prompts (key, chat messages), sent concurrently: a result per key (text or the
        error class, never raised) and the run's counters."""
        runner = _Runner(self)
        return _run_sync(runner.run(tasks)), runner.stats

    def cost(self, tokens_in: int, tokens_out: int) -> float | None:
        """Estimated USD of the tokens with this model (:func:`estimate_cost`)."""
        return estimate_cost(self.model, tokens_in, tokens_out)


def estimate_cost(model: str, tokens_in: int, tokens_out: int) -> float | None:
    """Estimated USD of the tokens at list price (longest matching model prefix); ``None`` if unknown."""
    match = max((m for m in MODEL_PRICES if model == m or model.startswith(m + "-")), key=len, default=None)
    if match is None:
        return None
    price_in, price_out = MODEL_PRICES[match]
    return round((tokens_in * price_in + tokens_out * price_out) / 1e6, 6)


# -- calling the endpoint -------------------------------------------------------------------------


class MalformedResponse(Exception):
    """The endpoint answered 2xx but not with a usable chat completion."""


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
    ) -> CallResult:
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
                    return CallResult(
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

    async def run(self, tasks: list[tuple[str, list[dict]]]) -> dict[str, CallResult]:
        import openai

        client = openai.AsyncOpenAI(
            api_key=self.llm.api_key, base_url=self.llm.base_url, max_retries=0, timeout=self.llm.timeout_s
        )
        sem = asyncio.Semaphore(max(1, self.llm.concurrency))

        async def one(key: str, messages: list[dict]) -> tuple[str, CallResult]:
            try:
                result = await self._complete(client, sem, messages)
            except Exception as e:  # an outage or a bug in one call must not fail the run
                self.stats.errors[type(e).__name__] += 1
                return key, CallResult(
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
