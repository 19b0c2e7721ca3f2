"""Telling people: gold publications, failed runs and failed blocking checks.

Destinations, each when configured:

* an SNS topic (``NOTIFY_SNS_TOPIC_ARN``; endpoint ``AWS_ENDPOINT_URL_SNS``, then ``AWS_ENDPOINT_URL``):
  the message is the JSON document, with the subject a one-line summary;
* a webhook (``OIL_ALERT_WEBHOOK_URL``): one JSON POST ``{"text": …, <the same fields>}``, which a
  Slack incoming webhook shows as the ``text`` (other receivers read the structured fields).

Events (``event`` field): ``oil_analysis.gold_published`` (files, checksums, status counts, the
machines whose status changed), ``oil_analysis.run_failed`` (run-failure sensor: client, run id, job,
failed steps with their errors) and ``oil_analysis.check_failed`` (a blocking check stopped a publish:
client, run id, step, checks and why). The webhook URL is a secret (Slack puts the token in the
path): logs and metadata show only its scheme and host.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from ..domain.classify import RANK
from ..settings import get_settings

MAX_LISTED_MACHINES = 10  # machines listed in a publication message; the rest are counted
ERROR_CHARS = 600  # error text kept per failed step


class NotificationError(RuntimeError):
    """A destination refused the notification (after retries); names the destination, not secrets."""


def topic_arn() -> str | None:
    return get_settings().notify_sns_topic_arn


def webhook_url() -> str | None:
    url = get_settings().alert_webhook_url
    return url.get_secret_value() if url else None


def configured() -> bool:
    """Whether any destination is configured."""
    return bool(topic_arn() or webhook_url())


def public_url(url: str) -> str:
    """Scheme and host of a URL, for logs: the path of a Slack webhook is its secret."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}/…"


# -- messages -------------------------------------------------------------------------------------


def publication_message(
    client: str,
    run_id: str,
    files: list[dict],
    status_counts: dict,
    limits_version: str,
    machines: dict,
    changes: list[dict] | None = None,
    changes_total: int = 0,
) -> dict:
    """The message consumers receive: what was published, with checksums, the status counts, and the
    machines whose status changed (at most ``MAX_LISTED_MACHINES``, ``changes_total`` in all)."""
    listed = list(changes or [])[:MAX_LISTED_MACHINES]
    return {
        "event": "oil_analysis.gold_published",
        "client": client,
        "run_id": run_id,
        "limits_version": limits_version,
        "files": [{"path": f["path"], "sha256": f["sha256"], "bytes": f["bytes"]} for f in files],
        "report_status_counts": status_counts,
        "machine_status_counts": machines,
        "machine_status_changes": listed,
        "machine_status_changes_total": int(changes_total),
        "machine_status_changes_not_listed": max(int(changes_total) - len(listed), 0),
    }


def status_changes(machine_delta: dict, machines, reports) -> list[dict]:
    """The machines whose status changed in a run, most serious first: unit, component(s), from, to,
    top breaches of those components' latest reports, first line of the machine's recommendation.

    ``machine_delta`` is the ``machines`` section of the run's change log (``domain.changes``); a unit
    that appears for the first time with a non-Normal status counts as a change from nothing.
    """
    moved = {u: t.split(" → ") for u, t in machine_delta.get("machine_status_transitions", {}).items()}
    rows = machines.drop_duplicates("unitId", keep="last").set_index("unitId")
    for unit in machine_delta.get("machines_added", []):
        if unit in rows.index and rows.at[unit, "machine_status"] != "Normal":
            moved[unit] = [None, str(rows.at[unit, "machine_status"])]
    breaches = (
        reports.drop_duplicates("sampleNumber", keep="last").set_index("sampleNumber")["breached_essays"]
        if len(reports)
        else {}
    )
    out = []
    for unit, (was, now) in moved.items():
        if unit not in rows.index:
            continue
        row = rows.loc[unit]
        components = [c for c in json.loads(row["component_status"] or "[]") if c.get("status") == now]
        if now == "Normal":
            components = []
        top = []
        for c in components:
            sample = c.get("sampleNumber")
            found = breaches.get(sample) if sample is not None and sample in breaches else None
            for b in json.loads(found or "[]"):
                top.append({"component": c.get("component"), **b})
        top.sort(key=lambda b: (-float(b.get("points") or 0), str(b.get("essay"))))
        text = str(row.get("machine_ai_recommendation") or "").strip()
        out.append(
            {
                "unit": str(unit),
                "machine": str(row.get("machineName") or ""),
                "component": ", ".join(str(c.get("component")) for c in components),
                "from": was,
                "to": now,
                "score": float(row["machine_score"]),
                "top_breaches": [
                    {k: b.get(k) for k in ("component", "essay", "value", "limit", "level", "direction")}
                    for b in top[:3]
                ],
                "recommendation": text.splitlines()[0] if text else "",
            }
        )
    out.sort(key=lambda c: (-RANK.get(c["to"], 0), -c["score"], c["unit"]))
    return out


def _number(v) -> str:
    return f"{v:g}" if isinstance(v, int | float) else str(v)


def _breach_text(b: dict) -> str:
    sign = "<" if b.get("direction") == "lower" else ">"
    return f"{b.get('essay')} {_number(b.get('value'))} {sign} {_number(b.get('limit'))} ({b.get('level')})"


