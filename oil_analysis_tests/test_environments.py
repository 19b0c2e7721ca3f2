"""OIL_ENV environments and the override order (process environment > env file > environment defaults >
code default); every variable the code or the deploy files read is in .env.example and the docs."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys

import pytest
import yaml

from oil_analysis import environments
from oil_analysis.environments import ENVIRONMENTS, resolve

from .conftest import REPO

PACKAGE = REPO / "oil_analysis"
ENV_EXAMPLE = REPO / ".env.example"
DOCS = (REPO / "README.md", REPO / "docs" / "DEPLOYMENT.md")
DEPLOY_YAML = (REPO / "deploy" / "dagster.prod.yaml",)
COMPOSE = REPO / "deploy" / "docker-compose.yaml"
# Read by Dagster or the shell, not by a file of this repository.
EXTERNAL = {"DAGSTER_HOME"}


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
    from oil_analysis.settings import get_settings

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
    from oil_analysis.settings import get_settings

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


def test_a_fresh_process_exports_env_file_and_defaults_to_direct_readers(tmp_path):
    """Modules that read os.environ directly (LLM resource, sensors) see the env file and the defaults
    of OIL_ENV; variables of the process environment stay as they are."""
    env_file = tmp_path / "oil.env"
    env_file.write_text(
        "OIL_ENV=prod\nOIL_LLM_MODEL=model-from-file\nOPENAI_API_KEY=sk-from-file\nS3_PREFIX=p1\n"
    )
    code = (
        "import os, oil_analysis.settings as s\n"
        "from oil_analysis.resources.llm import LLMResource\n"
        "c = LLMResource().get_config()\n"
        "print(s.get_settings().environment, os.environ['OIL_SENSORS_RUNNING'], c.model, c.api_key,"
        " os.environ['S3_PREFIX'])\n"
    )
    ours = ("OIL_", "S3_", "USE_S3", "STORAGE_MODE", "OPENAI_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    env |= {"OIL_ENV_FILE": str(env_file), "S3_PREFIX": "from-process"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["prod", "true", "model-from-file", "sk-from-file", "from-process"]


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
    """``python -m oil_analysis.environments`` as documented: each layer named, secrets masked, and
    the values the package exported at import still shown with their real layer."""
    (tmp_path / ".env").write_text("S3_PREFIX=from-file\n")
    ours = ("OIL_", "S3_", "USE_S3", "STORAGE_MODE", "OPENAI_", "NOTIFY_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    env |= {"OIL_ENV": "prod", "OPENAI_API_KEY": "sk-never-shown"}
    out = subprocess.run(
        [sys.executable, "-m", "oil_analysis.environments"],
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


# -- every variable read is documented ----------------------------------------------------------

NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
BASE_READERS = {"getenv": 0, "EnvVar": 0, "environ.get": 0}


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id == "environ") or (
        isinstance(node, ast.Attribute) and node.attr == "environ"
    )


def _callee(call: ast.Call) -> str | None:
    f = call.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        if f.attr in ("get", "setdefault", "pop") and _is_environ(f.value):
            return "environ.get"
        if isinstance(f.value, ast.Name) and f.value.id == "EnvVar":  # EnvVar.int("X")
            return "EnvVar"
        return f.attr
    return None


def _strings(node: ast.AST) -> list[str] | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        out = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        return out if len(out) == len(node.elts) else None
    return None


def scan_env_reads(source: str) -> tuple[set[str], list[int]]:
    """Names of the environment variables a module reads, and the lines of reads it cannot name.

    A read is ``os.environ.get / [] / setdefault / in``, ``os.getenv``, ``EnvVar(…)`` (also on a local
    ``environ`` mapping); the name is a literal, a module constant (string or tuple), the variable of a
    loop over such a tuple, or a parameter of a helper — then each call of the helper is a read.
    """
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    consts = {
        n.targets[0].id: _strings(n.value)
        for n in tree.body
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name)
    }
    consts = {k: v for k, v in consts.items() if v}

    def ancestors(node):
        while node in parents:
            node = parents[node]
            yield node

    def loop_values(name: str, at: ast.AST) -> list[str] | None:
        for n in ancestors(at):
            gens = []
            if isinstance(n, ast.For | ast.AsyncFor):
                gens = [(n.target, n.iter)]
            elif isinstance(n, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
                gens = [(g.target, g.iter) for g in n.generators]
            for target, it in gens:
                if isinstance(target, ast.Name) and target.id == name:
                    return consts.get(it.id) if isinstance(it, ast.Name) else _strings(it)
        return None

    readers = dict(BASE_READERS)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    while True:  # helpers of helpers: until no new reader appears
        found: set[str] = set()
        unresolved: list[int] = []
        grew = False
        for call in calls:
            name = _callee(call)
            if name not in readers or len(call.args) <= readers[name]:
                continue
            arg = call.args[readers[name]]
            values = _strings(arg) if isinstance(arg, ast.Constant) else None
            if values is None and isinstance(arg, ast.Name):
                values = consts.get(arg.id) or loop_values(arg.id, call)
                fn = next((a for a in ancestors(call) if isinstance(a, ast.FunctionDef)), None)
                params = [a.arg for a in fn.args.args] if fn else []
                if values is None and arg.id in params:
                    grew |= fn.name not in readers
                    readers.setdefault(fn.name, params.index(arg.id))
                    continue
            if values is None:
                unresolved.append(call.lineno)
            else:
                found.update(values)
        if not grew:
            break
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and _is_environ(node.value) and isinstance(node.ctx, ast.Load):
            values = _strings(node.slice) or (
                consts.get(node.slice.id) if isinstance(node.slice, ast.Name) else None
            )
            found.update(values or [])
            if values is None:
                unresolved.append(node.lineno)
        elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            found.update(_strings(node.left) or [])
    return {f for f in found if NAME.match(f)}, unresolved


def code_env_reads() -> dict[str, list[str]]:
    """Variable → modules of oil_analysis/ that read it."""
    out: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        names, unresolved = scan_env_reads(path.read_text(encoding="utf-8"))
        rel = path.relative_to(REPO).as_posix()
        assert not unresolved, (
            f"{rel}: environment read(s) with a name the scan cannot see, lines {unresolved}"
        )
        for n in names:
            out.setdefault(n, []).append(rel)
    return out


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


def test_scan_sees_every_way_of_reading_a_variable():
    source = """
