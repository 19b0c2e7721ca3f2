"""The LLM resource: which OpenAI-compatible endpoint writes the maintenance recommendations.

Empty fields take the settings (``oil_analysis/settings.py``; same pattern as the storage
resource). No API key, or ``OIL_LLM_OFFLINE=true``, means the offline advisor: ``get_config()``
returns ``None``. Keep the key out of run config: leave ``api_key`` empty and set
``OPENAI_API_KEY`` in the environment.

The variables, their defaults and descriptions: ``Settings`` (``llm_*`` and ``openai_*`` fields).
"""

from __future__ import annotations

from dagster import ConfigurableResource

from ..settings import get_settings
from .effective import ShowsEffectiveConfig
from .llm_client import LLMConfig


class LLMResource(ShowsEffectiveConfig, ConfigurableResource):
    """OpenAI-compatible chat endpoint for recommendations; empty fields take the settings."""

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
        s = get_settings()
        offline = self.offline if self.offline is not None else s.llm_offline
        key = self.api_key or (s.openai_api_key.get_secret_value() if s.openai_api_key else "")
        if offline or not key:
            return None

        def pick(value, default):
            return value if value is not None else default

        max_calls = pick(self.max_calls_per_run, s.llm_max_calls)
        return LLMConfig(
            api_key=key,
            base_url=self.base_url or s.openai_base_url,
            model=self.model or s.llm_model,
            temperature=pick(self.temperature, s.llm_temperature),
            max_tokens=pick(self.max_tokens, s.llm_max_tokens),
            timeout_s=pick(self.request_timeout_s, s.llm_timeout_s),
            concurrency=pick(self.concurrency, s.llm_concurrency),
            max_retries=pick(self.max_retries, s.llm_max_retries),
            max_calls=max_calls if max_calls and max_calls > 0 else None,
        )

    def effective_config(self) -> dict[str, str]:
        """The advisor in use and, for the LLM one, its endpoint settings (the key masked)."""
        config = self.get_config()
        if config is None:
            return {"advisor": "offline (no OPENAI_API_KEY, or OIL_LLM_OFFLINE=true)"}
        return {
            "advisor": "LLM",
            "api_key": "***",
            "base_url": config.base_url or "api.openai.com",
            "model": config.model,
            "temperature": f"{config.temperature:g}",
            "max_tokens": str(config.max_tokens),
            "timeout_s": f"{config.timeout_s:g}",
            "concurrency": str(config.concurrency),
            "max_retries": str(config.max_retries),
            "max_calls": str(config.max_calls or "no cap"),
        }
