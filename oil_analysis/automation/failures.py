"""Failures are heard: the run-failure sensor and the notification of a failed blocking check.

* ``run_failure_notification`` (a ``@run_failure_sensor``): for each failed run of this product's
  jobs or assets, one ``oil_analysis.run_failed`` notification naming the client
  (partition), the run id, the failed steps and their errors. It needs the daemon (``make ui`` starts
  one); it starts RUNNING whenever a destination is configured.
* ``notify_check_failure``: called by the asset whose blocking check failed, from the step itself,
  so the notification also arrives for runs no daemon watches (``make run``, a CLI materialization).
  The run then fails too, so with the sensor on, a blocked publish sends both messages: the check
  failure (which checks, why) and the run failure (which step, which run).
"""

from __future__ import annotations

from dagster import (
    DefaultSensorStatus,
    Failure,
    RunFailureSensorContext,
    load_assets_from_modules,
    run_failure_sensor,
)

from ..resources import notify


def _client(tags) -> str:
    return tags.get("dagster/partition", "")


JOBS = ("oil_analysis_job", "gold_history_retention")


def is_ours(run, instance) -> bool:
    """Whether a run belongs to this product: one of its jobs, or steps of its assets.

    The sensor watches every code location of the instance because runs executed by the CLI
    (``dagster asset materialize``, ``make run``) carry no code location of their own, and a sensor
    bound to its location would never see them; this filter keeps other teams' runs out. An ad-hoc
    materialization may record no asset selection: its job snapshot names the steps.
    """
    if run.job_name in JOBS:
        return True
    from ..assets import asset_modules  # at evaluation time: the asset modules cost an import

    ours = {key.path[-1] for a in load_assets_from_modules(asset_modules()) for key in a.keys}
    names = {key.path[-1] for key in run.asset_selection or ()}
    if not names and run.job_snapshot_id:
        snapshot = instance.get_job_snapshot(run.job_snapshot_id)
        names = {n.node_def_name for n in snapshot.dep_structure_snapshot.node_invocation_snaps}
    return bool(names & ours)


def run_failure_notification_message(context: RunFailureSensorContext) -> dict:
    """The ``run_failed`` message of the run the sensor is told about."""
    run = context.dagster_run
    steps = []
    for event in context.get_step_failure_events():
        error = event.event_specific_data.error if event.event_specific_data else None
        text = (error.message if error else (event.message or "")).strip()
        # A Failure raised by our assets carries its own description; its class name is noise.
        text = text.removeprefix(f"{Failure.__module__}.{Failure.__name__}: ")
        cause = error.cause if error else None
        while cause is not None:  # the root cause says what went wrong (e.g. the parquet error)
            text += f"\ncaused by {cause.message.strip()}"
            cause = cause.cause
        steps.append({"step": event.step_key or "", "error": text})
    run_error = context.failure_event.message or "" if context.failure_event else ""
    return notify.run_failure_message(_client(run.tags), run.run_id, run.job_name, steps, run_error)


@run_failure_sensor(
    name="run_failure_notification",
    minimum_interval_seconds=30,
    monitor_all_code_locations=True,
    default_status=DefaultSensorStatus.RUNNING if notify.configured() else DefaultSensorStatus.STOPPED,
    description="A failed run of this code location → a notification naming the client, run id, failed "
    "steps and errors, to NOTIFY_SNS_TOPIC_ARN and OIL_ALERT_WEBHOOK_URL (running by default when one "
    "of them is set).",
)
def run_failure_notification(context: RunFailureSensorContext):
    # Dagster calls this once per failed run of a tick and accepts no SkipReason among the runs it
    # handles, so a run left alone is only logged.
    if not notify.configured():
        context.log.info("no destination: NOTIFY_SNS_TOPIC_ARN and OIL_ALERT_WEBHOOK_URL are unset")
        return
    if not is_ours(context.dagster_run, context.instance):
        context.log.info(f"run {context.dagster_run.run_id} is not an oil_analysis run")
        return
    message = run_failure_notification_message(context)
    sent = notify.notify(
        message,
        notify.run_failure_text(message),
        f"oil-analysis run FAILED: {message['client'] or message['job']} {message['run_id'][:8]}",
    )
    context.log.info(f"run {message['run_id']} failed: notified {sent}")
