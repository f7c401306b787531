"""The sensor that keeps the pre-aggregated tables complete."""

import dagster as dg

from web_analytics.orchestration.backfill import backfill_requests
from web_analytics.orchestration.config import automation
from web_analytics.orchestration.jobs import web_analytics_daily_job
from web_analytics.orchestration.resources import ClickhouseCluster


@dg.sensor(
    job=web_analytics_daily_job,
    minimum_interval_seconds=automation.sensor_interval_seconds,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Every 6 hours: find missing, stale and failed days in the lookback window and launch "
        "their pre-aggregation, newest first, a capped number of days per tick."
    ),
)
def web_analytics_backfill_sensor(
    context: dg.SensorEvaluationContext, clickhouse: ClickhouseCluster
):
    return backfill_requests(
        clickhouse.warehouse(),
        context.instance,
        lookback_days=automation.lookback_days,
        max_days=automation.max_days_per_tick,
        trigger="sensor:web_analytics_backfill_sensor",
        log=context.log,
    )
