"""The Dagster automation around gaps, without a daemon: the backfill sensor and schedules
decide which days to launch, the diagnostic and maintenance jobs report and clean up, and a
materialization records who triggered it.

The sensor, schedules and ops read the real current UTC date, so every scenario here is
built relative to today."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

import dagster as dg
import pytest
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteRepositoryOrigin
from dagster._core.test_utils import create_run_for_test
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from test_gaps import FAILING, pageviews, traffic

import web_analytics
from web_analytics.definitions import defs
from web_analytics.orchestration import sensors
from web_analytics.orchestration.assets import run_trigger, web_pre_aggregated_tables
from web_analytics.orchestration.config import (
    LOOKBACK_ENV,
    MAX_DAYS_PER_TICK_ENV,
    RETENTION_ENV,
    SENSOR_INTERVAL_ENV,
    AutomationSettings,
)
from web_analytics.orchestration.resources import ClickhouseCluster
from web_analytics.orchestration.schedules import (
    web_analytics_backfill_schedule,
    web_analytics_daily_schedule,
    web_analytics_maintenance_schedule,
)
from web_analytics.orchestration.sensors import web_analytics_backfill_sensor
from web_analytics.warehouse.backfill import AttemptStatus, CleanupReport, record_attempt
from web_analytics.warehouse.gaps import CoverageReport, DayState, GapReport
from web_analytics.warehouse.schema import BOUNCES, STATS

DAILY_JOB = "web_analytics_daily_job"
SENSOR_TRIGGER = "sensor:web_analytics_backfill_sensor"
TODAY = datetime.now(UTC).date()


def ago(days: int) -> date:
    return TODAY - timedelta(days=days)


# The scenario, teams 1 and 2, relative to today (T):
# T-1 complete; T-2 missing; T-3 computed, then a late session for team 2 (stale); T-4 only a
# failed run; T-5 no traffic (empty); T-6 missing; T-7 complete; earlier days no traffic.
NEEDING_NEWEST_FIRST = [ago(2), ago(3), ago(4), ago(6)]


def build_recent_scenario(warehouse: web_analytics.Warehouse) -> None:
    warehouse.insert_events(traffic((1, 2), [ago(n) for n in (1, 2, 3, 4, 6, 7)]))
    for n in (7, 3, 1):
        warehouse.aggregate(ago(n), ago(n))
    with pytest.raises(web_analytics.QueryFailed):
        warehouse.aggregate(ago(4), ago(4), extra_settings=FAILING)
    warehouse.insert_events(pageviews(2, ago(3), "late", hour=15, count=1))


@pytest.fixture(scope="module")
def recent_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store with the scenario, shared by the tests that leave its gaps as they are."""
    url = f"chdb://{tmp_path_factory.mktemp('automation') / 'store'}"
    warehouse = web_analytics.connect(url)
    warehouse.ensure_schema()
    build_recent_scenario(warehouse)
    return url


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def evaluate_sensor(
    instance: dg.DagsterInstance, url: str
) -> tuple[list[dg.RunRequest], str | None]:
    """One tick of the backfill sensor: its run requests and its skip message."""
    with dg.build_sensor_context(
        instance=instance, resources={"clickhouse": ClickhouseCluster(url=url)}, definitions=defs
    ) as context:
        data = web_analytics_backfill_sensor.evaluate_tick(context)
    return list(data.run_requests or []), data.skip_message


def days_of(requests: list[dg.RunRequest]) -> list[date]:
    return [date.fromisoformat(request.partition_key) for request in requests]


_QUEUED_ORIGIN = RemoteRepositoryOrigin(
    InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="web_analytics.definitions")),
    "__repository__",
).get_job_origin(DAILY_JOB)


def submit_run(
    instance: dg.DagsterInstance, status: dg.DagsterRunStatus, tags: dict[str, str]
) -> None:
    """A run of the daily job in the instance, as the daemon would have it."""
    create_run_for_test(
        instance,
        job_name=DAILY_JOB,
        status=status,
        tags=tags,
        # Dagster only accepts a queued run that says which code location it comes from.
        remote_job_origin=_QUEUED_ORIGIN if status == dg.DagsterRunStatus.QUEUED else None,
    )


def partition_run(instance: dg.DagsterInstance, day: date, status: dg.DagsterRunStatus) -> None:
    submit_run(instance, status, {"dagster/partition": day.isoformat()})


