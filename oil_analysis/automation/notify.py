"""Downstream notification of a gold publish: a message on an SNS topic (when one is configured)."""

from __future__ import annotations

import json
import os


def topic_arn() -> str | None:
    return os.environ.get("NOTIFY_SNS_TOPIC_ARN") or None


def publication_message(
    client: str, run_id: str, files: list[dict], status_counts: dict, limits_version: str, machines: dict
) -> dict:
    """The message consumers receive: what was published, with checksums, and the status counts."""
    return {
        "event": "oil_analysis.gold_published",
        "client": client,
        "run_id": run_id,
        "limits_version": limits_version,
        "files": [{"path": f["path"], "sha256": f["sha256"], "bytes": f["bytes"]} for f in files],
        "report_status_counts": status_counts,
        "machine_status_counts": machines,
    }


def publish_sns(arn: str, message: dict) -> str:
    """Publish to SNS (endpoint from AWS_ENDPOINT_URL_SNS or AWS_ENDPOINT_URL); returns the MessageId."""
    import boto3  # here, not at import: boto3 costs a second to load and most runs never publish

    endpoint = os.environ.get("AWS_ENDPOINT_URL_SNS") or os.environ.get("AWS_ENDPOINT_URL") or None
    sns = boto3.session.Session().client(
        "sns", region_name=arn.split(":")[3] if arn.count(":") >= 5 else None, endpoint_url=endpoint
    )
    response = sns.publish(
        TopicArn=arn,
        Subject=f"oil-analysis gold published: {message['client']}"[:100],
        Message=json.dumps(message, sort_keys=True),
        MessageAttributes={"client": {"DataType": "String", "StringValue": message["client"]}},
    )
    return response["MessageId"]
