"""The Dagster shell, run for real: materializations, partition ranges, accuracy checks and
run config."""

from __future__ import annotations

from datetime import date
from typing import Any

import dagster as dg
import pytest
from support import FAILING_SETTINGS, pageviews, records

import web_analytics
from web_analytics.orchestration.assets import (
    ACCURACY_CHECK,
    pre_aggregation_assets,
    web_analytics_tables,
)
from web_analytics.orchestration.resources import ClickhouseCluster
from web_analytics.orchestration.settings import WebAnalyticsSettings
from web_analytics.warehouse.schema import BOUNCES, PRE_AGGREGATED_TABLES, STATS

DAYS = [date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)]
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
METADATA_KEYS = {
    "days",
    "rows_written",
    "rows_per_day",
    "source_events_read",
    "duration_seconds",
    "clickhouse_settings",
}
PRE_AGGREGATED, ACCURACY_CHECKS = pre_aggregation_assets(WebAnalyticsSettings())
ASSETS_AND_CHECKS = [PRE_AGGREGATED, *ACCURACY_CHECKS]


@pytest.fixture
def loaded(warehouse: web_analytics.Warehouse) -> web_analytics.Warehouse:
    """Teams 1 and 2 (UTC): one session a day on Jan 1-3, pageviews at 12:00:00 and 12:00:30."""
    with warehouse.session():
        for team in (1, 2):
            warehouse.upsert_team(team, "UTC")
            warehouse.insert_events(
                event
                for day in DAYS
                for event in pageviews(
                    team, f"{team}-{day}", f"{day}T12:00:00Z", f"{day}T12:00:30Z"
                )
            )
    return warehouse


def materialize(
    clickhouse: ClickhouseCluster,
    instance: dg.DagsterInstance,
    assets: list[Any] = ASSETS_AND_CHECKS,
    **kwargs: Any,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(assets, resources={"clickhouse": clickhouse}, instance=instance, **kwargs)


def run_checks(
    clickhouse: ClickhouseCluster,
    instance: dg.DagsterInstance,
    day: str,
    selection: dg.AssetSelection,
) -> dg.ExecuteInProcessResult:
    """Only the checks of one partition. Dagster 1.13 refuses ``partition_key`` for a selection
    without assets, so the partition goes in as the run tag it would have become."""
    return materialize(clickhouse, instance, selection=selection, tags={"dagster/partition": day})


def materialized(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str | None], Any]:
    """(asset, partition) -> metadata of every materialization of the run."""
    return {
        (event.asset_key.to_user_string(), event.partition): event.metadata
        for event in result.asset_materializations_for_node("web_pre_aggregated_tables")
    }


def checks(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str | None], Any]:
    """(asset, partition) -> evaluation of every accuracy check of the run."""
    return {
        (evaluation.asset_key.to_user_string(), evaluation.partition): evaluation
        for evaluation in result.get_asset_check_evaluations()
    }