# --- the backfill sensor ---------------------------------------------------------------------


def test_sensor_launches_missing_stale_and_failed_days_newest_first_never_empty_ones(
    recent_store: str, instance: dg.DagsterInstance
) -> None:
    requests, skip = evaluate_sensor(instance, recent_store)

    assert skip is None
    # T-5 has no traffic and the earlier days of the window none either: never requested.
    assert days_of(requests) == NEEDING_NEWEST_FIRST
    for request in requests:
        assert request.job_name == DAILY_JOB
        assert request.run_key.startswith(f"{request.partition_key}:")
        assert request.tags["web_analytics/trigger"] == SENSOR_TRIGGER
        assert request.tags["dagster/partition"] == request.partition_key
        assert request.tags["dagster/sensor_name"] == "web_analytics_backfill_sensor"
    assert len({request.run_key for request in requests}) == 4


def test_sensor_skips_days_already_queued_or_running(
    recent_store: str, instance: dg.DagsterInstance
) -> None:
    partition_run(instance, ago(3), dg.DagsterRunStatus.STARTED)
    # A queued range run covering T-7..T-6, as the daily schedule launches them.
    submit_run(
        instance,
        dg.DagsterRunStatus.QUEUED,
        {
            "dagster/asset_partition_range_start": ago(7).isoformat(),
            "dagster/asset_partition_range_end": ago(6).isoformat(),
        },
    )
    # Finished runs do not hold a day: T-2's earlier attempt succeeded or failed long ago.
    partition_run(instance, ago(2), dg.DagsterRunStatus.SUCCESS)
    partition_run(instance, ago(4), dg.DagsterRunStatus.FAILURE)

    requests, _ = evaluate_sensor(instance, recent_store)

    assert days_of(requests) == [ago(2), ago(4)]


def test_sensor_respects_its_cap_and_skips_while_every_day_is_in_flight(
    recent_store: str, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        sensors, "automation", dataclasses.replace(sensors.automation, max_days_per_tick=2)
    )

    first, _ = evaluate_sensor(instance, recent_store)
    assert days_of(first) == [ago(2), ago(3)]  # the two newest of four

    # The daemon submitted them: one still queued, one running.
    partition_run(instance, ago(2), dg.DagsterRunStatus.QUEUED)
    partition_run(instance, ago(3), dg.DagsterRunStatus.STARTED)
    second, _ = evaluate_sensor(instance, recent_store)
    assert days_of(second) == [ago(4), ago(6)]

    for day in (ago(4), ago(6)):
        partition_run(instance, day, dg.DagsterRunStatus.STARTING)
    third, skip = evaluate_sensor(instance, recent_store)
    assert third == []
    assert skip == "All 4 days needing backfill already have runs queued or in progress."


def test_sensor_relaunches_a_day_whose_source_changed_and_skips_when_all_is_filled(
    warehouse: web_analytics.Warehouse, store_url: str, instance: dg.DagsterInstance
) -> None:
    # Team 1: T-3 computed then a late session (stale), T-2 missing, T-1 complete.
    warehouse.insert_events(traffic((1,), [ago(3), ago(2), ago(1)]))
    for n in (3, 1):
        warehouse.aggregate(ago(n), ago(n))
    warehouse.insert_events(pageviews(1, ago(3), "late", hour=15, count=1))
    before = {r.partition_key: r.run_key for r in evaluate_sensor(instance, store_url)[0]}
    assert list(before) == [ago(2).isoformat(), ago(3).isoformat()]

    # Another late session on T-3 (already stale) and a first one on T-1 (complete so far).
    warehouse.insert_events(
        pageviews(1, ago(3), "later", hour=16, count=1)
        + pageviews(1, ago(1), "late", hour=16, count=1)
    )
    after = {r.partition_key: r.run_key for r in evaluate_sensor(instance, store_url)[0]}

    assert list(after) == [ago(1).isoformat(), ago(2).isoformat(), ago(3).isoformat()]
    # T-3's key follows its source, so its new run is not deduplicated away by the daemon;
    # T-2 did not change, so its run is not launched twice.
    assert after[ago(3).isoformat()] != before[ago(3).isoformat()]
    assert after[ago(2).isoformat()] == before[ago(2).isoformat()]

    warehouse.aggregate(ago(3), ago(1))
    requests, skip = evaluate_sensor(instance, store_url)

    assert requests == []
    assert skip == "No missing, stale or failed days in the last 30 days (1 enabled team)."


