"""The day grain: one row per team, local day, dimension, value and segment (the part of the
local day whose hours start in one UTC day), written and swapped with the hourly rows, and
read by overviews, breakdowns and time series.

Two teams whose local days straddle UTC midnight, one session per line (UTC times, paths):

Kathmandu (+05:45): local 2024-03-10 runs from UTC 03-09 18:15 to 03-10 18:15.
  K1  k1  03-09 18:20 /home, 18:21 /pricing   local 03-10 00:05, segment UTC 03-09  2 views  60 s
  K2  k2  03-10 00:10 /home                   local 03-10 05:55: hour 05:00 starts at UTC
                                              03-09 23:15, segment UTC 03-09     1 view bounce
  K3  k1  03-10 10:00 /blog, 10:00:30 /home   local 03-10 15:45, segment UTC 03-10  2 views 30 s
  K4  k3  03-10 18:14 /home, 18:16 /signup    local 03-10 23:59, segment UTC 03-10  2 views 120 s
  K5  k3  03-10 18:30 /home                   local 03-11 00:15, segment UTC 03-10  1 view bounce

Marquesas (-09:30): local 2024-03-10 runs from UTC 03-10 09:30 to 03-11 09:30.
  M1  m1  03-10 09:40 /home, 09:41 /about     local 03-10 00:10, segment UTC 03-10  2 views 60 s
  M2  m2  03-10 23:50 /home, 03-11 00:20 /about
                                              local 03-10 14:20, segment UTC 03-10  2 views 1800 s
  M3  m1  03-11 00:35 /pricing                local 03-10 15:05, segment UTC 03-11  1 view bounce
  M4  m3  03-11 09:20 /home, 09:45 /pricing   local 03-10 23:50, segment UTC 03-11  2 views 1500 s
  M5  m2  03-11 10:00 /home                   local 03-11 00:30, segment UTC 03-11  1 view bounce
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from support import visit

import web_analytics
from web_analytics.warehouse import dashboard
from web_analytics.warehouse.accuracy import Discrepancy
from web_analytics.warehouse.schema import ALL, DAILY_STATS, STAGING_SUFFIX, STATS

KATHMANDU = 1
MARQUESAS = 2
ZONES = {KATHMANDU: "Asia/Kathmandu", MARQUESAS: "Pacific/Marquesas"}
D09, D10, D11, D12 = (date(2024, 3, day) for day in (9, 10, 11, 12))

# Day grain totals (dimension ALL) per (team, local day, segment): visitors, views, sessions,
# bounces, total duration in seconds.
DAY_ROWS = {
    (KATHMANDU, D10, D09): (2, 3, 2, 1, 60),  # K1 K2: k1 k2
    (KATHMANDU, D10, D10): (2, 4, 2, 0, 150),  # K3 K4: k1 k3
    (KATHMANDU, D11, D10): (1, 1, 1, 1, 0),  # K5: k3
    (MARQUESAS, D10, D10): (2, 4, 2, 0, 1860),  # M1 M2: m1 m2
    (MARQUESAS, D10, D11): (2, 3, 2, 1, 1500),  # M3 M4: m1 m3
    (MARQUESAS, D11, D11): (1, 1, 1, 1, 0),  # M5: m2
}
# Local 03-10 and 03-11 together. Kathmandu: k1 k2 k3 (k1 in both segments of 03-10, k3 on
# both days), 8 views, 5 sessions, bounces K2 K5, 210 s. Marquesas: m1 m2 m3, 8 views,
# 5 sessions, bounces M3 M5, 3360 s.
TWO_DAYS = {
    KATHMANDU: dashboard.Overview(3, 8, 5, 210 / 5, 2 / 5),
    MARQUESAS: dashboard.Overview(3, 8, 5, 3360 / 5, 2 / 5),
}
# Kathmandu by path over both days: /home K1 K2 K3 K4 K5 (k1 k2 k3, bounces K2 K5), then one
# visitor and one view each, by name.
KATHMANDU_PATHS = [
    dashboard.BreakdownRow("/home", 3, 5, 5, 2 / 5),
    dashboard.BreakdownRow("/blog", 1, 1, 1, 0.0),
    dashboard.BreakdownRow("/pricing", 1, 1, 1, 0.0),
    dashboard.BreakdownRow("/signup", 1, 1, 1, 0.0),
]
# Marquesas by entry page: /home M1 M2 M4 M5 (m1 m2 m3; 2+2+2+1 views; bounce M5), /pricing M3.
MARQUESAS_ENTRIES = [
    dashboard.BreakdownRow("/home", 3, 7, 4, 1 / 4),
    dashboard.BreakdownRow("/pricing", 1, 1, 1, 1.0),
]


def _events() -> list[dict[str, object]]:
    def steps(*pairs: tuple[str, str]) -> list[tuple[str, str, str]]:
        return [(f"2024-{when}Z", "$pageview", path) for when, path in pairs]

    sessions = [
        (KATHMANDU, "K1", "k1", steps(("03-09T18:20:00", "/home"), ("03-09T18:21:00", "/pricing"))),
        (KATHMANDU, "K2", "k2", steps(("03-10T00:10:00", "/home"))),
        (KATHMANDU, "K3", "k1", steps(("03-10T10:00:00", "/blog"), ("03-10T10:00:30", "/home"))),
        (KATHMANDU, "K4", "k3", steps(("03-10T18:14:00", "/home"), ("03-10T18:16:00", "/signup"))),
        (KATHMANDU, "K5", "k3", steps(("03-10T18:30:00", "/home"))),
        (MARQUESAS, "M1", "m1", steps(("03-10T09:40:00", "/home"), ("03-10T09:41:00", "/about"))),
        (MARQUESAS, "M2", "m2", steps(("03-10T23:50:00", "/home"), ("03-11T00:20:00", "/about"))),
        (MARQUESAS, "M3", "m1", steps(("03-11T00:35:00", "/pricing"))),
        (MARQUESAS, "M4", "m3", steps(("03-11T09:20:00", "/home"), ("03-11T09:45:00", "/pricing"))),
        (MARQUESAS, "M5", "m2", steps(("03-11T10:00:00", "/home"))),
    ]
    return [
        event
        for team, session_id, person, pageviews in sessions
        for event in visit(team, session_id, pageviews, person=person)
    ]


def _aggregated(tmp_path_factory: pytest.TempPathFactory, name: str) -> web_analytics.Warehouse:
    """A new store holding both teams' sessions, aggregated over UTC 03-09 to 03-11."""
    warehouse = web_analytics.connect(f"chdb://{tmp_path_factory.mktemp(name) / 'store'}")
    warehouse.ensure_schema()
    with warehouse.session():
        for team, zone in ZONES.items():
            warehouse.upsert_team(team, zone)
        assert warehouse.insert_events(_events()).rejected == []
        warehouse.aggregate(D09, D11)
    return warehouse


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[web_analytics.Warehouse]:
    yield _aggregated(tmp_path_factory, "grain")


