"""Gap detection on hand-built stores: every team, UTC day and table is empty, missing, stale,
failed or complete exactly as the brief defines it; coverage rows and the cleanup of backfill
status records keep what detection needs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from support import FAILING_SETTINGS, pageviews_on, traffic

import web_analytics
from web_analytics.warehouse.attempts import AttemptStatus, CleanupReport, record_attempt
from web_analytics.warehouse.connection import Session
from web_analytics.warehouse.gaps import NEEDS_BACKFILL, DayState, DayStatus, GapRange, GapReport
from web_analytics.warehouse.schema import BOUNCES, COVERAGE, PRE_AGGREGATED_TABLES, STATS

C, M, S, F, E = (
    DayState.COMPLETE,
    DayState.MISSING,
    DayState.STALE,
    DayState.FAILED,
    DayState.EMPTY,
)


def counts(**team_days: int) -> dict[DayState, int]:
    """Team-days per state, every state not named zero: ``counts(empty=3, complete=27)``."""
    return {state: team_days.get(state.value, 0) for state in DayState}


# The scenario's window: find_gaps(days_back=10, today=2024-01-11) covers 2024-01-01..10.
TODAY = date(2024, 1, 11)
DAYS = [date(2024, 1, d) for d in range(1, 11)]
D1, D2, D3, D4, D5, D6, D7, D8, D9, D10 = DAYS
TEAMS = (1, 2, 3)
DISABLED_TEAM = 4

# By hand, per team, days 01..10 (same for both tables):
# 01-03 computed while team 3 was disabled; 04 never computed; 05 computed, then a late
# event for team 2; 06 has no traffic at all; 07 only a failed run; 08 only a killed run
# ('started', never ended); 09 computed, then a failed re-run (still complete); 10 computed.
EXPECTED_STATES = {
    1: [C, C, C, M, C, E, F, F, C, C],
    2: [C, C, C, M, S, E, F, F, C, C],
    3: [M, M, M, M, C, E, F, F, C, C],
}


def record_killed_run(warehouse: web_analytics.Warehouse, day: date) -> None:
    """What a run killed mid-way leaves behind: a 'started' record that never ended. It
    started on 2024-01-09, long past the maximum runtime: its worker is dead, not running."""
    with warehouse.session() as session:
        record_attempt(
            session,
            days=[day],
            run_id="killed-run",
            trigger="manual",
            status=AttemptStatus.STARTED,
            started_at=datetime(2024, 1, 9, tzinfo=UTC),
        )


def build_scenario(warehouse: web_analytics.Warehouse) -> None:
    for team in TEAMS[:2]:
        warehouse.upsert_team(team)
    warehouse.upsert_team(3, enabled=False)
    warehouse.upsert_team(DISABLED_TEAM, enabled=False)
    # Every team has traffic every day but 01-06.
    active_days = [d for d in DAYS if d != D6]
    warehouse.insert_events(traffic((*TEAMS, DISABLED_TEAM), active_days))
    warehouse.aggregate(D1, D3)  # team 3 not enabled yet
    warehouse.upsert_team(3, enabled=True)
    warehouse.aggregate(D5, D6)
    warehouse.aggregate(D9, D10)
    for day in (D7, D9):
        with pytest.raises(web_analytics.QueryFailed, match="TOO_MANY_ROWS"):
            warehouse.aggregate(day, day, extra_settings=FAILING_SETTINGS)
    record_killed_run(warehouse, D8)
    # A late session in the middle of 01-05, for team 2 only.
    warehouse.insert_events(pageviews_on(2, D5, "late", hour=15, count=1))


def expected_states() -> dict[tuple[int, date, str], DayState]:
    return {
        (team, day, table): state
        for team, states in EXPECTED_STATES.items()
        for day, state in zip(DAYS, states, strict=True)
        for table in PRE_AGGREGATED_TABLES
    }


def states_of(report: Any) -> dict[tuple[int, date, str], DayState]:
    return {(s.team_id, s.day, s.table): s.state for s in report.days}


@pytest.fixture(scope="module")
def shared_scenario(tmp_path_factory: pytest.TempPathFactory) -> web_analytics.Warehouse:
    """The scenario, built once for the tests that only read it (coverage rows aside)."""
    warehouse = web_analytics.connect(f"chdb://{tmp_path_factory.mktemp('gaps') / 'store'}")
    warehouse.ensure_schema()
    build_scenario(warehouse)
    return warehouse


@pytest.fixture
def scenario(warehouse: web_analytics.Warehouse) -> web_analytics.Warehouse:
    """The scenario in the test's own store, for tests that change it."""
    build_scenario(warehouse)
    return warehouse