def publication_text(message: dict) -> str:
    """Human-readable summary (Slack ``text``) of a publication message."""
    m = message["machine_status_counts"]
    lines = [
        f"oil-analysis {message['client']}: gold published (run {message['run_id'][:8]}, limits "
        f"{message['limits_version']}); machines " + ", ".join(f"{k} {v}" for k, v in m.items())
    ]
    total = message.get("machine_status_changes_total", 0)
    if total:
        lines.append(f"{total} machine(s) changed status:")
    for c in message.get("machine_status_changes", []):
        where = f" [{c['component']}]" if c["component"] else ""
        line = f"• {c['unit']}{where}: {c['from'] or 'new'} → {c['to']}"
        if c["top_breaches"]:
            line += "; " + ", ".join(_breach_text(b) for b in c["top_breaches"])
        if c["recommendation"]:
            line += f" — {c['recommendation']}"
        lines.append(line)
    if message.get("machine_status_changes_not_listed"):
        lines.append(f"… and {message['machine_status_changes_not_listed']} more")
    return "\n".join(lines)


def _short(error: str) -> str:
    error = (error or "").strip()
    return error if len(error) <= ERROR_CHARS else error[: ERROR_CHARS - 1] + "…"


def run_failure_message(client: str, run_id: str, job: str, steps: list[dict], run_error: str) -> dict:
    """A failed run: ``steps`` are ``{"step", "error"}`` of its failed steps (may be empty when the run
    failed outside a step, e.g. at launch); ``run_error`` is the run's own failure message."""
    return {
        "event": "oil_analysis.run_failed",
        "client": client,
        "run_id": run_id,
        "job": job,
        "step": steps[0]["step"] if steps else "",
        "error": _short(steps[0]["error"] if steps else run_error),
        "failed_steps": [{"step": s["step"], "error": _short(s["error"])} for s in steps],
        "run_error": _short(run_error),
    }


def run_failure_text(message: dict) -> str:
    lines = [
        f"oil-analysis {message['client'] or '(no client)'}: run {message['run_id']} of "
        f"{message['job']} FAILED"
    ]
    for s in message["failed_steps"] or [{"step": "(run)", "error": message["run_error"]}]:
        first = s["error"].splitlines()[0] if s["error"] else ""
        lines.append(f"• step {s['step']}: {first}")
    return "\n".join(lines)


def check_failure_message(client: str, run_id: str, step: str, asset: str, failed: list[dict]) -> dict:
    """A blocking check stopped the publish of ``asset``: ``failed`` are ``{"check", "description",
    "metadata"}``; nothing was published, the previous version stays."""
    names = ", ".join(f["check"] for f in failed)
    return {
        "event": "oil_analysis.check_failed",
        "client": client,
        "run_id": run_id,
        "step": step,
        "asset": asset,
        "error": f"{asset}: blocking checks failed: {names}; nothing was published, the previous "
        "version stays in place",
        "failed_checks": failed,
    }


def check_failure_text(message: dict) -> str:
    lines = [
        f"oil-analysis {message['client']}: blocking check failed in run {message['run_id']}, step "
        f"{message['step']}: {message['error']}"
    ]
    lines += [f"• {f['check']}: {f['description']}" for f in message["failed_checks"]]
    return "\n".join(lines)


# -- delivery -------------------------------------------------------------------------------------


def publish_sns(arn: str, message: dict, subject: str | None = None) -> str:
    """Publish to SNS (endpoint from AWS_ENDPOINT_URL_SNS or AWS_ENDPOINT_URL); returns the MessageId."""
    import boto3  # here, not at import: boto3 costs a second to load and most runs never publish

    endpoint = get_settings().sns_endpoint_url
    sns = boto3.session.Session().client(
        "sns", region_name=arn.split(":")[3] if arn.count(":") >= 5 else None, endpoint_url=endpoint
    )
    response = sns.publish(
        TopicArn=arn,
        Subject=(subject or f"oil-analysis gold published: {message['client']}")[:100],
        Message=json.dumps(message, sort_keys=True, default=str),
        MessageAttributes={
            "client": {"DataType": "String", "StringValue": message["client"] or "-"},
            "event": {"DataType": "String", "StringValue": message["event"]},
        },
    )
    return response["MessageId"]


def post_webhook(url: str, text: str, message: dict, *, timeout_s: float = 10.0, attempts: int = 3) -> int:
    """POST ``{"text": text, **message}`` as JSON; retries connection errors and 5xx/429 with a short
    backoff. Returns the HTTP status; raises :class:`NotificationError` naming only the host."""
    body = json.dumps({"text": text, **message}, default=str).encode()
    last = ""
    for attempt in range(attempts):
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
            if exc.code < 500 and exc.code != 429:
                break
        except (urllib.error.URLError, OSError) as exc:
            last = type(getattr(exc, "reason", exc)).__name__
        time.sleep(0.5 * 2**attempt)
    raise NotificationError(f"webhook {public_url(url)} refused the {message['event']} message: {last}")


def notify(message: dict, text: str, subject: str) -> dict[str, str]:
    """Send ``message`` to every configured destination. Returns what each accepted (SNS message id,
    webhook HTTP status); tries them all, then raises :class:`NotificationError` if one failed."""
    sent: dict[str, str] = {}
    errors: list[str] = []
    arn, url = topic_arn(), webhook_url()
    if arn:
        try:
            sent["sns"] = publish_sns(arn, message, subject)
        except Exception as exc:  # noqa: BLE001 - the webhook is still tried; reported below
            errors.append(f"SNS {arn}: {type(exc).__name__}: {exc}")
    if url:
        try:
            sent["webhook"] = str(post_webhook(url, text, message))
        except NotificationError as exc:
            errors.append(str(exc))
    if errors:
        raise NotificationError("; ".join(errors))
    return sent
