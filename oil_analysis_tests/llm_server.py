"""A small OpenAI-compatible chat-completions server on 127.0.0.1, for tests and the bench.

It answers ``POST /v1/chat/completions`` in a thread of its own and can inject, per request, what a
real endpoint does on a bad day: latency, 429 with ``Retry-After``, 5xx, a hang longer than the
client's timeout, a malformed body. It records every request (time, action, body) and the largest
number of requests in flight. The answer text is a digest of the last user message, so the same
prompt always gets the same text.

    with FakeLLMServer(latency_s=0.05) as server:
        server.queue("429", "500")      # the next two requests fail, then the default action
        ... AsyncOpenAI(base_url=server.base_url, api_key="test") ...
        server.requests, server.max_in_flight
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd

ACTIONS = ("ok", "429", "500", "503", "400", "timeout", "malformed", "no_choices", "empty")


@dataclass
class Request:
    at: float  # time.monotonic() when the body was read
    action: str
    body: dict = field(repr=False)


def answer_text(user_prompt: str) -> str:
    return f"Recomendación simulada {hashlib.sha256(user_prompt.encode()).hexdigest()[:10]}."


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the OpenAI client expects
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall
    server: _Server

    def log_message(self, format, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up (timeout test)
            self.close_connection = True

    def do_POST(self) -> None:
        fake = self.server.fake
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, b'{"error": {"message": "not found"}}')
            return
        try:
            doc = json.loads(body)
        except ValueError:
            self._send(400, b'{"error": {"message": "bad json"}}')
            return
        action = fake._enter(doc)
        try:
            fake._wait(fake.latency_s)
            self._act(action, doc)
        finally:
            fake._leave()

    def _act(self, action: str, doc: dict) -> None:
        fake = self.server.fake
        if action == "429":
            self._send(
                429,
                b'{"error": {"message": "rate limited", "type": "rate_limit"}}',
                {"Retry-After": fake.retry_after},
            )
        elif action in ("500", "503", "400"):
            self._send(int(action), b'{"error": {"message": "injected failure"}}')
        elif action == "malformed":
            self._send(200, b'{"id": "x", "choices": [ {"message": trunc')
        elif action == "no_choices":
            self._send(200, b'{"id": "x", "object": "chat.completion", "created": 0, "model": "m"}')
        else:
            if action == "timeout":
                fake._wait(fake.hang_s)
            user = next(
                (m["content"] for m in reversed(doc.get("messages", [])) if m.get("role") == "user"), ""
            )
            text = "" if action == "empty" else answer_text(user)
            words = sum(len(str(m.get("content", "")).split()) for m in doc.get("messages", []))
            payload = {
                "id": f"chatcmpl-{fake.count}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": doc.get("model", "fake"),
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                ],
                "usage": {
                    "prompt_tokens": words,
                    "completion_tokens": len(text.split()),
                    "total_tokens": words + len(text.split()),
                },
            }
            self._send(200, json.dumps(payload).encode())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a burst of connections must not overflow the listen backlog
    fake: FakeLLMServer


class FakeLLMServer:
    """The fake endpoint. ``latency_s`` delays every request; ``queue()`` scripts the next actions;
    ``plan(index, body) -> action`` (if set) decides when the queue is empty; otherwise ``default``."""

    def __init__(
        self,
        latency_s: float = 0.0,
        default: str = "ok",
        hang_s: float = 2.0,
        retry_after: str = "1",
        plan: Callable[[int, dict], str] | None = None,
    ) -> None:
        self.latency_s, self.default, self.hang_s, self.retry_after, self.plan = (
            latency_s,
            default,
            hang_s,
            retry_after,
            plan,
        )
        self.requests: list[Request] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._script: deque[str] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- control ------------------------------------------------------------------------------
    def queue(self, *actions: str) -> None:
        for a in actions:
            if a not in ACTIONS:
                raise ValueError(f"unknown action {a!r}")
        with self._lock:
            self._script.extend(actions)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._script.clear()
            self.max_in_flight = 0

    @property
    def count(self) -> int:
        return len(self.requests)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeLLMServer:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="fake-llm"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes handlers sleeping on latency or a hang
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- used by the handler ------------------------------------------------------------------
    def _enter(self, doc: dict) -> str:
        with self._lock:
            if self._script:
                action = self._script.popleft()
            elif self.plan is not None:
                action = self.plan(len(self.requests), doc)
            else:
                action = self.default
            self.requests.append(Request(time.monotonic(), action, doc))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return action

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._stop.wait(seconds)


# -- classified reports to drive it ---------------------------------------------------------------

REPORT_FIELDS = [
    "client",
    "sampleNumber",
    "sampleDate",
    "unitId",
    "machineName",
    "machineModel",
    "componentName",
    "componentNameNormalized",
    "oilMeter",
    "oilType",
    "oilWeight",
    "previousSampleNumber",
    "labComment",
    "fe",
    "si",
    "zn",
    "breached_essays",
    "severity_score",
    "report_status",
    "limits_version",
]
COMPONENTS = ("motor", "transmision", "mando final izquierdo", "diferencial")


def _breach(
    essay: str,
    group: str,
    value: float,
    limit: float,
    level: str,
    direction: str = "upper",
    kind: str = "level",
) -> dict:
    points = {"marginal": 1.0, "condemning": 3.0, "critical": 6.0}[level] * (group != "additive")
    return {
        "essay": essay,
        "group": group,
        "value": value,
        "limit": limit,
        "level": level,
        "direction": direction,
        "kind": kind,
        "points": points,
    }


def advisor_reports(n: int, client: str = "CDA", normal_every: int = 0, units: int = 10) -> pd.DataFrame:
    """``n`` classified reports in the gold shape (the columns the advisor reads), deterministic.

    Samples cycle over ``units`` units × 4 compartments, each linked to the previous sample of its
    unit and compartment; every ``normal_every``-th report is Normal (0: none).
    """
    rows, last = [], {}
    for i in range(n):
        unit, comp = f"T_{i % units:02d}", COMPONENTS[(i // units) % len(COMPONENTS)]
        number = f"{client}-{i:06d}"
        fe, si, zn = 20.0 + i % 37, 8.0 + (i * 7) % 23, 900.0 + i % 11
        normal = normal_every and i % normal_every == 0
        breaches = [] if normal else [_breach("fe", "wear", fe, 18.0, "condemning" if i % 3 else "critical")]
        if not normal and i % 2:
            breaches.append(_breach("si", "contaminant", si, 10.0, "marginal"))
        if not normal and i % 5 == 0:
            breaches.append(_breach("zn", "additive", zn, 1200.0, "marginal", "lower"))
        score = sum(b["points"] for b in breaches)
        rows.append(
            {
                "client": client,
                "sampleNumber": number,
                "sampleDate": pd.Timestamp("2024-01-01") + pd.Timedelta(days=i // units),
                "unitId": unit,
                "machineName": "camion",
                "machineModel": "793F",
                "componentName": comp,
                "componentNameNormalized": comp.replace(" izquierdo", ""),
                "oilMeter": float(100 + i % 400),
                "oilType": "DELVAC 1300",
                "oilWeight": "15W-40",
                "previousSampleNumber": last.get((unit, comp)),
                "labComment": f"COMENTARIO DEL LABORATORIO {i}",
                "fe": fe,
                "si": si,
                "zn": zn,
                "breached_essays": json.dumps(breaches),
                "severity_score": score,
                "report_status": "Normal" if normal else ("Anormal" if score >= 9 else "Alerta"),
                "limits_version": "limits-test",
            }
        )
        last[(unit, comp)] = number
    df = pd.DataFrame(rows, columns=REPORT_FIELDS)
    for c in (
        "client",
        "sampleNumber",
        "unitId",
        "machineName",
        "machineModel",
        "componentName",
        "componentNameNormalized",
        "oilType",
        "oilWeight",
        "previousSampleNumber",
        "labComment",
        "breached_essays",
        "report_status",
        "limits_version",
    ):
        df[c] = df[c].astype("string")
    df["sampleDate"] = df["sampleDate"].astype("datetime64[us]")
    df["severity_score"] = df["severity_score"].astype(float)
    return df.reset_index(drop=True).astype({"fe": np.float64, "si": np.float64, "zn": np.float64})
