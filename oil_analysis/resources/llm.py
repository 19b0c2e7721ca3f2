"""The LLM resource: which OpenAI-compatible endpoint writes the maintenance recommendations.

Empty fields fall back to the environment, then to the defaults below (same pattern as the storage
resource). No API key, or ``OIL_LLM_OFFLINE=true``, means the offline advisor: ``get_config()``
returns ``None``. Keep the key out of run config: leave ``api_key`` empty and set
``OPENAI_API_KEY`` in the environment.

| variable | default | field |
|---|---|---|
| ``OPENAI_API_KEY`` | (unset → offline) | api_key |
| ``OPENAI_BASE_URL`` | api.openai.com | base_url |
| ``OIL_LLM_OFFLINE`` | ``false`` | offline |
| ``OIL_LLM_MODEL`` | ``gpt-4o-mini`` | model |
| ``OIL_LLM_TEMPERATURE`` | ``0.2`` | temperature |
| ``OIL_LLM_MAX_TOKENS`` | ``400`` | max_tokens |
| ``OIL_LLM_TIMEOUT_S`` | ``30`` | request_timeout_s |
| ``OIL_LLM_CONCURRENCY`` | ``16`` | concurrency |
| ``OIL_LLM_MAX_RETRIES`` | ``4`` | max_retries |
| ``OIL_LLM_MAX_CALLS`` | ``5000`` (0: no cap) | max_calls_per_run |
"""

from __future__ import annotations

import os

from dagster import ConfigurableResource

from .llm_client import LLMConfig

TRUE = {"1", "true", "yes", "on"}
DEFAULTS = LLMConfig(api_key="")


def _env(name: str, cast, default):
    raw = os.environ.get(name, "").strip()
    return cast(raw) if raw else default


class LLMResource(ConfigurableResource):
    """OpenAI-compatible chat endpoint for recommendations; ``None`` fields read the environment."""

    api_key: str = ""
    base_url: str = ""
    offline: bool | None = None
    model: str = ""
    temperature: float | None = None
    max_tokens: int | None = None
    request_timeout_s: float | None = None
    concurrency: int | None = None
    max_retries: int | None = None
    max_calls_per_run: int | None = None

    def get_config(self) -> LLMConfig | None:
        """The endpoint's settings, or ``None`` for the offline advisor (no key, or offline set)."""
        offline = (
            self.offline
            if self.offline is not None
            else _env("OIL_LLM_OFFLINE", lambda v: v.lower() in TRUE, False)
        )
        key = self.api_key or os.environ.get("OPENAI_API_KEY", "").strip()
        if offline or not key:
            return None

        def pick(value, env: str, cast, default):
            return value if value is not None else _env(env, cast, default)

        max_calls = pick(self.max_calls_per_run, "OIL_LLM_MAX_CALLS", int, DEFAULTS.max_calls)
        return LLMConfig(
            api_key=key,
            base_url=self.base_url or os.environ.get("OPENAI_BASE_URL", "").strip() or None,
            model=self.model or _env("OIL_LLM_MODEL", str, DEFAULTS.model),
            temperature=pick(self.temperature, "OIL_LLM_TEMPERATURE", float, DEFAULTS.temperature),
            max_tokens=pick(self.max_tokens, "OIL_LLM_MAX_TOKENS", int, DEFAULTS.max_tokens),
            timeout_s=pick(self.request_timeout_s, "OIL_LLM_TIMEOUT_S", float, DEFAULTS.timeout_s),
            concurrency=pick(self.concurrency, "OIL_LLM_CONCURRENCY", int, DEFAULTS.concurrency),
            max_retries=pick(self.max_retries, "OIL_LLM_MAX_RETRIES", int, DEFAULTS.max_retries),
            max_calls=max_calls if max_calls and max_calls > 0 else None,
        )
