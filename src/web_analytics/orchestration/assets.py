"""The setup asset, the two pre-aggregated tables (one step computes both) and their checks."""

import warnings
from collections.abc import Mapping
from typing import Literal

import dagster as dg
from pydantic import Field, field_validator

from web_analytics.orchestration.partitions import backfill_policy, daily_partitions, window_days
from web_analytics.orchestration.resources import ClickhouseCluster
from web_analytics.warehouse.accuracy import AccuracyReport
from web_analytics.warehouse.aggregation import AggregationResult
from web_analytics.warehouse.errors import QueryFailed
from web_analytics.warehouse.schema import BOUNCES, PRE_AGGREGATED_TABLES, STATS
from web_analytics.warehouse.settings import PRESETS, parse_extra_settings

GROUP = "web_analytics"
CLICKHOUSE_POOL = "clickhouse"
ACCURACY_CHECK = "matches_raw_events"

# Per-partition asset checks are a preview feature in Dagster 1.13; we rely on them knowingly.
warnings.filterwarnings("ignore", category=dg.PreviewWarning, module="dagster")

retry_policy = dg.RetryPolicy(
    max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


@dg.asset(group_name=GROUP, kinds={"clickhouse"}, pool=CLICKHOUSE_POOL)
def web_analytics_tables(context: dg.AssetExecutionContext, clickhouse: ClickhouseCluster) -> None:
    """Every table and view the system needs, created if missing."""
    warehouse = clickhouse.warehouse()
    warehouse.ensure_schema()
    context.add_output_metadata({"warehouse": str(warehouse.target.describe())})


class PreAggregationConfig(dg.Config):
    team_ids: list[int] | None = Field(
        default=None, description="Only these teams; other teams' rows are kept as they were."
    )
    clickhouse_settings_preset: Literal["default", "high_performance"] = "default"
    extra_clickhouse_settings: str = Field(
        default="", description='Extra ClickHouse settings, "name=value,name=value".'
    )

    @field_validator("extra_clickhouse_settings")
    @classmethod
    def _valid_settings(cls, text: str) -> str:
        parse_extra_settings(text)
        return text

    @field_validator("team_ids")
    @classmethod
    def _valid_teams(cls, team_ids: list[int] | None) -> list[int] | None:
        if team_ids is not None and any(team <= 0 for team in team_ids):
            raise ValueError("team_ids must be positive integers")
        return team_ids


def run_trigger(tags: Mapping[str, str]) -> str:
    """What launched a run, for the backfill status records."""
    if "web_analytics/trigger" in tags:
        return tags["web_analytics/trigger"]
    for tag, kind in (
        ("dagster/sensor_name", "sensor"),
        ("dagster/schedule_name", "schedule"),
        ("dagster/backfill", "backfill"),
    ):
        if tag in tags:
            return f"{kind}:{tags[tag]}"
    return "manual"


def _materialization_metadata(
    result: AggregationResult, table: str, config: PreAggregationConfig
) -> dict[str, dg.MetadataValue | int | float | str]:
    rows = result.rows_for(table)
    settings = {
        **PRESETS[config.clickhouse_settings_preset],
        **parse_extra_settings(config.extra_clickhouse_settings),
    }
    return {
        "days": dg.MetadataValue.text(f"{result.first_day} to {result.last_day}"),
        "rows_written": sum(rows.values()),
        "rows_per_day": dg.MetadataValue.md(
            "| day | rows |\n|---|---|\n"
            + "\n".join(f"| {day} | {count} |" for day, count in rows.items())
        ),
        "source_events_read": result.source_events,
        "teams": len({team for team, _ in result.fingerprints}),
        "duration_seconds": round(result.seconds, 3),
        "clickhouse_settings": dg.MetadataValue.json(settings),
    }


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            table,
            deps=[web_analytics_tables],
            group_name=GROUP,
            kinds={"clickhouse"},
            description=description,
        )
        for table, description in (
            (STATS, "Visitors, views and sessions per team, local hour and dimension value."),
            (BOUNCES, "Sessions, bounces and session duration per team, local hour and value."),
        )
    ],
    partitions_def=daily_partitions,
    backfill_policy=backfill_policy,
    pool=CLICKHOUSE_POOL,
    retry_policy=retry_policy,
)
def web_pre_aggregated_tables(
    context: dg.AssetExecutionContext, config: PreAggregationConfig, clickhouse: ClickhouseCluster
):
    """Both tables for the run's UTC days, computed in one pass and swapped in day by day."""
    first_day, last_day = window_days(*context.partition_time_window)
    context.log.info(
        f"Aggregating {first_day} to {last_day} into {', '.join(PRE_AGGREGATED_TABLES)}"
    )
    try:
        result = clickhouse.warehouse().aggregate(
            first_day,
            last_day,
            team_ids=config.team_ids,
            settings_preset=config.clickhouse_settings_preset,
            extra_settings=config.extra_clickhouse_settings,
            run_id=context.run.run_id,
            trigger=run_trigger(context.run.tags),
        )
    except (QueryFailed, ValueError) as error:
        # Transient failures were already retried by the warehouse; another try won't help.
        raise dg.Failure(description=str(error), allow_retries=False) from error
    context.log.info(
        f"Wrote {first_day} to {last_day}: {result.source_events} source events read "
        f"in {result.seconds:.1f} s"
    )
    for table in PRE_AGGREGATED_TABLES:
        yield dg.MaterializeResult(
            asset_key=table, metadata=_materialization_metadata(result, table, config)
        )


def _check_result(report: AccuracyReport) -> dg.AssetCheckResult:
    rows = "\n".join(
        f"| {d.team_id} | {d.day} | {d.metric} | {d.preaggregated} | {d.raw} |"
        for d in report.discrepancies[:200]
    )
    metadata: dict[str, dg.MetadataValue | int] = {
        "teams_checked": report.teams_checked,
        "differences": len(report.discrepancies),
    }
    if report.discrepancies:
        metadata["differing_teams_and_days"] = dg.MetadataValue.md(
            "| team | day | metric | pre-aggregated | raw |\n|---|---|---|---|---|\n" + rows
        )
    return dg.AssetCheckResult(
        passed=report.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=f"{report.table} against raw events, {report.first_day} to {report.last_day}",
    )


def _accuracy_check(table: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=table,
        name=ACCURACY_CHECK,
        partitions_def=daily_partitions,
        pool=CLICKHOUSE_POOL,
        description=(
            "Per team and day: views, sessions, bounces and total session duration equal the "
            "raw events exactly; visitors within 1 %."
        ),
    )
    def check(context: dg.AssetCheckExecutionContext, clickhouse: ClickhouseCluster):
        first_day, last_day = window_days(*context.partition_time_window)
        return _check_result(clickhouse.warehouse().compare_with_raw(table, first_day, last_day))

    return check


accuracy_checks = [_accuracy_check(table) for table in PRE_AGGREGATED_TABLES]
