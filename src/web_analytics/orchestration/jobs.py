"""Jobs: the daily pre-aggregation and loading a file of events."""

import dagster as dg
from pydantic import Field

from web_analytics.orchestration.assets import web_pre_aggregated_tables
from web_analytics.orchestration.partitions import daily_partitions
from web_analytics.orchestration.resources import ClickhouseCluster

web_analytics_daily_job = dg.define_asset_job(
    "web_analytics_daily_job",
    selection=dg.AssetSelection.assets(web_pre_aggregated_tables),
    partitions_def=daily_partitions,
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
