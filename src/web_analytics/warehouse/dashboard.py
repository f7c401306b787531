"""Dashboard queries in a team's own timezone (an overview, a breakdown, a daily or hourly
series): from the pre-aggregated tables, straight from raw events with the same definitions
(the reference the accuracy checks use), or, by default, both at once: complete days from
the pre-aggregated tables and every other day from raw events (see ``freshness``), combined
in one query."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from web_analytics.warehouse import freshness
from web_analytics.warehouse.connection import Session
from web_analytics.warehouse.errors import ConfigurationError
from web_analytics.warehouse.freshness import Freshness, ReadPlan, local_bucket_range
from web_analytics.warehouse.schema import (
    ALL,
    BREAKDOWN_DIMENSIONS,
    DAILY_STATS,
    DAILY_VISITORS,
    EVENTS,
    HOURLY_VISITORS,
    STATS,
    with_combinator,
)
from web_analytics.warehouse.sessions import sessions_parameters, sessions_query
from web_analytics.warehouse.teams import Team

SOURCES = ("auto", "preaggregated", "raw")
# An auto read with more raw spans than this reads one span from the first to the last and
# keeps the buckets of its raw days: each span repeats the sessions query in the SQL text.
MAX_RAW_SPANS = 8
# Rows a breakdown returns at most (its LIMIT is bound as a UInt32).
MAX_LIMIT = 1_000_000

__all__ = [
    "Breakdown",
    "BreakdownRow",
    "Freshness",
    "Overview",
    "Point",
    "Timeseries",
    "local_bucket_range",
]


@dataclass(frozen=True)
class Overview:
    visitors: int
    views: int
    sessions: int
    avg_session_duration: float | None  # seconds
    bounce_rate: float | None  # 0..1
    # Where the numbers came from; two answers with the same numbers are equal.
    freshness: Freshness | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class BreakdownRow:
    value: str | None
    visitors: int
    views: int
    sessions: int
    bounce_rate: float | None


class Breakdown(list[BreakdownRow]):
    """The rows of a breakdown, a plain list to its callers, and where they came from."""

    def __init__(self, rows: Iterable[BreakdownRow], freshness: Freshness) -> None:
        super().__init__(rows)
        self.freshness = freshness


INTERVALS = ("day", "hour")


@dataclass(frozen=True)
class Point:
    """One local day or hour of a time series."""

    start: datetime  # when the day or hour starts, in the team's timezone
    visitors: int
    views: int
    sessions: int
    bounce_rate: float | None  # 0..1
    avg_session_duration: float | None  # seconds


class Timeseries(list[Point]):
    """The points of a time series, in order, and where they came from."""

    def __init__(self, points: Iterable[Point], freshness: Freshness) -> None:
        super().__init__(points)
        self.freshness = freshness


def validate_dimension(by: str) -> None:
    if by not in BREAKDOWN_DIMENSIONS:
        raise ConfigurationError(
            f"cannot break down by {by!r}: choose one of {', '.join(BREAKDOWN_DIMENSIONS)}"
        )


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# Dashboards read the stats tables alone: they hold every metric (the bounces table is a
# projection of the hourly one). Overviews, breakdowns and daily series read the day grain,
# a few rows per local day whatever its traffic; hourly series read the hourly rows. These
# filters select a team's rows of a range (the benchmark also reads them bare, as the least
# any dashboard query costs).
DAILY_FILTER = """team_id = {team_id:UInt64} AND dimension = {dimension:String}
      AND day BETWEEN {date_from:Date} AND {date_to:Date}"""
HOURLY_FILTER = """team_id = {team_id:UInt64} AND dimension = {dimension:String}
      AND period_bucket >= {bucket_from:DateTime('UTC')}
      AND period_bucket < {bucket_to:DateTime('UTC')}"""

# Only the UTC days (partitions) that the gap detection finds complete: an ``auto`` read.
_COMPLETE_DAYS = "\n      AND toDate(period_bucket) IN {complete_days:Array(Date)}"


@dataclass(frozen=True)
class _Shape:
    """What one kind of read groups by, from which table, and how it ends."""

    table: str  # the pre-aggregated rows it reads
    filter: str  # selecting a team's rows of the range in ``table``
    visitors: str  # the visitor state function of ``table``
    key: str  # the group key in ``table``'s rows, as ``key`` ('' for one total row)
    raw_key: str  # the same key from raw sessions (after ``expand``)
    expand: str  # ARRAY JOIN of the raw sessions, if any
    views: str  # the raw column a row's views sum
    tail: str  # what follows the merged SELECT's FROM: grouping, order, limit


_BREAKDOWN_ORDER = """GROUP BY key
ORDER BY visitors DESC, views DESC, key
LIMIT {limit:UInt32}"""
_SERIES_ORDER = "GROUP BY key\nORDER BY key"


def _expand(by: str) -> str:
    """One row per value of ``by`` of each session, with the views it counts for it."""
    # ``by`` is checked against BREAKDOWN_DIMENSIONS before it gets here.
    if by == "pathname":
        return "ARRAY JOIN path_names AS value, path_views AS value_views"
    return f"ARRAY JOIN [{by}] AS value, [pageviews] AS value_views"


def _overview_shape() -> _Shape:
    return _Shape(DAILY_STATS, DAILY_FILTER, DAILY_VISITORS, "", "", "", "pageviews", "")


def _breakdown_shape(by: str) -> _Shape:
    return _Shape(
        DAILY_STATS,
        DAILY_FILTER,
        DAILY_VISITORS,
        "value",
        "value",
        _expand(by),
        "value_views",
        _BREAKDOWN_ORDER,
    )


def _series_shape(interval: str) -> _Shape:
    if interval == "day":
        return _Shape(
            DAILY_STATS,
            DAILY_FILTER,
            DAILY_VISITORS,
            "day",
            "local_day",
            "",
            "pageviews",
            _SERIES_ORDER,
        )
    return _Shape(
        STATS,
        HOURLY_FILTER,
        HOURLY_VISITORS,
        "period_bucket",
        "period_bucket",
        "",
        "pageviews",
        _SERIES_ORDER,
    )


def _key(column: str) -> str:
    return f"{column} AS key, " if column else ""


def _span_sessions(timezone_count: int, span: int) -> str:
    """``sessions_query`` over raw span number ``span``, its bounds bound as
    ``bucket_from_{span}`` and ``bucket_to_{span}``, so that one query reads several spans."""
    sql = sessions_query(timezone_count, EVENTS, narrow=True)
    for bound in ("bucket_from", "bucket_to"):
        sql = sql.replace(f"{{{bound}:", f"{{{bound}_{span}:")
    return sql


def _combined_sql(
    shape: _Shape,
    complete_days_only: bool,
    raw_spans: int = 0,
    timezone_count: int = 1,
    raw_days_only: bool = False,
) -> str:
    """The rows of ``shape`` read from its table (with ``complete_days_only``, from its
    complete days), together with the same rows computed from the raw sessions of
    ``raw_spans`` spans (with ``raw_days_only``, of their buckets in ``{raw_days}``): sums
    add, and one merge of both sides' visitor states, made with the same function of the
    same hash, counts a visitor seen on both sides once."""
    rows = f"{shape.table}\nWHERE {shape.filter}"
    if complete_days_only:
        rows += _COMPLETE_DAYS
    merge = with_combinator(shape.visitors, "Merge")
    group_key = "key, " if shape.key else ""
    if raw_spans:
        state = with_combinator(shape.visitors, "State")
        where = "WHERE toDate(period_bucket) IN {raw_days:Array(Date)}" if raw_days_only else ""
        group = "GROUP BY key" if shape.key else ""
        rows += "".join(
            f"\nUNION ALL\nSELECT {_key(shape.raw_key)}{state}(cityHash64(person)), "
            f"sum({shape.views}), count(), sum(is_bounce), sum(duration_us)\n"
            f"FROM ({_span_sessions(timezone_count, span)})\n{shape.expand}\n{where}\n{group}"
            for span in range(raw_spans)
        )
    return (
        f"SELECT {group_key}{merge}(visitors) AS visitors, sum(views) AS views, sum(sessions), "
        "sum(bounces), sum(total_duration_us)\n"
        f"FROM\n(\nSELECT {_key(shape.key)}visitors, views, sessions, bounces, total_duration_us"
        f"\nFROM {rows}\n)\n{shape.tail}"
    )


def _raw_sql(timezone_count: int, shape: _Shape) -> str:
    """The rows of ``shape`` straight from raw sessions, with exact visitor counts."""
    return f"""