def test_sensor_and_schedules_are_declared_as_operators_expect() -> None:
    assert web_analytics_backfill_sensor.minimum_interval_seconds == 6 * 3600
    assert web_analytics_backfill_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert web_analytics_backfill_sensor.job_name == DAILY_JOB
    declared = {
        schedule.name: (schedule.cron_schedule, schedule.execution_timezone, schedule.job_name)
        for schedule in (
            web_analytics_daily_schedule,
            web_analytics_backfill_schedule,
            web_analytics_maintenance_schedule,
        )
    }
    assert declared == {
        "web_analytics_daily_schedule": ("0 1 * * *", "UTC", DAILY_JOB),
        "web_analytics_backfill_schedule": ("0 2 * * *", "UTC", DAILY_JOB),
        "web_analytics_maintenance_schedule": ("0 3 * * *", "UTC", "web_analytics_maintenance_job"),
    }
    for name in declared:
        assert defs.resolve_schedule_def(name).default_status == dg.DefaultScheduleStatus.RUNNING
    assert defs.resolve_sensor_def("web_analytics_backfill_sensor") is not None


@pytest.mark.parametrize(
    ("scheduled", "first", "last"),
    [
        # Yesterday, and the day before (its late-night sessions end yesterday).
        (datetime(2024, 3, 10, 1, tzinfo=UTC), "2024-03-08", "2024-03-09"),
        # Never before the first partition.
        (datetime(2024, 1, 2, 1, tzinfo=UTC), "2024-01-01", "2024-01-01"),
    ],
)
def test_daily_schedule_computes_yesterday_and_the_day_before(
    scheduled: datetime, first: str, last: str
) -> None:
    context = dg.build_schedule_context(scheduled_execution_time=scheduled)
    [request] = web_analytics_daily_schedule.evaluate_tick(context).run_requests

    assert request.run_key == f"daily-{last}"
    assert request.tags["dagster/asset_partition_range_start"] == first
    assert request.tags["dagster/asset_partition_range_end"] == last
    assert request.tags["web_analytics/trigger"] == "schedule:web_analytics_daily_schedule"


def test_backfill_schedule_launches_every_day_to_fill_without_the_sensor_cap(
    recent_store: str, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        sensors, "automation", dataclasses.replace(sensors.automation, max_days_per_tick=1)
    )
    with dg.build_schedule_context(
        instance=instance,
        resources={"clickhouse": ClickhouseCluster(url=recent_store)},
        repository_def=defs.get_repository_def(),
        scheduled_execution_time=datetime.combine(TODAY, time(2), UTC),
    ) as context:
        requests = web_analytics_backfill_schedule.evaluate_tick(context).run_requests

    assert days_of(requests) == NEEDING_NEWEST_FIRST
    assert {r.tags["web_analytics/trigger"] for r in requests} == {
        "schedule:web_analytics_backfill_schedule"
    }


# --- settings from the environment -----------------------------------------------------------

ENV_NAMES = (LOOKBACK_ENV, MAX_DAYS_PER_TICK_ENV, SENSOR_INTERVAL_ENV, RETENTION_ENV)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_automation_settings_defaults_and_overrides(clean_env: pytest.MonkeyPatch) -> None:
    assert AutomationSettings.from_environment() == AutomationSettings(30, 14, 21600, 90)

    clean_env.setenv(LOOKBACK_ENV, "7")
    clean_env.setenv(MAX_DAYS_PER_TICK_ENV, "3")
    clean_env.setenv(SENSOR_INTERVAL_ENV, "5")
    clean_env.setenv(RETENTION_ENV, " ")  # blank means the default
    assert AutomationSettings.from_environment() == AutomationSettings(7, 3, 5, 90)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (LOOKBACK_ENV, "-1"),
        (LOOKBACK_ENV, "abc"),
        (LOOKBACK_ENV, "0"),
        (LOOKBACK_ENV, "3651"),
        (LOOKBACK_ENV, "7.5"),
        (MAX_DAYS_PER_TICK_ENV, "0"),
        (SENSOR_INTERVAL_ENV, "4"),  # under 5 s would hammer the store
        (SENSOR_INTERVAL_ENV, "six hours"),
        (RETENTION_ENV, "0"),
    ],
)
def test_automation_settings_reject_bad_values_naming_the_variable(
    clean_env: pytest.MonkeyPatch, name: str, value: str
) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(ValueError, match=f"{name}='{value}' must be a whole number from"):
        AutomationSettings.from_environment()


