"""Dashboard numbers against the metric definitions of the brief, worked out by hand.

Every fixture is small enough to count on paper; the comments show the counting. Each number
is checked straight from raw events and from the pre-aggregated tables.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path

import pytest
from support import visit

import web_analytics
from web_analytics import BreakdownRow, Overview
from web_analytics.warehouse.connection import EmbeddedStore, Session

SOURCES = ("raw", "preaggregated")
TEAM = 1
OTHER_TEAM = 2
DAY = date(2024, 1, 2)


def at(clock: str, day: date = DAY) -> str:
    return f"{day.isoformat()}T{clock}Z"


def store(directory: Path) -> web_analytics.Warehouse:
    """A fresh store shared by the tests of one module."""
    warehouse = web_analytics.connect(f"chdb://{directory / 'store'}")
    warehouse.ensure_schema()
    return warehouse


# --- one day of team 1 (UTC), every session counted by hand ----------------------------------
#
#     person  device   browser  country  utm         events (pathname)              views dur bounce
# S1  p1      Desktop  Chrome   US       google      pv /home 10:00:00,                 3  120  no
#                                                    pv /pricing 10:00:30,
#                                                    pv /signup 10:02:00
# S2  p2      Mobile   Safari   GB       -           pv /home 11:00:00                  1    0  yes
# S3  p1      Desktop  Chrome   US       newsletter  pv /blog 12:00:00,                 1    5  yes
#                                                    leave 12:00:05
# S4  anon-3  Mobile   Firefox  DE       google      pv /pricing 13:00:00,              2   60  no
#     then p3 (person of the latest event)           click 13:00:20,
#                                                    pv /home 13:01:00 (person p3)
# S5  p4      Desktop  Safari   -        -           pv /blog 14:00:00,                 1   10  no
#                                                    leave 14:00:10 (10 s: not under)
# S6  p5      Mobile   Chrome   -        -           pv /pricing 15:00:00, 15:00:40,    4   90  no
#                                                    15:01:10, 15:01:30
# Not counted: S7 (p6, only an autocapture), a pageview without session id (p7), team 2's visit.
#
# visitors = {p1, p2, p3, p4, p5} = 5; views = 3+1+1+2+1+4 = 12; sessions = 6;
# avg duration = (120+0+5+60+10+90)/6 = 285/6 = 47.5 s; bounces S2, S3 -> 2/6 = 1/3.
DAY_EVENTS = [
    *visit(
        TEAM,
        "s1",
        [
            (at("10:00:00"), "$pageview", "/home"),
            (at("10:00:30"), "$pageview", "/pricing"),
            (at("10:02:00"), "$pageview", "/signup"),
        ],
        person="p1",
        country="US",
        utm_source="google",
    ),
    *visit(
        TEAM,
        "s2",
        [(at("11:00:00"), "$pageview", "/home")],
        person="p2",
        device="Mobile",
        browser="Safari",
        country="GB",
    ),
    *visit(
        TEAM,
        "s3",
        [(at("12:00:00"), "$pageview", "/blog"), (at("12:00:05"), "$pageleave", "/blog")],
        person="p1",
        country="US",
        utm_source="newsletter",
    ),
    *visit(
        TEAM,
        "s4",
        [
            (at("13:00:00"), "$pageview", "/pricing"),
            (at("13:00:20"), "$autocapture", "/pricing"),
        ],
        person=None,
        distinct_id="anon-3",
        device="Mobile",
        browser="Firefox",
        country="DE",
        utm_source="google",
    ),
    *visit(
        TEAM,
        "s4",
        [(at("13:01:00"), "$pageview", "/home")],
        person="p3",
        distinct_id="anon-3",
        device="Mobile",
        browser="Firefox",
        country="DE",
        utm_source="google",
    ),
    *visit(
        TEAM,
        "s5",
        [(at("14:00:00"), "$pageview", "/blog"), (at("14:00:10"), "$pageleave", "/blog")],
        person="p4",
        browser="Safari",
    ),
    *visit(
        TEAM,
        "s6",
        [
            (at(clock), "$pageview", "/pricing")
            for clock in ("15:00:00", "15:00:40", "15:01:10", "15:01:30")
        ],
        person="p5",
        device="Mobile",
    ),
    *visit(TEAM, "s7", [(at("16:00:00"), "$autocapture", "/home")], person="p6"),
    *visit(TEAM, None, [(at("17:00:00"), "$pageview", "/home")], person="p7"),
    *visit(OTHER_TEAM, "s1", [(at("10:00:00"), "$pageview", "/home")], person="p1"),
]

DAY_OVERVIEW = Overview(
    visitors=5, views=12, sessions=6, avg_session_duration=47.5, bounce_rate=1 / 3
)

# Rows are (value, visitors, views, sessions, bounce_rate), sorted by visitors then views.
DAY_BREAKDOWNS = {
    # Mobile: S2, S4, S6 -> p2, p3, p5; views 1+2+4 = 7; bounce S2 -> 1/3.
    # Desktop: S1, S3, S5 -> p1, p4; views 3+1+1 = 5; bounce S3 -> 1/3.
    "device_type": [
        BreakdownRow("Mobile", 3, 7, 3, 1 / 3),
        BreakdownRow("Desktop", 2, 5, 3, 1 / 3),
    ],
    # Chrome: S1, S3, S6 -> p1, p5; views 3+1+4 = 8; bounce S3 -> 1/3.
    # Safari: S2, S5 -> p2, p4; views 2; bounce S2 -> 1/2.  Firefox: S4 -> p3; views 2.
    "browser": [
        BreakdownRow("Chrome", 2, 8, 3, 1 / 3),
        BreakdownRow("Safari", 2, 2, 2, 1 / 2),
        BreakdownRow("Firefox", 1, 2, 1, 0.0),
    ],
    # absent: S5, S6 -> p4, p5; views 1+4 = 5.  US: S1, S3 -> p1; views 4; bounce S3 -> 1/2.
    # DE: S4 -> p3; views 2.  GB: S2 -> p2; views 1; bounce.
    "country_code": [
        BreakdownRow(None, 2, 5, 2, 0.0),
        BreakdownRow("US", 1, 4, 2, 1 / 2),
        BreakdownRow("DE", 1, 2, 1, 0.0),
        BreakdownRow("GB", 1, 1, 1, 1.0),
    ],
    # absent: S2, S5, S6 -> p2, p4, p5; views 1+1+4 = 6; bounce S2 -> 1/3.
    # google: S1, S4 -> p1, p3; views 3+2 = 5.  newsletter: S3 -> p1; views 1; bounce.
    "utm_source": [
        BreakdownRow(None, 3, 6, 3, 1 / 3),
        BreakdownRow("google", 2, 5, 2, 0.0),
        BreakdownRow("newsletter", 1, 1, 1, 1.0),
    ],
    # Per page path: views of the path, visitors and sessions that viewed it.
    # /pricing: S1 (1 view, p1), S4 (1, p3), S6 (4, p5) -> 3 visitors, 6 views, no bounce.
    # /home: S1 (p1), S2 (p2), S4 (p3), one view each -> 3 visitors, 3 views; bounce S2 -> 1/3.
    # /blog: S3 (p1), S5 (p4) -> 2 visitors, 2 views; bounce S3 -> 1/2.  /signup: S1 (p1).
    # The $pageleave events on /blog are not views.
    "pathname": [
        BreakdownRow("/pricing", 3, 6, 3, 0.0),
        BreakdownRow("/home", 3, 3, 3, 1 / 3),
        BreakdownRow("/blog", 2, 2, 2, 1 / 2),
        BreakdownRow("/signup", 1, 1, 1, 0.0),
    ],
    # Entry: /pricing S4, S6 -> p3, p5, views 2+4 = 6; /home S1, S2 -> p1, p2, views 3+1 = 4,
    # bounce S2; /blog S3, S5 -> p1, p4, views 2, bounce S3.
    "entry_pathname": [
        BreakdownRow("/pricing", 2, 6, 2, 0.0),
        BreakdownRow("/home", 2, 4, 2, 1 / 2),
        BreakdownRow("/blog", 2, 2, 2, 1 / 2),
    ],
    # Exit (last pageview; S3's and S5's later $pageleave does not count):
    # /home S2, S4 -> p2, p3, views 1+2 = 3, bounce S2; /blog S3, S5 -> p1, p4, views 2,
    # bounce S3; /pricing S6 -> p5, views 4; /signup S1 -> p1, views 3.
    "exit_pathname": [
        BreakdownRow("/home", 2, 3, 2, 1 / 2),
        BreakdownRow("/blog", 2, 2, 2, 1 / 2),
        BreakdownRow("/pricing", 1, 4, 1, 0.0),
        BreakdownRow("/signup", 1, 3, 1, 0.0),
    ],
}


@pytest.fixture(scope="module")
def day_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[web_analytics.Warehouse]:
    """Team 1's hand-counted day, aggregated together with the days around it."""
    warehouse = store(tmp_path_factory.mktemp("metrics_day"))
    with warehouse.session():
        warehouse.upsert_team(TEAM, "UTC")
        warehouse.upsert_team(OTHER_TEAM, "UTC")
        assert warehouse.insert_events(DAY_EVENTS).rejected == []
        warehouse.aggregate(date(2024, 1, 1), date(2024, 1, 3))
    yield warehouse