SELECT {_key(shape.raw_key)}uniqExact(person) AS visitors, sum({shape.views}) AS views,
    count(), sum(is_bounce), sum(duration_us)
FROM ({sessions_query(timezone_count, EVENTS)})
{shape.expand}
{shape.tail}
"""


def _read(
    session: Session,
    team: Team,
    shape: _Shape,
    by: str | None,
    date_from: date,
    date_to: date,
    source: str,
    limit: int,
    cluster: str | None,
    now: datetime,
) -> tuple[list[tuple[Any, ...]], Freshness]:
    """The rows of ``shape`` (dimension ``by``, None for totals) from ``source``, and where
    they came from. ``auto`` asks the gap detection's tables first, then reads complete days
    from the stats tables and the rest from raw events, in one query."""
    bucket_from, bucket_to = local_bucket_range(team.timezone, date_from, date_to)
    count, parameters = sessions_parameters({team.team_id: team.timezone}, bucket_from, bucket_to)
    parameters |= {
        "team_id": team.team_id,
        "dimension": by or ALL,
        "date_from": date_from,
        "date_to": date_to,
        "limit": limit,
    }
    if source != "auto":
        forced = freshness.forced(team.timezone, date_from, date_to, source, now)
        plan = ReadPlan((), (), (), forced)
        raw_only = source == "raw"
    else:
        plan = freshness.read_plan(session, team, date_from, date_to, cluster, now)
        # Nothing pre-aggregated to combine with: the raw read alone, exact.
        raw_only = bool(plan.raw_spans) and not plan.complete_days
        if not plan.raw_spans and not plan.complete_days:
            return [], plan.freshness
    if raw_only:
        return session.query(_raw_sql(count, shape), parameters), plan.freshness
    spans = plan.raw_spans
    raw_days_only = len(spans) > MAX_RAW_SPANS
    if raw_days_only:
        spans = ((spans[0][0], spans[-1][1]),)
        parameters["raw_days"] = list(plan.raw_days)
    if source == "auto":
        parameters["complete_days"] = list(plan.complete_days)
        for span, (span_from, span_to) in enumerate(spans):
            parameters |= {f"bucket_from_{span}": span_from, f"bucket_to_{span}": span_to}
    sql = _combined_sql(shape, source == "auto", len(spans), count, raw_days_only)
    return session.query(sql, parameters), plan.freshness


def overview(
    session: Session,
    team: Team,
    date_from: date,
    date_to: date,
    source: str,
    cluster: str | None,
    now: datetime,
) -> Overview:
    """Visitors, views, sessions, average duration and bounce rate of ``team``'s local dates
    ``[date_from, date_to]`` from ``source``, with where they came from."""
    shape = _overview_shape()
    rows, where = _read(session, team, shape, None, date_from, date_to, source, 0, cluster, now)
    visitors, views, sessions, bounces, duration_us = (
        (int(v or 0) for v in rows[0]) if rows else (0,) * 5
    )
    return Overview(
        visitors=visitors,
        views=views,
        sessions=sessions,
        avg_session_duration=(duration_us / sessions / 1_000_000 if sessions else None),
        bounce_rate=_rate(bounces, sessions),
        freshness=where,
    )


def breakdown(
    session: Session,
    team: Team,
    by: str,
    date_from: date,
    date_to: date,
    source: str,
    limit: int,
    cluster: str | None,
    now: datetime,
) -> Breakdown:
    """The metrics of ``team``'s local dates split by ``by`` from ``source``, sorted by
    visitors then views, descending, at most ``limit`` rows, with where they came from."""
    shape = _breakdown_shape(by)
    rows, where = _read(session, team, shape, by, date_from, date_to, source, limit, cluster, now)
    return Breakdown(
        (
            BreakdownRow(
                value=value or None,
                visitors=int(visitors),
                views=int(views),
                sessions=int(sessions),
                bounce_rate=_rate(int(bounces or 0), int(sessions)),
            )
            for value, visitors, views, sessions, bounces, _ in rows
        ),
        where,
    )


def timeseries(
    session: Session,
    team: Team,
    date_from: date,
    date_to: date,
    interval: str,
    source: str,
    cluster: str | None,
    now: datetime,
) -> Timeseries:
    """The metrics of each of ``team``'s local days (``interval="day"``) or local hours
    (``"hour"``) of ``[date_from, date_to]`` from ``source``, every period listed (zeros
    where there were no sessions), with where they came from."""
    shape = _series_shape(interval)
    rows, where = _read(session, team, shape, None, date_from, date_to, source, 0, cluster, now)
    zone = ZoneInfo(team.timezone)
    found = {_period_start(key, zone): tuple(int(v or 0) for v in values) for key, *values in rows}
    return Timeseries(
        (
            _point(start, *found.get(start, (0,) * 5))
            for start in sorted(
                found.keys() | set(_periods(team.timezone, date_from, date_to, interval))
            )
        ),
        where,
    )


def _period_start(key: date | datetime, zone: ZoneInfo) -> datetime:
    """The team-local start of a day (a date) or an hour bucket (a UTC instant)."""
    if isinstance(key, datetime):
        return (key if key.tzinfo else key.replace(tzinfo=UTC)).astimezone(zone)
    return datetime.combine(key, time(), zone)


def _periods(timezone: str, date_from: date, date_to: date, interval: str) -> list[datetime]:
    zone = ZoneInfo(timezone)
    if interval == "day":
        days = (date_to - date_from).days + 1
        return [datetime.combine(date_from + timedelta(days=i), time(), zone) for i in range(days)]
    start, end = local_bucket_range(timezone, date_from, date_to)
    hours = int((end - start) / timedelta(hours=1))
    return [(start + timedelta(hours=i)).astimezone(zone) for i in range(hours)]


def _point(
    start: datetime, visitors: int, views: int, sessions: int, bounces: int, duration_us: int
) -> Point:
    return Point(
        start=start,
        visitors=visitors,
        views=views,
        sessions=sessions,
        bounce_rate=_rate(bounces, sessions),
        avg_session_duration=duration_us / sessions / 1_000_000 if sessions else None,
    )
