"""Sensors on raw-file arrival (S3 and local) and the weekly limits refresh schedule.

A sensor run request covers one client partition and targets ``oil_analysis_job`` — the whole
chain bronze → silver → gold of that client — so a new file ends in updated gold with no other
trigger. We chose one job over declarative automation conditions: one run per client is atomic
(its gold is published from one consistent silver), it is what the per-client concurrency limit of
the run queue keys on, and its run tags say which files started it.
"""

from __future__ import annotations

import hashlib

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    schedule,
    sensor,
)

from ..domain.clients import load_clients
from ..settings import get_settings
from ..storage import layout
from ..storage.filesystem import Storage
from .arrivals import Cursor, RawObject, file_tag_key, plan_tick, run_key
from .schedule_status import schedule_status

JOB_NAME = "oil_analysis_job"


def _default_status(kind: str) -> DefaultSensorStatus:
    """Sensors start stopped unless OIL_SENSORS_RUNNING=true (then the one of the backend in use)."""
    if not get_settings().sensors_running:
        return DefaultSensorStatus.STOPPED
    return (
        DefaultSensorStatus.RUNNING
        if (kind == "s3") == get_settings().use_s3
        else DefaultSensorStatus.STOPPED
    )


def s3_listing(client, bucket: str, prefix: str):
    """``listing(after, limit)`` over ``s3://bucket/prefix/bronze/`` (keys relative to the prefix)."""
    root = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def listing(after: str | None, limit: int) -> tuple[list[RawObject], bool]:
        out: list[RawObject] = []
        kwargs = {"Bucket": bucket, "Prefix": f"{root}{layout.BRONZE}/", "MaxKeys": min(1000, limit)}
        if after:
            kwargs["StartAfter"] = root + after
        while True:
            page = client.list_objects_v2(**kwargs)
            for obj in page.get("Contents", []):
                if obj["Key"].endswith("/"):  # directory markers of some S3 servers
                    continue
                out.append(
                    RawObject(
                        obj["Key"][len(root) :],
                        obj["ETag"].strip('"'),
                        obj["LastModified"].timestamp(),
                        int(obj["Size"]),
                    )
                )
            if not page.get("IsTruncated"):
                return out, True
            if len(out) >= limit:
                return out, False
            kwargs["ContinuationToken"] = page["NextContinuationToken"]
            kwargs.pop("StartAfter", None)

    return listing


def local_listing(store: Storage, hashed_since: float):
    """``listing(after, limit)`` over ``OIL_DATA_ROOT/bronze/``; the tag of a file arrived since
    ``hashed_since`` is its content hash (older files are not read). A file's time is when it
    arrived (``FileEntry.arrived_ns``): a copy that keeps an old modification time is still new."""

    def listing(after: str | None, limit: int) -> tuple[list[RawObject], bool]:
        entries = [e for e in store.list_files(layout.BRONZE + "/") if after is None or e.path > after]
        page = entries[:limit]
        out = []
        for e in page:
            mtime = e.arrived_ns / 1e9
            tag = f"{e.size}-{e.arrived_ns}"
            if mtime >= hashed_since and e.path.split("/")[1] not in layout.RESERVED_BRONZE:
                tag = hashlib.sha256(store.read_bytes(e.path)).hexdigest()[:40]
            out.append(RawObject(e.path, tag, mtime, e.size))
        return out, len(entries) <= limit

    return listing


def _already_requested(context: SensorEvaluationContext):
    def check(o: RawObject) -> bool:
        records = context.instance.get_run_records(
            filters=RunsFilter(tags={file_tag_key(o.key): o.tag}), limit=1
        )
        return bool(records)

    return check


def _evaluate(context: SensorEvaluationContext, listing, source: str) -> SensorResult | SkipReason:
    cursor = Cursor.load(context.cursor)
    s = get_settings()
    plan = plan_tick(
        listing(cursor),
        cursor,
        load_clients(get_settings().clients_file),
        _already_requested(context),
        max_keys=s.sensor_max_keys,
        max_runs=s.sensor_max_runs,
        max_files_per_run=s.sensor_max_files_per_run,
    )
    for key, reason in plan.skipped[:50]:
        context.log.info(f"skipped {key}: {reason}")
    requests = [
        RunRequest(
            run_key=run_key(client, files),
            partition_key=client,
            tags={
                "oil/trigger": source,
                "oil/files": str(len(files)),
                **{file_tag_key(f.key): f.tag for f in files},
            },
        )
        for client, files in plan.requests.items()
    ]
    if not requests:
        return SensorResult(
            skip_reason=SkipReason(f"no new raw files ({plan.listed} listed)"), cursor=plan.cursor.dump()
        )
    return SensorResult(run_requests=requests, cursor=plan.cursor.dump())


# Definition-time values (tick interval, default status, cron) are read when the code location loads:
# Dagster fixes them with the definitions; a change takes a reload. Per-tick limits are read per tick.
@sensor(
    job_name=JOB_NAME,
    minimum_interval_seconds=get_settings().sensor_interval_s,
    default_status=_default_status("s3"),
    description="New or changed raw lab files under s3://{S3_BUCKET}/{S3_PREFIX}/bronze/{client}/ → one "
    "run of oil_analysis_job per affected client (run key = object key and ETag).",
)
def raw_files_s3_sensor(context: SensorEvaluationContext):
    from dagster_aws.s3 import S3Resource  # here, not at import: only the S3 sensor needs boto3

    s = get_settings()
    client = S3Resource(region_name=s.aws_region, endpoint_url=s.aws_endpoint_url).get_client()
    return _evaluate(
        context, lambda cursor: s3_listing(client, s.s3_bucket, s.s3_prefix), "raw_files_s3_sensor"
    )


@sensor(
    job_name=JOB_NAME,
    minimum_interval_seconds=get_settings().sensor_interval_s,
    default_status=_default_status("local"),
    description="New or changed raw lab files under OIL_DATA_ROOT/bronze/{client}/ (modification time, "
    "size and content hash) → one run of oil_analysis_job per affected client.",
)
def raw_files_local_sensor(context: SensorEvaluationContext):
    store = Storage.local(get_settings().data_root)
    return _evaluate(context, lambda cursor: local_listing(store, cursor.hw - 1.0), "raw_files_local_sensor")


@schedule(
    job_name=JOB_NAME,
    cron_schedule=get_settings().limits_refresh_cron,
    execution_timezone="UTC",
    default_status=schedule_status(),
    description="Weekly: every client's chain runs; its Stewart limits are recomputed only when a trigger "
    "holds (new machine/component, >10 % more samples, KS drift, limits 7 days old or more, or tag "
    "force_limits_refresh=true). Running by default in staging and prod (OIL_SCHEDULES_RUNNING).",
)
def weekly_limits_refresh(context: ScheduleEvaluationContext):
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    for client in sorted(load_clients(get_settings().clients_file)):
        yield RunRequest(
            run_key=f"limits-refresh-{day}-{client}",
            partition_key=client,
            tags={"oil/trigger": "weekly_limits_refresh"},
        )
