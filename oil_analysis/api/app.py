"""The read API over the published gold: FastAPI app (served by uvicorn, ``python -m oil_analysis.api``).

Every client endpoint needs ``Authorization: Bearer <key>`` with a key scoped to that client
(:mod:`.keys`); data comes from in-memory snapshots of what each client's manifest names
(:mod:`.snapshot`). Handlers are plain functions: FastAPI runs them in its thread pool, so a slow
storage call never blocks the event loop.
"""

import concurrent.futures
import io
import os
import threading
import time
from collections import defaultdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline

from ..domain.classify import STATUSES
from ..domain.clients import load_clients
from ..settings import get_settings
from ..storage.filesystem import Storage
from . import models
from .keys import ApiKey, KeyRing, keys_file
from .snapshot import (
    ClientState,
    InconsistentPublication,
    Snapshot,
    SnapshotCache,
    dumps,
    limit_versions,
    past_limits,
    published_at,
)

PARQUET_TYPES = ("application/vnd.apache.parquet", "application/x-parquet", "application/parquet")
HEALTH_TIMEOUT_S = 5.0
MAX_PAGE = 10_000
INLINE_ROWS = 500  # JSON pages up to this size are built on the event loop (see ``reports``)
FORBIDDEN = "this key may not read that client"  # the same for an unknown client: nothing leaks

DESCRIPTION = """
Read-only access to the oil analysis gold layer: machine status by priority, classified reports,
limits and the fleet report of each client, as published by the data product.

**Keys.** Every endpoint but `/health` needs `Authorization: Bearer <key>`. A key is scoped to one or
more clients (`python -m oil_analysis.api keys add --client cda`). No key or an unknown key: **401**.
A key without the client: **403**, the same answer as for a client that does not exist.

**Consistency.** Answers come from the newest publication whose files all match the client's manifest
(`gold/{client}/_manifest.json`, sha256 per file). While a publication is in progress or a file does not
match, the previous consistent snapshot is served (`snapshot.serving = "previous"`, details in
`/health`). Headers `X-Oil-Snapshot` (manifest sha256) and `X-Oil-Serving` say which.
"""

bearer = HTTPBearer(auto_error=False, description="An API key created with `keys add`.")


# The answers every per-client endpoint documents besides its own: forbidden or unknown client (one
# answer for both), no such row, storage down.
CLIENT_ERRORS = {code: {"model": models.Problem} for code in (403, 404, 503)}


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(dt: datetime | None) -> str | None:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if dt else None


