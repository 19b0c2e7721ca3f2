"""Gold publication: dated history snapshots, their retention (fake dates), and the SNS notification."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import boto3
from dagster import DagsterInstance, materialize

from oil_analysis.automation.retention import gold_history_retention
from oil_analysis.definitions import all_assets, build_resources
from oil_analysis.domain.retention import snapshots_to_keep
from oil_analysis.resources.storage import StorageResource

from .conftest import DEMO_BRONZE
from .receivers import sns_server  # noqa: F401


def test_retention_keeps_daily_then_weekly_then_nothing():
    today = dt.date(2026, 11, 22)
    days = [today - dt.timedelta(days=n) for n in range(0, 400)]
    keep = snapshots_to_keep(days, today, daily_days=30, weekly_weeks=52)
    assert {d for d in keep if (today - d).days < 30} == {today - dt.timedelta(days=n) for n in range(30)}
    older = sorted(d for d in keep if (today - d).days >= 30)
    assert all((today - d).days < 364 for d in older)
    weeks = [d.isocalendar()[:2] for d in older]
    assert len(weeks) == len(set(weeks))  # one per ISO week
    assert all(d.weekday() == 6 or (today - d).days == 30 for d in older)  # the newest day of its week
    assert today - dt.timedelta(days=399) not in keep


def test_retention_job_prunes_history_with_fake_dates(data_root):
    for n in (0, 5, 31, 32, 33, 45, 400):
        day = (dt.date(2026, 11, 22) - dt.timedelta(days=n)).isoformat()
        path = data_root / f"gold/cda/_history/{day}/classified_reports.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    result = gold_history_retention.execute_in_process(
        run_config={"ops": {"prune_gold_history": {"config": {"today": "2026-11-22"}}}},
        resources={"storage": StorageResource(data_root=str(data_root))},
    )
    assert result.success
    left = sorted(p.name for p in (data_root / "gold/cda/_history").iterdir() if any(p.iterdir()))
    # 2026-10-22/21/20 (31-33 days old) share ISO week 43: only the newest stays; 400 days: gone.
    assert left == ["2026-10-08", "2026-10-22", "2026-11-17", "2026-11-22"]
    summary = result.output_for_node("prune_gold_history")
    assert summary["cda"]["removed"] == ["2025-10-18", "2026-10-20", "2026-10-21"]


def test_publication_snapshots_history_and_notifies_sns(data_root, sns_server, monkeypatch):  # noqa: F811
    shutil.copytree(DEMO_BRONZE / "cda", data_root / "bronze/cda")
    creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}
    sns = boto3.client("sns", endpoint_url=sns_server, **creds)
    sqs = boto3.client("sqs", endpoint_url=sns_server, **creds)
    arn = sns.create_topic(Name="oil-gold")["TopicArn"]
    queue = sqs.create_queue(QueueName="consumer")["QueueUrl"]
    q_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=q_arn)
    monkeypatch.setenv("NOTIFY_SNS_TOPIC_ARN", arn)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SNS", sns_server)
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(k, v)
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            all_assets, partition_key="cda", instance=instance, resources=build_resources(str(data_root))
        )
        assert result.success
        run_id = result.run_id
    day = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    snap = data_root / f"gold/cda/_history/{day}/classified_reports.parquet"
    assert snap.read_bytes() == (data_root / "gold/cda/classified_reports.parquet").read_bytes()
    messages = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=2).get("Messages", [])
    assert len(messages) == 1
    body = json.loads(json.loads(messages[0]["Body"])["Message"])
    assert (
        body["event"] == "oil_analysis.gold_published"
        and body["client"] == "cda"
        and body["run_id"] == run_id
    )
    paths = {f["path"]: f for f in body["files"]}
    assert "gold/cda/classified_reports.parquet" in paths
    import hashlib

    assert (
        paths["gold/cda/classified_reports.parquet"]["sha256"]
        == hashlib.sha256(snap.read_bytes()).hexdigest()
    )
    assert sum(body["report_status_counts"].values()) > 1000
