"""Notification receivers on 127.0.0.1: moto's SNS/SQS server and a webhook receiver of ours."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sns_server():
    """moto's server, speaking the SNS (and SQS) API, on 127.0.0.1."""
    port = free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "moto_server")
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class TopicQueue:
    """An SNS topic with an SQS queue subscribed: what a downstream consumer receives."""

    def __init__(self, endpoint: str, name: str = "oil-gold") -> None:
        self.sns = boto3.client("sns", endpoint_url=endpoint, **CREDS)
        self.sqs = boto3.client("sqs", endpoint_url=endpoint, **CREDS)
        self.arn = self.sns.create_topic(Name=name)["TopicArn"]
        self.queue = self.sqs.create_queue(QueueName=f"{name}-consumer")["QueueUrl"]
        q_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])
        self.sns.subscribe(TopicArn=self.arn, Protocol="sqs", Endpoint=q_arn["Attributes"]["QueueArn"])

    def drain(self) -> list[dict]:
        """Every message waiting, as ``{"subject", "body"}`` (body: the JSON the product sent)."""
        out = []
        while True:
            got = self.sqs.receive_message(
                QueueUrl=self.queue, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", [])
            if not got:
                return out
            for m in got:
                envelope = json.loads(m["Body"])
                out.append({"subject": envelope.get("Subject"), "body": json.loads(envelope["Message"])})
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=m["ReceiptHandle"])


class WebhookReceiver:
    """A JSON webhook endpoint (as Slack's) on 127.0.0.1 that records every POST; ``fail_next``
    answers the next requests with 500 (to see retries)."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.fail_next = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.posts.append(
                    {
                        "path": self.path,
                        "content_type": self.headers.get("Content-Type"),
                        "json": json.loads(body),
                    }
                )
                status = 500 if receiver.fail_next > 0 else 200
                receiver.fail_next -= 1
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T000/B000/secret-token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bodies(self) -> list[dict]:
        return [p["json"] for p in self.posts]


@pytest.fixture
def webhook():
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def notify_env(sns_server, webhook, monkeypatch):
    """Both destinations configured: the SNS topic (with its consumer queue) and the webhook."""
    topic = TopicQueue(sns_server)
    monkeypatch.setenv("NOTIFY_SNS_TOPIC_ARN", topic.arn)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SNS", sns_server)
    monkeypatch.setenv("OIL_ALERT_WEBHOOK_URL", webhook.url)
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(k, v)
    return topic, webhook