import os
from os import environ, getenv
from dagster import EnvVar
ONE = "V_CONST"
MANY = ("V_TUPLE_A", "V_TUPLE_B")
a = os.environ.get("V_GET", "x")
b = os.environ["V_ITEM"]
c = os.getenv("V_GETENV")
d = EnvVar("V_ENVVAR")
e = EnvVar.int("V_ENVVAR_INT")
f = "V_IN" in os.environ
g = os.environ.get(ONE)
h = [os.environ.get(v) for v in MANY]
for name in ("V_LOOP",):
    os.environ.get(name)
def _env(name, default=None):
    return environ.get(name, default)
def pick(value, env):
    return value if value is not None else _env(env)
i = _env("V_HELPER")
j = pick(None, "V_HELPER_OF_HELPER")
k = {"NOT_A_READ": 1}.get("NOT_A_READ")
"""
    names, unresolved = scan_env_reads(source)
    assert names == {
        "V_CONST",
        "V_TUPLE_A",
        "V_TUPLE_B",
        "V_GET",
        "V_ITEM",
        "V_GETENV",
        "V_ENVVAR",
        "V_ENVVAR_INT",
        "V_IN",
        "V_LOOP",
        "V_HELPER",
        "V_HELPER_OF_HELPER",
    }
    assert not unresolved
    assert scan_env_reads("import os\nx = os.environ.get(compute_name())\n")[1] == [2]


def test_scan_finds_the_known_reads_of_the_package():
    reads = code_env_reads()
    assert {"OIL_ENV", "OIL_ENV_FILE", "USE_S3", "STORAGE_MODE", "OIL_DATA_ROOT"} <= set(reads)
    assert {"OIL_LLM_MAX_CALLS", "OIL_LLM_OFFLINE", "OPENAI_API_KEY"} <= set(reads)  # via helpers
    assert {"AWS_SESSION_TOKEN", "AWS_WEB_IDENTITY_TOKEN_FILE"} <= set(reads)  # via loops over tuples
    assert {"OIL_SENSOR_MAX_KEYS", "OIL_CLIENTS_FILE"} <= set(reads)
    assert {"DAGSTER_PG_PASSWORD", "DAGSTER_COMPUTE_LOGS_BUCKET", "OIL_IMAGE"} <= deploy_env_reads()


def test_every_variable_read_is_in_env_example_and_the_docs():
    reads = code_env_reads()
    wanted = set(reads) | deploy_env_reads()
    listed = set(example_names())
    missing = sorted(wanted - listed)
    assert not missing, f".env.example lacks {missing} (read in {[reads.get(m, 'deploy/') for m in missing]})"
    docs = "\n".join(p.read_text(encoding="utf-8") for p in DOCS)
    undocumented = sorted(v for v in wanted if f"`{v}`" not in docs)
    assert not undocumented, f"README.md / docs/DEPLOYMENT.md do not document {undocumented}"


def test_env_example_lists_each_variable_once_and_only_variables_something_reads():
    names = example_names()
    assert len(names) == len(set(names)), [n for n in names if names.count(n) > 1]
    stale = sorted(set(names) - set(code_env_reads()) - deploy_env_reads() - EXTERNAL)
    assert not stale, f".env.example lists variables nothing reads: {stale}"
    # Every line is commented out: a copy of the example changes nothing until edited.
    active = [ln for ln in ENV_EXAMPLE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert not active, active


def test_environment_defaults_name_variables_the_code_reads():
    reads = set(code_env_reads())
    for env in ENVIRONMENTS.values():
        assert set(env.defaults) <= reads, (env.name, set(env.defaults) - reads)
        assert (REPO / env.instance_yaml).is_file()
    assert set(ENVIRONMENTS) == {"dev", "staging", "prod"}
