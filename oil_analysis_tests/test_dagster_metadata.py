"""Dagster-native metadata of the definitions: column schemas from the contracts, check descriptions
and blocking, code references, and kinds that follow the configuration."""

from __future__ import annotations

import os
import subprocess
import sys

from dagster import AssetKey

from oil_analysis.assets.common import advisor_kinds, notify_kinds, storage_kinds
from oil_analysis.definitions import defs
from oil_analysis.domain.checks import CHECK_SPECS
from oil_analysis.domain.contracts import tables

from .conftest import REPO

TABLE_ASSETS = (
    "silver_harmonized",
    "stewart_limits",
    "classified_reports",
    "machine_status_current",
    "limit_quality",
)


def _graph():
    return defs.resolve_asset_graph()


def test_every_table_asset_carries_its_contract_as_column_schema():
    graph = _graph()
    for asset in TABLE_ASSETS:
        schema = graph.get(AssetKey(asset)).metadata["dagster/column_schema"]
        contract = tables()[asset][1]
        assert [c.name for c in schema.columns] == [c.name for c in contract], asset
        assert all(c.description for c in schema.columns), asset
        assert [c.constraints.nullable for c in schema.columns] == [c.nullable for c in contract]
    described = {
        c.name: c.description
        for c in graph.get(AssetKey("classified_reports")).metadata["dagster/column_schema"].columns
    }
    assert "severity_score" in described and "sampleNumber" in described


def test_every_asset_has_a_code_reference():
    graph = _graph()
    for key in graph.get_all_asset_keys():
        refs = graph.get(key).metadata["dagster/code_references"].code_references
        assert refs and refs[0].file_path.startswith(str(REPO / "oil_analysis" / "assets")), key


def test_every_check_is_described_and_only_warning_checks_are_non_blocking():
    graph = _graph()
    keys = list(graph.asset_check_keys)
    assert {k.name for k in keys} == set(CHECK_SPECS)
    for key in keys:
        spec = graph.get(key)
        description, warn_only = CHECK_SPECS[key.name]
        assert spec.description == description
        assert spec.blocking is (not warn_only), key.name
    assert not graph.get(next(k for k in keys if k.name == "fresh_samples")).blocking


def test_kinds_follow_the_configuration(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for var in ("USE_S3", "STORAGE_MODE", "OPENAI_API_KEY", "NOTIFY_SNS_TOPIC_ARN", "OIL_ENV"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OIL_LLM_OFFLINE", "true")
    assert (storage_kinds(), advisor_kinds(), notify_kinds()) == ({"local"}, set(), set())
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert advisor_kinds() == set()  # offline wins over a key
    monkeypatch.setenv("OIL_LLM_OFFLINE", "false")
    monkeypatch.setenv("STORAGE_MODE", "dual")
    monkeypatch.setenv("NOTIFY_SNS_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:t")
    assert (storage_kinds(), advisor_kinds(), notify_kinds()) == ({"s3"}, {"openai"}, {"sns"})
    # The definitions in the test process: offline advisor, local disk.
    kinds = _graph().get(AssetKey("classified_reports")).kinds
    assert "openai" not in kinds and "local" in kinds and "s3" not in kinds


def test_definitions_loaded_with_a_key_and_s3_show_those_kinds(tmp_path):
    code = (
        "from dagster import AssetKey\n"
        "from oil_analysis.definitions import defs\n"
        "g = defs.resolve_asset_graph()\n"
        "print(' '.join(sorted(g.get(AssetKey('classified_reports')).kinds)))\n"
        "print(' '.join(sorted(g.get(AssetKey('gold_publication')).kinds)))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OIL_", "OPENAI_", "USE_S3", "STORAGE_"))}
    env |= {
        "OPENAI_API_KEY": "sk-test",
        "USE_S3": "true",
        "NOTIFY_SNS_TOPIC_ARN": "arn:aws:sns:us-east-1:1:t",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == ["openai pandas parquet s3", "s3 sns"]


def test_resources_show_their_effective_configuration_with_secrets_masked(monkeypatch, tmp_path):
    from oil_analysis.definitions import build_resources

    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-shown")
    monkeypatch.setenv("OIL_LLM_OFFLINE", "false")
    monkeypatch.setenv("OIL_LLM_MODEL", "model-x")
    resources = build_resources(str(tmp_path))
    storage = resources["storage"].get_resource_definition().description
    llm = resources["llm"].get_resource_definition().description
    assert "Effective configuration" in storage and "- mode: `local`" in storage
    assert f"- data_root: `{tmp_path}`" in storage
    assert "- model: `model-x`" in llm and "- api_key: `***`" in llm and "sk-never-shown" not in llm
    monkeypatch.setenv("OIL_LLM_OFFLINE", "true")
    offline = build_resources(str(tmp_path))["llm"].get_resource_definition().description
    assert "- advisor: `offline" in offline


def test_code_references_point_at_the_hosted_repository_when_configured(tmp_path):
    code = (
        "from dagster import AssetKey\n"
        "from oil_analysis.definitions import defs\n"
        "meta = defs.resolve_asset_graph().get(AssetKey('classified_reports')).metadata\n"
        "print(meta['dagster/code_references'].code_references[0].url)\n"
    )
    env = dict(os.environ, OIL_CODE_GIT_URL="https://github.com/acme/oil-analysis", OIL_CODE_GIT_BRANCH="v1")
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    url = out.stdout.strip()
    assert url.startswith("https://github.com/acme/oil-analysis/tree/v1/oil_analysis/assets/gold.py#L"), url
    line = int(url.rsplit("#L", 1)[1])
    source = (REPO / "oil_analysis" / "assets" / "gold.py").read_text().splitlines()
    assert source[line - 1].startswith("@client_asset(")  # the decorator of the asset's function
    assert "def classified_reports(" in "\n".join(source[line - 1 : line + 25])
