"""Failures and changes are heard: the gold publication message with the machines whose status
changed, a failed blocking check, and the run-failure sensor on a real temporary Dagster instance.
Destinations: moto's SNS (a subscribed SQS queue reads what consumers get) and a webhook receiver of
ours, both on 127.0.0.1."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from dagster import DagsterInstance, build_sensor_context, instance_for_test, job, materialize, op

from oil_analysis.automation.failures import run_failure_notification
from oil_analysis.definitions import all_assets, build_resources
from oil_analysis.resources import notify

from .receivers import WebhookReceiver, notify_env, sns_server, webhook  # noqa: F401


@op
def explode():
    raise ValueError("another team's failure")


@job
def other_teams_job():
    explode()


QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def run(root, instance, selection=None):
    return materialize(
        all_assets,
        partition_key="emin",
        instance=instance,
        resources=build_resources(str(root)),
        selection=selection,
        run_config=QUIET,
        raise_on_error=False,
    )


def test_publication_message_lists_the_machines_whose_status_changed(demo_root, notify_env):  # noqa: F811
    topic, hook = notify_env
    with DagsterInstance.ephemeral() as instance:
        assert run(demo_root, instance).success
        first = topic.drain()
        assert [m["body"]["event"] for m in first] == ["oil_analysis.gold_published"]
        # Every unit's previous status flipped: this run sees each of them change.
        path = demo_root / "gold/emin/machine_status_current.parquet"
        machines = pd.read_parquet(path)
        was = machines["machine_status"].map(lambda s: "Anormal" if s == "Normal" else "Normal")
        machines.assign(machine_status=was).to_parquet(path, index=False)
        # Edited by hand, not by a run: forget the recorded fingerprints so both steps work again.
        for asset in ("machine_status_current", "gold_publication"):
            (demo_root / f"silver/_state/emin/fingerprints/{asset}.json").unlink()
        hook.posts.clear()
        result = run(demo_root, instance, selection=["machine_status_current", "gold_publication"])
        assert result.success
    current = pd.read_parquet(path).set_index("unitId")
    reports = pd.read_parquet(demo_root / "gold/emin/classified_reports.parquet").set_index("sampleNumber")
    (message,) = topic.drain()
    body = message["body"]
    assert message["subject"] == "oil-analysis gold published: emin"
    assert (body["event"], body["client"], body["run_id"]) == (
        "oil_analysis.gold_published",
        "emin",
        result.run_id,
    )
    n = len(current)
    assert n > notify.MAX_LISTED_MACHINES  # so the cap shows
    listed = body["machine_status_changes"]
    assert body["machine_status_changes_total"] == n
    assert len(listed) == notify.MAX_LISTED_MACHINES
    assert body["machine_status_changes_not_listed"] == n - notify.MAX_LISTED_MACHINES
    # Most serious first: every unit now Anormal comes before the Alerta and Normal ones.
    order = [{"Anormal": 2, "Alerta": 1, "Normal": 0}[c["to"]] for c in listed]
    assert order == sorted(order, reverse=True) and order[0] == 2
    for change in listed:
        row = current.loc[change["unit"]]
        assert change["to"] == row["machine_status"]
        assert change["from"] == ("Anormal" if change["to"] == "Normal" else "Normal")
        assert change["recommendation"] == row["machine_ai_recommendation"].strip().splitlines()[0]
        if change["to"] == "Normal":
            assert change["component"] == "" and change["top_breaches"] == []
            continue
        worst = [c for c in json.loads(row["component_status"]) if c["status"] == change["to"]]
        assert change["component"] == ", ".join(c["component"] for c in worst)
        breached = {
            b["essay"]
            for c in worst
            for b in json.loads(reports.loc[c["sampleNumber"], "breached_essays"] or "[]")
        }
        assert change["top_breaches"] and {b["essay"] for b in change["top_breaches"]} <= breached
        assert all(b["value"] is not None and b["limit"] is not None for b in change["top_breaches"])
    # The webhook got the same fields, and a text a person reads (Slack shows "text").
    (post,) = hook.posts
    assert post["content_type"] == "application/json"
    assert {k: v for k, v in post["json"].items() if k != "text"} == body
    text = post["json"]["text"]
    assert text.startswith("oil-analysis emin: gold published")
    assert f"{n} machine(s) changed status:" in text
    first_change = listed[0]
    assert f"• {first_change['unit']} [{first_change['component']}]: {first_change['from']} → " in text
    assert first_change["recommendation"] in text
    assert text.rstrip().endswith(f"… and {n - notify.MAX_LISTED_MACHINES} more")


def test_blocking_check_failure_and_failed_run_are_notified(demo_root, notify_env, tmp_path):  # noqa: F811
    topic, hook = notify_env
    home = tmp_path / "dagster_home"
    home.mkdir()
    quiet_instance = {"telemetry": {"enabled": False}, "nux": {"enabled": False}}
    with instance_for_test(temp_dir=str(home), overrides=quiet_instance) as instance:
        first_tick = build_sensor_context(instance=instance)
        run_failure_notification.evaluate_tick(first_tick)  # the daemon's first tick sets the cursor
        assert run(demo_root, instance).success
        topic.drain()
        hook.posts.clear()
        # Duplicated samples in silver: the blocking check of classified_reports fails for real.
        silver_path = demo_root / "silver/harmonized/EMIN.parquet"
        silver = pd.read_parquet(silver_path)
        pd.concat([silver, silver.head(3)]).to_parquet(silver_path, index=False)
        (demo_root / "silver/_state/emin/fingerprints/classified_reports.json").unlink()  # a hand edit
        failed = run(demo_root, instance, selection=["classified_reports"])
        assert not failed.success

        # 1. From the step itself, with no daemon: the check failure.
        (check,) = topic.drain()
        body = check["body"]
        assert check["subject"] == "oil-analysis blocking check FAILED: emin classified_reports"
        assert (body["event"], body["client"], body["run_id"], body["step"]) == (
            "oil_analysis.check_failed",
            "emin",
            failed.run_id,
            "classified_reports",
        )
        assert "blocking checks failed: every_sample_classified_once" in body["error"]
        (failed_check,) = body["failed_checks"]
        assert failed_check["check"] == "every_sample_classified_once" and failed_check["description"]
        (post,) = hook.bodies()
        assert {k: v for k, v in post.items() if k != "text"} == body
        assert f"run {failed.run_id}, step classified_reports" in post["text"]
        assert "every_sample_classified_once" in post["text"]

        # Another team's job fails on the same instance: not ours, not notified.
        assert not other_teams_job.execute_in_process(instance=instance, raise_on_error=False).success

        # 2. The run-failure sensor, evaluated as the daemon does, on the same instance.
        hook.posts.clear()
        tick = build_sensor_context(instance=instance, cursor=first_tick.cursor)
        run_failure_notification.evaluate_tick(tick)
        (run_failed,) = topic.drain()
        body = run_failed["body"]
        assert run_failed["subject"] == f"oil-analysis run FAILED: emin {failed.run_id[:8]}"
        assert (body["event"], body["client"], body["run_id"], body["step"]) == (
            "oil_analysis.run_failed",
            "emin",
            failed.run_id,
            "classified_reports",
        )
        assert body["job"] == failed.job_def.name
        assert "blocking checks failed: every_sample_classified_once" in body["error"]
        assert [s["step"] for s in body["failed_steps"]] == ["classified_reports"]
        (post,) = hook.bodies()
        assert {k: v for k, v in post.items() if k != "text"} == body
        assert post["text"].startswith(f"oil-analysis emin: run {failed.run_id} of ")
        assert "• step classified_reports: classified_reports: blocking checks failed" in post["text"]
        # A later tick does not notify the same failure again.
        hook.posts.clear()
        run_failure_notification.evaluate_tick(build_sensor_context(instance=instance, cursor=tick.cursor))
        assert topic.drain() == [] and hook.posts == []


def test_webhook_retries_server_errors_and_names_only_the_host(monkeypatch):
    monkeypatch.delenv("NOTIFY_SNS_TOPIC_ARN", raising=False)
    message = notify.run_failure_message("cda", "r1", "oil_analysis_job", [], "launch failed")
    with WebhookReceiver() as hook:
        monkeypatch.setenv("OIL_ALERT_WEBHOOK_URL", hook.url)
        hook.fail_next = 2
        assert notify.notify(message, "text", "subject") == {"webhook": "200"}
        assert len(hook.posts) == 3 and hook.posts[-1]["json"]["run_error"] == "launch failed"
        hook.fail_next = 10
        with pytest.raises(notify.NotificationError) as err:
            notify.notify(message, "text", "subject")
    assert "HTTP 500" in str(err.value) and "secret-token" not in str(err.value)
    assert f"127.0.0.1:{hook.server.server_port}" in str(err.value)


def test_status_changes_from_the_change_log_pure():
    """New non-Normal units count as changes from nothing; a lower-limit breach reads ``<``."""
    machines = pd.DataFrame(
        {
            "unitId": ["T1", "T2", "T3"],
            "machineName": ["camion"] * 3,
            "machine_status": ["Alerta", "Anormal", "Normal"],
            "machine_score": [3.0, 9.0, 0.0],
            "component_status": [
                json.dumps([{"component": "motor", "status": "Alerta", "sampleNumber": "s1"}]),
                json.dumps([{"component": "mando final", "status": "Anormal", "sampleNumber": "s2"}]),
                "[]",
            ],
            "machine_ai_recommendation": ["Cambiar aceite.\nDetalle…", "Inspeccionar.", "Sin acción."],
        }
    )
    reports = pd.DataFrame(
        {
            "sampleNumber": ["s1", "s2"],
            "breached_essays": [
                json.dumps(
                    [
                        {
                            "essay": "visc_100c",
                            "value": 9.1,
                            "limit": 11.0,
                            "level": "marginal",
                            "direction": "lower",
                            "points": 1.0,
                        }
                    ]
                ),
                "[]",
            ],
        }
    )
    delta = {"machine_status_transitions": {"T1": "Normal → Alerta"}, "machines_added": ["T2", "T3"]}
    changes = notify.status_changes(delta, machines, reports)
    assert [(c["unit"], c["from"], c["to"], c["component"]) for c in changes] == [
        ("T2", None, "Anormal", "mando final"),
        ("T1", "Normal", "Alerta", "motor"),
    ]
    assert changes[1]["recommendation"] == "Cambiar aceite."
    message = notify.publication_message("cda", "run-1", [], {}, "v1", {"Normal": 1}, changes, 12)
    text = notify.publication_text(message)
    assert "• T2 [mando final]: new → Anormal — Inspeccionar." in text
    assert "• T1 [motor]: Normal → Alerta; visc_100c 9.1 < 11 (marginal) — Cambiar aceite." in text
    assert text.endswith("… and 10 more")
