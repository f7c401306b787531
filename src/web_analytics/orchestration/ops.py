"""Diagnostic and maintenance ops: gap reports, coverage, cleanup of status records, and
loading a file of events."""

import dagster as dg

from web_analytics.orchestration.assets import COVERAGE_ASSET, MAX_METADATA_ROWS, metadata_table
from web_analytics.orchestration.config import (
    CleanupConfig,
    GapsConfig,
    LoadEventsConfig,
    WindowConfig,
)
from web_analytics.orchestration.resources import ClickhouseCluster
from web_analytics.orchestration.settings import WebAnalyticsSettings
from web_analytics.warehouse.attempts import CleanupReport
from web_analytics.warehouse.gap_text import (
    counts_table as counts_text,
)
from web_analytics.warehouse.gap_text import (
    cut_notice,
    dates_line,
    days_phrase,
    gap_groups,
    groups_table,
    summary,
)
from web_analytics.warehouse.gaps import NEEDS_BACKFILL, CoverageReport, DayState, GapReport

SAMPLE_DATES = 10
MAX_LOGGED_GROUPS = 50
MAX_LOGGED_REJECTIONS = 50
ALL_GAPS_COMMAND = "dagster job execute -j show_data_gaps_job"
TEAM_GAPS = "show_data_gaps_job with team_ids, a few teams at a time"
GAP_RANGES_IN_UI = "the run's gap_ranges metadata in the UI, one row per team and table"
AFTER = {"start_after": dg.In(dg.Nothing)}


def counts_table(counts: dict[str, dict[DayState, int]]) -> dg.TableMetadataValue:
    """Team-days per table and state."""
    return metadata_table(
        [("table", "string"), *((state.value, "int") for state in DayState)],
        [(table, *(per_state[state] for state in DayState)) for table, per_state in counts.items()],
    )


def ranges_table(report: GapReport) -> dg.TableMetadataValue:
    """Runs of consecutive days needing backfill, per team and table."""
    return metadata_table(
        [
            ("team", "int"),
            ("table", "string"),
            ("first_day", "date"),
            ("last_day", "date"),
            ("days", "int"),
            ("state", "string"),
        ],
        [
            (r.team_id, r.table, r.first_day, r.last_day, r.days, r.state.value)
            for r in report.ranges(NEEDS_BACKFILL)
        ],
    )


def _report_gaps(
    context: dg.OpExecutionContext, report: GapReport, detailed: bool, max_failures: int
) -> GapReport:
    """Log one summary (the days needing backfill, the team-days per table and state, and
    either the gap ranges or the latest such days) and attach the report as metadata; the
    days that keep failing get a warning of their own."""
    needing = report.needing_backfill
    failing = report.failing_days(max_failures)
    if failing:
        context.log.warning(
            f"{days_phrase(len(failing))} failed {max_failures} times in a row; the backfill "
            "no longer relaunches them: " + ", ".join(str(day) for day in failing)
        )
    lines = [summary(report), counts_text(report.counts())]
    metadata: dict[str, object] = {
        "days_needing_backfill": len(needing),
        "failing_days": ", ".join(str(day) for day in failing),
        "totals": counts_table(report.counts()),
    }
    if detailed:
        groups = gap_groups(report)
        if groups:
            lines.append(groups_table(groups, MAX_LOGGED_GROUPS, GAP_RANGES_IN_UI))
        metadata["gap_ranges"] = ranges_table(report)
        metadata.update(_cut_metadata("gap_ranges", len(report.ranges(NEEDS_BACKFILL)), TEAM_GAPS))
    else:
        if needing:
            lines.append("Latest: " + dates_line(needing, SAMPLE_DATES, ALL_GAPS_COMMAND))
        metadata["sample_dates"] = ", ".join(str(d) for d in needing[-SAMPLE_DATES:])
    context.log.info("\n".join(lines))
    context.add_output_metadata(metadata)
    return report


def _cut_metadata(name: str, total: int, where: str) -> dict[str, str]:
    """A note beside a metadata table that holds only the first MAX_METADATA_ROWS rows."""
    if total <= MAX_METADATA_ROWS:
        return {}
    return {f"{name}_cut": cut_notice(MAX_METADATA_ROWS, total, where)}


@dg.op(ins=AFTER)
def check_missing_data_op(
    context: dg.OpExecutionContext,
    config: WindowConfig,
    clickhouse: ClickhouseCluster,
    web_analytics_settings: WebAnalyticsSettings,
) -> GapReport:
    """Totals per table and state, the days needing backfill and a sample of them."""
    days_back = config.days_back or web_analytics_settings.lookback_days
    report = clickhouse.warehouse().find_gaps(days_back=days_back)
    return _report_gaps(context, report, False, web_analytics_settings.max_failures)