@pytest.mark.parametrize("source", SOURCES)
def test_overview_of_a_day_matches_the_hand_count(
    day_store: web_analytics.Warehouse, source: str
) -> None:
    with day_store.session():
        overview = day_store.overview(TEAM, DAY, DAY, source=source)

    assert overview.visitors == DAY_OVERVIEW.visitors
    assert overview.views == DAY_OVERVIEW.views
    assert overview.sessions == DAY_OVERVIEW.sessions
    assert overview.avg_session_duration == pytest.approx(DAY_OVERVIEW.avg_session_duration)
    assert overview.bounce_rate == pytest.approx(DAY_OVERVIEW.bounce_rate)


@pytest.mark.parametrize("source", SOURCES)
def test_days_without_sessions_have_no_duration_and_no_bounce_rate(
    day_store: web_analytics.Warehouse, source: str
) -> None:
    with day_store.session():
        overview = day_store.overview(TEAM, date(2024, 1, 3), date(2024, 1, 3), source=source)

    assert overview == Overview(0, 0, 0, None, None)


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("by", sorted(DAY_BREAKDOWNS))
def test_breakdown_of_a_day_matches_the_hand_count(
    day_store: web_analytics.Warehouse, by: str, source: str
) -> None:
    with day_store.session():
        rows = day_store.breakdown(TEAM, by, DAY, DAY, source=source)

    assert [row.value for row in rows] == [row.value for row in DAY_BREAKDOWNS[by]]
    for row, expected in zip(rows, DAY_BREAKDOWNS[by], strict=True):
        assert (row.visitors, row.views, row.sessions) == (
            expected.visitors,
            expected.views,
            expected.sessions,
        ), row.value
        assert row.bounce_rate == pytest.approx(expected.bounce_rate), row.value


