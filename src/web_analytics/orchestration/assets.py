"""The setup asset, the two pre-aggregated tables (one step computes both) and their checks."""

import warnings
from collections.abc import Mapping, Sequence
from datetime import date

import dagster as dg

# Private in Dagster 1.13 (not exported by `dagster`), yet the only way to tell an
# AssetCheckEvaluation which materialization it checked.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData as CheckedMaterialization,
)

from web_analytics.orchestration.config import PreAggregationConfig
from web_analytics.orchestration.partitions import (
    backfill_policy,
    daily_partitions,
    partition_key,
    window_days,
)
from web_analytics.orchestration.resources import ClickhouseCluster
from web_analytics.orchestration.settings import WebAnalyticsSettings
from web_analytics.warehouse.accuracy import AccuracyReport
from web_analytics.warehouse.aggregation import AggregationResult, days_between
from web_analytics.warehouse.errors import WarehouseError, WriteInterrupted
from web_analytics.warehouse.gap_text import days_phrase
from web_analytics.warehouse.schema import BOUNCES, COVERAGE, PRE_AGGREGATED_TABLES, STATS
from web_analytics.warehouse.settings import resolve_settings

GROUP = "web_analytics"
OWNERS = ["team:web-analytics"]
CLICKHOUSE_POOL = "clickhouse"
ACCURACY_CHECK = "matches_raw_events"
TRIGGER_TAG = "web_analytics/trigger"
MAX_METADATA_ROWS = 200
COVERAGE_ASSET = dg.AssetKey(COVERAGE)

# Per-partition asset checks are a preview feature in Dagster 1.13; we rely on them knowingly.
warnings.filterwarnings(
    "ignore",
    message="Specifying a partitions_def on an AssetCheckSpec is currently in preview",
    category=dg.PreviewWarning,
)

retry_policy = dg.RetryPolicy(
    max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


@dg.asset(group_name=GROUP, owners=OWNERS, kinds={"clickhouse"}, pool=CLICKHOUSE_POOL)
def web_analytics_tables(context: dg.AssetExecutionContext, clickhouse: ClickhouseCluster) -> None:
    """Every table and view the system needs, created if missing."""
    warehouse = clickhouse.warehouse()
    warehouse.ensure_schema()
    context.add_output_metadata({"warehouse": warehouse.target.describe()})


# Written by update_data_coverage_op (its job and the 03:00 maintenance), not materialized
# on its own: the UI shows its latest materialization, a table of the days that need
# backfill and why, next to the tables' partitions.
web_analytics_data_coverage = dg.AssetSpec(
    COVERAGE_ASSET,
    deps=list(PRE_AGGREGATED_TABLES),
    group_name=GROUP,
    owners=OWNERS,
    kinds={"clickhouse"},
    description=(
        "Per team, UTC day and table of the lookback window: source and pre-aggregated "
        "pageviews and the day's state. Its latest materialization lists the gap ranges "
        "(missing, stale, failed, inaccurate) per team and table. Refreshed by "
        "update_data_coverage_job and web_analytics_maintenance_job."
    ),
)


def run_trigger(tags: Mapping[str, str]) -> str:
    """What launched a run, for the backfill status records."""
    if TRIGGER_TAG in tags:
        return tags[TRIGGER_TAG]
    for tag, kind in (
        ("dagster/sensor_name", "sensor"),
        ("dagster/schedule_name", "schedule"),
        ("dagster/backfill", "backfill"),
    ):
        if tag in tags:
            return f"{kind}:{tags[tag]}"
    return "manual"


def metadata_table(
    columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[object]]
) -> dg.TableMetadataValue:
    """Rows as a table the UI sorts and filters; ``columns`` are (name, type) pairs."""
    names = [name for name, _ in columns]
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord(dict(zip(names, map(_cell, row), strict=True)))
            for row in rows[:MAX_METADATA_ROWS]
        ],
        schema=dg.TableSchema(
            columns=[dg.TableColumn(name, type=type_) for name, type_ in columns]
        ),
    )


def _cell(value: object) -> str | int | float | bool | None:
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def _materialization_metadata(
    result: AggregationResult, table: str, config: PreAggregationConfig
) -> dict[str, dg.MetadataValue | int | float | str]:
    rows = result.rows_for(table)
    settings = resolve_settings(config.clickhouse_settings_preset, config.extra_clickhouse_settings)
    return {
        "days": dg.MetadataValue.text(f"{result.first_day} to {result.last_day}"),
        "rows_written": sum(rows.values()),
        "rows_per_day": metadata_table([("day", "date"), ("rows", "int")], list(rows.items())),
        "source_events_read": result.source_events,
        "teams": len({team for team, _ in result.fingerprints}),
        "duration_seconds": round(result.seconds, 3),
        "clickhouse_settings": dg.MetadataValue.json(settings),
    }


def check_output_name(key: dg.AssetCheckKey) -> str:
    """The name Dagster gives a check's output in a multi-asset check's op."""
    return f"{key.asset_key.to_python_identifier()}_{key.name}"


def _latest_materializations(
    instance: dg.DagsterInstance, asset_key: dg.AssetKey, partitions: Sequence[str]
) -> dict[str, CheckedMaterialization]:
    """Partition -> the latest materialization of that partition of ``asset_key``, for those of
    ``partitions`` ever materialized; two queries whatever the number of partitions."""
    storage_ids = instance.get_latest_storage_id_by_partition(
        asset_key, dg.DagsterEventType.ASSET_MATERIALIZATION, set(partitions)
    )
    if not storage_ids:
        return {}
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key, storage_ids=list(storage_ids.values())),
        limit=len(storage_ids),
    ).records
    return {
        record.partition_key: CheckedMaterialization(
            storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
        )
        for record in records
        if record.partition_key is not None
    }