def _day_rows(warehouse: web_analytics.Warehouse) -> dict[tuple[int, date, date], tuple[int, ...]]:
    with warehouse.session() as session:
        rows = session.query(
            "SELECT team_id, day, toDate(period_bucket), uniqCombinedMerge(17)(visitors), "
            "sum(views), sum(sessions), sum(bounces), intDiv(sum(total_duration_us), 1000000) "
            f"FROM {DAILY_STATS} WHERE dimension = {{all:String}} "
            "GROUP BY team_id, day, period_bucket",
            {"all": ALL},
        )
    return {(int(t), day, segment): tuple(map(int, values)) for t, day, segment, *values in rows}


def test_each_local_day_has_a_row_per_utc_day_its_hours_start_in(
    store: web_analytics.Warehouse,
) -> None:
    assert _day_rows(store) == DAY_ROWS


def test_recomputing_one_utc_day_replaces_its_segments_only(
    store: web_analytics.Warehouse,
) -> None:
    store.aggregate(D10, D10)
    assert _day_rows(store) == DAY_ROWS


@pytest.mark.parametrize("team", sorted(ZONES))
@pytest.mark.parametrize("source", ["auto", "preaggregated", "raw"])
def test_the_overview_of_straddling_days_is_the_hand_count(
    store: web_analytics.Warehouse, team: int, source: str
) -> None:
    assert store.overview(team, D10, D11, source=source) == TWO_DAYS[team]


