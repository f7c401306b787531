"""Schedules, all in UTC."""

from datetime import timedelta

import dagster as dg

from web_analytics.orchestration.backfill import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    TRIGGER_TAG,
    backfill_requests,
)
from web_analytics.orchestration.config import automation
from web_analytics.orchestration.jobs import web_analytics_daily_job, web_analytics_maintenance_job
from web_analytics.orchestration.partitions import daily_partitions, partition_key
from web_analytics.orchestration.resources import ClickhouseCluster

# The day before yesterday is recomputed too: its late-night sessions end only yesterday.
DAILY_RECOMPUTE_DAYS = 2


@dg.schedule(
    job=web_analytics_daily_job,
    cron_schedule="0 1 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def web_analytics_daily_schedule(context: dg.ScheduleEvaluationContext):
    """At 01:00 UTC: compute yesterday and recompute the day before."""
    today = context.scheduled_execution_time.date()
    first = partition_key(today - timedelta(days=DAILY_RECOMPUTE_DAYS))
    last = partition_key(today - timedelta(days=1))
    first = max(first, daily_partitions.start.date().isoformat())
    return dg.RunRequest(
        run_key=f"daily-{last}",
        tags={
            RANGE_START_TAG: first,
            RANGE_END_TAG: last,
            TRIGGER_TAG: "schedule:web_analytics_daily_schedule",
        },
    )


@dg.schedule(
    job=web_analytics_daily_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def web_analytics_backfill_schedule(
    context: dg.ScheduleEvaluationContext, clickhouse: ClickhouseCluster
):
    """At 02:00 UTC: a full check of the lookback window that launches every day to fill."""
    return backfill_requests(
        clickhouse.warehouse(),
        context.instance,
        lookback_days=automation.lookback_days,
        max_days=automation.lookback_days,
        trigger="schedule:web_analytics_backfill_schedule",
        log=context.log,
    )


web_analytics_maintenance_schedule = dg.ScheduleDefinition(
    name="web_analytics_maintenance_schedule",
    job=web_analytics_maintenance_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="At 03:00 UTC: coverage update, gap report, cleanup of old status records.",
)