@pytest.mark.parametrize("source", SOURCES)
def test_breakdown_limit_keeps_the_top_rows(
    day_store: web_analytics.Warehouse, source: str
) -> None:
    with day_store.session():
        rows = day_store.breakdown(TEAM, "browser", DAY, DAY, source=source, limit=2)

    assert [row.value for row in rows] == ["Chrome", "Safari"]


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(
            {"date_from": date(2024, 1, 3), "date_to": DAY},
            "date_from 2024-01-03 is after date_to 2024-01-02",
            id="reversed range",
        ),
        pytest.param(
            {"date_from": "2024-01-02", "date_to": DAY},
            "date_from must be a datetime.date",
            id="string date",
        ),
        pytest.param(
            {"date_from": DAY, "date_to": datetime(2024, 1, 2, 12)},
            "date_to must be a datetime.date",
            id="datetime instead of date",
        ),
        pytest.param(
            {"date_from": DAY, "date_to": DAY, "source": "cache"},
            "source must be one of auto, preaggregated, raw, got 'cache'",
            id="unknown source",
        ),
        pytest.param(
            {"team_id": 999, "date_from": DAY, "date_to": DAY},
            "unknown team 999",
            id="unknown team",
        ),
    ],
)
@pytest.mark.parametrize("query", ["overview", "breakdown"])
def test_bad_query_arguments_are_refused_with_a_clear_message(
    day_store: web_analytics.Warehouse, query: str, arguments: dict[str, object], message: str
) -> None:
    call = {"team_id": TEAM, **arguments}
    if query == "breakdown":
        call["by"] = "browser"

    with day_store.session(), pytest.raises(ValueError, match=message):
        getattr(day_store, query)(**call)


