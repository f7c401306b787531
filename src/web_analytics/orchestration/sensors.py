"""The sensor that keeps the pre-aggregated tables complete."""

import dagster as dg

from web_analytics.orchestration.backfill_requests import backfill_evaluation
from web_analytics.orchestration.jobs import web_analytics_daily_job
from web_analytics.orchestration.settings import WebAnalyticsSettings

SENSOR_NAME = "web_analytics_backfill_sensor"


def backfill_sensor(settings: WebAnalyticsSettings) -> dg.SensorDefinition:
    """The backfill sensor at the configured interval and default status."""

    return dg.sensor(
        name=SENSOR_NAME,
        job=web_analytics_daily_job,
        minimum_interval_seconds=settings.sensor_interval_seconds,
        default_status=(
            dg.DefaultSensorStatus.RUNNING
            if settings.automation_running
            else dg.DefaultSensorStatus.STOPPED
        ),
        description=(
            "Every 6 hours by default: find missing, stale and failed days in the lookback "
            "window and launch their pre-aggregation, newest first, a capped number of days "
            "per tick."
        ),
    )(
        backfill_evaluation(
            lambda settings: settings.max_days_per_tick, trigger=f"sensor:{SENSOR_NAME}"
        )
    )
