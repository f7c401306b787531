"""The Dagster definitions of the project, built in one place from the settings the
environment gives (read once, here)."""

import os

import dagster as dg

from web_analytics.orchestration.assets import (
    pre_aggregation_assets,
    web_analytics_data_coverage,
    web_analytics_tables,
)
from web_analytics.orchestration.jobs import (
    check_missing_data_job,
    cleanup_backfill_records_job,
    load_events_job,
    show_data_gaps_job,
    update_data_coverage_job,
    web_analytics_daily_job,
    web_analytics_maintenance_job,
)
from web_analytics.orchestration.resources import ClickhouseCluster
from web_analytics.orchestration.schedules import schedules
from web_analytics.orchestration.sensors import backfill_sensor
from web_analytics.orchestration.settings import WebAnalyticsSettings
from web_analytics.warehouse.connection import URL_ENV


def build_definitions(
    settings: WebAnalyticsSettings, clickhouse: ClickhouseCluster | None = None
) -> dg.Definitions:
    """Every asset, check, job, schedule and sensor, with their resources."""
    pre_aggregated, checks = pre_aggregation_assets(settings)
    return dg.Definitions(
        assets=[web_analytics_tables, pre_aggregated, web_analytics_data_coverage],
        asset_checks=checks,
        jobs=[
            web_analytics_daily_job,
            check_missing_data_job,
            update_data_coverage_job,
            show_data_gaps_job,
            cleanup_backfill_records_job,
            web_analytics_maintenance_job,
            load_events_job,
        ],
        schedules=schedules(settings),
        sensors=[backfill_sensor(settings)],
        resources={
            "clickhouse": clickhouse or ClickhouseCluster(),
            "web_analytics_settings": settings,
        },
    )


def _clickhouse_from_environment() -> ClickhouseCluster:
    # Bound to the variable, so the UI shows its name and never the password it may hold.
    if os.environ.get(URL_ENV):
        return ClickhouseCluster(url=dg.EnvVar(URL_ENV))
    return ClickhouseCluster()


defs = build_definitions(WebAnalyticsSettings.from_environment(), _clickhouse_from_environment())
