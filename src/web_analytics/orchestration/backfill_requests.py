"""Turning a gap report into backfill runs: the one tick the sensor and the backfill
schedule share."""

from collections.abc import Callable
from datetime import date

import dagster as dg

from web_analytics.orchestration.assets import TRIGGER_TAG
from web_analytics.orchestration.jobs import web_analytics_daily_job
from web_analytics.orchestration.partitions import partition_key, tagged_days
from web_analytics.orchestration.resources import ClickhouseCluster
from web_analytics.orchestration.settings import WebAnalyticsSettings

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def days_in_flight(instance: dg.DagsterInstance) -> set[date]:
    """UTC days that a queued or running pre-aggregation run already covers."""
    return {
        day
        for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT))
        for day in tagged_days(run.tags)
    }


def backfill_requests(
    context: dg.SensorEvaluationContext | dg.ScheduleEvaluationContext,
    clickhouse: ClickhouseCluster,
    settings: WebAnalyticsSettings,
    max_days: int,
    trigger: str,
) -> list[dg.RunRequest] | dg.SkipReason:
    """One run per missing, stale or failed day of the lookback window, newest first, at
    most ``max_days``, never for a day already in flight. The run key holds the day's
    source fingerprint and latest attempt, so a day that goes stale or fails again is
    launched again."""
    lookback_days = settings.lookback_days
    report = clickhouse.warehouse().find_gaps(days_back=lookback_days)
    needing = sorted(report.needing_backfill, reverse=True)
    if not needing:
        teams = len(report.team_ids)
        return dg.SkipReason(
            f"No missing, stale or failed days in the last {lookback_days} days "
            f"({teams} enabled team{'' if teams == 1 else 's'})."
        )
    busy = days_in_flight(context.instance)
    to_launch = [day for day in needing if day not in busy][:max_days]
    if not to_launch:
        return dg.SkipReason(
            f"All {len(needing)} days needing backfill already have runs queued or in progress."
        )
    context.log.info(
        f"{len(needing)} days need backfill; launching {len(to_launch)}: "
        + ", ".join(str(day) for day in to_launch)
    )
    return [_request(day, report.day_keys.get(day, "none"), trigger) for day in to_launch]


BackfillEvaluation = Callable[
    [
        dg.SensorEvaluationContext | dg.ScheduleEvaluationContext,
        ClickhouseCluster,
        WebAnalyticsSettings,
    ],
    list[dg.RunRequest] | dg.SkipReason,
]


def backfill_evaluation(
    max_days: Callable[[WebAnalyticsSettings], int], trigger: str
) -> BackfillEvaluation:
    """The body of a sensor or schedule that launches backfill runs: at most
    ``max_days(settings)`` days per evaluation, tagged with ``trigger``."""

    def evaluate(
        context: dg.SensorEvaluationContext | dg.ScheduleEvaluationContext,
        clickhouse: ClickhouseCluster,
        web_analytics_settings: WebAnalyticsSettings,
    ) -> list[dg.RunRequest] | dg.SkipReason:
        return backfill_requests(
            context, clickhouse, web_analytics_settings, max_days(web_analytics_settings), trigger
        )

    return evaluate


def _request(day: date, day_key: str, trigger: str) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=f"{partition_key(day)}:{day_key}",
        job_name=web_analytics_daily_job.name,
        partition_key=partition_key(day),
        tags={TRIGGER_TAG: trigger},
    )
