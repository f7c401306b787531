"""Jobs: the daily pre-aggregation, diagnostics, maintenance and loading a file of events."""

import dagster as dg
from pydantic import Field

from web_analytics.orchestration.assets import web_pre_aggregated_tables
from web_analytics.orchestration.ops import (
    GapsConfig,
    check_missing_data_op,
    cleanup_old_backfill_records_op,
    show_data_gaps_detailed_op,
    update_data_coverage_op,
)
from web_analytics.orchestration.resources import ClickhouseCluster

web_analytics_daily_job = dg.define_asset_job(
    "web_analytics_daily_job",
    selection=dg.AssetSelection.assets(web_pre_aggregated_tables),
    description="Compute the pre-aggregated tables for a range of UTC days.",
)


class LoadEventsConfig(dg.Config):
    path: str = Field(description="A JSON-lines file of PostHog-shaped events.")


@dg.op
def load_events_op(
    context: dg.OpExecutionContext, config: LoadEventsConfig, clickhouse: ClickhouseCluster
) -> dg.Output[int]:
    """Insert every valid event of the file; report each invalid line with its reason."""
    report = clickhouse.warehouse().insert_events_file(config.path)
    for rejected in report.rejected[:50]:
        context.log.warning(f"line {rejected.position + 1} rejected: {rejected.reason}")
    context.log.info(f"Inserted {report.inserted} events, rejected {len(report.rejected)}")
    return dg.Output(
        report.inserted,
        metadata={
            "inserted": report.inserted,
            "rejected": len(report.rejected),
            "rejected_lines": dg.MetadataValue.md(
                "| line | reason |\n|---|---|\n"
                + "\n".join(f"| {r.position + 1} | {r.reason} |" for r in report.rejected[:200])
            ),
        },
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


class ShowDataGapsJobConfig(dg.Config):
    days_back: int = Field(default=7, ge=1, le=3650, description="UTC days before today")
    team_ids: list[int] | None = Field(default=None, description="Only these teams")


@dg.config_mapping
def _show_data_gaps_config(config: ShowDataGapsJobConfig) -> dg.RunConfig:
    return dg.RunConfig(
        ops={
            "show_data_gaps_detailed_op": GapsConfig(
                days_back=config.days_back, team_ids=config.team_ids
            )
        }
    )


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
