"""Recommendations through a real OpenAI client against our OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import time
from types import SimpleNamespace

import pandas as pd
import pytest

from oil_analysis.domain.advice import PROMPT_VERSION, SYSTEM_PROMPT, offline_recommendation
from oil_analysis.domain.catalog import load_catalog
from oil_analysis.pipeline.advice import recommend_machines, recommend_reports
from oil_analysis.resources.llm import LLMResource
from oil_analysis.resources.llm_client import LLMConfig, estimate_cost, retry_after_s
from oil_analysis.storage.ai_cache import MAX_SHARDS
from oil_analysis.storage.filesystem import Storage
from oil_analysis.storage.layout import ai_cache_dir as cache_dir

from .llm_server import FakeLLMServer, advisor_reports, answer_text

CAT = load_catalog()


@pytest.fixture
def server():
    with FakeLLMServer() as s:
        yield s


@pytest.fixture
def store(tmp_path) -> Storage:
    return Storage.local(str(tmp_path / "data"))


def config(server: FakeLLMServer, **over) -> LLMConfig:
    base = {
        "api_key": "test-key",
        "base_url": server.base_url,
        "timeout_s": 2.0,
        "max_retries": 3,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "concurrency": 16,
    }
    return LLMConfig(**{**base, **over})


def flagged(out: pd.DataFrame) -> pd.DataFrame:
    return out[out["report_status"] != "Normal"]


def test_happy_path_every_flagged_report_gets_the_model_text(server, store):
    reports = advisor_reports(8, normal_every=4)
    out, stats = recommend_reports(reports, store, "cda", config(server), CAT)

    assert server.count == 6 and stats["calls"] == 6 and stats["prompts_sent"] == 6
    llm = flagged(out)
    assert (llm["ai_source"] == "llm").all() and (llm["ai_model"] == "gpt-4o-mini").all()
    assert (llm["ai_prompt_version"] == PROMPT_VERSION).all() and llm["ai_generated_at"].notna().all()
    assert llm["ai_error"].isna().all() and llm["ai_input_hash"].str.len().eq(64).all()
    sent = {answer_text(r.body["messages"][-1]["content"]) for r in server.requests}
    assert set(llm["ai_recommendation"]) == sent
    assert (out.loc[out["report_status"] == "Normal", "ai_source"] == "normal").all()

    body = server.requests[0].body
    assert body["model"] == "gpt-4o-mini" and body["temperature"] == 0.2 and body["max_tokens"] == 400
    assert body["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert [m["role"] for m in body["messages"][1:]] == ["user", "assistant"] * 3 + ["user"]
    assert not any("COMENTARIO" in m["content"] for r in server.requests for m in r.body["messages"])

    assert stats["tokens_in"] > 0 and stats["tokens_out"] > 0
    assert (
        stats["estimated_cost_usd"]
        == estimate_cost("gpt-4o-mini", stats["tokens_in"], stats["tokens_out"])
        > 0
    )
    assert stats["sources"] == {"llm": 6, "cache": 0, "fallback": 0, "offline": 0, "normal": 2}
    assert len(store.list_files(cache_dir("cda"))) == 1


def test_429_waits_for_retry_after_then_succeeds(server, store):
    server.queue("429")
    out, stats = recommend_reports(advisor_reports(1), store, "cda", config(server), CAT)
    assert server.count == 2 and stats["retries"] == 1
    assert server.requests[1].at - server.requests[0].at >= 0.95  # Retry-After: 1, backoff only 10 ms
    assert out["ai_source"].tolist() == ["llm"]


def test_a_burst_of_500s_is_retried(server, store):
    server.queue("500", "503", "500", "500")
    out, stats = recommend_reports(advisor_reports(3), store, "cda", config(server, max_retries=4), CAT)
    assert out["ai_source"].tolist() == ["llm"] * 3
    assert server.count == 7 and stats["retries"] == 4 and stats["fallbacks"] == 0


def test_exhausted_retries_fall_back_to_the_offline_text_never_the_error(store):
    with FakeLLMServer(default="500") as server:
        reports = advisor_reports(3)
        out, stats = recommend_reports(reports, store, "cda", config(server, max_retries=2), CAT)
        assert server.count == 9  # 3 prompts × (1 + 2 retries)
    assert out["ai_source"].tolist() == ["fallback"] * 3
    assert out["ai_error"].tolist() == ["InternalServerError"] * 3
    expected = [
        offline_recommendation(b, c, CAT, status=s, context=r)
        for b, c, s, r in zip(
            reports["breached_essays"],
            reports["componentName"],
            reports["report_status"],
            reports.to_dict("records"),
            strict=True,
        )
    ]
    assert out["ai_recommendation"].tolist() == expected
    assert not out["ai_recommendation"].str.contains("Error|500|injected").any()
    assert stats["errors"] == {"InternalServerError": 3} and stats["fallbacks"] == 3
    assert store.list_files(cache_dir("cda")) == []  # failures are not cached: the next run tries again


def test_a_timeout_is_retried_and_persistent_timeouts_fall_back(store):
    with FakeLLMServer(hang_s=1.0) as server:
        server.queue("timeout")
        out, stats = recommend_reports(advisor_reports(1), store, "cda", config(server, timeout_s=0.25), CAT)
        assert out["ai_source"].tolist() == ["llm"] and server.count == 2 and stats["retries"] == 1

        server.default = "timeout"
        reports = advisor_reports(2).iloc[1:]  # another prompt: not in the cache
        t0 = time.monotonic()
        out, stats = recommend_reports(
            reports, store, "cda", config(server, timeout_s=0.25, max_retries=1), CAT
        )
        assert time.monotonic() - t0 < 0.9
    assert out["ai_source"].tolist() == ["fallback"] and out["ai_error"].tolist() == ["APITimeoutError"]


@pytest.mark.parametrize("action", ["malformed", "no_choices", "empty"])
def test_a_malformed_response_falls_back_without_retry(store, action):
    with FakeLLMServer(default=action) as server:
        out, stats = recommend_reports(advisor_reports(2), store, "cda", config(server), CAT)
        assert server.count == 2
    assert out["ai_source"].tolist() == ["fallback"] * 2
    assert out["ai_error"].tolist() == ["MalformedResponse"] * 2
    assert out["ai_recommendation"].str.startswith("Motor: desgaste").all()


def test_a_client_error_is_not_retried(store):
    with FakeLLMServer(default="400") as server:
        out, _ = recommend_reports(advisor_reports(1), store, "cda", config(server), CAT)
        assert server.count == 1
    assert out["ai_error"].tolist() == ["BadRequestError"]


def test_requests_are_in_flight_together(store):
    with FakeLLMServer(latency_s=0.2) as server:
        t0 = time.monotonic()
        out, _ = recommend_reports(advisor_reports(32), store, "cda", config(server), CAT)
        elapsed = time.monotonic() - t0
        assert 8 <= server.max_in_flight <= 16
    assert (out["ai_source"] == "llm").all()
    assert elapsed < 32 * 0.2 / 4


def test_a_second_run_with_unchanged_inputs_sends_nothing(server, store):
    reports = advisor_reports(10, normal_every=5)
    first, _ = recommend_reports(reports, store, "cda", config(server), CAT)
    assert server.count == 8

    server.reset()
    again, stats = recommend_reports(reports, Storage.local(store.base), "cda", config(server), CAT)
    assert server.count == 0 and stats["calls"] == 0 and stats["cache_hits"] == 8
    assert (flagged(again)["ai_source"] == "cache").all()
    for col in ("ai_recommendation", "ai_model", "ai_prompt_version", "ai_generated_at", "ai_input_hash"):
        pd.testing.assert_series_equal(first[col], again[col])

    changed = reports.copy()
    b = json.loads(changed.at[3, "breached_essays"])
    b[0]["value"] += 1
    changed.at[3, "breached_essays"] = json.dumps(b)
    out, stats = recommend_reports(changed, store, "cda", config(server), CAT)
    assert server.count == 1 and stats["cache_hits"] == 7 and out.at[3, "ai_source"] == "llm"

    server.reset()
    recommend_reports(reports, store, "cda", config(server, temperature=0.5), CAT)
    assert server.count == 8  # the temperature is part of the key


def test_the_call_cap_is_respected_most_severe_first(server, store):
    reports = advisor_reports(8)
    out, stats = recommend_reports(reports, store, "cda", config(server, max_calls=3), CAT)
    assert server.count == 3 and stats["calls"] == 3
    top = reports["severity_score"].rank(method="first", ascending=False) <= 3
    assert (out.loc[top, "ai_source"] == "llm").all()
    assert (out.loc[~top, "ai_source"] == "fallback").all()
    assert (out.loc[~top, "ai_error"] == "CallCapReached").all()

    # The next run spends its budget on what is still missing.
    out, _ = recommend_reports(reports, store, "cda", config(server, max_calls=3), CAT)
    assert server.count == 6 and out["ai_source"].value_counts().to_dict() == {
        "llm": 3,
        "cache": 3,
        "fallback": 2,
    }


def test_retries_count_against_the_cap(server, store):
    server.queue("500", "500", "500")
    out, stats = recommend_reports(advisor_reports(2), store, "cda", config(server, max_calls=2), CAT)
    assert server.count == 2
    assert set(out["ai_error"]) <= {"CallCapReached", "InternalServerError"}
    assert (out["ai_source"] == "fallback").all()


def test_an_outage_never_fails_the_run_and_stops_calling(store):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = LLMConfig(
        api_key="k",
        base_url=f"http://127.0.0.1:{port}/v1",
        max_retries=1,
        backoff_base_s=0.01,
        breaker_after=3,
        concurrency=2,
        timeout_s=1.0,
    )
    out, stats = recommend_reports(advisor_reports(30), store, "cda", dead, CAT)
    assert (out["ai_source"] == "fallback").all()
    assert set(stats["errors"]) == {"APIConnectionError", "CircuitOpen"}
    assert stats["calls"] <= 2 * (3 + 2)

    with FakeLLMServer(default="500") as server:
        recommend_reports(
            advisor_reports(30),
            store,
            "cda",
            config(server, max_retries=0, breaker_after=3, concurrency=2),
            CAT,
        )
        assert server.count <= 3 + 2


def test_machine_recommendations_through_the_model(server, store):
    reports = advisor_reports(20)
    machines = pd.DataFrame(
        {
            "client": "CDA",
            "unitId": [f"T_{i:02d}" for i in range(10)],
            "machineName": "camion",
            "machineModel": "793F",
            "machine_status": ["Normal", "Alerta"] * 5,
            "machine_score": 6.0,
        }
    )
    out, stats = recommend_machines(machines, reports, store, "cda", config(server), CAT)
    assert server.count == 5 and stats["sources"]["llm"] == 5 and stats["sources"]["normal"] == 5
    assert (out.loc[out["machine_status"] == "Alerta", "machine_ai_source"] == "llm").all()
    assert "Analiza el estado global" in server.requests[0].body["messages"][-1]["content"]
    assert "| motor | alto | Alerta |" in server.requests[0].body["messages"][-1]["content"]

    server.reset()
    out, _ = recommend_machines(machines, reports, store, "cda", config(server), CAT)
    assert (
        server.count == 0
        and (out.loc[out["machine_status"] == "Alerta", "machine_ai_source"] == "cache").all()
    )


def test_cache_shards_are_compacted_without_losing_entries(server, store):
    reports = advisor_reports(MAX_SHARDS + 3)
    for i in range(len(reports)):
        recommend_reports(reports.iloc[[i]], store, "cda", config(server), CAT)
    assert len(store.list_files(cache_dir("cda"))) <= MAX_SHARDS
    server.reset()
    out, _ = recommend_reports(reports, store, "cda", config(server), CAT)
    assert server.count == 0 and (out["ai_source"] == "cache").all()


def test_retry_after_header_forms():
    def err(headers):
        return SimpleNamespace(response=SimpleNamespace(headers=headers))

    assert retry_after_s(err({"retry-after": "2"})) == 2.0
    assert retry_after_s(err({"retry-after-ms": "250", "retry-after": "9"})) == 0.25
    assert retry_after_s(err({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0  # in the past
    assert retry_after_s(err({})) is None and retry_after_s(ValueError()) is None


def test_the_resource_reads_the_environment_and_goes_offline_without_a_key(monkeypatch):
    for var in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OIL_LLM_OFFLINE",
        "OIL_LLM_MODEL",
        "OIL_LLM_MAX_CALLS",
        "OIL_LLM_CONCURRENCY",
        "OIL_LLM_TEMPERATURE",
    ):
        monkeypatch.delenv(var, raising=False)
    assert LLMResource().get_config() is None

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OIL_LLM_CONCURRENCY", "8")
    monkeypatch.setenv("OIL_LLM_MAX_CALLS", "0")
    cfg = LLMResource(temperature=0.0).get_config()
    assert (cfg.api_key, cfg.base_url, cfg.model, cfg.temperature, cfg.concurrency, cfg.max_calls) == (
        "sk-test",
        "http://127.0.0.1:9/v1",
        "gpt-4o-mini",
        0.0,
        8,
        None,
    )
    assert LLMResource().get_config().temperature == 0.2

    monkeypatch.setenv("OIL_LLM_OFFLINE", "true")
    assert LLMResource().get_config() is None


def test_additive_only_reports_are_answered_by_the_rules_not_the_model(server, store):
    reports = advisor_reports(2)
    reports.loc[1, "breached_essays"] = json.dumps(
        [
            {
                "essay": "b",
                "group": "additive",
                "value": 90.0,
                "limit": 40.0,
                "level": "critical",
                "direction": "upper",
                "kind": "level",
                "points": 0.0,
            }
        ]
    )
    out, _ = recommend_reports(reports, store, "cda", config(server), CAT)
    assert server.count == 1
    assert out["ai_source"].tolist() == ["llm", "offline"]
    assert "aditivos" in out.at[1, "ai_recommendation"] and "cambi" not in out.at[1, "ai_recommendation"]


def test_an_unreadable_cache_costs_calls_not_the_run(server, store):
    reports = advisor_reports(3)
    recommend_reports(reports.iloc[:1], store, "cda", config(server), CAT)
    broken = f"{cache_dir('cda')}/shard-0-broken.parquet"
    store.write_bytes(broken, b"not parquet")
    out, stats = recommend_reports(reports, store, "cda", config(server), CAT)
    assert out["ai_source"].tolist() == ["cache", "llm", "llm"]  # only the damaged shard is lost
    assert stats["cache_unreadable_shards"] == [broken]


def test_a_key_in_dev_means_the_llm_advisor_end_to_end(demo_root, server, monkeypatch):
    """The default environment with OPENAI_API_KEY set: the recommendations come from the model (our
    OpenAI-compatible server on 127.0.0.1), not from the offline advisor."""
    from dagster import DagsterInstance, materialize

    from oil_analysis.definitions import all_assets, build_resources

    monkeypatch.delenv("OIL_LLM_OFFLINE", raising=False)
    monkeypatch.setenv("OIL_ENV", "dev")
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    # The dev defaults must not switch it off.
    assert "OIL_LLM_OFFLINE" not in os.environ
    assert LLMResource().get_config().base_url == server.base_url
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            all_assets, partition_key="emin", instance=instance, resources=build_resources(str(demo_root))
        )
    assert result.success
    reports = pd.read_parquet(demo_root / "gold/emin/classified_reports.parquet")
    machines = pd.read_parquet(demo_root / "gold/emin/machine_status_current.parquet")
    bad = flagged(reports)
    assert len(bad) > 0 and server.count >= len(bad)
    advised = bad[bad["ai_source"] != "offline"]  # additive-only reports are answered by the rules
    assert len(advised) > 0 and set(advised["ai_source"]) == {"llm"}
    assert advised["ai_recommendation"].str.startswith("Recomendación simulada").all()
    assert set(machines.loc[machines["machine_status"] != "Normal", "machine_ai_source"]) == {"llm"}
