"""Deployment files that Docker and Kubernetes would read, checked here since neither runs in CI: the
production instance validates against Dagster's schema, and the Dockerfile, compose file, workspace and
Helm values agree with each other and with the code (image, commands, module, port, DAGSTER_HOME,
queue limits, PostgreSQL scheme, compute logs)."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import tomllib

import pytest
import yaml

from oil_analysis.settings import ENVIRONMENTS

from .conftest import REPO

DEPLOY = REPO / "deploy"
MODULE = "oil_analysis.definitions"
DAGSTER_SERVICES = ("oil-analysis-code", "webserver", "daemon")
# Top-level keys of the Dagster chart's values (helm/dagster/schema/.../values.py).
CHART_KEYS = {
    "dagsterWebserver",
    "dagster-user-deployments",
    "postgresql",
    "generatePostgresqlPasswordSecret",
    "generateCeleryConfigSecret",
    "rabbitmq",
    "redis",
    "flower",
    "ingress",
    "imagePullSecrets",
    "computeLogManager",
    "scheduler",
    "runLauncher",
    "pythonLogs",
    "dagsterDaemon",
    "busybox",
    "migrate",
    "telemetry",
    "serviceAccount",
    "global",
    "retention",
    "additionalInstanceConfig",
    "dagsterHome",
    "nameOverride",
    "fullnameOverride",
    "rbacEnabled",
    "concurrency",
}


def load(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


@pytest.fixture(scope="module")
def prod() -> dict:
    return load("dagster.prod.yaml")


@pytest.fixture(scope="module")
def compose() -> dict:
    return load("docker-compose.yaml")


@pytest.fixture(scope="module")
def helm() -> dict:
    return load("helm-values.yaml")


@pytest.fixture(scope="module")
def workspace() -> dict:
    [entry] = load("workspace.prod.yaml")["load_from"]
    return entry["grpc_server"]


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, args = line.partition(" ")
            out.append((op.upper(), args.strip()))
    return out


def env_refs(node) -> set[str]:
    if isinstance(node, dict):
        if set(node) == {"env"}:
            return {node["env"]}
        return set().union(*(env_refs(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(env_refs(v) for v in node)) if node else set()
    return set()


def dockerfile_env(dockerfile) -> dict[str, str]:
    env = {}
    for op, args in dockerfile:
        if op == "ENV":
            for part in shlex.split(args):
                k, _, v = part.partition("=")
                env[k] = v
    return env


def dockerfile_cmd(dockerfile) -> list[str]:
    [cmd] = [json.loads(args) for op, args in dockerfile if op == "CMD"]
    return cmd


# -- the production instance ------------------------------------------------------------------


def test_prod_instance_validates_against_dagster_schema(prod, tmp_path, monkeypatch):
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster._serdes.config_class import ConfigurableClassData, class_from_code_pointer
    from dagster_postgres import DagsterPostgresStorage

    shutil.copy(DEPLOY / "dagster.prod.yaml", tmp_path / "dagster.yaml")
    config, custom_class = dagster_instance_config(str(tmp_path))
    assert custom_class is None and config["telemetry"]["enabled"] is False
    # Each pluggable class accepts its block once the variables are set (no server is contacted).
    for var in env_refs(prod):
        monkeypatch.setenv(var, "5432" if var.endswith(("PORT", "RUNS")) else "x")
    blocks = [(DagsterPostgresStorage, prod["storage"]["postgres"])]
    for key in ("run_coordinator", "compute_logs"):
        # ConfigurableClassData maps the public spelling (dagster.core…) as the instance does.
        data = ConfigurableClassData(prod[key]["module"], prod[key]["class"], "{}")
        blocks.append((class_from_code_pointer(data.module_name, data.class_name), prod[key]["config"]))
    for cls, block in blocks:
        result = process_config(cls.config_type(), block)
        assert result.success, (cls.__name__, result.errors)


def test_prod_instance_uses_postgres_the_queue_and_s3_logs(prod):
    db = prod["storage"]["postgres"]["postgres_db"]
    assert db["scheme"] == "postgresql+psycopg2"  # SQLAlchemy 2.1 would pick psycopg 3 otherwise
    assert {k: v for k, v in db.items() if k != "scheme"} == {
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "port": {"env": "DAGSTER_PG_PORT"},
        "username": {"env": "DAGSTER_PG_USER"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "db_name": {"env": "DAGSTER_PG_DB"},
    }
    rc = prod["run_coordinator"]
    assert (rc["module"], rc["class"]) == ("dagster.core.run_coordinator", "QueuedRunCoordinator")
    assert rc["config"]["max_concurrent_runs"] == {"env": "DAGSTER_MAX_CONCURRENT_RUNS"}
    assert rc["config"]["tag_concurrency_limits"] == [
        {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    ]
    logs = prod["compute_logs"]
    assert (logs["module"], logs["class"]) == ("dagster_aws.s3.compute_log_manager", "S3ComputeLogManager")
    assert logs["config"]["bucket"] == {"env": "DAGSTER_COMPUTE_LOGS_BUCKET"}
    assert "run_launcher" not in prod  # default launcher: the code server starts runs
    # Env-driven only: no literal host, password or bucket in the file.
    assert all(v.startswith("DAGSTER_") for v in env_refs(prod))
    assert not re.search(r"password:\s*\S+\s*$", (DEPLOY / "dagster.prod.yaml").read_text(), flags=re.M)


def test_environments_name_existing_instance_files():
    assert ENVIRONMENTS["dev"].instance_yaml == "dagster.yaml"
    assert (
        ENVIRONMENTS["prod"].instance_yaml
        == ENVIRONMENTS["staging"].instance_yaml
        == "deploy/dagster.prod.yaml"
    )


# -- Dockerfile -------------------------------------------------------------------------------


def test_dockerfile_builds_from_the_lock_file_and_serves_the_module(dockerfile):
    runs = [args for op, args in dockerfile if op == "RUN"]
    copies = [args for op, args in dockerfile if op == "COPY"]
    assert any("uv.lock" in c.split() for c in copies), copies
    assert any(re.search(r"\buv sync\b.*--frozen\b.*--no-dev\b", r) for r in runs), runs
    assert not any(re.search(r"\bpip install\b", r) for r in runs)  # nothing outside the lock file
    cmd = dockerfile_cmd(dockerfile)
    assert cmd[:3] == ["dagster", "api", "grpc"] and cmd[cmd.index("-m") + 1] == MODULE
    assert not [a for op, a in dockerfile if op == "ENTRYPOINT"]  # run pods pass their own command
    # uv as pinned by the Makefile; Python as required by pyproject.
    uv_version = re.search(r"^UV_VERSION \?= (\S+)", (REPO / "Makefile").read_text(), flags=re.M).group(1)
    assert any(f"ghcr.io/astral-sh/uv:{uv_version}" in c for c in copies)
    froms = [args.split()[0] for op, args in dockerfile if op == "FROM"]
    assert froms and all(f.startswith("python:3.11-") for f in froms)
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert ">=3.11" in requires


def test_dockerfile_runs_as_a_non_root_user(dockerfile):
    users = [args for op, args in dockerfile if op == "USER"]
    assert users, "no USER: the container would run as root"
    last_from = max(i for i, (op, _) in enumerate(dockerfile) if op == "FROM")
    last_user = max(i for i, (op, _) in enumerate(dockerfile) if op == "USER")
    assert last_user > last_from
    uid = users[-1].split(":")[0]
    assert uid not in ("root", "0")


def test_dockerfile_ships_the_prod_instance_in_dagster_home(dockerfile, workspace):
    env = dockerfile_env(dockerfile)
    home = env["DAGSTER_HOME"]
    assert env["OIL_ENV"] in ENVIRONMENTS and env["OIL_ENV"] == "prod"
    copies = [args.split() for op, args in dockerfile if op == "COPY" and "--from" not in args]
    assert ["deploy/dagster.prod.yaml", f"{home}/dagster.yaml"] in copies
    assert any(c[0] == "deploy/workspace.prod.yaml" for c in copies)
    cmd = dockerfile_cmd(dockerfile)
    assert cmd[cmd.index("-p") + 1] == str(workspace["port"])
    assert [args for op, args in dockerfile if op == "EXPOSE"] == [str(workspace["port"])]


def test_dockerignore_keeps_secrets_out_and_the_build_inputs_in(dockerfile):
    patterns = [
        ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines() if ln.strip() and ln[0] != "#"
    ]

    def ignored(path: str) -> bool:
        verdict = False
        for p in patterns:
            negate, pat = p.startswith("!"), p.lstrip("!")
            hit = any(
                fnmatch.fnmatch(candidate, pat) or fnmatch.fnmatch(candidate, pat.removeprefix("**/"))
                for candidate in [path, *(path.rsplit("/", i)[0] for i in range(1, path.count("/") + 1))]
            )
            if hit:
                verdict = not negate
        return verdict

    for secret in (".env", ".env.prod", "prod.env", ".git/config", ".venv/bin/python", "data/gold/x.parquet"):
        assert ignored(secret), secret
    sources = [args.split()[:-1] for op, args in dockerfile if op == "COPY" and "--from" not in args]
    for src in (s for group in sources for s in group):
        assert not ignored(src), f".dockerignore drops {src}, which the Dockerfile copies"
    assert not ignored("oil_analysis/reference/clients.yaml")


# -- docker compose and workspace ----------------------------------------------------------------


def test_compose_has_the_four_services_on_one_image(compose, dockerfile):
    services = compose["services"]
    assert set(services) == {"postgres", "api", *DAGSTER_SERVICES}
    assert services["api"]["image"] == services["webserver"]["image"]
    images = {services[s]["image"] for s in DAGSTER_SERVICES}
    assert len(images) == 1, images
    assert services["oil-analysis-code"]["build"] == {"context": "..", "dockerfile": "Dockerfile"}
    assert (DEPLOY / ".." / "Dockerfile").resolve() == (REPO / "Dockerfile")
    # The test server is PostgreSQL 15; so is the compose database.
    assert services["postgres"]["image"].split(":")[1].split(".")[0] == "15"


def test_compose_commands_match_the_image_and_the_workspace(compose, dockerfile, workspace):
    services = compose["services"]
    code = services["oil-analysis-code"]["command"]
    assert code == dockerfile_cmd(dockerfile)
    assert workspace["host"] == "oil-analysis-code"
    assert str(workspace["port"]) == code[code.index("-p") + 1]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dagster"]
    assert workspace["location_name"] == pyproject["code_location_name"]
    assert pyproject["module_name"] == MODULE
    ws_path = "/opt/dagster/app/workspace.yaml"
    assert ["deploy/workspace.prod.yaml", ws_path] in [
        args.split() for op, args in dockerfile if op == "COPY" and "--from" not in args
    ]
    assert services["webserver"]["command"][0] == "dagster-webserver"
    assert services["daemon"]["command"][:2] == ["dagster-daemon", "run"]
    for name in ("webserver", "daemon"):
        cmd = services[name]["command"]
        assert cmd[cmd.index("-w") + 1] == ws_path
        assert set(services[name]["depends_on"]) == {"postgres", "oil-analysis-code"}
    health = services["oil-analysis-code"]["healthcheck"]["test"]
    assert health[1:5] == ["dagster", "api", "grpc-health-check", "-p"] and health[5] == str(
        workspace["port"]
    )


def test_compose_gives_every_dagster_process_the_instance_variables(compose, prod, dockerfile):
    services = compose["services"]
    home = dockerfile_env(dockerfile)["DAGSTER_HOME"]
    for name in DAGSTER_SERVICES:
        env = services[name]["environment"]
        assert env_refs(prod) <= set(env), (name, env_refs(prod) - set(env))
        assert env["DAGSTER_HOME"] == home and env["OIL_ENV"].endswith("-prod}")
        assert env["DAGSTER_PG_PASSWORD"].startswith("${DAGSTER_PG_PASSWORD:?")  # required, no default
    pg = services["postgres"]["environment"]
    dagster_env = services["webserver"]["environment"]
    for pg_key, dagster_key in (
        ("POSTGRES_USER", "DAGSTER_PG_USER"),
        ("POSTGRES_PASSWORD", "DAGSTER_PG_PASSWORD"),
        ("POSTGRES_DB", "DAGSTER_PG_DB"),
    ):
        assert pg[pg_key] == dagster_env[dagster_key]
    assert dagster_env["DAGSTER_PG_HOST"].endswith(":-postgres}")


def test_compose_publishes_only_on_loopback(compose):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    assert compose["services"]["webserver"]["ports"]


# -- Helm -------------------------------------------------------------------------------------


def test_helm_values_use_chart_keys_and_the_k8s_launcher(helm):
    assert set(helm) <= CHART_KEYS, set(helm) - CHART_KEYS
    assert helm["runLauncher"]["type"] == "K8sRunLauncher"
    assert set(helm["runLauncher"]["config"]) == {"k8sRunLauncher"}
    assert helm["postgresql"]["enabled"] is False and helm["generatePostgresqlPasswordSecret"] is False
    assert helm["telemetry"]["enabled"] is False


def test_helm_user_deployment_serves_the_same_module_and_port(helm, dockerfile):
    [dep] = helm["dagster-user-deployments"]["deployments"]
    cmd = dockerfile_cmd(dockerfile)
    assert dep["dagsterApiGrpcArgs"] == ["-m", MODULE] == cmd[cmd.index("-m") : cmd.index("-m") + 2]
    assert dep["port"] > 0 and dep["includeConfigInLaunchedRuns"]["enabled"] is True
    assert {"name": "OIL_ENV", "value": "prod"} in dep["env"]
    assert dep["podSecurityContext"]["runAsNonRoot"] is True
    user = [args for op, args in dockerfile if op == "USER"][-1].split(":")[0]
    assert str(dep["podSecurityContext"]["runAsUser"]) == user
    assert helm["dagsterHome"] == dockerfile_env(dockerfile)["DAGSTER_HOME"]


def test_helm_values_mirror_the_prod_instance(helm, prod):
    queue = helm["dagsterDaemon"]["runCoordinator"]
    assert queue["enabled"] is True and queue["type"] == "QueuedRunCoordinator"
    q = queue["config"]["queuedRunCoordinator"]
    assert q["tagConcurrencyLimits"] == prod["run_coordinator"]["config"]["tag_concurrency_limits"]
    assert isinstance(q["maxConcurrentRuns"], int) and q["maxConcurrentRuns"] >= 1
    pg = helm["postgresql"]
    assert pg["postgresqlScheme"] == prod["storage"]["postgres"]["postgres_db"]["scheme"]
    assert pg["postgresqlPassword"] == ""  # the password lives in a secret
    logs = helm["computeLogManager"]
    assert logs["type"] == prod["compute_logs"]["class"]
    s3 = logs["config"]["s3ComputeLogManager"]
    assert s3["skipEmptyFiles"] == prod["compute_logs"]["config"]["skip_empty_files"]
    assert s3["uploadInterval"] == prod["compute_logs"]["config"]["upload_interval"]
    daemon = helm["dagsterDaemon"]
    assert daemon["runRetries"] == {
        "enabled": prod["run_retries"]["enabled"],
        "maxRetries": prod["run_retries"]["max_retries"],
        "retryOnAssetOrOpFailure": prod["run_retries"]["retry_on_asset_or_op_failure"],
    }
    assert daemon["runMonitoring"]["enabled"] == prod["run_monitoring"]["enabled"]
    assert daemon["runMonitoring"]["startTimeoutSeconds"] == prod["run_monitoring"]["start_timeout_seconds"]


def _bytes(quantity: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 1e3, "M": 1e6, "G": 1e9}
    m = re.fullmatch(r"([\d.]+)([KMG]i?)?", str(quantity))
    return float(m.group(1)) * units.get(m.group(2) or "", 1)


def test_helm_sizes_every_component_with_limits_above_requests(helm):
    run = helm["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["containerConfig"]["resources"]
    [dep] = helm["dagster-user-deployments"]["deployments"]
    for name, res in (
        ("run", run),
        ("code", dep["resources"]),
        ("webserver", helm["dagsterWebserver"]["resources"]),
        ("daemon", helm["dagsterDaemon"]["resources"]),
    ):
        assert {"cpu", "memory"} <= set(res["requests"]), name
        assert _bytes(res["limits"]["memory"]) >= _bytes(res["requests"]["memory"]), name
    # A run of the largest benched client peaks at ~470 MB (docs/DEPLOYMENT.md, Sizing).
    assert _bytes(run["requests"]["memory"]) >= 2 * 470 * 2**20 * 0.99


# -- docs -------------------------------------------------------------------------------------


def test_deployment_doc_names_every_deploy_file_and_service(compose):
    doc = (REPO / "docs" / "DEPLOYMENT.md").read_text()
    for path in (
        "deploy/dagster.prod.yaml",
        "deploy/docker-compose.yaml",
        "deploy/workspace.prod.yaml",
        "deploy/helm-values.yaml",
        "Dockerfile",
        ".dockerignore",
        ".env.example",
        "oil_analysis/settings.py",
    ):
        assert f"`{path}`" in doc, path
    for service in compose["services"]:
        assert service in doc, service
    for env in ENVIRONMENTS:
        assert f"`{env}`" in doc
    assert "K8sRunLauncher" in doc and "EcsRunLauncher" in doc and "uv sync --frozen --no-dev" in doc