@pytest.mark.parametrize("source", ["auto", "preaggregated", "raw"])
def test_breakdowns_of_straddling_days_are_the_hand_count(
    store: web_analytics.Warehouse, source: str
) -> None:
    assert store.breakdown(KATHMANDU, "pathname", D10, D11, source=source) == KATHMANDU_PATHS
    entries = store.breakdown(MARQUESAS, "entry_pathname", D10, D11, source=source)
    assert entries == MARQUESAS_ENTRIES


def test_auto_reads_complete_days_from_the_day_grain(store: web_analytics.Warehouse) -> None:
    overview = store.overview(MARQUESAS, D10, D11)
    assert overview.freshness is not None
    assert overview.freshness.preaggregated == (D10, D11)
    assert overview.freshness.raw == {}


@pytest.mark.parametrize("source", ["auto", "preaggregated", "raw"])
def test_a_daily_series_lists_every_local_day(store: web_analytics.Warehouse, source: str) -> None:
    zone = ZoneInfo(ZONES[KATHMANDU])
    series = store.timeseries(KATHMANDU, D09, D12, source=source)
    assert [(p.start, p.visitors, p.views, p.sessions, p.bounce_rate) for p in series] == [
        (datetime(2024, 3, 9, tzinfo=zone), 0, 0, 0, None),
        (datetime(2024, 3, 10, tzinfo=zone), 3, 7, 4, 1 / 4),  # K1-K4
        (datetime(2024, 3, 11, tzinfo=zone), 1, 1, 1, 1.0),  # K5
        (datetime(2024, 3, 12, tzinfo=zone), 0, 0, 0, None),
    ]
    assert [p.avg_session_duration for p in series] == [None, 210 / 4, 0.0, None]
    # Local 03-12 has no events in either UTC day it spans; 03-09 shares UTC 03-09 with K1.
    assert series.freshness.no_events == ((D12,) if source == "auto" else ())


@pytest.mark.parametrize("source", ["auto", "preaggregated", "raw"])
def test_an_hourly_series_lists_every_local_hour(
    store: web_analytics.Warehouse, source: str
) -> None:
    zone = ZoneInfo(ZONES[MARQUESAS])
    series = store.timeseries(MARQUESAS, D10, D10, interval="hour", source=source)
    assert [p.start for p in series] == [
        datetime(2024, 3, 10, hour, tzinfo=zone) for hour in range(24)
    ]
    busy = {
        p.start.hour: (p.visitors, p.views, p.sessions, p.bounce_rate) for p in series if p.sessions
    }
    # M1 at 00:10, M2 at 14:20, M3 at 15:05, M4 at 23:50 local.
    assert busy == {0: (1, 2, 1, 0.0), 14: (1, 2, 1, 0.0), 15: (1, 1, 1, 1.0), 23: (1, 2, 1, 0.0)}


def test_a_series_refuses_an_unknown_interval(store: web_analytics.Warehouse) -> None:
    with pytest.raises(web_analytics.ConfigurationError, match="interval"):
        store.timeseries(KATHMANDU, D10, D11, interval="week")


def test_the_accuracy_check_covers_the_day_grain(tmp_path_factory: pytest.TempPathFactory) -> None:
    warehouse = _aggregated(tmp_path_factory, "check")
    with warehouse.session() as session:
        assert warehouse.compare_with_raw(STATS, D09, D11).passed
        # A stray day-grain row: 5 more views in Kathmandu's 03-10 segment of UTC 03-10, whose
        # hours (K3 K4 K5) have 5 views.
        session.command(
            f"INSERT INTO {DAILY_STATS} (team_id, period_bucket, day, dimension, value, views) "
            "VALUES ({team:UInt64}, '2024-03-10 00:00:00', '2024-03-10', '', '', 5)",
            {"team": KATHMANDU},
        )
        report = warehouse.compare_with_raw(STATS, D09, D11)
    assert report.discrepancies == [Discrepancy(KATHMANDU, D10, "views (day grain)", 10, 5)]


