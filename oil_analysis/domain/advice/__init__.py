"""Maintenance advice: the LLM prompts and the offline (rule-based) advisor. Pure, no dagster."""

from .offline import (
    NORMAL_MACHINE_TEXT,
    NORMAL_REPORT_TEXT,
    OFFLINE_MODEL,
    OFFLINE_VERSION,
    offline_machine_recommendation,
    offline_recommendation,
    parse_breaches,
)
from .prompts import (
    FEW_SHOTS,
    PROMPT_VERSION,
    SYSTEM_PROMPT,
    build_user_prompt,
    machine_inputs,
    messages,
    render_machine_prompt,
    render_report_prompt,
    report_inputs,
)

__all__ = [
    "FEW_SHOTS",
    "NORMAL_MACHINE_TEXT",
    "NORMAL_REPORT_TEXT",
    "OFFLINE_MODEL",
    "OFFLINE_VERSION",
    "PROMPT_VERSION",
    "SYSTEM_PROMPT",
    "build_user_prompt",
    "machine_inputs",
    "messages",
    "offline_machine_recommendation",
    "offline_recommendation",
    "parse_breaches",
    "render_machine_prompt",
    "render_report_prompt",
    "report_inputs",
]
