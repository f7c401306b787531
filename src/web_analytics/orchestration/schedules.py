"""Schedules, all in UTC."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from web_analytics.orchestration.assets import TRIGGER_TAG
from web_analytics.orchestration.backfill_requests import backfill_evaluation, days_in_flight
from web_analytics.orchestration.jobs import web_analytics_daily_job, web_analytics_maintenance_job
from web_analytics.orchestration.partitions import range_tags
from web_analytics.orchestration.settings import WebAnalyticsSettings

# The day before yesterday is recomputed too: its late-night sessions end only yesterday.
DAILY_RECOMPUTE_DAYS = 2
DAILY_SCHEDULE = "web_analytics_daily_schedule"
BACKFILL_SCHEDULE = "web_analytics_backfill_schedule"


def schedules(settings: WebAnalyticsSettings) -> list[dg.ScheduleDefinition]:
    """The daily pre-aggregation (01:00), the backfill check (02:00) and maintenance (03:00)."""
    status = (
        dg.DefaultScheduleStatus.RUNNING
        if settings.automation_running
        else dg.DefaultScheduleStatus.STOPPED
    )

    @dg.schedule(
        name=DAILY_SCHEDULE,
        job=web_analytics_daily_job,
        cron_schedule="0 1 * * *",
        execution_timezone="UTC",
        default_status=status,
    )
    def daily(context: dg.ScheduleEvaluationContext):
        """At 01:00 UTC: compute yesterday and recompute the day before, except a day that a
        queued or running run already covers."""
        today = context.scheduled_execution_time.date()
        busy = days_in_flight(context.instance, datetime.now(UTC))
        days = [
            day
            for day in (today - timedelta(days=n) for n in range(DAILY_RECOMPUTE_DAYS, 0, -1))
            if day >= settings.first_day and day not in busy
        ]
        if not days:
            return dg.SkipReason("Yesterday and the day before already have runs in flight.")
        first, last = days[0], days[-1]
        return dg.RunRequest(
            run_key=f"daily-{last.isoformat()}",
            tags={**range_tags(first, last), TRIGGER_TAG: f"schedule:{DAILY_SCHEDULE}"},
        )

    backfill = dg.schedule(
        name=BACKFILL_SCHEDULE,
        job=web_analytics_daily_job,
        cron_schedule="0 2 * * *",
        execution_timezone="UTC",
        default_status=status,
        description="At 02:00 UTC: a full check of the lookback window that launches every "
        "day to fill.",
    )(
        backfill_evaluation(
            lambda settings: settings.lookback_days, trigger=f"schedule:{BACKFILL_SCHEDULE}"
        )
    )

    maintenance = dg.ScheduleDefinition(
        name="web_analytics_maintenance_schedule",
        job=web_analytics_maintenance_job,
        cron_schedule="0 3 * * *",
        execution_timezone="UTC",
        default_status=status,
        description="At 03:00 UTC: coverage update, gap report, cleanup of old status records.",
    )
    return [daily, backfill, maintenance]