def latest_materializations(
    instance: dg.DagsterInstance, table: str, days: list[str]
) -> dict[str | None, dg.EventLogRecord]:
    """Day -> the latest materialization of that partition of ``table``."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(dg.AssetKey(table), asset_partitions=days), limit=100
    ).records
    latest: dict[str | None, dg.EventLogRecord] = {}
    for record in records:  # newest first
        latest.setdefault(record.partition_key, record)
    return latest


def check_statuses(instance: dg.DagsterInstance, table: str) -> dict[str, set[str]]:
    """Status -> days of the accuracy check of ``table``, from the state the UI's Partitions tab
    of the check reads; a day in no status shows there as missing."""
    key = dg.AssetCheckKey(dg.AssetKey(table), ACCURACY_CHECK)
    keys = [(key, PRE_AGGREGATED.partitions_def)]
    state = instance.event_log_storage.get_asset_check_state(keys)[key]
    statuses = {}
    for status, subset in state.subsets.items():
        assert not isinstance(subset.subset_value, bool), subset
        if days := set(subset.subset_value.get_partition_keys()):
            statuses[status.value] = days
    return statuses


def test_the_setup_asset_creates_every_table(store_url: str) -> None:
    result = dg.materialize(
        [web_analytics_tables], resources={"clickhouse": ClickhouseCluster(url=store_url)}
    )

    assert result.success
    with web_analytics.connect(store_url).session() as session:
        for table in ("events", *PRE_AGGREGATED_TABLES):
            assert session.query("EXISTS TABLE {t:Identifier}", {"t": table}) == [(1,)], table


def test_one_partition_is_materialized_and_checked(
    loaded: web_analytics.Warehouse, clickhouse: ClickhouseCluster, instance: dg.DagsterInstance
) -> None:
    result = materialize(clickhouse, instance, partition_key="2024-01-02")

    assert result.success
    runs = materialized(result)
    assert set(runs) == {(STATS, "2024-01-02"), (BOUNCES, "2024-01-02")}
    for metadata in runs.values():
        assert set(metadata) >= METADATA_KEYS
        assert metadata["days"].value == "2024-01-02 to 2024-01-02"
        assert metadata["rows_written"].value > 0
        assert metadata["source_events_read"].value >= 4  # at least Jan 2's own events
    evaluations = checks(result)
    assert set(evaluations) == {(table, "2024-01-02") for table in PRE_AGGREGATED_TABLES}
    assert all(evaluation.passed for evaluation in evaluations.values())
    # What the run wrote: team 1 on Jan 2, one session of 2 views over 30 s.
    assert loaded.overview(1, DAYS[1], DAYS[1], source="preaggregated") == web_analytics.Overview(
        1, 2, 1, 30.0, 0.0
    )
    assert (
        loaded.overview(1, DAYS[0], DAYS[0], source="preaggregated").views == 0
    )  # Jan 1 was not in the run


def test_a_partition_range_is_one_run_with_a_materialization_per_day(
    loaded: web_analytics.Warehouse, clickhouse: ClickhouseCluster, instance: dg.DagsterInstance
) -> None:
    result = materialize(
        clickhouse, instance, tags={RANGE_START: "2024-01-01", RANGE_END: "2024-01-03"}
    )

    assert result.success
    runs = materialized(result)
    assert set(runs) == {
        (table, day.isoformat()) for table in PRE_AGGREGATED_TABLES for day in DAYS
    }
    for metadata in runs.values():
        assert set(metadata) >= METADATA_KEYS
        assert metadata["days"].value == "2024-01-01 to 2024-01-03"
    # Every day of the range has its own check result.
    evaluations = checks(result)
    assert set(evaluations) == set(runs)
    assert all(evaluation.passed for evaluation in evaluations.values())
    # 3 days x 2 views for team 1.
    assert loaded.overview(1, DAYS[0], DAYS[-1], source="preaggregated").views == 6
    for table in PRE_AGGREGATED_TABLES:
        latest = instance.get_latest_materialization_event(dg.AssetKey(table))
        assert latest is not None and latest.run_id == result.run_id


@pytest.mark.parametrize(
    ("run", "days"),
    [
        pytest.param(
            {"tags": {RANGE_START: "2024-01-01", RANGE_END: "2024-01-03"}},
            ["2024-01-01", "2024-01-02", "2024-01-03"],
            id="range run",
        ),
        pytest.param({"partition_key": "2024-01-02"}, ["2024-01-02"], id="one day"),
    ],
)
def test_each_days_check_targets_that_days_materialization_and_shows_passed(
    loaded: web_analytics.Warehouse,
    clickhouse: ClickhouseCluster,
    instance: dg.DagsterInstance,
    run: dict[str, Any],
    days: list[str],
) -> None:
    result = materialize(clickhouse, instance, **run)

    evaluations = checks(result)
    for table in PRE_AGGREGATED_TABLES:
        latest = latest_materializations(instance, table, days)
        assert set(latest) == set(days)
        for day in days:
            target = evaluations[(table, day)].target_materialization_data
            assert target is not None, (table, day)
            assert (target.storage_id, target.run_id) == (latest[day].storage_id, result.run_id)
        # The check's Partitions tab: the run's days passed, the other days missing.
        assert check_statuses(instance, table) == {"SUCCEEDED": set(days)}, table


def test_a_check_run_on_its_own_targets_the_days_latest_materialization(
    loaded: web_analytics.Warehouse, clickhouse: ClickhouseCluster, instance: dg.DagsterInstance
) -> None:
    materialized_run = materialize(
        clickhouse, instance, tags={RANGE_START: "2024-01-01", RANGE_END: "2024-01-03"}
    )

    result = run_checks(clickhouse, instance, "2024-01-02", dg.AssetSelection.all_asset_checks())

    every_day = {day.isoformat() for day in DAYS}
    for table in PRE_AGGREGATED_TABLES:
        target = checks(result)[(table, "2024-01-02")].target_materialization_data
        [latest] = latest_materializations(instance, table, ["2024-01-02"]).values()
        assert target is not None and target.run_id == materialized_run.run_id
        assert target.storage_id == latest.storage_id
        assert check_statuses(instance, table) == {"SUCCEEDED": every_day}, table
    # Jan 2 recomputed without its check: its last result no longer speaks for it.
    materialize(clickhouse, instance, assets=[PRE_AGGREGATED], partition_key="2024-01-02")
    for table in PRE_AGGREGATED_TABLES:
        assert check_statuses(instance, table) == {"SUCCEEDED": every_day - {"2024-01-02"}}


# Per table: the statement, and the difference the check reports (metric, table, raw).
CORRUPTIONS = {
    # One bounce too many on Jan 2 for team 1 (its totals row), rewritten in place: its one
    # session of 2 views over 30 s is no bounce.
    BOUNCES: (
        "ALTER TABLE web_pre_aggregated_bounces UPDATE bounces = bounces + 1 "
        "WHERE team_id = 1 AND dimension = '' AND toDate(period_bucket) = '2024-01-02'",
        ("bounces", 1, 0),
    ),
    # A stray row adding one view on Jan 2 for team 1, to its 2.
    STATS: (
        "INSERT INTO web_pre_aggregated_stats (team_id, period_bucket, dimension, value, views) "
        "VALUES (1, '2024-01-02 13:00:00', '', '', 1)",
        ("views", 3, 2),
    ),
}


@pytest.mark.parametrize("table", sorted(CORRUPTIONS))
def test_a_corrupted_partition_fails_its_check_naming_the_team_and_day(
    loaded: web_analytics.Warehouse,
    clickhouse: ClickhouseCluster,
    instance: dg.DagsterInstance,
    table: str,
) -> None:
    materialize(clickhouse, instance, tags={RANGE_START: "2024-01-01", RANGE_END: "2024-01-03"})
    statement, (metric, pre_aggregated, raw) = CORRUPTIONS[table]
    with loaded.session() as session:
        session.command(statement, settings={"mutations_sync": 2})

    result = run_checks(clickhouse, instance, "2024-01-02", dg.AssetSelection.all_asset_checks())

    assert result.success  # a failed check is a finding, not a crashed run
    assert materialized(result) == {}
    evaluations = checks(result)
    assert set(evaluations) == {(t, "2024-01-02") for t in PRE_AGGREGATED_TABLES}
    failed = evaluations[(table, "2024-01-02")]
    assert not failed.passed
    assert failed.severity == dg.AssetCheckSeverity.ERROR
    assert failed.metadata["differences"].value == 1
    assert records(failed.metadata["differing_teams"]) == [
        {"team": 1, "metric": metric, "pre_aggregated": pre_aggregated, "raw": raw}
    ]
    (other,) = set(PRE_AGGREGATED_TABLES) - {table}
    assert evaluations[(other, "2024-01-02")].passed
    # The neighbouring days are still right.
    for day in ("2024-01-01", "2024-01-03"):
        selection = dg.AssetSelection.checks_for_assets(dg.AssetKey(table))
        again = checks(run_checks(clickhouse, instance, day, selection))
        assert again[(table, day)].passed, day


def test_run_config_picks_teams_and_clickhouse_settings(
    loaded: web_analytics.Warehouse, clickhouse: ClickhouseCluster, instance: dg.DagsterInstance
) -> None:
    materialize(clickhouse, instance, partition_key="2024-01-02")
    for team in (1, 2):  # a late bounce on Jan 2 for both teams
        loaded.insert_events(pageviews(team, f"late-{team}", "2024-01-02T15:00:00Z"))
    config = {
        "team_ids": [1],
        "clickhouse_settings_preset": "high_performance",
        "extra_clickhouse_settings": {"max_threads": 1},
    }

    result = materialize(
        clickhouse,
        instance,
        assets=[PRE_AGGREGATED],
        partition_key="2024-01-02",
        run_config={"ops": {"web_pre_aggregated_tables": {"config": config}}},
    )

    assert result.success
    settings = materialized(result)[(STATS, "2024-01-02")]["clickhouse_settings"].value
    assert settings["max_threads"] == 1  # the extra setting wins over the preset's 16
    assert settings["max_memory_usage"] == 32 * 1024**3  # high_performance
    # Team 1 recomputed: 2 sessions, 3 views, one bounce; team 2 kept its old row: 1 and 2.
    assert loaded.overview(1, DAYS[1], DAYS[1], source="preaggregated") == web_analytics.Overview(
        2, 3, 2, 15.0, 0.5
    )
    assert loaded.overview(2, DAYS[1], DAYS[1], source="preaggregated") == web_analytics.Overview(
        1, 2, 1, 30.0, 0.0
    )


def test_extra_settings_from_run_config_reach_clickhouse(
    loaded: web_analytics.Warehouse, clickhouse: ClickhouseCluster, instance: dg.DagsterInstance
) -> None:
    # A limit of one row read: the aggregation's queries read more, so ClickHouse stops them.
    config = {"extra_clickhouse_settings": FAILING_SETTINGS}

    result = materialize(
        clickhouse,
        instance,
        assets=[PRE_AGGREGATED],
        partition_key="2024-01-02",
        run_config={"ops": {"web_pre_aggregated_tables": {"config": config}}},
        raise_on_error=False,
    )

    assert not result.success
    [failure] = result.get_step_failure_events()
    assert "TOO_MANY_ROWS" in str(failure.step_failure_data.user_failure_data)
    assert loaded.overview(1, DAYS[1], DAYS[1], source="preaggregated").views == 0


@pytest.mark.parametrize(
    ("config", "error", "message"),
    [
        pytest.param(
            {"clickhouse_settings_preset": "turbo"},
            dg.DagsterInvalidConfigError,
            "clickhouse_settings_preset not in enum",
            id="unknown preset",
        ),
        pytest.param(
            {"extra_clickhouse_settings": {"max_threads": "1; DROP TABLE events"}},
            ValueError,
            "must be a number or a simple word",
            id="injection",
        ),
        pytest.param(
            {"extra_clickhouse_settings": {"max threads": 1}},
            ValueError,
            "is not a valid identifier",
            id="setting name with a space",
        ),
        pytest.param(
            {"extra_clickhouse_settings": "max_threads=1"},
            dg.DagsterInvalidConfigError,
            "extra_clickhouse_settings",
            id="settings as text",
        ),
        pytest.param(
            {"team_ids": [0]},
            ValueError,
            "each of team_ids must be a positive integer, got 0",
            id="team 0",
        ),
    ],
)
def test_bad_run_config_is_refused_before_any_query(
    loaded: web_analytics.Warehouse,
    clickhouse: ClickhouseCluster,
    instance: dg.DagsterInstance,
    config: dict[str, object],
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        materialize(
            clickhouse,
            instance,
            assets=[PRE_AGGREGATED],
            partition_key="2024-01-02",
            run_config={"ops": {"web_pre_aggregated_tables": {"config": config}}},
        )

    assert instance.get_latest_materialization_event(dg.AssetKey(STATS)) is None
    assert loaded.overview(1, DAYS[0], DAYS[-1], source="raw").views == 6  # events intact
    assert (
        loaded.overview(1, DAYS[0], DAYS[-1], source="preaggregated").views == 0
    )  # nothing was aggregated