def test_breakdown_by_an_unknown_dimension_names_the_choices(
    day_store: web_analytics.Warehouse,
) -> None:
    with pytest.raises(
        ValueError, match=r"cannot break down by 'referrer': choose one of .*browser"
    ):
        day_store.breakdown(TEAM, "referrer", DAY, DAY)


# --- local dates in every kind of timezone -------------------------------------------------------

# The same single-pageview sessions for one team per timezone; each session's entry path names
# it. Local midnight in UTC: UTC and London (winter) 00:00, Tokyo (+9) 15:00 the day before,
# Los Angeles (-8) 08:00, Kolkata (+5:30) 18:30 the day before, Kathmandu (+5:45) 18:15 the day
# before.
ZONE_SESSIONS = {
    "/a": "2024-01-01T14:55:00Z",  # Tokyo 23:55 Jan 1
    "/b": "2024-01-01T15:05:00Z",  # Tokyo 00:05 Jan 2
    "/c": "2024-01-01T18:20:00Z",  # Kathmandu 00:05 Jan 2, Kolkata 23:50 Jan 1
    "/d": "2024-01-01T18:35:00Z",  # Kolkata 00:05 Jan 2
    "/e": "2024-01-01T23:55:00Z",  # UTC and London 23:55 Jan 1
    # UTC 00:05 Jan 2; Kathmandu 05:50 Jan 2, whose hour bucket 05:00 is 23:15 UTC Jan 1.
    "/f": "2024-01-02T00:05:00Z",
    "/g": "2024-01-02T07:55:00Z",  # Los Angeles 23:55 Jan 1
    "/h": "2024-01-02T08:05:00Z",  # Los Angeles 00:05 Jan 2
    "/i": "2024-01-02T18:10:00Z",  # Kathmandu 23:55 Jan 2, Kolkata 23:40 Jan 2, Tokyo 03:10 Jan 3
    "/j": "2024-01-02T18:25:00Z",  # Kathmandu 00:10 Jan 3, Kolkata 23:55 Jan 2
    "/k": "2024-01-02T18:40:00Z",  # Kolkata 00:10 Jan 3
}
ZONE_TEAMS = {
    "UTC": 11,
    "Europe/London": 12,
    "Asia/Tokyo": 13,
    "America/Los_Angeles": 14,
    "Asia/Kolkata": 15,
    "Asia/Kathmandu": 16,
}
# Local start of each session, worked out from the UTC times above, grouped by local date.
LOCAL_DAYS = {
    "UTC": {
        date(2024, 1, 1): "abcde",  # 14:55 15:05 18:20 18:35 23:55
        date(2024, 1, 2): "fghijk",  # 00:05 07:55 08:05 18:10 18:25 18:40
        date(2024, 1, 3): "",
    },
    "Europe/London": {  # GMT in January: same as UTC
        date(2024, 1, 1): "abcde",
        date(2024, 1, 2): "fghijk",
        date(2024, 1, 3): "",
    },
    "Asia/Tokyo": {
        date(2024, 1, 1): "a",  # 23:55
        date(2024, 1, 2): "bcdefgh",  # 00:05 03:20 03:35 08:55 09:05 16:55 17:05
        date(2024, 1, 3): "ijk",  # 03:10 03:25 03:40
    },
    "America/Los_Angeles": {
        date(2023, 12, 31): "",
        date(2024, 1, 1): "abcdefg",  # 06:55 07:05 10:20 10:35 15:55 16:05 23:55
        date(2024, 1, 2): "hijk",  # 00:05 10:10 10:25 10:40
        date(2024, 1, 3): "",
    },
    "Asia/Kolkata": {
        date(2024, 1, 1): "abc",  # 20:25 20:35 23:50
        date(2024, 1, 2): "defghij",  # 00:05 05:25 05:35 13:25 13:35 23:40 23:55
        date(2024, 1, 3): "k",  # 00:10
    },
    "Asia/Kathmandu": {
        date(2024, 1, 1): "ab",  # 20:40 20:50
        date(2024, 1, 2): "cdefghi",  # 00:05 00:20 05:40 05:50 13:40 13:50 23:55
        date(2024, 1, 3): "jk",  # 00:10 00:25
    },
}
ZONE_CASES = [(zone, day) for zone, days in LOCAL_DAYS.items() for day in days]