def coverage_rows(warehouse: web_analytics.Warehouse) -> dict[tuple[str, int, date], tuple]:
    with warehouse.session() as session:
        rows = session.query(
            f"SELECT table, team_id, day, source_pageviews, aggregated_pageviews, state "
            f"FROM {COVERAGE} FINAL"
        )
    return {
        (table, int(team), day): (int(src), int(agg), state)
        for table, team, day, src, agg, state in rows
    }


def test_every_team_day_and_table_has_the_state_its_history_gives_it(
    shared_scenario: web_analytics.Warehouse,
) -> None:
    report = shared_scenario.find_gaps(days_back=10, today=TODAY)

    assert (report.first_day, report.last_day) == (D1, D10)
    # Team 4 is disabled: it has traffic but is not reported.
    assert report.team_ids == TEAMS
    # 3 teams x 10 days x 2 tables, each exactly once.
    assert len(report.days) == 60
    assert states_of(report) == expected_states()
    # 01-06 (no traffic) and the complete days are never flagged; 01-09 is complete although
    # its latest attempt failed.
    assert report.needing_backfill == [D1, D2, D3, D4, D5, D7, D8]
    assert sorted(report.by_state("stale"), key=lambda s: s.table) == [
        DayStatus(2, D5, BOUNCES, S),
        DayStatus(2, D5, STATS, S),
    ]
    # Per table, 30 team-days: empty 3 (01-06); missing 3 (team 3, 01-01..03) + 3 (01-04);
    # stale 1; failed 6 (01-07 and 01-08); complete 30 - 3 - 6 - 1 - 6 = 14.
    per_table = counts(empty=3, missing=6, stale=1, failed=6, complete=14)
    assert report.counts() == {STATS: per_table, BOUNCES: per_table}


def test_gap_ranges_group_consecutive_days_of_one_team_table_and_state(
    shared_scenario: web_analytics.Warehouse,
) -> None:
    report = shared_scenario.find_gaps(days_back=10, today=TODAY)

    expected: list[GapRange] = []
    for team, runs in (
        (1, [(D4, D4, M), (D7, D8, F)]),
        # 01-04 missing and 01-05 stale are adjacent but in different states: two ranges.
        (2, [(D4, D4, M), (D5, D5, S), (D7, D8, F)]),
        # Disabled history (01-01..03) and the never-computed 01-04 form one range.
        (3, [(D1, D4, M), (D7, D8, F)]),
    ):
        for table in sorted(PRE_AGGREGATED_TABLES):  # bounces sorts before stats
            expected += [GapRange(team, table, first, last, state) for first, last, state in runs]
    gaps = report.ranges(NEEDS_BACKFILL)
    assert gaps == expected

    [team_3_missing] = [g for g in gaps if (g.team_id, g.table, g.state) == (3, STATS, M)]
    assert str(team_3_missing) == "2024-01-01 to 2024-01-04"
    assert team_3_missing.days == 4
    assert str(gaps[0]) == "2024-01-04"  # a single day prints as a date

    # Without a filter every state is grouped: team 1 stats is C 01-03, M 04, C 05, E 06,
    # F 07-08, C 09-10.
    team_1_stats = [
        (str(r), r.state) for r in report.ranges() if (r.team_id, r.table) == (1, STATS)
    ]
    assert team_1_stats == [
        ("2024-01-01 to 2024-01-03", C),
        ("2024-01-04", M),
        ("2024-01-05", C),
        ("2024-01-06", E),
        ("2024-01-07 to 2024-01-08", F),
        ("2024-01-09 to 2024-01-10", C),
    ]
    assert report.ranges(["stale"]) == [
        GapRange(2, BOUNCES, D5, D5, S),
        GapRange(2, STATS, D5, D5, S),
    ]


