"""The backfill loop heals itself: runs that died or failed before writing are closed and
relaunched, repeated failures back off and are reported, in-flight days are left alone,
gaps are filled in ranges and per team, failed accuracy checks send their day back, a new
timezone recomputes a team, and writes are never blindly retried."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest
from support import add_run, definitions, pageviews_on, traffic

import web_analytics
from web_analytics.warehouse.attempts import AttemptStatus, record_attempt
from web_analytics.warehouse.errors import WriteInterrupted
from web_analytics.warehouse.gaps import DayState
from web_analytics.warehouse.schema import BOUNCES, STATS

SENSOR = "web_analytics_backfill_sensor"
JOB = "web_analytics_daily_job"
UNREACHABLE = "http://127.0.0.1:9/default"
TICK_SECONDS = 60


def settings(**overrides: object) -> dict[str, object]:
    return {"lookback_days": 10, "sensor_interval_seconds": TICK_SECONDS, **overrides}


def evaluate(defs: dg.Definitions, instance: dg.DagsterInstance) -> object:
    with dg.build_sensor_context(
        instance=instance, resources=defs.resources, definitions=defs
    ) as context:
        return defs.resolve_sensor_def(SENSOR)(context)


def tick(defs: dg.Definitions, instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    """One evaluation of the sensor that launches runs: its run requests."""
    result = evaluate(defs, instance)
    assert isinstance(result, list), result
    return result


def skipped(defs: dg.Definitions, instance: dg.DagsterInstance) -> str:
    """One evaluation of the sensor that launches nothing: the reason it gives."""
    result = evaluate(defs, instance)
    assert isinstance(result, dg.SkipReason), result
    return result.skip_message or ""


def launch(
    defs: dg.Definitions, instance: dg.DagsterInstance, request: dg.RunRequest
) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(JOB).execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        tags=request.tags,
        run_config=request.run_config,
        raise_on_error=False,
    )


def days_of(request: dg.RunRequest) -> tuple[str, str]:
    if request.partition_key is not None:
        return request.partition_key, request.partition_key
    return (
        request.tags["dagster/asset_partition_range_start"],
        request.tags["dagster/asset_partition_range_end"],
    )


def states(warehouse: web_analytics.Warehouse, day: date) -> dict[int, DayState]:
    report = warehouse.find_gaps(days_back=10)
    found = {(s.team_id, s.table): s.state for s in report.days if s.day == day}
    assert found[(1, STATS)] == found[(1, BOUNCES)]
    return {team: state for (team, table), state in found.items() if table == STATS}


def ago(today: date, days: int) -> date:
    return today - timedelta(days=days)


def test_a_run_that_failed_before_writing_anything_is_relaunched_on_the_next_tick(
    warehouse: web_analytics.Warehouse,
    store_url: str,
    instance: dg.DagsterInstance,
    today: date,
) -> None:
    # Before: the day kept the key DAY:none, and the daemon never launched a seen key again.
    day = ago(today, 2)
    warehouse.insert_events(traffic([1], [day]))
    defs = definitions(store_url, **settings())
    [first] = tick(defs, instance)
    assert days_of(first) == (day.isoformat(), day.isoformat())

    failed = launch(definitions(UNREACHABLE, **settings()), instance, first)
    assert not failed.success
    assert warehouse.backfill_records(day, day) == []

    [second] = tick(defs, instance)
    assert days_of(second) == days_of(first)
    assert second.run_key != first.run_key
    [record, _] = warehouse.backfill_records(day, day)
    assert record.run_id == failed.run_id
    assert record.status == AttemptStatus.FAILED
    assert record.error == "the run failed before it started writing"

    assert launch(defs, instance, second).success
    assert states(warehouse, day) == {1: DayState.COMPLETE}
    assert skipped(defs, instance).startswith("No missing, stale, failed or inaccurate days")


def test_a_day_whose_run_worker_died_is_failed_with_the_reason_and_relaunched(
    warehouse: web_analytics.Warehouse,
    store_url: str,
    instance: dg.DagsterInstance,
    today: date,
) -> None:
    day = ago(today, 3)
    warehouse.insert_events(traffic([1], [day]))
    run = add_run(
        instance, JOB, dg.DagsterRunStatus.STARTED, {"dagster/partition": day.isoformat()}
    )
    with warehouse.session() as session:
        record_attempt(
            session, [day], run.run_id, "sensor", AttemptStatus.STARTED, datetime.now(UTC)
        )
    defs = definitions(store_url, **settings())

    # In flight and within its maximum runtime: running, never launched again.
    assert states(warehouse, day) == {1: DayState.RUNNING}
    assert warehouse.find_gaps(days_back=10).needing_backfill == []
    assert skipped(defs, instance).startswith("No missing")

    # Run monitoring marks the run failed when its worker dies.
    instance.report_run_failed(run)
    [request] = tick(defs, instance)
    assert days_of(request) == (day.isoformat(), day.isoformat())
    [record] = [r for r in warehouse.backfill_records(day, day) if r.table == STATS]
    assert (record.run_id, record.status, record.error) == (
        run.run_id,
        AttemptStatus.FAILED,
        "run worker died",
    )
    assert launch(defs, instance, request).success
    assert states(warehouse, day) == {1: DayState.COMPLETE}


def test_an_attempt_past_its_maximum_runtime_counts_as_failed(
    warehouse: web_analytics.Warehouse, today: date
) -> None:
    day = ago(today, 2)
    warehouse.insert_events(traffic([1], [day]))
    with warehouse.session() as session:
        record_attempt(
            session,
            [day],
            "stuck-run",
            "sensor",
            AttemptStatus.STARTED,
            datetime.now(UTC) - timedelta(hours=2),
        )
    one_hour = timedelta(hours=1)
    assert warehouse.find_gaps(days_back=10, max_runtime=one_hour).by_state("failed")
    assert states(warehouse, day) == {1: DayState.RUNNING}  # default maximum: 4 hours


def _fail(warehouse: web_analytics.Warehouse, day: date, times: int, ended: datetime) -> None:
    with warehouse.session() as session:
        for attempt in range(times):
            record_attempt(
                session,
                [day],
                f"failed-{day}-{attempt}",
                "sensor",
                AttemptStatus.FAILED,
                ended - timedelta(minutes=times - attempt),
                finished_at=ended,
                error="boom",
            )


def test_repeated_failures_back_off_and_a_day_that_keeps_failing_is_reported_not_relaunched(
    warehouse: web_analytics.Warehouse,
    store_url: str,
    instance: dg.DagsterInstance,
    today: date,
    capfd: pytest.CaptureFixture[str],
) -> None:
    days = [ago(today, n) for n in (1, 2, 3, 4, 5)]
    warehouse.insert_events(traffic([1], days))
    now = datetime.now(UTC)
    _fail(warehouse, days[0], 1, now)  # one failure: retried on the next tick
    _fail(warehouse, days[1], 2, now)  # two: waits one tick after the failure
    _fail(warehouse, days[2], 2, now - timedelta(seconds=2 * TICK_SECONDS))  # waited enough
    _fail(warehouse, days[3], 5, now - timedelta(days=1))  # five in a row: failing
    report = warehouse.find_gaps(days_back=10)
    assert {day: report.failures[day].count for day in days[:4]} == {
        days[0]: 1,
        days[1]: 2,
        days[2]: 2,
        days[3]: 5,
    }
    assert report.failing_days(5) == [days[3]]

    # The cap counts only days that can launch: the failing and waiting days take no slot.
    defs = definitions(store_url, **settings(max_days_per_tick=2, max_days_per_run=1))
    requests = tick(defs, instance)
    assert [days_of(r)[0] for r in requests] == [days[0].isoformat(), days[2].isoformat()]
    logged = "".join(capfd.readouterr())
    assert f"5 times in a row and are not relaunched: {days[3]}" in logged

    # Once the cause is fixed, one successful run by hand clears it.
    warehouse.aggregate(days[3], days[3])
    assert days[3] not in warehouse.find_gaps(days_back=10).failures


def test_consecutive_days_are_filled_in_ranges_newest_first(
    warehouse: web_analytics.Warehouse,
    store_url: str,
    instance: dg.DagsterInstance,
    today: date,
) -> None:
    days = [ago(today, n) for n in (1, 2, 3, 4, 5, 7)]
    warehouse.insert_events(traffic([1, 2], days))
    defs = definitions(store_url, **settings(max_days_per_run=2))
    requests = tick(defs, instance)
    assert [days_of(r) for r in requests] == [
        (ago(today, 2).isoformat(), ago(today, 1).isoformat()),
        (ago(today, 4).isoformat(), ago(today, 3).isoformat()),
        (ago(today, 5).isoformat(), ago(today, 5).isoformat()),
        (ago(today, 7).isoformat(), ago(today, 7).isoformat()),
    ]
    assert all(r.run_config == {} for r in requests)  # every team needs them
    for request in requests:
        assert launch(defs, instance, request).success
    assert warehouse.find_gaps(days_back=10).needing_backfill == []


def test_a_day_where_one_team_is_stale_recomputes_that_team_only(
    warehouse: web_analytics.Warehouse,
    store_url: str,
    instance: dg.DagsterInstance,
    today: date,
) -> None:
    day = ago(today, 2)
    warehouse.insert_events(traffic([1, 2], [day]))
    warehouse.aggregate(day, day)
    warehouse.insert_events(pageviews_on(2, day, "late", hour=20, count=3))
    assert states(warehouse, day) == {1: DayState.COMPLETE, 2: DayState.STALE}

    defs = definitions(store_url, **settings())
    [request] = tick(defs, instance)
    assert request.run_config == {
        "ops": {"web_pre_aggregated_tables": {"config": {"team_ids": [2]}}}
    }
    assert launch(defs, instance, request).success
    assert states(warehouse, day) == {1: DayState.COMPLETE, 2: DayState.COMPLETE}
    # Team 2: two sessions (2 + 3 pageviews); team 1 carried over as it was.
    assert warehouse.overview(2, day, day).views == 5
    assert warehouse.overview(1, day, day).views == 2


def test_a_range_run_records_each_days_check_and_a_failed_check_sends_its_day_back(
    warehouse: web_analytics.Warehouse,
    store_url: str,
    instance: dg.DagsterInstance,
    today: date,
) -> None:
    days = [ago(today, n) for n in (3, 2, 1)]
    warehouse.insert_events(traffic([1, 2], days))
    defs = definitions(store_url, **settings())
    [request] = tick(defs, instance)
    result = launch(defs, instance, request)
    assert result.success
    evaluations = {
        (e.asset_key.path[-1], e.partition): e.passed for e in result.get_asset_check_evaluations()
    }
    assert evaluations == {
        (table, day.isoformat()): True for table in (STATS, BOUNCES) for day in days
    }

    corrupted = days[1]
    with warehouse.session() as session:
        session.command(
            "ALTER TABLE web_pre_aggregated_stats UPDATE views = views + 1 "
            "WHERE team_id = 2 AND toDate(period_bucket) = {day:Date} AND dimension = ''",
            {"day": corrupted},
            settings={"mutations_sync": 2},
        )
    reports = warehouse.check_accuracy(corrupted, corrupted)
    assert not reports[STATS].passed and reports[BOUNCES].passed
    assert states(warehouse, corrupted) == {1: DayState.COMPLETE, 2: DayState.INACCURATE}
    assert warehouse.find_gaps(days_back=10).needing_backfill == [corrupted]

    [repair] = tick(defs, instance)
    assert days_of(repair) == (corrupted.isoformat(), corrupted.isoformat())
    assert repair.run_config == {
        "ops": {"web_pre_aggregated_tables": {"config": {"team_ids": [2]}}}
    }
    repaired = launch(defs, instance, repair)
    assert [e.passed for e in repaired.get_asset_check_evaluations()] == [True, True]
    assert states(warehouse, corrupted) == {1: DayState.COMPLETE, 2: DayState.COMPLETE}
    assert warehouse.overview(2, corrupted, corrupted).views == 2


def test_a_new_timezone_recomputes_the_teams_days_into_the_new_buckets_only(
    warehouse: web_analytics.Warehouse,
    store_url: str,
    instance: dg.DagsterInstance,
    today: date,
) -> None:
    days = [ago(today, 3), ago(today, 2)]
    warehouse.upsert_team(1, "UTC")
    warehouse.insert_events(traffic([1, 2], days))
    warehouse.aggregate(days[0], days[1])
    assert states(warehouse, days[0]) == {1: DayState.COMPLETE, 2: DayState.COMPLETE}

    warehouse.upsert_team(1, "Asia/Kathmandu")  # +05:45: local hours start at :15 UTC
    assert states(warehouse, days[0]) == {1: DayState.STALE, 2: DayState.COMPLETE}
    defs = definitions(store_url, **settings())
    for request in tick(defs, instance):
        assert launch(defs, instance, request).success
    assert warehouse.find_gaps(days_back=10).needing_backfill == []
    with warehouse.session() as session:
        minutes = session.query(
            "SELECT team_id, groupUniqArray(toMinute(period_bucket)) "
            "FROM web_pre_aggregated_stats GROUP BY team_id ORDER BY team_id"
        )
    assert minutes == [(1, [15]), (2, [0])]
    # Sessions at 12:00 UTC are 17:45 in Kathmandu, the same local dates.
    for day in days:
        assert warehouse.overview(1, day, day) == warehouse.overview(1, day, day, source="raw")
        assert warehouse.overview(1, day, day).views == 2


def test_a_write_cut_short_by_a_transient_error_is_not_retried(
    warehouse: web_analytics.Warehouse,
) -> None:
    # Before: the INSERT was run up to five times, each landing part of its rows again.
    with warehouse.session() as session:
        session.command(
            "CREATE TABLE landed (at DateTime64(9), n UInt64) ENGINE = MergeTree ORDER BY n"
        )
        with pytest.raises(WriteInterrupted, match="not retried, so that no row can count twice"):
            session.command(
                "INSERT INTO landed SELECT now64(9), number FROM numbers(2000000000)",
                settings={
                    "max_execution_time": 2,
                    "max_block_size": 65536,
                    "max_insert_block_size": 65536,
                    "min_insert_block_size_rows": 65536,
                },
            )
        [(attempts, rows)] = session.query("SELECT uniqExact(at), count() FROM landed")
    assert attempts == 1
    assert rows > 0  # part of it landed: a second try would have counted those rows twice


def test_the_daily_schedule_leaves_a_day_already_in_flight_to_its_run(
    store_url: str, instance: dg.DagsterInstance, today: date
) -> None:
    # Before: at 01:00 it queued yesterday and the day before beside a backfill run of them.
    defs = definitions(store_url, **settings())
    schedule = defs.resolve_schedule_def("web_analytics_daily_schedule")
    at_one = datetime.combine(today, datetime.min.time(), UTC) + timedelta(hours=1)
    yesterday, before = ago(today, 1), ago(today, 2)

    def evaluate() -> list[dg.RunRequest]:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=at_one)
        return list(schedule.evaluate_tick(context).run_requests or [])

    [request] = evaluate()
    assert days_of(request) == (before.isoformat(), yesterday.isoformat())

    add_run(instance, JOB, dg.DagsterRunStatus.STARTED, {"dagster/partition": before.isoformat()})
    [request] = evaluate()
    assert days_of(request) == (yesterday.isoformat(), yesterday.isoformat())

    add_run(instance, JOB, dg.DagsterRunStatus.QUEUED, {"dagster/partition": yesterday.isoformat()})
    assert evaluate() == []
