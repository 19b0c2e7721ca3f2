"""The gold history retention job: prune ``gold/{client}/_history/{day}/`` snapshots."""

import datetime as dt

from dagster import Config, OpExecutionContext, ScheduleDefinition, job, op

from ..domain.clients import load_clients
from ..domain.retention import snapshots_to_keep
from ..resources.storage import StorageResource
from ..settings import get_settings
from ..storage import layout
from .schedule_status import schedule_status


class RetentionConfig(Config):
    daily_days: int = 30
    weekly_weeks: int = 52
    today: str = ""  # YYYY-MM-DD; empty = today (UTC). Tests set it.


@op(description="Delete the history snapshots outside the retention policy, for every client.")
def prune_gold_history(
    context: OpExecutionContext, config: RetentionConfig, storage: StorageResource
) -> dict:
    store = storage.get()
    today = dt.date.fromisoformat(config.today) if config.today else dt.datetime.now(dt.UTC).date()
    summary = {}
    for client in sorted(load_clients(get_settings().clients_file)):
        entries = store.list_files(layout.history_dir(client) + "/")
        by_day: dict[dt.date, list[str]] = {}
        for e in entries:
            day = e.path.split("/")[3]
            try:
                by_day.setdefault(dt.date.fromisoformat(day), []).append(e.path)
            except ValueError:
                continue
        keep = snapshots_to_keep(list(by_day), today, config.daily_days, config.weekly_weeks)
        removed = sorted(d for d in by_day if d not in keep)
        for d in removed:
            for path in by_day[d]:
                store.delete(path)
        summary[client] = {"kept": len(keep), "removed": [str(d) for d in removed]}
        context.log.info(f"{client}: kept {len(keep)} snapshots, removed {len(removed)}")
    return summary


@job(description="Prune gold history snapshots: daily ones 30 days, weekly ones a year (configurable).")
def gold_history_retention():
    prune_gold_history()


gold_history_retention_schedule = ScheduleDefinition(
    job=gold_history_retention,
    cron_schedule="30 5 * * *",
    execution_timezone="UTC",
    default_status=schedule_status(),
)