class Metrics:
    """Request counters by route template and status code (the gold figures are computed per scrape)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.seconds: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)

    def observe(self, method: str, route: str, code: int, seconds: float) -> None:
        with self.lock:
            self.requests[(method, route, code)] += 1
            self.seconds[route] += seconds
            self.count[route] += 1


class MetricsMiddleware:
    """Pure ASGI (no per-request task or body buffering): counts every answer by route template."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, code = time.perf_counter(), [500]

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                code[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", "(unmatched)")
            self.metrics.observe(scope["method"], route, code[0], time.perf_counter() - started)


def storage_reachable(store: Storage) -> tuple[bool, str | None]:
    """Can the data root be listed now? Bounded by a timeout: an unreachable endpoint must not hang."""

    def probe():
        primary = getattr(store, "primary", store)
        if primary.is_local:
            if not os.path.isdir(primary.base):
                raise FileNotFoundError(f"data root {primary.base} does not exist")
            os.listdir(primary.base)
        else:
            primary.check_access()

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        pool.submit(probe).result(timeout=HEALTH_TIMEOUT_S)
        return True, None
    except concurrent.futures.TimeoutError:
        return False, f"no answer within {HEALTH_TIMEOUT_S:.0f} s"
    except Exception as exc:  # any failure means unreachable; the message names no credential
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        pool.shutdown(wait=False)


def create_app(
    store: Storage | None = None, keys_path: Path | None = None, refresh_s: float | None = None
) -> FastAPI:
    """The API over ``store`` (default: the product's storage settings) and the keys file."""
    store = store or Storage.from_settings(get_settings())
    if refresh_s is None:
        refresh_s = get_settings().api_refresh_s
    keyring = KeyRing(keys_path or keys_file())
    cache = SnapshotCache(store, refresh_s=refresh_s)
    registered = load_clients(get_settings().clients_file)
    metrics = Metrics()

    # Swagger UI and ReDoc served from the package (fastapi-offline), not a CDN: /docs works offline.
    app = FastAPIOffline(
        title="Oil analysis gold API",
        version="1.0.0",
        description=DESCRIPTION,
        responses={401: {"model": models.Problem, "description": "No key, or an unknown key."}},
    )
    app.state.store, app.state.cache, app.state.keys = store, cache, keyring
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    # -- dependencies ---------------------------------------------------------------------------
    # Dependencies are coroutines: no thread-pool hop for a dictionary lookup.
    async def optional_key(
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> ApiKey | None:
        if creds is None:
            return None
        key = keyring.lookup(creds.credentials)
        if key is None:
            raise HTTPException(401, "unknown key", headers={"WWW-Authenticate": "Bearer"})
        return key

    async def caller(key: Annotated[ApiKey | None, Depends(optional_key)]) -> ApiKey:
        if key is None:
            raise HTTPException(401, "missing bearer key", headers={"WWW-Authenticate": "Bearer"})
        return key

    Caller = Annotated[ApiKey, Depends(caller)]
    ClientPath = Annotated[str, PathParam(description="Client key (`cda`, `emin`).")]

    def readable(client: str, key: ApiKey) -> None:
        if client not in registered or not key.may_read(client):
            raise HTTPException(403, FORBIDDEN)

    def snapshot_of(client: str, key: ApiKey, st: ClientState | None = None) -> tuple[Snapshot, ClientState]:
        readable(client, key)
        st = st or cache.state(client)
        if st.snapshot is None:
            if st.error:
                raise HTTPException(503, "storage unreachable and no snapshot of this client in memory")
            if not st.published:
                raise HTTPException(404, "no gold published for this client yet")
            raise HTTPException(
                503, "no consistent publication of this client yet: " + "; ".join(st.problems)
            )
        return st.snapshot, st

    async def snapshot_now(client: str, key: ApiKey) -> tuple[Snapshot, ClientState]:
        """For coroutine handlers: never blocks the event loop (a first load runs in the pool)."""
        readable(client, key)
        st = cache.state(client, wait=False)
        if st.snapshot is None:
            st = await run_in_threadpool(cache.state, client)
        return snapshot_of(client, key, st)

    def snapshot_info(snap: Snapshot, st: ClientState) -> dict:
        return {
            "manifest_sha256": snap.manifest_sha256,
            "published_at": snap.manifest.get("updated_at"),
            "limits_version": snap.limits_version,
            "serving": "previous" if st.serving == "previous" else "current",
        }

    def headers(snap: Snapshot, st: ClientState) -> dict[str, str]:
        return {"X-Oil-Snapshot": snap.manifest_sha256, "X-Oil-Serving": st.serving}

    def next_url(request: Request, offset: int, limit: int, total: int) -> str | None:
        if offset + limit >= total:
            return None
        return str(request.url.include_query_params(offset=offset + limit, limit=limit))

    Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page size.")]
    Offset = Annotated[int, Query(ge=0, description="Rows to skip (see `next`).")]
    StatusFilter = Annotated[
        list[models.Status] | None, Query(description="Keep these statuses (repeat the parameter).")
    ]

    # -- endpoints ------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def root():
        return RedirectResponse("/docs")

    @app.get(
        "/health",
        response_model=models.Health,
        summary="Storage reachable; per client publication time, age and limits version (with a key)",
        responses={503: {"model": models.Health, "description": "Storage unreachable."}},
        tags=["service"],
    )
    def health(key: Annotated[ApiKey | None, Depends(optional_key)]):
        ok, error = storage_reachable(store)
        doc: dict = {
            "status": "ok" if ok else "unavailable",
            "storage": {"backend": store.kind, "reachable": ok, "error": error},
            "checked_at": _iso(_now()),
            "clients": None,
        }
        if key is not None:
            doc["clients"] = {}
            for client in key.scope(list(registered)):
                st = cache.state(client)
                snap = st.snapshot
                at = published_at(snap.manifest) if snap else None
                doc["clients"][client] = {
                    "published": st.published and snap is not None,
                    "published_at": _iso(at),
                    "age_seconds": round((_now() - at).total_seconds(), 3) if at else None,
                    "limits_version": snap.limits_version if snap else None,
                    "serving": st.serving,
                    "consistent": not st.problems,
                    "manifest_sha256": snap.manifest_sha256 if snap else None,
                    "problems": st.problems,
                    "error": st.error,
                }
                if ok and st.published and st.serving != "current":
                    doc["status"] = "degraded"
        return Response(dumps(doc), status_code=200 if ok else 503, media_type="application/json")

    @app.get(
        "/clients", response_model=models.ClientList, summary="The clients your key may read", tags=["gold"]
    )
    def clients(key: Caller):
        out = []
        for c in key.scope(list(registered)):
            st = cache.state(c)
            snap = st.snapshot
            out.append(
                {
                    "client": c,
                    "display_name": registered[c].display_name,
                    "published": snap is not None,
                    "published_at": snap.manifest.get("updated_at") if snap else None,
                    "limits_version": snap.limits_version if snap else None,
                }
            )
        return Response(dumps({"clients": out}), media_type="application/json")

    @app.get(
        "/clients/{client}/machines",
        response_model=models.MachinePage,
        summary="Machine status, most urgent first",
        description="One row per unit from `machine_status_current`, ordered by `priority` (descending), "
        "then unit. Filter by status; paginated with `offset`/`limit` (`total`, `next`).",
        responses=CLIENT_ERRORS,
        tags=["gold"],
    )
    async def machines(
        request: Request,
        client: ClientPath,
        key: Caller,
        status: StatusFilter = None,
        offset: Offset = 0,
        limit: Limit = 100,
    ):
        snap, st = await snapshot_now(client, key)
        pos = snap.machine_positions(status)
        page = pos[offset : offset + limit]
        head = {
            "client": client,
            "snapshot": snapshot_info(snap, st),
            "total": int(len(pos)),
            "offset": offset,
            "limit": limit,
            "next": next_url(request, offset, limit, len(pos)),
        }
        body = dumps(head)[:-1] + b',"items":[' + b",".join(snap.machine_items[i] for i in page) + b"]}"
        return Response(body, media_type="application/json", headers=headers(snap, st))

    @app.get(
        "/clients/{client}/machines/{unit}",
        response_model=models.MachineDetail,
        summary="One machine: components, latest reports, trends of breached essays with their limits",
        responses=CLIENT_ERRORS,
        tags=["gold"],
    )
    def machine(
        client: ClientPath,
        unit: Annotated[str, PathParam(description="Unit id (`T_09`).")],
        key: Caller,
        history: Annotated[int, Query(ge=1, le=1000, description="Readings per trend series.")] = 50,
    ):
        snap, st = snapshot_of(client, key)
        detail = snap.machine_detail(unit, history)
        if detail is None:
            raise HTTPException(404, "no such unit for this client")
        doc = {"client": client, "snapshot": snapshot_info(snap, st), **detail}
        return Response(dumps(doc), media_type="application/json", headers=headers(snap, st))

    @app.get(
        "/clients/{client}/reports",
        response_model=models.ReportPage,
        summary="Classified reports, newest first; JSON, CSV or parquet by Accept header",
        description="Filters combine (AND): `status` (repeatable), `unit`, `component` (`componentName` or "
        "`componentNameNormalized`), `date_from`/`date_to` (sample date, inclusive). Paginated with "
        "`offset`/`limit`. `Accept: text/csv` or `application/vnd.apache.parquet` returns the page's rows "
        "with the contract's flat columns; `X-Total-Count` and a `Link: rel=next` header paginate them.",
        responses={
            **CLIENT_ERRORS,
            200: {
                "content": {"text/csv": {}, "application/vnd.apache.parquet": {}},
                "description": "A page of reports.",
            },
            406: {"model": models.Problem, "description": "No supported media type in Accept."},
        },
        tags=["gold"],
    )
    async def reports(
        request: Request,
        client: ClientPath,
        key: Caller,
        status: StatusFilter = None,
        unit: Annotated[str | None, Query(description="Unit id.")] = None,
        component: Annotated[str | None, Query(description="Compartment (folded name).")] = None,
        date_from: Annotated[date | None, Query(description="First sample date (YYYY-MM-DD).")] = None,
        date_to: Annotated[date | None, Query(description="Last sample date (YYYY-MM-DD).")] = None,
        offset: Offset = 0,
        limit: Limit = 100,
    ):
        fmt = negotiate(request.headers.get("accept"))
        snap, st = await snapshot_now(client, key)
        pos = snap.report_positions(status, unit, component, date_from, date_to)
        total = int(len(pos))
        page = pos[offset : offset + limit]
        nxt = next_url(request, offset, limit, total)
        extra = headers(snap, st) | {"X-Total-Count": str(total)}
        if nxt:
            extra["Link"] = f'<{nxt}>; rel="next"'
        if fmt == "json":
            head = {
                "client": client,
                "snapshot": snapshot_info(snap, st),
                "total": total,
                "offset": offset,
                "limit": limit,
                "next": nxt,
            }
            # A page is ~1-2 ms of mostly Python work at 100 rows: built on the event loop, where a
            # thread-pool hop would only add a GIL handover per request; large pages go to the pool
            # so they do not hold the loop.
            if len(page) <= INLINE_ROWS:
                items = snap.report_json(page)
            else:
                items = await run_in_threadpool(snap.report_json, page)
            body = dumps(head)[:-1] + b',"items":' + items + b"}"
            return Response(body, media_type="application/json", headers=extra)
        data = await run_in_threadpool(export, snap, page, fmt)
        media = "text/csv; charset=utf-8" if fmt == "csv" else PARQUET_TYPES[0]
        return Response(data, media_type=media, headers=extra)

    @app.get(
        "/clients/{client}/limits",
        response_model=models.Limits,
        summary="Stewart limits: the current version, or another one with ?version=",
        responses=CLIENT_ERRORS,
        tags=["gold"],
    )
    def limits(
        client: ClientPath,
        key: Caller,
        version: Annotated[
            str | None, Query(description="A limits version (default: the current one).")
        ] = None,
        machine: Annotated[str | None, Query(description="Keep one machine type.")] = None,
        component: Annotated[str | None, Query(description="Keep one component (normalized).")] = None,
        essay: Annotated[str | None, Query(description="Keep one essay.")] = None,
    ):
        snap, st = snapshot_of(client, key)
        current = snap.limits_version
        if version is None or version == current:
            df, version = snap.limits, current
        else:
            try:
                df = past_limits(store, client, version)
            except InconsistentPublication as exc:
                raise HTTPException(503, "; ".join(exc.problems)) from None
            if df is None:
                raise HTTPException(404, "no such limits version for this client")
        if version is None:
            raise HTTPException(404, "no limits published for this client yet")
        for col, value in (("machine", machine), ("component", component), ("essay", essay)):
            if value is not None and len(df):
                df = df[df[col].astype(str) == value]
        rows = pa.Table.from_pandas(df, preserve_index=False).to_pylist() if len(df) else []
        doc = {
            "client": client,
            "version": version,
            "current_version": current,
            "versions": limit_versions(store, client),
            "total": len(rows),
            "rows": rows,
        }
        return Response(dumps(doc), media_type="application/json", headers=headers(snap, st))

    @app.get(
        "/clients/{client}/fleet-report",
        response_class=HTMLResponse,
        summary="The fleet report (self-contained HTML, Spanish)",
        responses=CLIENT_ERRORS,
        tags=["gold"],
    )
    def fleet_report(client: ClientPath, key: Caller):
        snap, st = snapshot_of(client, key)
        if snap.fleet_html is None:
            raise HTTPException(404, "the manifest of this client lists no fleet report")
        return HTMLResponse(snap.fleet_html, headers=headers(snap, st))

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        summary="Prometheus metrics (text format) of the clients of your key",
        description="Scrape with a bearer key (Prometheus `authorization: {credentials_file: …}`). Gold "
        "figures per client: samples, flagged share, reports and machines by status, publication age, "
        "advisor sources, snapshot consistency; plus request counters of the service.",
        tags=["service"],
    )
    def metrics_text(key: Caller):
        return PlainTextResponse(
            render_metrics(key.scope(list(registered)), cache, metrics, store),
            media_type="text/plain; version=0.0.4; charset=utf-8",
        )

    return app


def export(snap: Snapshot, page: np.ndarray, fmt: str) -> bytes:
    """A page of reports as CSV or parquet, with the file's exact columns."""
    table = snap.report_table(np.asarray(page, dtype=np.int64))
    buf = io.BytesIO()
    if fmt == "csv":
        pacsv.write_csv(table, buf)
    else:
        pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def negotiate(accept: str | None) -> str:
    """``json`` / ``csv`` / ``parquet`` from an Accept header (q-values honoured); 406 when none fits."""
    if not accept:
        return "json"
    ranked = []
    for i, part in enumerate(accept.split(",")):
        fields = [f.strip() for f in part.split(";")]
        q = 1.0
        for f in fields[1:]:
            if f.startswith("q="):
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 0.0
        ranked.append((-q, i, fields[0].lower()))
    for neg_q, _, media in sorted(ranked):
        if neg_q == 0:
            continue
        if media in ("application/json", "application/*", "*/*"):
            return "json"
        if media == "text/csv":
            return "csv"
        if media in PARQUET_TYPES:
            return "parquet"
    raise HTTPException(406, "supported: application/json, text/csv, application/vnd.apache.parquet")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(clients: list[str], cache: SnapshotCache, metrics: Metrics, store: Storage) -> str:
    """Prometheus text exposition (0.0.4); every name starts with ``oil_``."""
    out: list[str] = []

    def family(name: str, kind: str, help_: str, samples: list[tuple[dict, float]]) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lab = ",".join(f'{k}="{_label(str(v))}"' for k, v in labels.items())
            out.append(f"{name}{{{lab}}} {value:.6g}" if lab else f"{name} {value:.6g}")

    states = {c: cache.state(c) for c in clients}
    snaps = {c: st.snapshot for c, st in states.items() if st.snapshot is not None}
    now = _now()
    family("oil_api_up", "gauge", "The API process is serving.", [({}, 1)])
    family(
        "oil_snapshot_consistent",
        "gauge",
        "1 when the newest manifest of the client is the one served.",
        [({"client": c}, 1.0 if st.serving == "current" else 0.0) for c, st in states.items()],
    )
    family(
        "oil_samples",
        "gauge",
        "Classified reports (one per sample) published for the client.",
        [({"client": c}, s.stats["samples"]) for c, s in snaps.items()],
    )
    family(
        "oil_flagged_share",
        "gauge",
        "Share of the client's reports that are not Normal.",
        [({"client": c}, s.stats["flagged_share"]) for c, s in snaps.items()],
    )
    family(
        "oil_reports",
        "gauge",
        "Classified reports by status.",
        [
            ({"client": c, "status": k}, s.stats["reports_by_status"][k])
            for c, s in snaps.items()
            for k in STATUSES
        ],
    )
    family(
        "oil_machines",
        "gauge",
        "Machines by current status.",
        [
            ({"client": c, "status": k}, s.stats["machines_by_status"][k])
            for c, s in snaps.items()
            for k in STATUSES
        ],
    )
    ages = []
    stamps = []
    for c, s in snaps.items():
        at = published_at(s.manifest)
        if at:
            ages.append(({"client": c}, (now - at).total_seconds()))
            stamps.append(({"client": c}, at.timestamp()))
    family("oil_publication_age_seconds", "gauge", "Seconds since the served publication.", ages)
    family("oil_publication_timestamp_seconds", "gauge", "Unix time of the served publication.", stamps)
    family(
        "oil_advisor_source_reports",
        "gauge",
        "Reports by the source of their recommendation (llm, cache, fallback, offline, normal).",
        [
            ({"client": c, "source": k}, v)
            for c, s in snaps.items()
            for k, v in sorted(s.stats["advisor_sources"].items())
        ],
    )
    with metrics.lock:
        reqs = sorted(metrics.requests.items())
        secs = sorted(metrics.seconds.items())
        counts = dict(metrics.count)
    family(
        "oil_api_requests_total",
        "counter",
        "HTTP requests answered, by method, route template and status code.",
        [({"method": m, "route": r, "code": code}, n) for (m, r, code), n in reqs],
    )
    out.append("# HELP oil_api_request_duration_seconds Time to answer, by route template.")
    out.append("# TYPE oil_api_request_duration_seconds summary")
    for route, total in secs:
        out.append(f'oil_api_request_duration_seconds_sum{{route="{_label(route)}"}} {total:.6g}')
        out.append(f'oil_api_request_duration_seconds_count{{route="{_label(route)}"}} {counts[route]}')
    return "\n".join(out) + "\n"