@pytest.fixture(scope="module")
def zone_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[web_analytics.Warehouse]:
    warehouse = store(tmp_path_factory.mktemp("metrics_zones"))
    events = [
        event
        for team_id in ZONE_TEAMS.values()
        for path, timestamp in ZONE_SESSIONS.items()
        for event in visit(team_id, f"zone{path}", [(timestamp, "$pageview", path)], person=path)
    ]
    with warehouse.session():
        for timezone, team_id in ZONE_TEAMS.items():
            warehouse.upsert_team(team_id, timezone)
        assert warehouse.insert_events(events).rejected == []
        # UTC days wide enough for every local date queried below.
        warehouse.aggregate(date(2023, 12, 30), date(2024, 1, 4))
    yield warehouse


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize(("timezone", "local_day"), ZONE_CASES, ids=str)
def test_sessions_land_on_the_local_date_of_their_start(
    zone_store: web_analytics.Warehouse, timezone: str, local_day: date, source: str
) -> None:
    team_id = ZONE_TEAMS[timezone]
    expected = sorted(f"/{letter}" for letter in LOCAL_DAYS[timezone][local_day])

    with zone_store.session():
        rows = zone_store.breakdown(team_id, "entry_pathname", local_day, local_day, source=source)
        overview = zone_store.overview(team_id, local_day, local_day, source=source)

    values = [row.value for row in rows]
    assert sorted(value for value in values if value is not None) == expected
    assert None not in values
    assert (overview.sessions, overview.views, overview.visitors) == (len(expected),) * 3


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("timezone", sorted(ZONE_TEAMS))
def test_a_local_date_range_holds_every_session_once(
    zone_store: web_analytics.Warehouse, timezone: str, source: str
) -> None:
    with zone_store.session():
        overview = zone_store.overview(
            ZONE_TEAMS[timezone], date(2023, 12, 31), date(2024, 1, 3), source=source
        )

    assert overview.sessions == len(ZONE_SESSIONS) == 11


# --- sessions across midnight, bounces, duplicates ----------------------------------------------


@pytest.fixture
def team_store(warehouse: web_analytics.Warehouse) -> Iterator[web_analytics.Warehouse]:
    """A fresh store with team 1 in UTC, kept open for the whole test."""
    with warehouse.session():
        warehouse.upsert_team(TEAM, "UTC")
        yield warehouse


@pytest.mark.parametrize("runs", ["one run", "day by day, later day first"])
def test_a_session_across_utc_midnight_counts_once_on_its_start_day(
    team_store: web_analytics.Warehouse, runs: str
) -> None:
    # pv 23:58:00 Jan 1, pv 00:03:00 Jan 2: starts Jan 1, 2 views, 300 s, not a bounce.
    team_store.insert_events(
        visit(
            TEAM,
            "night",
            [
                ("2024-01-01T23:58:00Z", "$pageview", "/late"),
                ("2024-01-02T00:03:00Z", "$pageview", "/later"),
            ],
            person="owl",
        )
    )
    if runs == "one run":
        team_store.aggregate(date(2024, 1, 1), date(2024, 1, 2))
    else:
        team_store.aggregate(date(2024, 1, 2), date(2024, 1, 2))
        team_store.aggregate(date(2024, 1, 1), date(2024, 1, 1))

    for source in SOURCES:
        first = team_store.overview(TEAM, date(2024, 1, 1), date(2024, 1, 1), source=source)
        second = team_store.overview(TEAM, date(2024, 1, 2), date(2024, 1, 2), source=source)
        both = team_store.overview(TEAM, date(2024, 1, 1), date(2024, 1, 2), source=source)

        assert first == Overview(1, 2, 1, 300.0, 0.0), source
        assert second == Overview(0, 0, 0, None, None), source
        assert both == first, source