def test_team_filter_reports_only_those_teams(
    shared_scenario: web_analytics.Warehouse,
) -> None:
    report = shared_scenario.find_gaps(days_back=10, team_ids=[2], today=TODAY)

    assert report.team_ids == (2,)
    assert states_of(report) == {k: v for k, v in expected_states().items() if k[0] == 2}
    # Team 2 alone: 01-04 missing, 01-05 stale, 01-07..08 failed.
    assert report.needing_backfill == [D4, D5, D7, D8]
    with pytest.raises(ValueError, match=r"unknown team\(s\) \[99\]"):
        shared_scenario.find_gaps(days_back=10, team_ids=[99], today=TODAY)


def test_a_dropped_partition_is_missing_for_that_table_until_refilled(
    scenario: web_analytics.Warehouse,
) -> None:
    with scenario.session() as session:
        session.command(f"ALTER TABLE {STATS} DROP PARTITION ID '20240110'")

    report = scenario.find_gaps(days_back=10, today=TODAY)

    expected = expected_states()
    for team in TEAMS:
        expected[(team, D10, STATS)] = M  # bounces of 01-10 are still there
    assert states_of(report) == expected
    assert report.needing_backfill == [D1, D2, D3, D4, D5, D7, D8, D10]

    scenario.aggregate(report.needing_backfill[0], report.needing_backfill[-1])
    refilled = scenario.find_gaps(days_back=10, today=TODAY)

    assert refilled.needing_backfill == []
    assert states_of(refilled) == {
        (team, day, table): E if day == D6 else C
        for team in TEAMS
        for day in DAYS
        for table in PRE_AGGREGATED_TABLES
    }
    # 30 team-days per table: 3 empty (01-06), the other 27 complete.
    assert refilled.counts()[STATS] == counts(empty=3, complete=27)

    # A coverage refresh replaces earlier rows: still one per team, day and table.
    scenario.update_coverage(days_back=10, today=TODAY)
    scenario.update_coverage(days_back=10, today=TODAY)
    refreshed = coverage_rows(scenario)
    assert len(refreshed) == 60
    assert refreshed[(STATS, 2, D5)] == (3, 3, "complete")  # the late session is in
    assert refreshed[(BOUNCES, 3, D1)] == (2, 2, "complete")
    assert refreshed[(STATS, 1, D6)] == (0, 0, "empty")


def test_coverage_has_one_row_per_team_day_and_table_with_pageviews_and_state(
    shared_scenario: web_analytics.Warehouse,
) -> None:
    coverage = shared_scenario.update_coverage(days_back=10, today=TODAY)

    assert (coverage.first_day, coverage.last_day, coverage.rows_written) == (D1, D10, 60)
    assert coverage.counts == shared_scenario.find_gaps(days_back=10, today=TODAY).counts()
    # Source: 2 pageviews per team and day, none on 01-06, 3 for team 2 on 01-05 (late
    # session). Aggregated: the 2 computed pageviews where a success covered the team (complete
    # or stale), 0 elsewhere.
    expected = {}
    for (team, day, table), state in expected_states().items():
        source = 0 if day == D6 else 3 if (team, day) == (2, D5) else 2
        aggregated = 2 if state in (C, S) else 0
        expected[(table, team, day)] = (source, aggregated, str(state))
    assert coverage_rows(shared_scenario) == expected


def test_a_late_event_in_the_next_days_first_hour_makes_the_day_stale(
    warehouse: web_analytics.Warehouse,
) -> None:
    warehouse.insert_events(traffic((1,), [D1, D2]))
    warehouse.aggregate(D1, D2)
    # Midnight of 01-02, in the session that started 12:00 on 01-01: 01-01's views and
    # duration change, so 01-01 is stale; 01-02's own events changed too.
    warehouse.insert_events(pageviews_on(1, D2, f"s-1-{D1}", hour=0, count=1))

    report = warehouse.find_gaps(days_back=2, today=D3)

    assert states_of(report) == {(1, d, t): S for d in (D1, D2) for t in PRE_AGGREGATED_TABLES}
    warehouse.aggregate(D1, D2)
    assert warehouse.find_gaps(days_back=2, today=D3).needing_backfill == []
    assert (
        warehouse.overview(1, D1, D1, source="preaggregated").views == 3
    )  # the late view counts on 01-01