# --- diagnostic and maintenance jobs ---------------------------------------------------------

JOB_OPS = {
    "check_missing_data_job": ["check_missing_data_op"],
    "update_data_coverage_job": ["update_data_coverage_op"],
    "show_data_gaps_job": ["show_data_gaps_detailed_op"],
    "cleanup_backfill_records_job": ["cleanup_old_backfill_records_op"],
    "web_analytics_maintenance_job": [
        "update_data_coverage_op",
        "show_data_gaps_detailed_op",
        "cleanup_old_backfill_records_op",
    ],
}


def run_job(name: str, url: str, run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(name).execute_in_process(
        resources={"clickhouse": ClickhouseCluster(url=url)}, run_config=run_config or {}
    )


def test_every_diagnostic_job_exists_with_its_ops() -> None:
    for name, ops in JOB_OPS.items():
        assert sorted(defs.resolve_job_def(name).graph.node_names()) == sorted(ops)


def totals_row(table: str, empty: int, missing: int, stale: int, failed: int, done: int) -> str:
    return f"| {table} | {empty} | {missing} | {stale} | {failed} | {done} |"


def test_check_missing_data_job_reports_the_days_needing_backfill(recent_store: str) -> None:
    result = run_job("check_missing_data_job", recent_store)

    report = result.output_for_node("check_missing_data_op")
    assert isinstance(report, GapReport)
    assert report.needing_backfill == sorted(NEEDING_NEWEST_FIRST)
    assert [e.step_key for e in result.get_step_success_events()] == ["check_missing_data_op"]
    [output] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT]
    meta = output.event_specific_data.metadata
    assert meta["days_needing_backfill"].value == 4
    assert meta["sample_dates"].value == ", ".join(str(d) for d in sorted(NEEDING_NEWEST_FIRST))
    # 30 days x 2 teams = 60 team-days per table; 12 have traffic (6 days x 2 teams):
    # missing 4 (T-2, T-6), stale 1, failed 2 (T-4), complete 5 (T-1, T-7, team 1 on T-3).
    totals = meta["totals"].value
    assert "| table | empty | missing | stale | failed | complete |" in totals
    assert totals_row(STATS, 48, 4, 1, 2, 5) in totals
    assert totals_row(BOUNCES, 48, 4, 1, 2, 5) in totals


def test_update_data_coverage_job_writes_a_row_per_team_day_and_table(recent_store: str) -> None:
    result = run_job(
        "update_data_coverage_job",
        recent_store,
        {"ops": {"update_data_coverage_op": {"config": {"days_back": 7}}}},
    )

    coverage = result.output_for_node("update_data_coverage_op")
    assert isinstance(coverage, CoverageReport)
    # 7 days x 2 teams x 2 tables; per table 14 team-days, 2 of them (T-5) without traffic.
    assert (coverage.first_day, coverage.rows_written) == (ago(7), 28)
    [output] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT]
    meta = output.event_specific_data.metadata
    assert meta["rows_written"].value == 28
    assert totals_row(BOUNCES, 2, 4, 1, 2, 5) in meta["coverage"].value


def gap_rows(gaps: dict[int, list[tuple[date, str]]]) -> str:
    """The Markdown table of one-day gaps: per team, bounces before stats, oldest first."""
    rows = [
        f"| {team} | {table} | {day} | 1 | {state} |"
        for team, days in gaps.items()
        for table in (BOUNCES, STATS)
        for day, state in days
    ]
    return "\n".join(["| team | table | days | count | state |", "|---|---|---|---|---|", *rows])