@dg.op(ins=AFTER)
def show_data_gaps_detailed_op(
    context: dg.OpExecutionContext,
    config: GapsConfig,
    clickhouse: ClickhouseCluster,
    web_analytics_settings: WebAnalyticsSettings,
) -> GapReport:
    """Gap ranges per team and table over the last ``days_back`` days."""
    report = clickhouse.warehouse().find_gaps(days_back=config.days_back, team_ids=config.team_ids)
    return _report_gaps(context, report, True, web_analytics_settings.max_failures)


@dg.op(ins=AFTER)
def update_data_coverage_op(
    context: dg.OpExecutionContext,
    config: WindowConfig,
    clickhouse: ClickhouseCluster,
    web_analytics_settings: WebAnalyticsSettings,
) -> CoverageReport:
    """Refresh the coverage table for the last ``days_back`` days."""
    days_back = config.days_back or web_analytics_settings.lookback_days
    warehouse = clickhouse.warehouse()
    report = warehouse.update_coverage(days_back=days_back)
    gaps = warehouse.find_gaps(days_back=days_back)
    context.log.info(
        f"Coverage of {report.first_day} to {report.last_day}: {report.rows_written:,} rows "
        "written, one per team, UTC day and table\n" + summary(gaps)
    )
    # The coverage table is an asset: its latest materialization is what the UI shows of the
    # days that are not complete, beside the tables' own partitions.
    context.log_event(
        dg.AssetMaterialization(
            asset_key=COVERAGE_ASSET,
            description=summary(gaps),
            metadata={
                "window": dg.MetadataValue.text(f"{report.first_day} to {report.last_day}"),
                "days_needing_backfill": len(gaps.needing_backfill),
                "gap_ranges": ranges_table(gaps),
                **_cut_metadata("gap_ranges", len(gaps.ranges(NEEDS_BACKFILL)), TEAM_GAPS),
                "team_days": counts_table(report.counts),
                "failing_days": ", ".join(
                    str(day) for day in gaps.failing_days(web_analytics_settings.max_failures)
                ),
                "rows_written": report.rows_written,
            },
        )
    )
    context.add_output_metadata(
        {"rows_written": report.rows_written, "coverage": counts_table(report.counts)}
    )
    return report


@dg.op(ins=AFTER)
def cleanup_old_backfill_records_op(
    context: dg.OpExecutionContext,
    config: CleanupConfig,
    clickhouse: ClickhouseCluster,
    web_analytics_settings: WebAnalyticsSettings,
) -> CleanupReport:
    """Delete status records older than the retention, keeping the latest of every day."""
    retention_days = config.retention_days or web_analytics_settings.retention_days
    report = clickhouse.warehouse().cleanup_backfill_records(retention_days=retention_days)
    context.log.info(
        f"Deleted {report.deleted:,} backfill status records started before "
        f"{report.cutoff:%Y-%m-%d}; {report.kept:,} kept"
    )
    context.add_output_metadata({"deleted": report.deleted, "kept": report.kept})
    return report


@dg.op
def load_events_op(
    context: dg.OpExecutionContext, config: LoadEventsConfig, clickhouse: ClickhouseCluster
) -> dg.Output[int]:
    """Insert every valid event of the file; report each invalid line with its reason."""
    report = clickhouse.warehouse().insert_events_file(config.path)
    if report.rejected:
        lines = [
            f"line {rejected.position + 1} rejected: {rejected.reason}"
            for rejected in report.rejected[:MAX_LOGGED_REJECTIONS]
        ]
        if len(report.rejected) > MAX_LOGGED_REJECTIONS:
            lines.append(
                cut_notice(
                    MAX_LOGGED_REJECTIONS, len(report.rejected), "the run's rejected_lines metadata"
                )
            )
        context.log.warning("\n".join(lines))
    context.log.info(
        f"Inserted {report.inserted:,} events, rejected {len(report.rejected):,}, "
        f"{report.duplicates:,} already stored (duplicates)"
    )
    return dg.Output(
        report.inserted,
        metadata={
            "inserted": report.inserted,
            "rejected": len(report.rejected),
            "duplicates": report.duplicates,
            "rejected_lines": metadata_table(
                [("line", "int"), ("reason", "string")],
                [(r.position + 1, r.reason) for r in report.rejected],
            ),
            **_cut_metadata(
                "rejected_lines", len(report.rejected), "split the file to see the rest"
            ),
        },
    )