def test_gap_detection_costs_the_same_queries_for_2_teams_and_5_days_as_for_20_and_60(
    warehouse: web_analytics.Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    today = date(2024, 3, 1)
    window = [today - timedelta(days=i) for i in range(1, 61)]
    warehouse.insert_events(
        [e for team in range(1, 21) for d in window for e in pageviews_on(team, d, "s", count=1)]
    )
    executed: list[str] = []
    for name in ("query", "command"):
        original: Callable[..., Any] = getattr(Session, name)

        def counting(self: Session, sql: str, *args: Any, _original=original, **kw: Any) -> Any:
            executed.append(sql)
            return _original(self, sql, *args, **kw)

        monkeypatch.setattr(Session, name, counting)

    def counted(**kwargs: Any) -> tuple[GapReport, int]:
        executed.clear()
        report = warehouse.find_gaps(today=today, **kwargs)
        return report, len(executed)

    small, small_queries = counted(days_back=5, team_ids=[1, 2])
    every_team, every_team_queries = counted(days_back=5)
    large, large_queries = counted(days_back=60)

    # 2 teams x 5 days x 2 tables, and 20 x 60 x 2, all missing (nothing computed).
    assert (len(small.days), len(every_team.days), len(large.days)) == (20, 200, 2400)
    assert len(large.by_state(M)) == 2400
    # Counted honestly, and the same whatever the size: every enabled team takes the two
    # detection queries; a chosen list of teams is checked against the registry first.
    assert (every_team.queries, large.queries) == (every_team_queries, large_queries) == (2, 2)
    assert small.queries == small_queries == 3


@pytest.mark.parametrize("days_back", [0, -1, 3651, "7", 7.0, True, None])
def test_days_back_out_of_range_is_rejected(store_url: str, days_back: Any) -> None:
    warehouse = web_analytics.connect(store_url)  # nothing is opened before validation
    with pytest.raises(ValueError, match="days_back must be a whole number from 1 to 3650"):
        warehouse.find_gaps(days_back=days_back)
    with pytest.raises(ValueError, match="days_back must be a whole number from 1 to 3650"):
        warehouse.update_coverage(days_back=days_back)


def test_days_back_bounds_are_accepted(warehouse: web_analytics.Warehouse) -> None:
    warehouse.upsert_team(1)
    today = date(2024, 1, 11)
    assert (warehouse.find_gaps(days_back=1, today=today).first_day) == date(2024, 1, 10)
    widest = warehouse.find_gaps(days_back=3650, today=today)
    assert (widest.first_day, widest.last_day) == (today - timedelta(days=3650), date(2024, 1, 10))
    assert len(widest.days) == 3650 * 2


# --- cleanup of backfill status records ------------------------------------------------------


def remaining_runs(warehouse: web_analytics.Warehouse) -> dict[tuple[str, date], list[str]]:
    runs: dict[tuple[str, date], list[str]] = {}
    for record in warehouse.backfill_records(date(2020, 1, 1), date(2030, 1, 1)):
        runs.setdefault((record.table, record.day), []).append(record.run_id)
    return runs


def test_cleanup_deletes_old_records_but_keeps_the_latest_and_latest_success_of_each_day(
    warehouse: web_analytics.Warehouse,
) -> None:
    def at(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    # (day, run, status, started): retention 90 days from 2024-06-01 -> cutoff 2024-03-03.
    attempts = [
        (D1, "d1-old-1", AttemptStatus.SUCCEEDED, at("2024-01-02")),  # deleted
        (D1, "d1-old-2", AttemptStatus.SUCCEEDED, at("2024-02-01")),  # deleted
        (D1, "d1-recent", AttemptStatus.SUCCEEDED, at("2024-05-20")),  # latest
        (D2, "d2-success", AttemptStatus.SUCCEEDED, at("2024-01-03")),  # latest success
        (D2, "d2-failed", AttemptStatus.FAILED, at("2024-02-15")),  # latest
        (D3, "d3-success", AttemptStatus.SUCCEEDED, at("2024-01-04")),  # latest success
        (D3, "d3-killed", AttemptStatus.STARTED, at("2024-02-20")),  # deleted
        (D3, "d3-failed", AttemptStatus.FAILED, at("2024-03-01")),  # latest
        (D4, "d4-first", AttemptStatus.SUCCEEDED, at("2024-04-01")),  # within retention
        (D4, "d4-second", AttemptStatus.SUCCEEDED, at("2024-05-01")),  # latest
        (D5, "d5-old", AttemptStatus.SUCCEEDED, at("2024-03-01")),  # deleted
        (D5, "d5-failed", AttemptStatus.FAILED, at("2024-03-02T23:59:59")),  # deleted
        (D5, "d5-at-cutoff", AttemptStatus.SUCCEEDED, at("2024-03-03")),  # not older: kept
    ]
    with warehouse.session() as session:
        for day, run, status, started in attempts:
            record_attempt(session, [day], run, "manual", status, started)

    report = warehouse.cleanup_backfill_records(retention_days=90, now=at("2024-06-01"))

    # Per table 13 records, 5 deleted (d1-old-1, d1-old-2, d3-killed, d5-old, d5-failed).
    assert report == CleanupReport(cutoff=at("2024-03-03"), deleted=10, kept=16)
    kept = {
        D1: ["d1-recent"],
        D2: ["d2-success", "d2-failed"],
        D3: ["d3-success", "d3-failed"],
        D4: ["d4-first", "d4-second"],
        D5: ["d5-at-cutoff"],
    }
    assert remaining_runs(warehouse) == {
        (table, day): runs for table in sorted(PRE_AGGREGATED_TABLES) for day, runs in kept.items()
    }


def test_cleanup_of_real_runs_leaves_the_gap_states_unchanged(
    warehouse: web_analytics.Warehouse,
) -> None:
    warehouse.insert_events(traffic((1,), [D1, D2]))
    warehouse.aggregate(D1, D2, run_id="both-days")
    warehouse.aggregate(D1, D1, run_id="d1-again")
    with pytest.raises(web_analytics.QueryFailed):
        warehouse.aggregate(D1, D1, run_id="d1-failed", extra_settings=FAILING_SETTINGS)
    before = warehouse.find_gaps(days_back=2, today=D3)
    assert states_of(before) == {(1, d, t): C for d in (D1, D2) for t in PRE_AGGREGATED_TABLES}

    now = datetime.now(UTC)
    # Everything is younger than 90 days: nothing goes. Per table, 01-01 has 3 attempts and
    # 01-02 one: 8 records.
    nothing = warehouse.cleanup_backfill_records(retention_days=90, now=now)
    assert (nothing.deleted, nothing.kept) == (0, 8)

    # A year later every record is old: per table, 01-01 keeps d1-failed (latest) and d1-again
    # (latest success), 01-02 keeps both-days; both-days goes from 01-01: 2 deleted, 6 kept.
    later = warehouse.cleanup_backfill_records(retention_days=90, now=now + timedelta(days=365))
    assert (later.deleted, later.kept) == (2, 6)
    assert later.cutoff == now + timedelta(days=275)
    assert remaining_runs(warehouse) == {
        (table, day): runs
        for table in sorted(PRE_AGGREGATED_TABLES)
        for day, runs in ((D1, ["d1-again", "d1-failed"]), (D2, ["both-days"]))
    }
    # Detection still finds 01-01 complete: its latest success survived.
    assert states_of(warehouse.find_gaps(days_back=2, today=D3)) == states_of(before)


@pytest.mark.parametrize("retention_days", [0, 3651, "90", True])
def test_cleanup_retention_out_of_range_is_rejected(store_url: str, retention_days: Any) -> None:
    with pytest.raises(ValueError, match="retention_days must be"):
        web_analytics.connect(store_url).cleanup_backfill_records(retention_days=retention_days)
