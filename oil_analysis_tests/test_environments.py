"""OIL_ENV environments and the override order (process environment > env file > environment defaults >
declared default); one typed settings object is the only reader of the environment; every variable
is declared once and listed in .env.example and the docs."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml

from oil_analysis import settings as environments
from oil_analysis.settings import ENVIRONMENTS, EXTERNAL, Settings, get_settings, resolve

from .conftest import REPO

PACKAGE = REPO / "oil_analysis"
ENV_EXAMPLE = REPO / ".env.example"
DOCS = (REPO / "README.md", REPO / "docs" / "DEPLOYMENT.md")
DEPLOY_YAML = (REPO / "deploy" / "dagster.prod.yaml",)
COMPOSE = REPO / "deploy" / "docker-compose.yaml"


# -- the override order -------------------------------------------------------------------------


def test_dev_is_the_default_with_its_defaults(tmp_path):
    r = resolve({}, cwd=tmp_path)
    assert r.environment.name == "dev" and r.env_file is None
    assert r.environment.instance_yaml == "dagster.yaml"
    for name, value in ENVIRONMENTS["dev"].defaults.items():
        assert (r.values[name], r.sources[name]) == (value, "dev defaults")
    assert r.values["USE_S3"] == "false" and r.values["OIL_SCHEDULES_RUNNING"] == "false"
    # A key means the LLM advisor in dev too: no environment forces the offline advisor.
    assert all("OIL_LLM_OFFLINE" not in e.defaults for e in ENVIRONMENTS.values())


def test_environment_variable_beats_env_file_beats_environment_defaults(tmp_path):
    (tmp_path / ".env").write_text(
        "# a comment\nOIL_ENV=prod\nS3_BUCKET=from-file\nexport OIL_LLM_MODEL='file-model'\nOIL_SENSORS_RUNNING=false\n"
    )
    r = resolve({"S3_BUCKET": "from-env"}, cwd=tmp_path)
    assert r.environment.name == "prod"
    assert r.env_file == tmp_path / ".env"
    label = f"env file {tmp_path / '.env'}"
    assert (r.values["S3_BUCKET"], r.sources["S3_BUCKET"]) == ("from-env", "environment variable")
    assert (r.values["OIL_LLM_MODEL"], r.sources["OIL_LLM_MODEL"]) == ("file-model", label)
    assert (r.values["OIL_SENSORS_RUNNING"], r.sources["OIL_SENSORS_RUNNING"]) == ("false", label)
    assert (r.values["USE_S3"], r.sources["USE_S3"]) == ("true", "prod defaults")
    assert (r.values["OIL_ENV"], r.sources["OIL_ENV"]) == ("prod", label)
    # OIL_ENV itself follows the same order.
    assert resolve({"OIL_ENV": "staging"}, cwd=tmp_path).values["S3_BUCKET"] == "from-file"
    assert resolve({"OIL_ENV": "staging"}, cwd=tmp_path).environment.name == "staging"


def test_oil_env_file_names_the_file_and_must_exist(tmp_path):
    (tmp_path / ".env").write_text("S3_PREFIX=from-dot-env\n")
    other = tmp_path / "prod.env"
    other.write_text("S3_PREFIX=from-named-file\n")
    r = resolve({"OIL_ENV_FILE": str(other)}, cwd=tmp_path)
    assert r.values["S3_PREFIX"] == "from-named-file" and r.env_file == other
    with pytest.raises(FileNotFoundError, match="OIL_ENV_FILE"):
        resolve({"OIL_ENV_FILE": str(tmp_path / "missing.env")}, cwd=tmp_path)


def test_storage_switches_come_from_one_layer(tmp_path, monkeypatch):
    """prod defaults USE_S3=true; STORAGE_MODE from a higher layer is never combined with it."""
    monkeypatch.chdir(tmp_path)
    for var in ("USE_S3", "STORAGE_MODE", "S3_BUCKET", "S3_PREFIX", "OIL_ENV_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OIL_ENV", "prod")
    assert get_settings().storage_mode == "s3"
    monkeypatch.setenv("STORAGE_MODE", "local")  # contradicts the prod default USE_S3=true: not an error
    assert get_settings().storage_mode == "local"
    monkeypatch.delenv("STORAGE_MODE")
    (tmp_path / ".env").write_text("STORAGE_MODE=dual\n")
    assert get_settings().storage_mode == "dual"
    r = resolve()
    assert "USE_S3" not in r.values and r.sources["STORAGE_MODE"].startswith("env file")
    # Both switches in one layer are still checked against each other.
    (tmp_path / ".env").write_text("STORAGE_MODE=local\nUSE_S3=true\n")
    with pytest.raises(ValueError, match="contradicts"):
        get_settings()


def test_get_settings_follows_oil_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for var in ("USE_S3", "STORAGE_MODE", "S3_BUCKET", "S3_PREFIX", "OIL_ENV_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OIL_ENV", "staging")
    s = get_settings()
    assert (s.environment, s.storage_mode, s.s3_bucket, s.s3_prefix) == (
        "staging",
        "s3",
        "mining-data-mesh-staging",
        "oil-analysis",
    )
    monkeypatch.setenv("OIL_ENV", "dev")
    s = get_settings()
    assert (s.environment, s.storage_mode, s.s3_bucket) == ("dev", "local", "mining-data-mesh")
    monkeypatch.setenv("OIL_ENV", "qa")
    with pytest.raises(ValueError, match="dev, staging, prod"):
        get_settings()


def test_get_settings_is_reused_until_an_input_changes(tmp_path, monkeypatch):
    """One frozen object per inputs (a run asks hundreds of times); any input change is seen at once:
    a declared variable, the env file's content, the working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OIL_ENV_FILE", raising=False)
    monkeypatch.delenv("OIL_DATA_ROOT", raising=False)
    first = get_settings()
    assert get_settings() is first
    monkeypatch.setenv("OIL_DATA_ROOT", str(tmp_path / "a"))
    assert get_settings().data_root == str(tmp_path / "a")
    monkeypatch.delenv("OIL_DATA_ROOT")
    env = tmp_path / ".env"
    env.write_text(f"OIL_DATA_ROOT={tmp_path / 'b'}\n")
    assert get_settings().data_root == str(tmp_path / "b")
    env.write_text(f"OIL_DATA_ROOT={tmp_path / 'longer-name'}\n")
    assert get_settings().data_root == str(tmp_path / "longer-name")
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    assert get_settings().data_root != str(tmp_path / "longer-name")


