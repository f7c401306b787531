"""Diagnostic and maintenance ops: gap reports, coverage, cleanup of status records."""

import dagster as dg
from pydantic import Field

from web_analytics.orchestration.config import automation
from web_analytics.orchestration.resources import ClickhouseCluster
from web_analytics.warehouse.backfill import CleanupReport
from web_analytics.warehouse.gaps import NEEDS_BACKFILL, CoverageReport, DayState, GapReport

SAMPLE_DATES = 10


class MissingDataConfig(dg.Config):
    days_back: int = Field(default=automation.lookback_days, ge=1, le=3650)


class GapsConfig(dg.Config):
    days_back: int = Field(default=7, ge=1, le=3650, description="UTC days before today")
    team_ids: list[int] | None = Field(default=None, description="Only these teams")


class CoverageConfig(dg.Config):
    days_back: int = Field(default=automation.lookback_days, ge=1, le=3650)


class CleanupConfig(dg.Config):
    retention_days: int = Field(default=automation.retention_days, ge=1, le=3650)


def counts_table(counts: dict[str, dict[DayState, int]]) -> str:
    header = "| table | " + " | ".join(state.value for state in DayState) + " |"
    rule = "|---" * (len(DayState) + 1) + "|"
    rows = [
        f"| {table} | " + " | ".join(str(per_state[state]) for state in DayState) + " |"
        for table, per_state in counts.items()
    ]
    return "\n".join([header, rule, *rows])


def ranges_table(report: GapReport) -> str:
    ranges = report.ranges(NEEDS_BACKFILL)
    if not ranges:
        return "Nothing to fill: every team and day is complete or had no traffic."
    rows = [f"| {r.team_id} | {r.table} | {r} | {r.days} | {r.state.value} |" for r in ranges[:500]]
    return "\n".join(["| team | table | days | count | state |", "|---|---|---|---|---|", *rows])


def _summary_line(report: GapReport) -> str:
    needing = report.needing_backfill
    return (
        f"{report.first_day} to {report.last_day}, {len(report.team_ids)} teams: "
        f"{len(needing)} days need backfill"
        + (f" ({', '.join(str(d) for d in needing[-SAMPLE_DATES:])})" if needing else "")
    )


@dg.op(ins={"start_after": dg.In(dg.Nothing)})
def check_missing_data_op(
    context: dg.OpExecutionContext, config: MissingDataConfig, clickhouse: ClickhouseCluster
) -> GapReport:
    """Totals per table and state, the days needing backfill and a sample of them."""
    report = clickhouse.warehouse().find_gaps(days_back=config.days_back)
    context.log.info(_summary_line(report))
    for table, per_state in report.counts().items():
        context.log.info(
            f"{table}: " + ", ".join(f"{n} {state.value}" for state, n in per_state.items())
        )
    context.add_output_metadata(
        {
            "days_needing_backfill": len(report.needing_backfill),
            "sample_dates": ", ".join(str(d) for d in report.needing_backfill[-SAMPLE_DATES:]),
            "totals": dg.MetadataValue.md(counts_table(report.counts())),
        }
    )
    return report


@dg.op(ins={"start_after": dg.In(dg.Nothing)})
def show_data_gaps_detailed_op(
    context: dg.OpExecutionContext, config: GapsConfig, clickhouse: ClickhouseCluster
) -> GapReport:
    """Gap ranges per team and table over the last ``days_back`` days."""
    report = clickhouse.warehouse().find_gaps(days_back=config.days_back, team_ids=config.team_ids)
    context.log.info(_summary_line(report))
    for gap in report.ranges(NEEDS_BACKFILL):
        context.log.info(f"team {gap.team_id} {gap.table}: {gap} {gap.state.value}")
    context.add_output_metadata(
        {
            "days_needing_backfill": len(report.needing_backfill),
            "gap_ranges": dg.MetadataValue.md(ranges_table(report)),
            "totals": dg.MetadataValue.md(counts_table(report.counts())),
        }
    )
    return report


@dg.op(ins={"start_after": dg.In(dg.Nothing)})
def update_data_coverage_op(
    context: dg.OpExecutionContext, config: CoverageConfig, clickhouse: ClickhouseCluster
) -> CoverageReport:
    """Refresh the coverage table for the last ``days_back`` days."""
    report = clickhouse.warehouse().update_coverage(days_back=config.days_back)
    context.log.info(
        f"Coverage of {report.first_day} to {report.last_day}: {report.rows_written} rows"
    )
    context.add_output_metadata(
        {
            "rows_written": report.rows_written,
            "coverage": dg.MetadataValue.md(counts_table(report.counts)),
        }
    )
    return report


@dg.op(ins={"start_after": dg.In(dg.Nothing)})
def cleanup_old_backfill_records_op(
    context: dg.OpExecutionContext, config: CleanupConfig, clickhouse: ClickhouseCluster
) -> CleanupReport:
    """Delete status records older than the retention, keeping the latest of every day."""
    report = clickhouse.warehouse().cleanup_backfill_records(retention_days=config.retention_days)
    context.log.info(
        f"Deleted {report.deleted} backfill status records started before "
        f"{report.cutoff:%Y-%m-%d}; {report.kept} kept"
    )
    context.add_output_metadata({"deleted": report.deleted, "kept": report.kept})
    return report