def test_show_data_gaps_job_takes_days_back_and_team_ids(recent_store: str) -> None:
    result = run_job("show_data_gaps_job", recent_store, {"days_back": 14})

    report = result.output_for_node("show_data_gaps_detailed_op")
    assert isinstance(report, GapReport)
    assert (report.first_day, report.last_day) == (ago(14), ago(1))
    [output] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT]
    meta = output.event_specific_data.metadata
    # No two gap days of a team are consecutive in one state: every range is one day.
    team_1 = [(ago(6), "missing"), (ago(4), "failed"), (ago(2), "missing")]
    team_2 = [(ago(6), "missing"), (ago(4), "failed"), (ago(3), "stale"), (ago(2), "missing")]
    assert meta["gap_ranges"].value == gap_rows({1: team_1, 2: team_2})
    # 14 days x 2 teams = 28 team-days per table, 16 without traffic.
    assert totals_row(STATS, 16, 4, 1, 2, 5) in meta["totals"].value

    only_team_2 = run_job("show_data_gaps_job", recent_store, {"days_back": 3, "team_ids": [2]})
    report = only_team_2.output_for_node("show_data_gaps_detailed_op")
    assert report.team_ids == (2,)
    # T-3..T-1: T-3 stale and T-2 missing for team 2.
    assert report.needing_backfill == [ago(3), ago(2)]
    assert {(s.day, s.state) for s in report.days if s.table == STATS} == {
        (ago(3), DayState.STALE),
        (ago(2), DayState.MISSING),
        (ago(1), DayState.COMPLETE),
    }


def test_show_data_gaps_job_looks_back_7_days_by_default(recent_store: str) -> None:
    report = run_job("show_data_gaps_job", recent_store).output_for_node(
        "show_data_gaps_detailed_op"
    )
    assert (report.first_day, report.last_day) == (ago(7), ago(1))


@pytest.mark.parametrize(
    ("run_config", "error"),
    [
        ({"days_back": 0}, dg.DagsterConfigMappingFunctionError),
        ({"days_back": 3651}, dg.DagsterConfigMappingFunctionError),
        ({"days_back": "14"}, dg.DagsterInvalidConfigError),
        ({"days": 14}, dg.DagsterInvalidConfigError),
    ],
)
def test_show_data_gaps_job_rejects_bad_days_back_before_any_step(
    store_url: str, run_config: dict, error: type[Exception]
) -> None:
    with pytest.raises(error) as raised:
        run_job("show_data_gaps_job", store_url, run_config)
    if error is dg.DagsterConfigMappingFunctionError:  # pydantic says which bound
        assert "days_back" in str(raised.value.__cause__)


def record_aged_attempts(warehouse: web_analytics.Warehouse, now: datetime) -> None:
    """Attempts on T-10 and T-11 that started long ago (the scenario has none there)."""
    with warehouse.session() as session:
        for day, run, status, age in (
            (ago(10), "t10-old", AttemptStatus.SUCCEEDED, 100),  # deleted
            (ago(10), "t10-older-fail", AttemptStatus.FAILED, 60),  # deleted
            (ago(10), "t10-last", AttemptStatus.SUCCEEDED, 40),  # latest: kept
            (ago(11), "t11-only", AttemptStatus.SUCCEEDED, 200),  # latest: kept
        ):
            record_attempt(session, [day], run, "manual", status, now - timedelta(days=age))


def test_cleanup_job_removes_old_records_and_keeps_the_latest_of_every_day(
    warehouse: web_analytics.Warehouse, store_url: str
) -> None:
    record_aged_attempts(warehouse, datetime.now(UTC))
    with warehouse.session() as session:  # a run of today on T-12
        record_attempt(
            session, [ago(12)], "t12-now", "manual", AttemptStatus.STARTED, datetime.now(UTC)
        )

    result = run_job(
        "cleanup_backfill_records_job",
        store_url,
        {"ops": {"cleanup_old_backfill_records_op": {"config": {"retention_days": 30}}}},
    )

    report = result.output_for_node("cleanup_old_backfill_records_op")
    assert isinstance(report, CleanupReport)
    # 5 attempts x 2 tables = 10 records; t10-old and t10-older-fail go in both tables.
    assert (report.deleted, report.kept) == (4, 6)
    assert abs(report.cutoff - (datetime.now(UTC) - timedelta(days=30))) < timedelta(minutes=5)
    kept = {(r.table, r.run_id) for r in warehouse.backfill_records(ago(12), ago(10))}
    assert kept == {
        (t, run) for t in (STATS, BOUNCES) for run in ("t10-last", "t11-only", "t12-now")
    }


