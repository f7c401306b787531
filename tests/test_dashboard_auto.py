"""Dashboards that never lie: ``source="auto"`` reads complete days from the pre-aggregated
tables and every other day from raw events, in one answer that says where each date came from.

Team 1 (UTC) has ten days ending today; team 2 (Asia/Kathmandu, +05:45) has three, whose local
dates straddle UTC days. Every number below is counted by hand from the sessions listed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from support import FAILING_SETTINGS, pageviews_on, traffic, visit

import web_analytics
from web_analytics import BreakdownRow, Overview
from web_analytics.warehouse import dashboard, freshness, gaps
from web_analytics.warehouse.accuracy import (
    VISITORS_TOLERANCE,
    AccuracyReport,
    Discrepancy,
    record_checks,
)
from web_analytics.warehouse.attempts import AttemptStatus, record_attempt
from web_analytics.warehouse.connection import Session
from web_analytics.warehouse.freshness import Reason
from web_analytics.warehouse.gaps import DayState, TeamDays, detect
from web_analytics.warehouse.schema import BREAKDOWN_DIMENSIONS, STATS

UTC_TEAM = 1
KATHMANDU_TEAM = 2

# Team 1, one session per line: day (D0..D9, D9 today), person, device, browser, country,
# utm_source, pageviews (UTC time, path), views, duration, bounce.
#   A  D0  p1  Desktop Chrome  US  google      /home 10:00:00, /pricing 10:01:00        2   60  no
#   B  D1  p2  Mobile  Safari  GB  -           /home 09:00:00                           1    0  yes
#   C  D2  p3  Desktop Firefox DE  newsletter  /blog 14:00:00, /home 14:00:20           2   20  no
#   D  D3  p1  Desktop Chrome  US  google      /pricing 11:00, /signup 11:02,           3  180  no
#                                              /pricing 11:03
#   E  D4  p4  Mobile  Chrome  GB  -           /home 08:00:00 (click 08:00:05)          1    5  no
#   F  D5  p4  Mobile  Chrome  GB  -           /blog 16:00:00, late: /pricing 16:00:30  2   30  no
#   H  D6  p6  Desktop Chrome  -   -           /home 12:00:00, /blog 12:00:05           2    5  no
#   I  D7  p2  Mobile  Safari  GB  -           /pricing 13:00:00                        1    0  yes
#   J  D8  p7  Desktop Firefox DE  google      /home 23:59:00, /signup 00:01:00 (D9)    2  120  no
#   K  D9  p1  Desktop Chrome  US  google      /home 00:00:10, /pricing 00:00:40        2   30  no
#   L  D9  p8  Mobile  Safari  -   -           /blog 00:00:20                           1    0  yes
# Days D0-D2, D4-D6 and D8 are computed; D3 never is (missing: later days were), D7's run
# fails, then F's late pageview makes D5 stale (computed as a bounce of 1 view, 0 s).
#
# Over D0..D9: sessions 11; visitors p1 p2 p3 p4 p6 p7 p8 = 7 (p1 on complete D0, missing D3
# and today; p4 on complete D4 and stale D5; p2 on complete D1 and failed D7: each once);
# views 2+1+2+3+1+2+2+1+2+2+1 = 19; bounces B, I, L = 3; durations 60+20+180+5+30+5+120+30
# = 450 s over 11 sessions.
TEN_DAYS = Overview(7, 19, 11, 450 / 11, 3 / 11)
# D0..D2 alone, every day complete: A, B, C: 3 visitors, 5 views, 80 s, bounce B.
COMPLETE_DAYS = Overview(3, 5, 3, 80 / 3, 1 / 3)

# Rows (value, visitors, views, sessions, bounce rate) over D0..D9, sorted by visitors, views.
TEN_DAY_BREAKDOWNS = {
    # /home: A B C E H J K (one view each): p1 p2 p3 p4 p6 p7, bounce B.
    # /blog: C F H L: p3 p4 p6 p8, bounce L.  /pricing: A, D (2 views), F, I, K: p1 p4 p2,
    # bounce I.  /signup: D, J: p1 p7.
    "pathname": [
        BreakdownRow("/home", 6, 7, 7, 1 / 7),
        BreakdownRow("/blog", 4, 4, 4, 1 / 4),
        BreakdownRow("/pricing", 3, 6, 5, 1 / 5),
        BreakdownRow("/signup", 2, 2, 2, 0.0),
    ],
    # Desktop: A C D H J K: p1 p3 p6 p7, views 2+2+3+2+2+2.  Mobile: B E F I L: p2 p4 p8,
    # views 1+1+2+1+1, bounces B I L.
    "device_type": [
        BreakdownRow("Desktop", 4, 13, 6, 0.0),
        BreakdownRow("Mobile", 3, 6, 5, 3 / 5),
    ],
    # GB: B E F I: p2 p4, views 1+1+2+1, bounces B I.  DE: C J: p3 p7, views 4.
    # none: H L: p6 p8, views 3, bounce L.  US: A D K: p1, views 7.
    "country_code": [
        BreakdownRow("GB", 2, 5, 4, 2 / 4),
        BreakdownRow("DE", 2, 4, 2, 0.0),
        BreakdownRow(None, 2, 3, 2, 1 / 2),
        BreakdownRow("US", 1, 7, 3, 0.0),
    ],
    # /home: A B E H J K: p1 p2 p4 p6 p7, views 2+1+1+2+2+2, bounce B.  /blog: C F L: p3 p4
    # p8, views 2+2+1, bounce L.  /pricing: D I: p1 p2, views 3+1, bounce I.
    "entry_pathname": [
        BreakdownRow("/home", 5, 10, 6, 1 / 6),
        BreakdownRow("/blog", 3, 5, 3, 1 / 3),
        BreakdownRow("/pricing", 2, 4, 2, 1 / 2),
    ],
}

# Team 2 in Kathmandu: local midnight is 18:15 UTC the day before. Sessions (UTC time, local
# date): T1 q1 D4 10:00 (local D4), T2 q2 D4 20:00 (local D5), T3 q1 D5 10:00 + 10:00:45
# (local D5, 45 s), late T4 q3 D5 12:00 (local D5), T5 q2 D5 19:00 (local D6), T6 q4 D6 10:00 +
# 10:00:15 (local D6, 15 s). UTC D5 is stale (T4 came after it was computed); D4 and D6 are
# complete. Local D4 lies in UTC D3 (no events) and D4: pre-aggregated; local D5 and D6 each
# have hours in UTC D5: raw. Over local D4..D6: 6 sessions, 8 views, visitors q1 q2 q3 q4 = 4
# (q1 and q2 each seen in a pre-aggregated and a raw part), bounces T1 T2 T4 T5, 60 s in all.
KATHMANDU_DAYS = Overview(4, 8, 6, 10.0, 4 / 6)


def _at(day: date, clock: str) -> str:
    return f"{day.isoformat()}T{clock}Z"


def _team_1_events(days: list[date]) -> list[dict[str, object]]:
    d = days
    desktop_us = {"country": "US", "utm_source": "google"}
    mobile_gb = {"device": "Mobile", "country": "GB"}
    return [
        *visit(
            UTC_TEAM,
            "A",
            [
                (_at(d[0], "10:00:00"), "$pageview", "/home"),
                (_at(d[0], "10:01:00"), "$pageview", "/pricing"),
            ],
            person="p1",
            **desktop_us,
        ),
        *visit(
            UTC_TEAM,
            "B",
            [(_at(d[1], "09:00:00"), "$pageview", "/home")],
            person="p2",
            browser="Safari",
            **mobile_gb,
        ),
        *visit(
            UTC_TEAM,
            "C",
            [
                (_at(d[2], "14:00:00"), "$pageview", "/blog"),
                (_at(d[2], "14:00:20"), "$pageview", "/home"),
            ],
            person="p3",
            browser="Firefox",
            country="DE",
            utm_source="newsletter",
        ),
        *visit(
            UTC_TEAM,
            "D",
            [
                (_at(d[3], "11:00:00"), "$pageview", "/pricing"),
                (_at(d[3], "11:02:00"), "$pageview", "/signup"),
                (_at(d[3], "11:03:00"), "$pageview", "/pricing"),
            ],
            person="p1",
            **desktop_us,
        ),
        *visit(
            UTC_TEAM,
            "E",
            [
                (_at(d[4], "08:00:00"), "$pageview", "/home"),
                (_at(d[4], "08:00:05"), "$autocapture", "/home"),
            ],
            person="p4",
            **mobile_gb,
        ),
        *visit(
            UTC_TEAM, "F", [(_at(d[5], "16:00:00"), "$pageview", "/blog")], person="p4", **mobile_gb
        ),
        *visit(
            UTC_TEAM,
            "H",
            [
                (_at(d[6], "12:00:00"), "$pageview", "/home"),
                (_at(d[6], "12:00:05"), "$pageview", "/blog"),
            ],
            person="p6",
        ),
        *visit(
            UTC_TEAM,
            "I",
            [(_at(d[7], "13:00:00"), "$pageview", "/pricing")],
            person="p2",
            browser="Safari",
            **mobile_gb,
        ),
        *visit(
            UTC_TEAM,
            "J",
            [
                (_at(d[8], "23:59:00"), "$pageview", "/home"),
                (_at(d[9], "00:01:00"), "$pageview", "/signup"),
            ],
            person="p7",
            browser="Firefox",
            country="DE",
            utm_source="google",
        ),
        *visit(
            UTC_TEAM,
            "K",
            [
                (_at(d[9], "00:00:10"), "$pageview", "/home"),
                (_at(d[9], "00:00:40"), "$pageview", "/pricing"),
            ],
            person="p1",
            **desktop_us,
        ),
        *visit(
            UTC_TEAM,
            "L",
            [(_at(d[9], "00:00:20"), "$pageview", "/blog")],
            person="p8",
            device="Mobile",
            browser="Safari",
        ),
    ]


def _team_1_late(days: list[date]) -> list[dict[str, object]]:
    return visit(
        UTC_TEAM,
        "F",
        [(_at(days[5], "16:00:30"), "$pageview", "/pricing")],
        person="p4",
        device="Mobile",
        country="GB",
    )


def _team_2_events(days: list[date]) -> list[dict[str, object]]:
    d = days

    def pageviews(
        session_id: str, person: str, *steps: tuple[date, str, str]
    ) -> list[dict[str, object]]:
        return visit(
            KATHMANDU_TEAM,
            session_id,
            [(_at(day, clock), "$pageview", path) for day, clock, path in steps],
            person=person,
        )

    return [
        *pageviews("T1", "q1", (d[4], "10:00:00", "/a")),
        *pageviews("T2", "q2", (d[4], "20:00:00", "/b")),
        *pageviews("T3", "q1", (d[5], "10:00:00", "/c"), (d[5], "10:00:45", "/c2")),
        *pageviews("T5", "q2", (d[5], "19:00:00", "/e")),
        *pageviews("T6", "q4", (d[6], "10:00:00", "/f"), (d[6], "10:00:15", "/f2")),
    ]


def _team_2_late(days: list[date]) -> list[dict[str, object]]:
    return visit(KATHMANDU_TEAM, "T4", [(_at(days[5], "12:00:00"), "$pageview", "/d")], person="q3")


@pytest.fixture(scope="module")
def days() -> list[date]:
    """D0..D9 as UTC dates, D9 today. A module that straddled UTC midnight would see today
    move under it: too close to midnight, it starts after it."""
    now = datetime.now(UTC)
    to_midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC) - now
    if to_midnight < timedelta(minutes=3):
        time.sleep(to_midnight.total_seconds() + 1)
    today = datetime.now(UTC).date()
    return [today - timedelta(days=9 - i) for i in range(10)]


@pytest.fixture(scope="module")
def store(
    tmp_path_factory: pytest.TempPathFactory, days: list[date]
) -> Iterator[web_analytics.Warehouse]:
    warehouse = web_analytics.connect(f"chdb://{tmp_path_factory.mktemp('auto') / 'store'}")
    warehouse.ensure_schema()
    with warehouse.session():
        warehouse.upsert_team(UTC_TEAM, "UTC")
        warehouse.upsert_team(KATHMANDU_TEAM, "Asia/Kathmandu")
        report = warehouse.insert_events(_team_1_events(days) + _team_2_events(days))
        assert report.rejected == []
        warehouse.aggregate(days[0], days[2])
        warehouse.aggregate(days[4], days[6])
        warehouse.aggregate(days[8], days[8])
        with pytest.raises(web_analytics.WarehouseError):
            warehouse.aggregate(days[7], days[7], extra_settings=FAILING_SETTINGS)
        assert warehouse.insert_events(_team_1_late(days) + _team_2_late(days)).rejected == []
    yield warehouse


def _numbers(overview: Overview) -> tuple[object, ...]:
    return (
        overview.views,
        overview.sessions,
        overview.bounce_rate,
        overview.avg_session_duration,
    )


def _within_bound(visitors: int, raw: int) -> bool:
    return abs(visitors - raw) <= VISITORS_TOLERANCE * max(raw, 1)


# --- a range with a missing, a stale and a failed day, and today -------------------------------


def test_auto_overview_counts_every_session_once_whatever_the_day_state(
    store: web_analytics.Warehouse, days: list[date]
) -> None:
    auto = store.overview(UTC_TEAM, days[0], days[-1])
    raw = store.overview(UTC_TEAM, days[0], days[-1], source="raw")

    assert _numbers(auto) == pytest.approx(_numbers(TEN_DAYS))
    assert _numbers(raw) == pytest.approx(_numbers(TEN_DAYS))
    # p1 (complete D0, missing D3, today), p4 (complete D4, stale D5) and p2 (complete D1,
    # failed D7) each count once.
    assert raw.visitors == TEN_DAYS.visitors
    assert auto.visitors == TEN_DAYS.visitors


def test_preaggregated_alone_misses_what_auto_adds(
    store: web_analytics.Warehouse, days: list[date]
) -> None:
    preaggregated = store.overview(UTC_TEAM, days[0], days[-1], source="preaggregated")

    # Only A B C E H J and F as computed (1 view, a bounce): D3, D7 and today are absent.
    # Visitors p1 p2 p3 p4 p6 p7; views 2+1+2+1+1+2+2; bounces B F; 60+20+5+0+5+120 s.
    assert preaggregated == Overview(6, 11, 7, 210 / 7, 2 / 7)


def test_freshness_lists_each_date_with_the_reason_it_was_read_raw(
    store: web_analytics.Warehouse, days: list[date]
) -> None:
    before = datetime.now(UTC)
    where = store.overview(UTC_TEAM, days[0], days[-1]).freshness

    assert where is not None
    assert where.preaggregated == (days[0], days[1], days[2], days[4], days[6], days[8])
    assert where.raw == {
        days[3]: Reason.MISSING,
        days[5]: Reason.STALE,
        days[7]: Reason.FAILED,
        days[9]: Reason.TODAY,
    }
    assert where.no_events == ()
    # A range that covers today is complete up to the moment it was read.
    assert where.complete_until is not None
    assert before <= where.complete_until <= datetime.now(UTC)
    assert where.describe() == "6 pre-aggregated + 4 raw (missing, stale, failed, today)"


@pytest.mark.parametrize("by", BREAKDOWN_DIMENSIONS)
def test_auto_breakdown_equals_raw_for_every_dimension(
    store: web_analytics.Warehouse, days: list[date], by: str
) -> None:
    auto = store.breakdown(UTC_TEAM, by, days[0], days[-1])
    raw = store.breakdown(UTC_TEAM, by, days[0], days[-1], source="raw")

    assert [row.value for row in auto] == [row.value for row in raw]
    for row, reference in zip(auto, raw, strict=True):
        assert (row.views, row.sessions, row.bounce_rate) == (
            reference.views,
            reference.sessions,
            reference.bounce_rate,
        ), row.value
        assert _within_bound(row.visitors, reference.visitors), row.value
    assert set(auto.freshness.raw) == {days[3], days[5], days[7], days[9]}
    assert raw.freshness.raw == dict.fromkeys(days, Reason.REQUESTED)


@pytest.mark.parametrize("by", sorted(TEN_DAY_BREAKDOWNS))
def test_auto_breakdown_matches_the_hand_count(
    store: web_analytics.Warehouse, days: list[date], by: str
) -> None:
    rows = store.breakdown(UTC_TEAM, by, days[0], days[-1])

    assert rows == TEN_DAY_BREAKDOWNS[by]


def test_a_breakdown_is_still_a_list(store: web_analytics.Warehouse, days: list[date]) -> None:
    rows = store.breakdown(UTC_TEAM, "device_type", days[0], days[-1], limit=1)

    assert isinstance(rows, list)
    assert rows == [BreakdownRow("Desktop", 4, 13, 6, 0.0)]
    assert rows.freshness.raw[days[9]] is Reason.TODAY


def test_many_raw_spans_are_read_as_one_keeping_only_their_days(
    store: web_analytics.Warehouse, days: list[date], monkeypatch: pytest.MonkeyPatch
) -> None:
    # D3, D5, D7 and D9 are four spans: read as one span from D3 to D9, only their buckets kept.
    monkeypatch.setattr(dashboard, "MAX_RAW_SPANS", 2)

    auto = store.overview(UTC_TEAM, days[0], days[-1])
    rows = store.breakdown(UTC_TEAM, "pathname", days[0], days[-1])

    assert _numbers(auto) == pytest.approx(_numbers(TEN_DAYS))
    assert auto.visitors == TEN_DAYS.visitors
    assert rows == TEN_DAY_BREAKDOWNS["pathname"]


# --- every day complete ------------------------------------------------------------------------


def test_with_every_day_complete_auto_is_the_preaggregated_answer(
    store: web_analytics.Warehouse, days: list[date]
) -> None:
    auto = store.overview(UTC_TEAM, days[0], days[2])
    preaggregated = store.overview(UTC_TEAM, days[0], days[2], source="preaggregated")

    assert auto == preaggregated
    assert _numbers(auto) == pytest.approx(_numbers(COMPLETE_DAYS))
    assert auto.visitors == COMPLETE_DAYS.visitors
    assert auto.freshness is not None
    assert auto.freshness.raw == {}
    assert auto.freshness.preaggregated == (days[0], days[1], days[2])
    assert auto.freshness.describe() == "3 days pre-aggregated"
    # A past range is complete up to its end: local (here UTC) midnight after D2.
    assert auto.freshness.complete_until == datetime.combine(days[3], datetime.min.time(), UTC)
    for by in BREAKDOWN_DIMENSIONS:
        assert store.breakdown(UTC_TEAM, by, days[0], days[2]) == store.breakdown(
            UTC_TEAM, by, days[0], days[2], source="preaggregated"
        ), by


# --- local dates that straddle UTC days -------------------------------------------------------


def test_kathmandu_dates_take_each_utc_part_from_where_it_is_right(
    store: web_analytics.Warehouse, days: list[date]
) -> None:
    auto = store.overview(KATHMANDU_TEAM, days[4], days[6])
    raw = store.overview(KATHMANDU_TEAM, days[4], days[6], source="raw")

    assert _numbers(auto) == pytest.approx(_numbers(KATHMANDU_DAYS))
    assert _numbers(raw) == pytest.approx(_numbers(KATHMANDU_DAYS))
    # q1 and q2 each have one session pre-aggregated (UTC D4) and one read raw (UTC D5).
    assert auto.visitors == raw.visitors == KATHMANDU_DAYS.visitors
    assert auto.freshness is not None
    assert auto.freshness.preaggregated == (days[4],)
    assert auto.freshness.raw == {days[5]: Reason.STALE, days[6]: Reason.STALE}
    # The range ends at local midnight after D6: 18:15 UTC on D6.
    assert auto.freshness.complete_until == datetime.combine(
        days[6], datetime.min.time(), UTC
    ) + timedelta(hours=18, minutes=15)

    rows = store.breakdown(KATHMANDU_TEAM, "entry_pathname", days[4], days[6])
    # Every session has its own entry page; T3 and T6 have two views each.
    assert {row.value: (row.visitors, row.views) for row in rows} == {
        "/a": (1, 1),
        "/b": (1, 1),
        "/c": (1, 2),
        "/d": (1, 1),
        "/e": (1, 1),
        "/f": (1, 2),
    }


# --- ranges with nothing to count -------------------------------------------------------------


@pytest.mark.parametrize("when", ["in the future", "before the first event"])
def test_a_range_without_events_answers_zeros_and_says_so(
    store: web_analytics.Warehouse, days: list[date], when: str
) -> None:
    first = days[-1] + timedelta(days=2) if when == "in the future" else days[0] - timedelta(5)
    last = first + timedelta(days=2)

    overview = store.overview(UTC_TEAM, first, last)
    rows = store.breakdown(UTC_TEAM, "pathname", first, last)

    assert overview == Overview(0, 0, 0, None, None)
    assert rows == []
    assert overview.freshness is not None
    assert overview.freshness.no_events == (first, first + timedelta(days=1), last)
    assert overview.freshness.preaggregated == ()
    assert overview.freshness.raw == {}
    assert rows.freshness.describe() == "3 days without events"


# --- cost and the other sources ----------------------------------------------------------------


def test_auto_costs_one_query_more_than_preaggregated(
    store: web_analytics.Warehouse, days: list[date], monkeypatch: pytest.MonkeyPatch
) -> None:
    queries: list[str] = []
    query = Session.query

    def counted(self: Session, sql: str, *args: Any, **kwargs: Any) -> Any:
        queries.append(sql)
        return query(self, sql, *args, **kwargs)

    monkeypatch.setattr(Session, "query", counted)
    with store.session():
        queries.clear()
        store.overview(UTC_TEAM, days[0], days[-1], source="preaggregated")
        preaggregated = len(queries)
        queries.clear()
        store.overview(UTC_TEAM, days[0], days[-1])
        auto = len(queries)

    assert auto == preaggregated + 1


def test_a_disabled_team_is_read_from_raw_events(
    warehouse: web_analytics.Warehouse, days: list[date]
) -> None:
    warehouse.upsert_team(3, "UTC", enabled=False)
    warehouse.insert_events(
        visit(3, "x", [(_at(days[1], "10:00:00"), "$pageview", "/")], person="z")
    )

    # One pageview on D1: 1 visitor, 1 view, 1 session of 0 s, a bounce.
    overview = warehouse.overview(3, days[0], days[2])

    assert overview == Overview(1, 1, 1, 0.0, 1.0)
    assert overview.freshness is not None
    assert overview.freshness.raw == dict.fromkeys(days[:3], Reason.NOT_PRE_AGGREGATED)


def test_forced_sources_say_where_they_read(
    store: web_analytics.Warehouse, days: list[date]
) -> None:
    preaggregated = store.overview(UTC_TEAM, days[0], days[1], source="preaggregated").freshness
    raw = store.overview(UTC_TEAM, days[0], days[1], source="raw").freshness

    assert preaggregated == freshness.Freshness((days[0], days[1]), {}, (), None)
    assert raw is not None
    assert raw.raw == {days[0]: Reason.REQUESTED, days[1]: Reason.REQUESTED}
    assert raw.complete_until == datetime.combine(days[2], datetime.min.time(), UTC)


# --- the plan alone: every state and reason -----------------------------------------------------


def test_every_day_state_gives_its_reason() -> None:
    # UTC days Jan 1..Jan 8, the tables last computed for Jan 5; now is Jan 7 at noon UTC.
    jan = [date(2024, 1, day) for day in range(1, 9)]
    states = [
        DayState.COMPLETE,
        DayState.RUNNING,
        DayState.INACCURATE,
        DayState.EMPTY,
        DayState.COMPLETE,
        DayState.MISSING,  # after the last computed day: not yet computed
        DayState.MISSING,  # today
        DayState.EMPTY,  # tomorrow
    ]
    team_days = TeamDays(dict(zip(jan, states, strict=True)), last_computed_day=jan[4])

    plan = freshness.plan("UTC", jan[0], jan[7], team_days, datetime(2024, 1, 7, 12, tzinfo=UTC))

    assert plan.complete_days == (jan[0], jan[4])
    assert plan.freshness.raw == {
        jan[1]: Reason.RUNNING,
        jan[2]: Reason.INACCURATE,
        jan[5]: Reason.NOT_YET_COMPUTED,
        jan[6]: Reason.TODAY,
    }
    assert plan.freshness.no_events == (jan[3], jan[7])
    # Raw spans: Jan 2-3 (adjacent days, one span), Jan 6-7.
    midnight = [datetime(2024, 1, day, tzinfo=UTC) for day in range(1, 10)]
    assert plan.raw_spans == ((midnight[1], midnight[3]), (midnight[5], midnight[7]))
    assert plan.freshness.complete_until == datetime(2024, 1, 7, 12, tzinfo=UTC)


def test_a_local_date_is_raw_if_any_of_its_utc_hours_is() -> None:
    # Los Angeles (-8): local Jan 2 is 08:00 UTC Jan 2 to 08:00 UTC Jan 3.
    jan = [date(2024, 1, day) for day in range(1, 6)]
    states = [
        DayState.COMPLETE,
        DayState.COMPLETE,
        DayState.STALE,
        DayState.COMPLETE,
        DayState.EMPTY,
    ]
    team_days = TeamDays(dict(zip(jan, states, strict=True)), last_computed_day=jan[3])

    plan = freshness.plan(
        "America/Los_Angeles", jan[1], jan[3], team_days, datetime(2024, 2, 1, tzinfo=UTC)
    )

    # Local Jan 2 and Jan 3 have hours in stale UTC Jan 3; local Jan 4 ends 08:00 UTC Jan 5.
    assert plan.freshness.preaggregated == (jan[3],)
    assert plan.freshness.raw == {jan[1]: Reason.STALE, jan[2]: Reason.STALE}
    assert plan.complete_days == (jan[1], jan[3])
    assert plan.raw_spans == ((datetime(2024, 1, 3, tzinfo=UTC), datetime(2024, 1, 4, tzinfo=UTC)),)


# --- the one-team detection agrees with the gap report ------------------------------------------


def test_one_teams_day_states_are_the_gap_reports(warehouse: web_analytics.Warehouse) -> None:
    jan = [date(2024, 1, day) for day in range(1, 11)]
    warehouse.upsert_team(1, "UTC")
    warehouse.upsert_team(2, "UTC")
    warehouse.insert_events(traffic([1, 2], jan[:8]))
    warehouse.aggregate(jan[0], jan[1])
    warehouse.aggregate(jan[3], jan[3])
    warehouse.aggregate(jan[5], jan[6])
    with pytest.raises(web_analytics.WarehouseError):
        warehouse.aggregate(jan[4], jan[4], extra_settings=FAILING_SETTINGS)
    warehouse.insert_events(pageviews_on(1, jan[1], "late", hour=15))
    now = datetime.now(UTC)
    with warehouse.session() as session:
        record_attempt(session, [jan[5]], "in-flight", "test", AttemptStatus.STARTED, now)
        wrong = AccuracyReport(STATS, jan[6], jan[6], 2, [Discrepancy(2, jan[6], "views", 1, 2)])
        record_checks(session, [wrong], now)

        report = detect(session, None, jan[0], jan[-1], None, now)
        states = {
            team: gaps.team_days(session, team, STATS, jan[0], jan[-1], None, now)
            for team in (1, 2)
        }

    # Jan 1 complete, 2 stale for team 1 (late events), 3 missing, 4 complete, 5 failed,
    # 6 running, 7 inaccurate for team 2, 8 not computed (missing), 9 and 10 without events.
    assert report.states[(1, STATS)] == "csmcfrcmee"
    assert report.states[(2, STATS)] == "ccmcfrimee"
    for team in (1, 2):
        letters = "".join(str(state)[0] for state in states[team].states.values())
        assert letters == report.states[(team, STATS)], team
        assert states[team].last_computed_day == jan[6]
