"""Which environment a process runs in (``OIL_ENV``), and the one place where each environment's
defaults live.

``OIL_ENV`` is ``dev`` (default), ``staging`` or ``prod``. A variable takes its value from the first
of these layers that sets it:

1. the process environment (``export VAR=…``, a container's ``environment:``, a Kubernetes secret);
2. the env file: ``OIL_ENV_FILE`` when set (it must exist), else ``.env`` in the working directory
   when present (python-dotenv syntax, the parser Dagster uses for ``.env``);
3. the defaults of the environment (``ENVIRONMENTS``);
4. the default of the code that reads the variable (listed in ``.env.example``).

``USE_S3`` and ``STORAGE_MODE`` decide one thing together, so both come from the highest layer that
sets either: ``STORAGE_MODE=dual`` in an env file is never combined with the prod default
``USE_S3=true``.

``settings.get_settings()`` resolves the layers at every call. Modules that read ``os.environ``
directly (LLM resource, sensors, clients registry) see the same values because ``export()`` copies
the env file and environment defaults into ``os.environ`` once, for variables the process does not
set. Dagster's instance configuration (``DAGSTER_PG_*``…) is read by Dagster from the process
environment only. Run ``python -m oil_analysis.environments`` to see each value and its layer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

ENV_VAR = "OIL_ENV"
FILE_VAR = "OIL_ENV_FILE"
DEFAULT_ENVIRONMENT = "dev"
DEFAULT_FILE = ".env"
GROUPS: tuple[frozenset[str], ...] = (frozenset({"USE_S3", "STORAGE_MODE"}),)
SECRET_MARKERS = ("SECRET", "PASSWORD", "TOKEN", "API_KEY", "ACCESS_KEY", "WEBHOOK_URL")
BUILTIN = "built-in default"

# Every variable the product, its Dagster instance or its deploy files read, with the default of the
# code that reads it ("" = unset). The same list, commented, is .env.example (a test keeps them equal);
# it lives here too because the image ships the package, not the repository's dotfiles.
BUILTIN_DEFAULTS: dict[str, str] = {
    "OIL_ENV": "dev",
    "OIL_ENV_FILE": "",
    "OIL_DATA_ROOT": "./data",
    "USE_S3": "false",
    "STORAGE_MODE": "",
    "S3_BUCKET": "mining-data-mesh",
    "S3_PREFIX": "oil-analysis",
    "AWS_REGION": "us-east-1",
    "AWS_ENDPOINT_URL": "",
    "LEGACY_EXPORTS": "false",
    "AWS_ACCESS_KEY_ID": "",
    "AWS_SECRET_ACCESS_KEY": "",
    "AWS_SESSION_TOKEN": "",
    "AWS_PROFILE": "",
    "AWS_SHARED_CREDENTIALS_FILE": "",
    "AWS_CONFIG_FILE": "",
    "AWS_ROLE_ARN": "",
    "AWS_WEB_IDENTITY_TOKEN_FILE": "",
    "OIL_CLIENTS_FILE": "",
    "OIL_MAX_RAW_FILE_MB": "200",
    "OIL_MAX_SHEET_XML_MB": "256",
    "OIL_MAX_SHEET_CELLS": "5000000",
    "OIL_PARSER_MEMORY_MB": "1024",
    "OIL_MIN_SAMPLE_DATE": "1990-01-01",
    "OIL_FRESHNESS_DAYS": "40",
    "OIL_REPORT_DATE": "",
    "OIL_LIMITS_GROWTH": "0.10",
    "OIL_LIMITS_KS_ALPHA": "0.01",
    "OIL_LIMITS_KS_MIN_SAMPLES": "30",
    "OIL_LIMITS_KS_MIN_EFFECT": "0.25",
    "OIL_LIMITS_MAX_AGE_DAYS": "7",
    "OIL_SENSORS_RUNNING": "false",
    "OIL_SENSOR_MAX_KEYS": "20000",
    "OIL_SENSOR_MAX_RUNS": "10",
    "OIL_SENSOR_MAX_FILES_PER_RUN": "500",
    "OIL_SENSOR_INTERVAL_S": "15",
    "OIL_SCHEDULES_RUNNING": "false",
    "OIL_LIMITS_REFRESH_CRON": "0 6 * * 1",
    "OPENAI_API_KEY": "",
    "OPENAI_BASE_URL": "",
    "OIL_LLM_OFFLINE": "false",
    "OIL_LLM_MODEL": "gpt-4o-mini",
    "OIL_LLM_TEMPERATURE": "0.2",
    "OIL_LLM_MAX_TOKENS": "400",
    "OIL_LLM_TIMEOUT_S": "30",
    "OIL_LLM_CONCURRENCY": "16",
    "OIL_LLM_MAX_RETRIES": "4",
    "OIL_LLM_MAX_CALLS": "5000",
    "NOTIFY_SNS_TOPIC_ARN": "",
    "AWS_ENDPOINT_URL_SNS": "",
    "OIL_API_HOST": "127.0.0.1",
    "OIL_API_PORT": "8000",
    "OIL_API_KEYS_FILE": "",
    "OIL_API_REFRESH_S": "5",
    "OIL_ALERT_WEBHOOK_URL": "",
    "DAGSTER_HOME": ".dagster_home",
    "DAGSTER_PG_HOST": "postgres",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_USER": "dagster",
    "DAGSTER_PG_PASSWORD": "",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_COMPUTE_LOGS_BUCKET": "",
    "DAGSTER_COMPUTE_LOGS_PREFIX": "dagster/compute-logs",
    "DAGSTER_MAX_CONCURRENT_RUNS": "4",
    "OIL_IMAGE": "oil-analysis:latest",
    "DAGSTER_WEBSERVER_PORT": "3000",
}


@dataclass(frozen=True)
class Environment:
    name: str
    description: str
    instance_yaml: str  # the Dagster instance config it runs with, relative to the repository
    defaults: Mapping[str, str] = field(default_factory=dict)


ENVIRONMENTS: dict[str, Environment] = {
    e.name: e
    for e in (
        Environment(
            "dev",
            "one machine: SQLite instance, local disk, LLM advisor only with OPENAI_API_KEY, "
            "sensors and schedules stopped",
            "dagster.yaml",
            {
                "OIL_DATA_ROOT": "./data",
                "USE_S3": "false",
                "OIL_SENSORS_RUNNING": "false",
                "OIL_SCHEDULES_RUNNING": "false",
            },
        ),
        Environment(
            "staging",
            "the production shape on its own bucket: PostgreSQL instance, S3, capped LLM calls",
            "deploy/dagster.prod.yaml",
            {
                "USE_S3": "true",
                "S3_BUCKET": "mining-data-mesh-staging",
                "S3_PREFIX": "oil-analysis",
                "OIL_LLM_MAX_CALLS": "500",
                "OIL_SENSORS_RUNNING": "true",
                "OIL_SCHEDULES_RUNNING": "true",
            },
        ),
        Environment(
            "prod",
            "PostgreSQL instance, S3, LLM advisor when OPENAI_API_KEY is set, sensors and schedules running",
            "deploy/dagster.prod.yaml",
            {
                "USE_S3": "true",
                "S3_BUCKET": "mining-data-mesh",
                "S3_PREFIX": "oil-analysis",
                "OIL_SENSORS_RUNNING": "true",
                "OIL_SCHEDULES_RUNNING": "true",
            },
        ),
    )
}

# Values export() put into os.environ: they are not the process's own, so a later resolution (a test
# that switches OIL_ENV) takes them from their real layer again.
_EXPORTED: dict[str, str] = {}


@dataclass(frozen=True)
class Resolved:
    """The effective variables of one resolution and the layer each came from."""

    environment: Environment
    env_file: Path | None
    values: dict[str, str]
    sources: dict[str, str]


def read_env_file(path: str | Path) -> dict[str, str]:
    """``KEY=value`` lines of an env file (comments, quotes and ``export`` handled by python-dotenv)."""
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _env_file(environ: Mapping[str, str], cwd: str | Path | None) -> Path | None:
    named = environ.get(FILE_VAR, "").strip()
    if named:
        path = Path(named)
        if not path.is_file():
            raise FileNotFoundError(f"{FILE_VAR}={named}: no such file")
        return path
    path = Path(cwd or os.getcwd()) / DEFAULT_FILE
    return path if path.is_file() else None


def _group(name: str) -> frozenset[str] | None:
    return next((g for g in GROUPS if name in g), None)


def resolve(environ: Mapping[str, str] | None = None, cwd: str | Path | None = None) -> Resolved:
    """Layer the process environment, the env file and the environment's defaults (first wins).

    ``environ`` defaults to ``os.environ`` (minus what ``export()`` put there); ``cwd`` is where
    ``.env`` is looked for (default: the working directory).
    """
    if environ is None:
        environ = {k: v for k, v in os.environ.items() if _EXPORTED.get(k) != v}
    env_file = _env_file(environ, cwd)
    from_file = read_env_file(env_file) if env_file else {}
    name = (environ.get(ENV_VAR) or from_file.get(ENV_VAR) or DEFAULT_ENVIRONMENT).strip().lower()
    if name not in ENVIRONMENTS:
        raise ValueError(f"{ENV_VAR}={name!r}: expected one of {', '.join(ENVIRONMENTS)}")
    env = ENVIRONMENTS[name]
    layers = (
        ("environment variable", environ),
        (f"env file {env_file}", from_file),
        (f"{name} defaults", {**env.defaults, ENV_VAR: name}),
    )
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    group_layer: dict[frozenset[str], str] = {}
    for label, layer in layers:
        for key, value in layer.items():
            group = _group(key)
            if key in values or (group and group_layer.setdefault(group, label) != label):
                continue
            values[key], sources[key] = value, label
    return Resolved(env, env_file, values, sources)


def export() -> dict[str, str]:
    """Copy the env file and environment defaults into ``os.environ`` for every variable the process
    does not set, so code reading ``os.environ`` directly follows the same order. Idempotent."""
    added = {}
    for key, value in resolve().values.items():
        if key not in os.environ:
            os.environ[key] = added[key] = value
    _EXPORTED.update(added)
    return added


def exported() -> dict[str, str]:
    """What ``export()`` added to ``os.environ`` (to leave out of a child process's environment)."""
    return {k: v for k, v in os.environ.items() if _EXPORTED.get(k) == v}


def is_secret(name: str) -> bool:
    """Whether a variable holds a secret (whole ``_``-separated words: ``OIL_LLM_MAX_TOKENS`` is not)."""
    padded = f"_{name}_"
    return any(f"_{marker}_" in padded for marker in SECRET_MARKERS)


def effective(resolved: Resolved | None = None) -> list[tuple[str, str, str]]:
    """``(name, value, layer)`` of every variable: the known ones (``BUILTIN_DEFAULTS``), the ones the
    environment or the env file set. Layers: ``environment variable``, ``env file …``,
    ``{env} defaults`` (of ``OIL_ENV``), ``built-in default``. Values are not masked here."""
    r = resolved or resolve()
    names = set(BUILTIN_DEFAULTS) | {n for e in ENVIRONMENTS.values() for n in e.defaults}
    names |= {n for n in r.values if n in names or r.sources[n] != "environment variable"}
    rows = []
    for n in sorted(names):
        if n in r.values:
            rows.append((n, r.values[n], r.sources[n]))
        else:
            rows.append((n, BUILTIN_DEFAULTS.get(n, ""), BUILTIN))
    return rows


def describe(resolved: Resolved | None = None) -> list[str]:
    """One line per variable: its effective value (secrets masked, ``(unset)`` when empty) and the
    layer it came from."""
    r = resolved or resolve()
    lines = [f"environment {r.environment.name}: {r.environment.description}"]
    lines.append(f"instance    {r.environment.instance_yaml}")
    lines.append(f"env file    {r.env_file or '(none)'}")
    for name, value, layer in effective(r):
        shown = "***" if is_secret(name) and value else (value or "(unset)")
        lines.append(f"{name:<30} {shown:<32} {layer}")
    return lines


if __name__ == "__main__":
    # Run as ``python -m``, this file is a second copy of the module; the package already imported
    # (and exported) the real one, which knows which variables export() added.
    from oil_analysis import environments as loaded

    print("\n".join(loaded.describe()))