def test_day_grain_visitors_stay_within_one_percent_of_exact(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Past the sketch's exact range: 30,000 visitors in one day, 20,000 of them also the next."""
    warehouse = web_analytics.connect(f"chdb://{tmp_path_factory.mktemp('sketch') / 'store'}")
    warehouse.ensure_schema()
    warehouse.upsert_team(KATHMANDU, "UTC")
    start = datetime(2024, 3, 10, 6)
    events = [
        {
            "event": "$pageview",
            "timestamp": (start + timedelta(days=day, seconds=i)).isoformat() + "Z",
            "team_id": KATHMANDU,
            "distinct_id": f"v{i + 10_000 * day}",
            "person_id": f"v{i + 10_000 * day}",
            "properties": {"$session_id": f"s{day}-{i}", "$pathname": "/"},
        }
        for day in (0, 1)
        for i in range(30_000)
    ]
    assert warehouse.insert_events(events).rejected == []
    warehouse.aggregate(D10, D11)
    # Day 1: v0..v29999; day 2: v10000..v39999; both: 40,000.
    for first, last, exact in ((D10, D10, 30_000), (D11, D11, 30_000), (D10, D11, 40_000)):
        visitors = warehouse.overview(KATHMANDU, first, last, source="preaggregated").visitors
        assert abs(visitors - exact) <= 0.01 * exact


def test_a_day_without_its_day_grain_is_missing_and_read_raw(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A store whose days were computed before the day grain existed (here: its partition of
    UTC 03-10 dropped): the stats day counts as missing, so the backfill recomputes it, and
    dashboards read the local dates it touches from raw events meanwhile."""
    warehouse = _aggregated(tmp_path_factory, "upgrade")
    with warehouse.session() as session:
        session.command(f"ALTER TABLE {DAILY_STATS} DROP PARTITION ID '20240310'")
        report = warehouse.find_gaps(days_back=3, today=D12)
        overview = warehouse.overview(MARQUESAS, D10, D11)
    assert report.needing_backfill == [D10]
    assert {(s.team_id, s.table) for s in report.by_state("missing")} == {
        (KATHMANDU, STATS),
        (MARQUESAS, STATS),
    }
    assert overview == TWO_DAYS[MARQUESAS]
    assert overview.freshness is not None
    # Marquesas 03-10 has hours in UTC 03-10 (M1 M2); 03-11 lies wholly in UTC 03-11.
    assert overview.freshness.preaggregated == (D11,)
    assert list(overview.freshness.raw) == [D10]


def test_a_rebuilt_day_grain_is_recomputed_by_the_backfill(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The README's rebuild of a day grain made with other granules: both of its tables
    dropped and created again by ``ensure_schema``. Every stats day is missing and read raw
    until the backfill recomputes it, then read from the new table."""
    warehouse = _aggregated(tmp_path_factory, "rebuild")
    with warehouse.session() as session:
        for table in (DAILY_STATS, DAILY_STATS + STAGING_SUFFIX):
            session.command(f"DROP TABLE {table}")
        warehouse.ensure_schema()
        report = warehouse.find_gaps(days_back=3, today=D12)
        meanwhile = warehouse.overview(KATHMANDU, D10, D11)
        warehouse.aggregate(D09, D11)
        after = warehouse.overview(KATHMANDU, D10, D11, source="preaggregated")
        layouts = session.query(
            "SELECT name, engine_full FROM system.tables "
            "WHERE database = currentDatabase() AND name LIKE {prefix:String}",
            {"prefix": DAILY_STATS + "%"},
        )
    assert report.needing_backfill == [D09, D10, D11]
    assert {s.table for s in report.by_state("missing")} == {STATS}
    assert meanwhile == TWO_DAYS[KATHMANDU]
    assert meanwhile.freshness is not None and meanwhile.freshness.preaggregated == ()
    assert after == TWO_DAYS[KATHMANDU]
    assert _day_rows(warehouse) == DAY_ROWS
    assert len(layouts) == 2
    assert all("index_granularity = 8" in engine for _, engine in layouts)
