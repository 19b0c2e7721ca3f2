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
SECRET_MARKERS = ("SECRET", "PASSWORD", "TOKEN", "API_KEY", "ACCESS_KEY")


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
            "one machine: SQLite instance, local disk, offline advisor, sensors stopped",
            "dagster.yaml",
            {
                "OIL_DATA_ROOT": "./data",
                "USE_S3": "false",
                "OIL_LLM_OFFLINE": "true",
                "OIL_SENSORS_RUNNING": "false",
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
                "OIL_LLM_OFFLINE": "false",
                "OIL_LLM_MAX_CALLS": "500",
                "OIL_SENSORS_RUNNING": "true",
            },
        ),
        Environment(
            "prod",
            "PostgreSQL instance, S3, LLM advisor when OPENAI_API_KEY is set, sensors running",
            "deploy/dagster.prod.yaml",
            {
                "USE_S3": "true",
                "S3_BUCKET": "mining-data-mesh",
                "S3_PREFIX": "oil-analysis",
                "OIL_LLM_OFFLINE": "false",
                "OIL_SENSORS_RUNNING": "true",
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
    return any(marker in name for marker in SECRET_MARKERS)


def describe(resolved: Resolved | None = None) -> list[str]:
    """One line per variable the environment or the env file sets: value (secrets masked) and layer."""
    r = resolved or resolve()
    names = {n for e in ENVIRONMENTS.values() for n in e.defaults} | {ENV_VAR, FILE_VAR, *GROUPS[0]}
    if r.env_file:
        names |= set(read_env_file(r.env_file))
    lines = [f"environment {r.environment.name}: {r.environment.description}"]
    lines.append(f"instance    {r.environment.instance_yaml}")
    for n in sorted(names):
        if n in r.values:
            shown = "***" if is_secret(n) and r.values[n] else r.values[n]
            lines.append(f"{n:<24} {shown:<32} {r.sources[n]}")
        else:
            lines.append(f"{n:<24} {'(unset: code default)':<32}")
    return lines


if __name__ == "__main__":
    print("\n".join(describe()))