def test_maintenance_job_updates_coverage_then_reports_gaps_then_cleans_up(
    warehouse: web_analytics.Warehouse, store_url: str
) -> None:
    # Teams 1 and 2 have traffic on T-2 and T-1; only T-1 is computed.
    warehouse.insert_events(traffic((1, 2), [ago(2), ago(1)]))
    warehouse.aggregate(ago(1), ago(1))
    record_aged_attempts(warehouse, datetime.now(UTC))

    result = run_job("web_analytics_maintenance_job", store_url)

    assert result.success
    started = [
        e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START
    ]
    assert started == JOB_OPS["web_analytics_maintenance_job"]
    assert [e.step_key for e in result.get_step_success_events()] == started
    coverage = result.output_for_node("update_data_coverage_op")
    assert isinstance(coverage, CoverageReport)
    # Default 30 days x 2 teams x 2 tables; per table 60 team-days, T-1 complete and T-2
    # missing for both teams.
    assert (coverage.first_day, coverage.last_day, coverage.rows_written) == (ago(30), ago(1), 120)
    assert coverage.counts[STATS] == {
        DayState.EMPTY: 56,
        DayState.MISSING: 2,
        DayState.STALE: 0,
        DayState.FAILED: 0,
        DayState.COMPLETE: 2,
    }
    gaps = result.output_for_node("show_data_gaps_detailed_op")
    assert isinstance(gaps, GapReport)
    assert (gaps.first_day, gaps.needing_backfill) == (ago(7), [ago(2)])  # 7 days by default
    cleanup = result.output_for_node("cleanup_old_backfill_records_op")
    assert isinstance(cleanup, CleanupReport)
    # Default retention 90 days: only t10-old (100 days) goes, in both tables. Kept: 3 aged
    # attempts and the T-1 run, x 2 tables = 8.
    assert (cleanup.deleted, cleanup.kept) == (2, 8)


# --- the pre-aggregation asset records its trigger -------------------------------------------


def test_a_sensor_launched_materialization_records_the_run_and_the_sensor(
    warehouse: web_analytics.Warehouse, clickhouse: ClickhouseCluster
) -> None:
    day = date(2024, 1, 5)
    warehouse.insert_events(traffic((1,), [day]))

    result = dg.materialize(
        [web_pre_aggregated_tables],
        partition_key=day.isoformat(),
        resources={"clickhouse": clickhouse},
        tags={"dagster/sensor_name": "web_analytics_backfill_sensor"},
    )

    assert result.success
    records = warehouse.backfill_records(day, day)
    assert {(r.table, r.run_id, r.trigger, r.status) for r in records} == {
        (table, result.run_id, SENSOR_TRIGGER, AttemptStatus.SUCCEEDED)
        for table in (STATS, BOUNCES)
    }
    # One session with 2 pageviews: rows were written to both tables.
    assert all(r.rows_written > 0 for r in records)
    assert warehouse.find_gaps(days_back=1, today=day + timedelta(days=1)).needing_backfill == []


@pytest.mark.parametrize(
    ("tags", "trigger"),
    [
        ({"web_analytics/trigger": "sensor:x", "dagster/schedule_name": "y"}, "sensor:x"),
        (
            {"dagster/schedule_name": "web_analytics_daily_schedule"},
            "schedule:web_analytics_daily_schedule",
        ),
        ({"dagster/backfill": "abc"}, "backfill:abc"),
        ({}, "manual"),
    ],
)
def test_run_trigger_names_what_launched_the_run(tags: dict[str, str], trigger: str) -> None:
    assert run_trigger(tags) == trigger


# --- the resource ------------------------------------------------------------------------------


def test_an_explicit_lock_timeout_on_the_resource_wins(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEB_ANALYTICS_LOCK_TIMEOUT", "300")
    resource = ClickhouseCluster(url=store_url, lock_timeout_seconds=5)
    assert resource.warehouse().store.lock_timeout == 5
    # The warehouse API reads the variable.
    assert web_analytics.connect(store_url).store.lock_timeout == 300


def test_the_resource_honours_the_lock_timeout_environment_variable(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEB_ANALYTICS_LOCK_TIMEOUT", "300")
    assert ClickhouseCluster(url=store_url).warehouse().store.lock_timeout == 300