def _check_evaluation(
    report: AccuracyReport, day: date, checked: CheckedMaterialization | None
) -> dg.AssetCheckEvaluation:
    """The check's outcome for one table and UTC day, recorded on that day's partition and
    linked to the materialization it checked: without the link the UI counts the day's check
    as outdated, i.e. missing."""
    report = report.for_day(day)
    metadata: dict[str, dg.MetadataValue] = {
        "teams_checked": dg.MetadataValue.int(report.teams_checked),
        "differences": dg.MetadataValue.int(len(report.discrepancies)),
    }
    if report.discrepancies:
        metadata["differing_teams"] = metadata_table(
            [
                ("team", "int"),
                ("metric", "string"),
                ("pre_aggregated", "int"),
                ("raw", "int"),
            ],
            [(d.team_id, d.metric, d.preaggregated, d.raw) for d in report.discrepancies],
        )
    return dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey(report.table),
        check_name=ACCURACY_CHECK,
        passed=report.passed,
        metadata=metadata,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{report.table} against raw events on {day}",
        partition=partition_key(day),
        target_materialization_data=checked,
    )


def pre_aggregation_assets(
    settings: WebAnalyticsSettings,
) -> tuple[dg.AssetsDefinition, list[dg.AssetChecksDefinition]]:
    """The multi-asset that computes both tables over the configured daily partitions, and
    the accuracy check that compares both with one computation of the raw events."""
    partitions = daily_partitions(settings)

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                table,
                deps=[web_analytics_tables],
                group_name=GROUP,
                owners=OWNERS,
                kinds={"clickhouse"},
                description=description,
            )
            for table, description in (
                (STATS, "Visitors, views and sessions per team, local hour and dimension value."),
                (BOUNCES, "Sessions, bounces and session duration per team, local hour and value."),
            )
        ],
        partitions_def=partitions,
        backfill_policy=backfill_policy(settings),
        pool=CLICKHOUSE_POOL,
        retry_policy=retry_policy,
    )
    def web_pre_aggregated_tables(
        context: dg.AssetExecutionContext,
        config: PreAggregationConfig,
        clickhouse: ClickhouseCluster,
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
        except WriteInterrupted:
            raise  # the retry policy reruns the whole step, which starts from clean staging
        except (WarehouseError, ValueError) as error:
            # Transient failures were already retried by the warehouse; another try won't help.
            raise dg.Failure(description=str(error), allow_retries=False) from error
        rows = sum(sum(result.rows_for(table).values()) for table in PRE_AGGREGATED_TABLES)
        context.log.info(
            f"Wrote {first_day} to {last_day} ({days_phrase(len(result.days))}, "
            f"{len({team for team, _ in result.fingerprints})} teams): "
            f"{result.source_events:,} source events read, {rows:,} rows written "
            f"in {result.seconds:.1f} s"
        )
        for table in PRE_AGGREGATED_TABLES:
            yield dg.MaterializeResult(
                asset_key=table, metadata=_materialization_metadata(result, table, config)
            )

    @dg.multi_asset_check(
        specs=[
            dg.AssetCheckSpec(ACCURACY_CHECK, asset=table, partitions_def=partitions)
            for table in PRE_AGGREGATED_TABLES
        ],
        name=ACCURACY_CHECK,
        # Optional outputs: each day of a range run gets its own evaluation, yielded below.
        can_subset=True,
        pool=CLICKHOUSE_POOL,
        description=(
            "Per team and day: views, sessions, bounces and total session duration equal "
            "the raw events exactly; visitors within 1 %. A day that fails becomes "
            "'inaccurate' and the backfill recomputes it."
        ),
    )
    def matches_raw_events(context: dg.AssetCheckExecutionContext, clickhouse: ClickhouseCluster):
        first_day, last_day = window_days(*context.partition_time_window)
        days = days_between(first_day, last_day)
        partitions = [partition_key(day) for day in days]
        # What Dagster does for an AssetCheckResult of one partition, for every day at once;
        # before reading the tables, so a day rewritten meanwhile shows as not yet checked.
        checked = {
            table: _latest_materializations(context.instance, dg.AssetKey(table), partitions)
            for table in PRE_AGGREGATED_TABLES
        }
        reports = clickhouse.warehouse().check_accuracy(first_day, last_day)
        failed = []
        for report in reports.values():
            for day in days:
                target = checked[report.table].get(partition_key(day))
                evaluation = _check_evaluation(report, day, target)
                if not evaluation.passed:
                    failed.append(f"{report.table} {day}")
                yield evaluation
        # The evaluations above carry their day; these empty outputs tell Dagster the step
        # produced every check it was asked for (as an AssetCheckResult's would).
        for key in context.selected_asset_check_keys:
            yield dg.Output(None, output_name=check_output_name(key))
        context.log.info(
            f"Accuracy of {first_day} to {last_day} ({days_phrase(len(days))} x "
            f"{len(reports)} tables): "
            + (
                "every day matches the raw events"
                if not failed
                else f"{len(failed)} table-days differ: {', '.join(failed)}"
            )
        )

    return web_pre_aggregated_tables, [matches_raw_events]
