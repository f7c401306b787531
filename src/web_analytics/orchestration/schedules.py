"""Schedules, all in UTC."""

from datetime import timedelta

import dagster as dg

from web_analytics.orchestration.jobs import web_analytics_daily_job
from web_analytics.orchestration.partitions import daily_partitions, partition_key

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
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
            "web_analytics/trigger": "daily_schedule",
        },
    )
