"""The Dagster definitions of the project: everything assembled in one place."""

import dagster as dg

from web_analytics.orchestration.assets import (
    accuracy_checks,
    web_analytics_tables,
    web_pre_aggregated_tables,
)
from web_analytics.orchestration.jobs import load_events_job, web_analytics_daily_job
from web_analytics.orchestration.resources import ClickhouseCluster
from web_analytics.orchestration.schedules import web_analytics_daily_schedule

defs = dg.Definitions(
    assets=[web_analytics_tables, web_pre_aggregated_tables],
    asset_checks=accuracy_checks,
    jobs=[web_analytics_daily_job, load_events_job],
    schedules=[web_analytics_daily_schedule],
    resources={"clickhouse": ClickhouseCluster()},
)
