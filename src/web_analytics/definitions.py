"""The Dagster definitions of the project: everything assembled in one place."""

import dagster as dg

from web_analytics.orchestration.assets import (
    accuracy_checks,
    web_analytics_tables,
    web_pre_aggregated_tables,
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
from web_analytics.orchestration.schedules import (
    web_analytics_backfill_schedule,
    web_analytics_daily_schedule,
    web_analytics_maintenance_schedule,
)
from web_analytics.orchestration.sensors import web_analytics_backfill_sensor

defs = dg.Definitions(
    assets=[web_analytics_tables, web_pre_aggregated_tables],
    asset_checks=accuracy_checks,
    jobs=[
        web_analytics_daily_job,
        check_missing_data_job,
        update_data_coverage_job,
        show_data_gaps_job,
        cleanup_backfill_records_job,
        web_analytics_maintenance_job,
        load_events_job,
    ],
    schedules=[
        web_analytics_daily_schedule,
        web_analytics_backfill_schedule,
        web_analytics_maintenance_schedule,
    ],
    sensors=[web_analytics_backfill_sensor],
    resources={"clickhouse": ClickhouseCluster()},
)