def test_only_a_lone_quick_pageview_or_screen_is_a_bounce(
    team_store: web_analytics.Warehouse,
) -> None:
    team_store.insert_events(
        # One pageview and a click 2 s later: the autocapture makes it no bounce.
        visit(
            TEAM,
            "click",
            [(at("10:00:00"), "$pageview", "/click"), (at("10:00:02"), "$autocapture", "/click")],
            person="a",
        )
        # One pageview and a $pageleave 30 s later: 30 s is not under 10 s, no bounce.
        + visit(
            TEAM,
            "leave",
            [(at("11:00:00"), "$pageview", "/leave"), (at("11:00:30"), "$pageleave", "/leave")],
            person="b",
        )
        # One pageview alone: a bounce.
        + visit(TEAM, "alone", [(at("12:00:00"), "$pageview", "/alone")], person="c")
        # One app screen alone: a $screen is pageview-like, so a bounce too.
        + visit(TEAM, "screen", [(at("13:00:00"), "$screen", "/screen")], person="d")
    )
    team_store.aggregate(DAY, DAY)

    for source in SOURCES:
        rows = team_store.breakdown(TEAM, "entry_pathname", DAY, DAY, source=source)
        overview = team_store.overview(TEAM, DAY, DAY, source=source)

        assert {row.value: row.bounce_rate for row in rows} == {
            "/click": 0.0,
            "/leave": 0.0,
            "/alone": 1.0,
            "/screen": 1.0,
        }, source
        # 4 sessions, 4 views; 2 bounces; durations 2 + 30 + 0 + 0 = 32 s -> 8 s on average.
        assert overview == Overview(4, 4, 4, 8.0, 0.5), source


@pytest.mark.parametrize("with_uuid", [True, False], ids=["explicit uuid", "derived uuid"])
def test_an_event_delivered_twice_counts_once(
    team_store: web_analytics.Warehouse, with_uuid: bool
) -> None:
    events = visit(
        TEAM,
        "twice",
        [(at("10:00:00"), "$pageview", "/"), (at("10:00:20"), "$pageview", "/next")],
        person="a",
    )
    if with_uuid:
        events[0]["uuid"] = "0190c5e4-7b7a-7c3e-9f00-000000000001"
        events[1]["uuid"] = "0190c5e4-7b7a-7c3e-9f00-000000000002"
    team_store.insert_events(events)
    team_store.insert_events(events)  # redelivered in a later batch
    team_store.aggregate(DAY, DAY)

    for source in SOURCES:
        overview = team_store.overview(TEAM, DAY, DAY, source=source)

        # Once: 1 visitor, 2 views, 1 session of 20 s, not a bounce.
        assert overview == Overview(1, 2, 1, 20.0, 0.0), source


# --- one turn on the store per call ------------------------------------------------------------


class CountingStore(EmbeddedStore):
    """The embedded store, counting the sessions its callers open on it."""

    def __init__(self, store: EmbeddedStore) -> None:
        super().__init__(store.target, store.lock_timeout, store.retry)
        self.opened = 0

    @contextmanager
    def session(self) -> Iterator[Session]:
        self.opened += 1
        with super().session() as session:
            yield session


def test_a_dashboard_read_or_an_aggregation_opens_the_store_once(
    warehouse: web_analytics.Warehouse,
) -> None:
    assert isinstance(warehouse.store, EmbeddedStore)
    store = CountingStore(warehouse.store)
    counted = dataclasses.replace(warehouse, store=store)
    warehouse.upsert_team(TEAM, "UTC")
    warehouse.insert_events(
        visit(
            TEAM,
            "s1",
            [(at("10:00:00"), "$pageview", "/"), (at("10:00:20"), "$pageview", "/next")],
            person="a",
        )
    )

    def sessions_opened(method: Callable[..., object], *args: object, **kwargs: object) -> int:
        before = store.opened
        method(*args, **kwargs)
        return store.opened - before

    assert sessions_opened(counted.aggregate, DAY, DAY) == 1
    for source in SOURCES:
        assert sessions_opened(counted.overview, TEAM, DAY, DAY, source=source) == 1
        assert sessions_opened(counted.breakdown, TEAM, "browser", DAY, DAY, source=source) == 1
        # The one session gives the right answer: 1 visitor, 2 views, a session of 20 s.
        assert counted.overview(TEAM, DAY, DAY, source=source) == Overview(1, 2, 1, 20.0, 0.0)