def test_a_fresh_process_reads_the_env_file_and_never_writes_its_environment(tmp_path):
    """The env file and the defaults of OIL_ENV reach every reader (LLM resource, sensors) through the
    settings; importing the package and the definitions leaves os.environ exactly as it was."""
    env_file = tmp_path / "oil.env"
    env_file.write_text(
        "OIL_ENV=prod\nOIL_LLM_MODEL=model-from-file\nOPENAI_API_KEY=sk-from-file\nS3_PREFIX=p1\n"
    )
    code = (
        "import os\n"
        "before = dict(os.environ)\n"
        "import oil_analysis.definitions\n"
        "from oil_analysis.settings import get_settings\n"
        "from oil_analysis.resources.llm import LLMResource\n"
        "from oil_analysis.automation.schedule_status import schedule_status\n"
        "s = get_settings()\n"
        "c = LLMResource().get_config()\n"
        "assert dict(os.environ) == before, set(os.environ) ^ set(before)\n"
        "print(s.environment, s.sensors_running, schedule_status().value, c.model, c.api_key, s.s3_prefix)\n"
    )
    ours = ("OIL_", "S3_", "USE_S3", "STORAGE_MODE", "OPENAI_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    env |= {"OIL_ENV_FILE": str(env_file), "S3_PREFIX": "from-process"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [
        "prod",
        "True",
        "RUNNING",
        "model-from-file",
        "sk-from-file",
        "from-process",
    ]


