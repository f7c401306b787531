"""Jobs: the daily pre-aggregation, diagnostics, maintenance and loading a file of events."""

import dagster as dg

from web_analytics.orchestration.config import GapsConfig
from web_analytics.orchestration.ops import (
    check_missing_data_op,
    cleanup_old_backfill_records_op,
    load_events_op,
    show_data_gaps_detailed_op,
    update_data_coverage_op,
)
from web_analytics.warehouse.schema import PRE_AGGREGATED_TABLES

web_analytics_daily_job = dg.define_asset_job(
    "web_analytics_daily_job",
    selection=dg.AssetSelection.assets(*PRE_AGGREGATED_TABLES),
    description="Compute the pre-aggregated tables for a range of UTC days.",
)


@dg.job(description="Load a JSON-lines file of events into the events table.")
def load_events_job():
    load_events_op()


@dg.job(description="Totals per table and state, and the days that need backfill.")
def check_missing_data_job():
    check_missing_data_op()


@dg.job(description="Refresh the coverage table.")
def update_data_coverage_job():
    update_data_coverage_op()


@dg.config_mapping
def _show_data_gaps_config(config: GapsConfig) -> dg.RunConfig:
    return dg.RunConfig(ops={show_data_gaps_detailed_op.name: config})


@dg.job(
    description="Gap ranges per team and table. Config: days_back (default 7), team_ids.",
    config=_show_data_gaps_config,
)
def show_data_gaps_job():
    show_data_gaps_detailed_op()


@dg.job(description="Delete old backfill status records, keeping the latest of every day.")
def cleanup_backfill_records_job():
    cleanup_old_backfill_records_op()


@dg.job(description="Coverage update, then the gap report, then cleanup of old records.")
def web_analytics_maintenance_job():
    coverage = update_data_coverage_op()
    report = show_data_gaps_detailed_op(start_after=coverage)
    cleanup_old_backfill_records_op(start_after=report)
