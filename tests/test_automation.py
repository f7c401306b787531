"""The Dagster automation around gaps, without a daemon: the backfill sensor and schedules
decide which days to launch, the diagnostic and maintenance jobs report and clean up, and a
materialization records who triggered it.

The sensor, schedules and ops read the real current UTC date, so every scenario here is
built relative to the day the test (or the module's shared store) starts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import dagster as dg
import pytest
from support import (
    FAILING_SETTINGS,
    add_run,
    definitions,
    lock_timeout_of,
    pageviews_on,
    records,
    traffic,
)

import web_analytics
from web_analytics.orchestration.assets import pre_aggregation_assets, run_trigger
from web_analytics.orchestration.partitions import tagged_days
from web_analytics.orchestration.resources import ClickhouseCluster
from web_analytics.orchestration.settings import WebAnalyticsSettings
from web_analytics.warehouse.attempts import AttemptStatus, CleanupReport, record_attempt
from web_analytics.warehouse.gaps import CoverageReport, DayState, GapReport
from web_analytics.warehouse.schema import BOUNCES, STATS

DAILY_JOB = "web_analytics_daily_job"
SENSOR = "web_analytics_backfill_sensor"
BACKFILL_SCHEDULE = "web_analytics_backfill_schedule"
DAILY_SCHEDULE = "web_analytics_daily_schedule"
SENSOR_TRIGGER = f"sensor:{SENSOR}"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


@dataclass(frozen=True)
class Recent:
    """A store whose history is set relative to ``today``:

    teams 1 and 2: T-1 complete; T-2 missing; T-3 computed, then a late session for team 2
    (stale); T-4 only a failed run; T-5 no traffic (empty); T-6 missing; T-7 complete; earlier
    days no traffic."""

    url: str
    today: date

    def ago(self, days: int) -> date:
        return self.today - timedelta(days=days)

    @property
    def needing(self) -> list[date]:
        return sorted(self.ago(n) for n in (2, 3, 4, 6))


def build_recent(warehouse: web_analytics.Warehouse, today: date) -> None:
    def ago(days: int) -> date:
        return today - timedelta(days=days)

    warehouse.insert_events(traffic((1, 2), [ago(n) for n in (1, 2, 3, 4, 6, 7)]))
    for n in (7, 3, 1):
        warehouse.aggregate(ago(n), ago(n))
    with pytest.raises(web_analytics.QueryFailed):
        warehouse.aggregate(ago(4), ago(4), extra_settings=FAILING_SETTINGS)
    warehouse.insert_events(pageviews_on(2, ago(3), "late", hour=15, count=1))


@pytest.fixture(scope="module")
def recent(tmp_path_factory: pytest.TempPathFactory) -> Recent:
    """The scenario, shared by the tests that leave its gaps as they are."""
    scenario = Recent(
        url=f"chdb://{tmp_path_factory.mktemp('automation') / 'store'}",
        today=datetime.now(UTC).date(),
    )
    warehouse = web_analytics.connect(scenario.url)
    warehouse.ensure_schema()
    build_recent(warehouse, scenario.today)
    return scenario


def evaluate_sensor(
    defs: dg.Definitions, instance: dg.DagsterInstance
) -> tuple[list[dg.RunRequest], str | None]:
    """One tick of the backfill sensor: its run requests and its skip message."""
    with dg.build_sensor_context(
        instance=instance, resources=defs.resources, definitions=defs
    ) as context:
        data = defs.resolve_sensor_def(SENSOR).evaluate_tick(context)
    return list(data.run_requests or []), data.skip_message


def ranges_of(requests: Sequence[dg.RunRequest]) -> list[tuple[date, date]]:
    """First and last UTC day of each request, in the order requested."""
    spans = [tagged_days(dict(request.tags)) for request in requests]
    return [(days[0], days[-1]) for days in spans]


def one_day(day: date) -> tuple[date, date]:
    return day, day


def partition_run(instance: dg.DagsterInstance, day: date, status: dg.DagsterRunStatus) -> None:
    add_run(instance, DAILY_JOB, status, {"dagster/partition": day.isoformat()})


# --- the backfill sensor ---------------------------------------------------------------------


def test_sensor_launches_missing_stale_and_failed_days_newest_first_never_empty_ones(
    recent: Recent, instance: dg.DagsterInstance
) -> None:
    requests, skip = evaluate_sensor(definitions(recent.url), instance)

    assert skip is None
    # T-5 has no traffic and the earlier days of the window none either: never requested.
    # T-4 (failed), T-3 (stale) and T-2 (missing) are consecutive: one run covers them.
    assert ranges_of(requests) == [(recent.ago(4), recent.ago(2)), one_day(recent.ago(6))]
    for request, (first, last) in zip(requests, ranges_of(requests), strict=True):
        assert request.job_name == DAILY_JOB
        assert request.run_key is not None
        assert request.run_key.startswith(f"{first}..{last}:")
        assert request.tags["web_analytics/trigger"] == SENSOR_TRIGGER
        assert request.tags["dagster/sensor_name"] == SENSOR
        assert request.run_config == {}  # both teams need every one of these days
    assert requests[0].tags[RANGE_START] == recent.ago(4).isoformat()
    assert requests[0].tags[RANGE_END] == recent.ago(2).isoformat()
    assert requests[1].partition_key == recent.ago(6).isoformat()
    assert requests[1].tags["dagster/partition"] == recent.ago(6).isoformat()
    assert len({request.run_key for request in requests}) == 2


def test_sensor_skips_days_already_queued_or_running(
    recent: Recent, instance: dg.DagsterInstance
) -> None:
    partition_run(instance, recent.ago(3), dg.DagsterRunStatus.STARTED)
    # A queued range run covering T-7..T-6, as the daily schedule launches them.
    add_run(
        instance,
        DAILY_JOB,
        dg.DagsterRunStatus.QUEUED,
        {RANGE_START: recent.ago(7).isoformat(), RANGE_END: recent.ago(6).isoformat()},
    )
    # Finished runs do not hold a day: T-2's and T-4's earlier runs ended long ago.
    partition_run(instance, recent.ago(2), dg.DagsterRunStatus.SUCCESS)
    partition_run(instance, recent.ago(4), dg.DagsterRunStatus.SUCCESS)

    requests, _ = evaluate_sensor(definitions(recent.url), instance)

    assert ranges_of(requests) == [one_day(recent.ago(2)), one_day(recent.ago(4))]


def test_sensor_respects_its_cap_and_skips_while_every_day_is_in_flight(
    recent: Recent, instance: dg.DagsterInstance
) -> None:
    defs = definitions(recent.url, max_days_per_tick=2)

    first, _ = evaluate_sensor(defs, instance)
    assert ranges_of(first) == [(recent.ago(3), recent.ago(2))]  # the two newest of four

    # The daemon submitted it as two runs: one still queued, one running.
    partition_run(instance, recent.ago(2), dg.DagsterRunStatus.QUEUED)
    partition_run(instance, recent.ago(3), dg.DagsterRunStatus.STARTED)
    second, _ = evaluate_sensor(defs, instance)
    assert ranges_of(second) == [one_day(recent.ago(4)), one_day(recent.ago(6))]

    for day in (recent.ago(4), recent.ago(6)):
        partition_run(instance, day, dg.DagsterRunStatus.STARTING)
    third, skip = evaluate_sensor(defs, instance)
    assert third == []
    assert skip == (
        "4 UTC days need backfill: 4 already have runs queued or in progress, "
        "0 wait after a recent failure, 0 keep failing."
    )


def test_sensor_relaunches_a_day_whose_source_changed_and_skips_when_all_is_filled(
    warehouse: web_analytics.Warehouse,
    store_url: str,
    instance: dg.DagsterInstance,
    today: date,
) -> None:
    def ago(days: int) -> date:
        return today - timedelta(days=days)

    # One day per run, so that each day's run key can be followed on its own.
    defs = definitions(store_url, max_days_per_run=1)
    # Team 1: T-3 computed then a late session (stale), T-2 missing, T-1 complete.
    warehouse.insert_events(traffic((1,), [ago(3), ago(2), ago(1)]))
    for n in (3, 1):
        warehouse.aggregate(ago(n), ago(n))
    warehouse.insert_events(pageviews_on(1, ago(3), "late", hour=15, count=1))
    before = {r.partition_key: r.run_key for r in evaluate_sensor(defs, instance)[0]}
    assert list(before) == [ago(2).isoformat(), ago(3).isoformat()]

    # Another late session on T-3 (already stale) and a first one on T-1 (complete so far).
    warehouse.insert_events(
        pageviews_on(1, ago(3), "later", hour=16, count=1)
        + pageviews_on(1, ago(1), "late", hour=16, count=1)
    )
    after = {r.partition_key: r.run_key for r in evaluate_sensor(defs, instance)[0]}

    assert list(after) == [ago(1).isoformat(), ago(2).isoformat(), ago(3).isoformat()]
    # T-3's key follows its source, so its new run is not deduplicated away by the daemon;
    # T-2 did not change, so its run is not launched twice.
    assert after[ago(3).isoformat()] != before[ago(3).isoformat()]
    assert after[ago(2).isoformat()] == before[ago(2).isoformat()]

    warehouse.aggregate(ago(3), ago(1))
    requests, skip = evaluate_sensor(defs, instance)

    assert requests == []
    assert skip == (
        "No missing, stale, failed or inaccurate days in the last 30 days (1 enabled team)."
    )


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
    scheduled: datetime, first: str, last: str, instance: dg.DagsterInstance
) -> None:
    schedule = definitions().resolve_schedule_def(DAILY_SCHEDULE)
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=scheduled)
    [request] = schedule.evaluate_tick(context).run_requests or []

    assert request.run_key == f"daily-{last}"
    assert request.tags[RANGE_START] == first
    assert request.tags[RANGE_END] == last
    assert request.tags["web_analytics/trigger"] == f"schedule:{DAILY_SCHEDULE}"


def test_backfill_schedule_launches_every_day_to_fill_without_the_sensor_cap(
    recent: Recent, instance: dg.DagsterInstance
) -> None:
    defs = definitions(recent.url, max_days_per_tick=1)
    with dg.build_schedule_context(
        instance=instance,
        resources=defs.resources,
        repository_def=defs.get_repository_def(),
        scheduled_execution_time=datetime.combine(recent.today, time(2), UTC),
    ) as context:
        requests = defs.resolve_schedule_def(BACKFILL_SCHEDULE).evaluate_tick(context).run_requests

    assert requests is not None
    assert ranges_of(requests) == [(recent.ago(4), recent.ago(2)), one_day(recent.ago(6))]
    assert {r.tags["web_analytics/trigger"] for r in requests} == {f"schedule:{BACKFILL_SCHEDULE}"}


# --- diagnostic and maintenance jobs ---------------------------------------------------------


def run_job(
    name: str, url: str, run_config: dict[str, Any] | None = None
) -> dg.ExecuteInProcessResult:
    """A job of the definitions over the store at ``url``, with the default settings."""
    return definitions(url).resolve_job_def(name).execute_in_process(run_config=run_config or {})


def output_metadata(result: dg.ExecuteInProcessResult, step: str) -> dict[str, Any]:
    [output] = [
        e
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.STEP_OUTPUT and e.step_key == step
    ]
    return dict(output.step_output_data.metadata)


def totals(table: str, empty: int, missing: int, stale: int, failed: int, done: int) -> dict:
    """A row of the team-days per table and state (nothing running or inaccurate here)."""
    return {
        "table": table,
        "empty": empty,
        "missing": missing,
        "stale": stale,
        "failed": failed,
        "running": 0,
        "inaccurate": 0,
        "complete": done,
    }


def test_check_missing_data_job_reports_the_days_needing_backfill(recent: Recent) -> None:
    result = run_job("check_missing_data_job", recent.url)

    report = result.output_for_node("check_missing_data_op")
    assert isinstance(report, GapReport)
    assert report.needing_backfill == recent.needing
    assert [e.step_key for e in result.get_step_success_events()] == ["check_missing_data_op"]
    meta = output_metadata(result, "check_missing_data_op")
    assert meta["days_needing_backfill"].value == 4
    assert meta["sample_dates"].value == ", ".join(str(d) for d in recent.needing)
    # 30 days x 2 teams = 60 team-days per table; 12 have traffic (6 days x 2 teams):
    # missing 4 (T-2, T-6), stale 1, failed 2 (T-4), complete 5 (T-1, T-7, team 1 on T-3).
    assert records(meta["totals"]) == [
        totals(STATS, 48, 4, 1, 2, 5),
        totals(BOUNCES, 48, 4, 1, 2, 5),
    ]


def test_update_data_coverage_job_writes_a_row_per_team_day_and_table(recent: Recent) -> None:
    result = run_job(
        "update_data_coverage_job",
        recent.url,
        {"ops": {"update_data_coverage_op": {"config": {"days_back": 7}}}},
    )

    coverage = result.output_for_node("update_data_coverage_op")
    assert isinstance(coverage, CoverageReport)
    # 7 days x 2 teams x 2 tables; per table 14 team-days, 2 of them (T-5) without traffic.
    assert (coverage.first_day, coverage.rows_written) == (recent.ago(7), 28)
    meta = output_metadata(result, "update_data_coverage_op")
    assert meta["rows_written"].value == 28
    assert totals(BOUNCES, 2, 4, 1, 2, 5) in records(meta["coverage"])


def gap_ranges(gaps: dict[int, list[tuple[date, str]]]) -> list[dict[str, Any]]:
    """The rows of one-day gaps: per team, bounces before stats, oldest first."""
    return [
        {
            "team": team,
            "table": table,
            "first_day": str(day),
            "last_day": str(day),
            "days": 1,
            "state": state,
        }
        for team, days in gaps.items()
        for table in (BOUNCES, STATS)
        for day, state in days
    ]


def test_show_data_gaps_job_takes_days_back_and_team_ids(recent: Recent) -> None:
    ago = recent.ago
    result = run_job("show_data_gaps_job", recent.url, {"days_back": 14})

    report = result.output_for_node("show_data_gaps_detailed_op")
    assert isinstance(report, GapReport)
    assert (report.first_day, report.last_day) == (ago(14), ago(1))
    meta = output_metadata(result, "show_data_gaps_detailed_op")
    # No two gap days of a team are consecutive in one state: every range is one day.
    team_1 = [(ago(6), "missing"), (ago(4), "failed"), (ago(2), "missing")]
    team_2 = [(ago(6), "missing"), (ago(4), "failed"), (ago(3), "stale"), (ago(2), "missing")]
    assert records(meta["gap_ranges"]) == gap_ranges({1: team_1, 2: team_2})
    # 14 days x 2 teams = 28 team-days per table, 16 without traffic.
    assert totals(STATS, 16, 4, 1, 2, 5) in records(meta["totals"])

    only_team_2 = run_job("show_data_gaps_job", recent.url, {"days_back": 3, "team_ids": [2]})
    report = only_team_2.output_for_node("show_data_gaps_detailed_op")
    assert report.team_ids == (2,)
    # T-3..T-1: T-3 stale and T-2 missing for team 2.
    assert report.needing_backfill == [ago(3), ago(2)]
    assert {(s.day, s.state) for s in report.days if s.table == STATS} == {
        (ago(3), DayState.STALE),
        (ago(2), DayState.MISSING),
        (ago(1), DayState.COMPLETE),
    }


def test_show_data_gaps_job_looks_back_7_days_by_default(recent: Recent) -> None:
    report = run_job("show_data_gaps_job", recent.url).output_for_node("show_data_gaps_detailed_op")
    assert (report.first_day, report.last_day) == (recent.ago(7), recent.ago(1))


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
    store_url: str, run_config: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error) as raised:
        run_job("show_data_gaps_job", store_url, run_config)
    if error is dg.DagsterConfigMappingFunctionError:  # pydantic says which bound
        assert "days_back" in str(raised.value.__cause__)


def record_aged_attempts(warehouse: web_analytics.Warehouse, today: date, now: datetime) -> None:
    """Attempts on T-10 and T-11 that started long ago (the scenarios have none there)."""
    with warehouse.session() as session:
        for days_ago, run, status, age in (
            (10, "t10-old", AttemptStatus.SUCCEEDED, 100),  # deleted
            (10, "t10-older-fail", AttemptStatus.FAILED, 60),  # deleted
            (10, "t10-last", AttemptStatus.SUCCEEDED, 40),  # latest: kept
            (11, "t11-only", AttemptStatus.SUCCEEDED, 200),  # latest: kept
        ):
            day = today - timedelta(days=days_ago)
            record_attempt(session, [day], run, "manual", status, now - timedelta(days=age))


def test_cleanup_job_removes_old_records_and_keeps_the_latest_of_every_day(
    warehouse: web_analytics.Warehouse, store_url: str, today: date
) -> None:
    record_aged_attempts(warehouse, today, datetime.now(UTC))
    t12 = today - timedelta(days=12)
    with warehouse.session() as session:  # a run of today on T-12
        record_attempt(
            session, [t12], "t12-now", "manual", AttemptStatus.STARTED, datetime.now(UTC)
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
    kept = {(r.table, r.run_id) for r in warehouse.backfill_records(t12, today - timedelta(10))}
    assert kept == {
        (t, run) for t in (STATS, BOUNCES) for run in ("t10-last", "t11-only", "t12-now")
    }


def test_maintenance_job_updates_coverage_then_reports_gaps_then_cleans_up(
    warehouse: web_analytics.Warehouse, store_url: str, today: date
) -> None:
    def ago(days: int) -> date:
        return today - timedelta(days=days)

    # Teams 1 and 2 have traffic on T-2 and T-1; only T-1 is computed.
    warehouse.insert_events(traffic((1, 2), [ago(2), ago(1)]))
    warehouse.aggregate(ago(1), ago(1))
    record_aged_attempts(warehouse, today, datetime.now(UTC))

    result = run_job("web_analytics_maintenance_job", store_url)

    assert result.success
    started = [
        e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START
    ]
    assert started == [
        "update_data_coverage_op",
        "show_data_gaps_detailed_op",
        "cleanup_old_backfill_records_op",
    ]
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
        DayState.RUNNING: 0,
        DayState.INACCURATE: 0,
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
    pre_aggregated, _ = pre_aggregation_assets(WebAnalyticsSettings())

    result = dg.materialize(
        [pre_aggregated],
        partition_key=day.isoformat(),
        resources={"clickhouse": clickhouse},
        tags={"dagster/sensor_name": SENSOR},
    )

    assert result.success
    records_of_day = warehouse.backfill_records(day, day)
    assert {(r.table, r.run_id, r.trigger, r.status) for r in records_of_day} == {
        (table, result.run_id, SENSOR_TRIGGER, AttemptStatus.SUCCEEDED)
        for table in (STATS, BOUNCES)
    }
    # One session with 2 pageviews: rows were written to both tables.
    assert all(r.rows_written > 0 for r in records_of_day)
    assert warehouse.find_gaps(days_back=1, today=day + timedelta(days=1)).needing_backfill == []


@pytest.mark.parametrize(
    ("tags", "trigger"),
    [
        ({"web_analytics/trigger": "sensor:x", "dagster/schedule_name": "y"}, "sensor:x"),
        ({"dagster/schedule_name": DAILY_SCHEDULE}, f"schedule:{DAILY_SCHEDULE}"),
        ({"dagster/backfill": "abc"}, "backfill:abc"),
        ({}, "manual"),
    ],
)
def test_run_trigger_names_what_launched_the_run(tags: dict[str, str], trigger: str) -> None:
    assert run_trigger(tags) == trigger


# --- the resource ------------------------------------------------------------------------------


def test_the_resources_lock_timeout_is_its_own_else_the_environments(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEB_ANALYTICS_LOCK_TIMEOUT", "300")

    assert (
        lock_timeout_of(ClickhouseCluster(url=store_url, lock_timeout_seconds=5).warehouse()) == 5
    )
    assert lock_timeout_of(ClickhouseCluster(url=store_url).warehouse()) == 300
    # The warehouse API reads the variable too.
    assert lock_timeout_of(web_analytics.connect(store_url)) == 300