def test_settings_are_typed_and_a_wrong_value_names_its_variable(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OIL_SENSOR_MAX_RUNS", "ten")
    with pytest.raises(ValueError, match="OIL_SENSOR_MAX_RUNS"):
        get_settings()
    monkeypatch.setenv("OIL_SENSOR_MAX_RUNS", "3")
    monkeypatch.setenv("OIL_LLM_OFFLINE", "maybe")
    with pytest.raises(ValueError, match="OIL_LLM_OFFLINE='maybe': expected true or false"):
        get_settings()
    # The one true/false parser: any case, surrounding blanks; empty is the default.
    for raw, expected in (
        ("YES", True),
        (" on ", True),
        ("1", True),
        ("Off", False),
        ("0", False),
        ("", False),
    ):
        monkeypatch.setenv("OIL_LLM_OFFLINE", raw)
        assert get_settings().llm_offline is expected, raw
    monkeypatch.setenv("S3_PREFIX", "")  # empty is a value here (the bucket's root), not "unset"
    monkeypatch.setenv("S3_BUCKET", "")  # elsewhere empty means unset: the default
    assert (get_settings().s3_prefix, get_settings().s3_bucket) == ("", "mining-data-mesh")
    monkeypatch.setenv("OIL_MAX_SHEET_CELLS", "5e6")  # a whole number written as a float
    monkeypatch.setenv("OIL_LLM_TEMPERATURE", "0.5")
    s = get_settings()
    assert (s.sensor_max_runs, s.max_sheet_cells, s.llm_temperature) == (3, 5_000_000, 0.5)
    monkeypatch.setenv("OIL_MAX_SHEET_CELLS", "1.5")
    with pytest.raises(ValueError, match="OIL_MAX_SHEET_CELLS='1.5': expected a whole number"):
        get_settings()
    monkeypatch.delenv("OIL_MAX_SHEET_CELLS")
    monkeypatch.setenv("OIL_SENSOR_INTERVAL_S", "0")
    with pytest.raises(ValueError, match="OIL_SENSOR_INTERVAL_S"):
        get_settings()


def test_secrets_are_masked_in_the_settings_object(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-printed")
    monkeypatch.setenv("OIL_ALERT_WEBHOOK_URL", "https://hooks.example/T0/B0/never-printed")
    s = get_settings()
    assert "never-printed" not in repr(s) and "never-printed" not in str(s.model_dump())
    assert s.openai_api_key.get_secret_value() == "sk-never-printed"


def test_env_example_as_env_file_changes_nothing(tmp_path):
    baseline = resolve({}, cwd=tmp_path)
    with_example = resolve({"OIL_ENV_FILE": str(ENV_EXAMPLE)}, cwd=tmp_path)
    assert with_example.values == baseline.values | {"OIL_ENV_FILE": str(ENV_EXAMPLE)}


def test_describe_names_each_source_and_masks_secrets(tmp_path):
    (tmp_path / ".env").write_text("OPENAI_API_KEY=sk-very-secret\nOIL_LLM_MODEL=m1\n")
    lines = environments.describe(resolve({"OIL_ENV": "prod"}, cwd=tmp_path))
    text = "\n".join(lines)
    assert "sk-very-secret" not in text and "OPENAI_API_KEY" in text and "***" in text
    assert re.search(r"OIL_LLM_MODEL\s+m1\s+env file", text)
    assert re.search(r"OIL_ENV\s+prod\s+environment variable", text)
    assert re.search(r"OIL_SENSORS_RUNNING\s+true\s+prod defaults", text)


def test_describe_shows_every_variable_with_its_layer(tmp_path):
    (tmp_path / ".env").write_text(
        "OIL_LLM_MODEL=m1\nOIL_ALERT_WEBHOOK_URL=https://hooks.example/T0/B0/xyz\n"
    )
    r = resolve({"OIL_ENV": "staging", "DAGSTER_PG_PASSWORD": "pg-secret-1"}, cwd=tmp_path)
    rows = {name: (value, layer) for name, value, layer in environments.effective(r)}
    assert set(example_names()) <= set(rows)  # every variable, set or not
    assert rows["OIL_LLM_MODEL"] == ("m1", f"env file {tmp_path / '.env'}")
    assert rows["OIL_LLM_MAX_CALLS"] == ("500", "staging defaults")
    assert rows["OIL_LLM_TEMPERATURE"] == ("0.2", "built-in default")
    assert rows["OIL_LIMITS_MAX_AGE_DAYS"] == ("7", "built-in default")
    assert rows["DAGSTER_PG_PASSWORD"] == ("pg-secret-1", "environment variable")
    text = "\n".join(environments.describe(r))
    assert "pg-secret-1" not in text and "xyz" not in text
    assert re.search(r"DAGSTER_PG_PASSWORD\s+\*\*\*\s+environment variable", text)
    assert re.search(r"OIL_ALERT_WEBHOOK_URL\s+\*\*\*\s+env file", text)
    assert re.search(r"OIL_LLM_MAX_TOKENS\s+400\s+built-in default", text)  # not a secret
    assert re.search(r"OPENAI_API_KEY\s+\(unset\)\s+built-in default", text)


def test_builtin_defaults_are_the_ones_of_env_example():
    shown = dict(re.findall(r"^#\s?([A-Z][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE.read_text(), flags=re.M))
    assert shown == environments.BUILTIN_DEFAULTS


def test_environments_command_in_a_fresh_process(tmp_path):
    """``python -m oil_analysis.settings`` as documented: each layer named, secrets masked."""
    (tmp_path / ".env").write_text("S3_PREFIX=from-file\n")
    ours = ("OIL_", "S3_", "USE_S3", "STORAGE_MODE", "OPENAI_", "NOTIFY_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    env |= {"OIL_ENV": "prod", "OPENAI_API_KEY": "sk-never-shown"}
    out = subprocess.run(
        [sys.executable, "-m", "oil_analysis.settings"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and out.stderr == "", out.stderr[-2000:]
    assert "sk-never-shown" not in out.stdout
    assert re.search(r"OPENAI_API_KEY\s+\*\*\*\s+environment variable", out.stdout)
    assert re.search(r"OIL_ENV\s+prod\s+environment variable", out.stdout)
    assert re.search(r"S3_PREFIX\s+from-file\s+env file", out.stdout)
    assert re.search(r"USE_S3\s+true\s+prod defaults", out.stdout)
    assert re.search(r"OIL_SCHEDULES_RUNNING\s+true\s+prod defaults", out.stdout)
    assert re.search(r"OIL_FRESHNESS_DAYS\s+40\s+built-in default", out.stdout)


# -- every variable is declared once, read in one place, and documented --------------------------

ENVIRON_USE = re.compile(
    r"\bos\.environ\b|\bgetenv\b|\bputenv\b|\bunsetenv\b|from os import [^\n]*\benviron\b"
)


def test_nothing_but_the_settings_module_reads_or_writes_the_environment():
    """Acceptance (issue 19): no ``os.environ`` / ``os.getenv`` outside ``oil_analysis/settings.py``."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "settings.py" and path.parent == PACKAGE:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if ENVIRON_USE.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
    # The settings module reads it and never writes it.
    source = (PACKAGE / "settings.py").read_text(encoding="utf-8")
    assert ENVIRON_USE.search(source)
    assert not re.search(r"os\.environ\[[^\]]+\]\s*=|os\.environ\.(update|setdefault|pop)|putenv", source)


# OIL_ENV and OIL_ENV_FILE choose the layers themselves (settings.resolve reads them).
RESOLVER_FIELDS = {"environment", "env_file"}


def test_every_declared_variable_is_used_by_the_code():
    """A declared variable nothing reads is stale: each field appears outside its declaration."""
    sources = {p: p.read_text(encoding="utf-8") for p in PACKAGE.rglob("*.py")}
    settings_source = sources.pop(PACKAGE / "settings.py")
    rest = "\n".join(sources.values())
    unused = [
        name
        for name in Settings.model_fields
        if f".{name}" not in rest and f"self.{name}" not in settings_source and name not in RESOLVER_FIELDS
    ]
    assert not unused, unused


def deploy_env_reads() -> set[str]:
    """``{env: VAR}`` of the Dagster instance files and ``${VAR}`` of the compose file."""
    out: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            if set(node) == {"env"}:
                out.add(node["env"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for path in DEPLOY_YAML:
        walk(yaml.safe_load(path.read_text()))
    out |= set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", COMPOSE.read_text()))
    return out


def example_names() -> list[str]:
    return re.findall(r"^#?\s?([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.M)


def test_every_variable_is_declared_once_and_in_env_example_and_the_docs():
    declared = list(environments.declared()) + [e.name for e in EXTERNAL]
    assert len(declared) == len(set(declared)), [n for n in declared if declared.count(n) > 1]
    missing = sorted(deploy_env_reads() - set(declared))
    assert not missing, f"the deploy files read undeclared variables {missing}"
    names = example_names()
    assert len(names) == len(set(names)), [n for n in names if names.count(n) > 1]
    assert set(names) == set(declared)
    docs = "\n".join(p.read_text(encoding="utf-8") for p in DOCS)
    undocumented = sorted(v for v in declared if f"`{v}`" not in docs)
    assert not undocumented, f"README.md / docs/DEPLOYMENT.md do not document {undocumented}"
    # Every line is commented out: a copy of the example changes nothing until edited.
    active = [ln for ln in ENV_EXAMPLE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert not active, active


def test_readme_table_is_the_generated_one():
    """README's variable table is generated from the declarations: regenerate it with
    ``python -m oil_analysis.settings --write-readme``."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert environments.readme_with_table(text) == text, "run: python -m oil_analysis.settings --write-readme"
    table = environments.readme_table()
    assert table.count("\n| `") == len(Settings.model_fields)
    assert "| `OIL_LLM_MAX_CALLS` | integer | `5000` (staging: `500`) |" in table
    assert "| `USE_S3` | true/false | `false` (staging: `true`, prod: `true`) |" in table


def test_environment_defaults_name_declared_variables():
    names = set(environments.declared())
    for env in ENVIRONMENTS.values():
        assert set(env.defaults) <= names, (env.name, set(env.defaults) - names)
        assert (REPO / env.instance_yaml).is_file()
    assert set(ENVIRONMENTS) == {"dev", "staging", "prod"}
