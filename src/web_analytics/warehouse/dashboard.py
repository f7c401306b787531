"""Dashboard queries in a team's own timezone: from the pre-aggregated tables, straight from
raw events with the same definitions (the reference the accuracy checks use), or, by default,
both at once: complete days from the pre-aggregated table and every other day from raw events
(see ``freshness``), combined in one query."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from web_analytics.warehouse import freshness
from web_analytics.warehouse.connection import Session
from web_analytics.warehouse.errors import ConfigurationError
from web_analytics.warehouse.freshness import Freshness, ReadPlan, local_bucket_range
from web_analytics.warehouse.schema import ALL, BREAKDOWN_DIMENSIONS, EVENTS, STATS
from web_analytics.warehouse.sessions import sessions_parameters, sessions_query
from web_analytics.warehouse.teams import Team

SOURCES = ("auto", "preaggregated", "raw")
# An auto read with more raw spans than this reads one span from the first to the last and
# keeps the buckets of its raw days: each span repeats the sessions query in the SQL text.
MAX_RAW_SPANS = 8
# Rows a breakdown returns at most (its LIMIT is bound as a UInt32).
MAX_LIMIT = 1_000_000

__all__ = ["Breakdown", "BreakdownRow", "Freshness", "Overview", "local_bucket_range"]


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


def validate_dimension(by: str) -> None:
    if by not in BREAKDOWN_DIMENSIONS:
        raise ConfigurationError(
            f"cannot break down by {by!r}: choose one of {', '.join(BREAKDOWN_DIMENSIONS)}"
        )


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# Dashboards read the stats table alone: it holds every metric (the bounces table is a
# projection of it), so one read of the team's rows answers each query; this filter selects
# them (the benchmark also reads them bare, as the least any dashboard query costs).
PREAGGREGATED_FILTER = """team_id = {team_id:UInt64} AND dimension = {dimension:String}
      AND period_bucket >= {bucket_from:DateTime('UTC')}
      AND period_bucket < {bucket_to:DateTime('UTC')}"""

# Only the UTC days (partitions) that the gap detection finds complete: an ``auto`` read.
_COMPLETE_DAYS = "\n      AND toDate(period_bucket) IN {complete_days:Array(Date)}"

_BREAKDOWN_ORDER = """GROUP BY value
ORDER BY visitors DESC, views DESC, value
LIMIT {limit:UInt32}"""


def _expand(by: str) -> str:
    """One row per value of ``by`` of each session, with the views it counts for it."""
    # ``by`` is checked against BREAKDOWN_DIMENSIONS before it gets here.
    if by == "pathname":
        return "ARRAY JOIN path_names AS value, path_views AS value_views"
    return f"ARRAY JOIN [{by}] AS value, [pageviews] AS value_views"


def _span_sessions(timezone_count: int, span: int) -> str:
    """``sessions_query`` over raw span number ``span``, its bounds bound as
    ``bucket_from_{span}`` and ``bucket_to_{span}``, so that one query reads several spans."""
    sql = sessions_query(timezone_count, EVENTS)
    for bound in ("bucket_from", "bucket_to"):
        sql = sql.replace(f"{{{bound}:", f"{{{bound}_{span}:")
    return sql


# The columns of an overview read from the stats rows, from raw sessions (made as the table's
# rows are, with its own visitor hash) and of the merge of both...
_OVERVIEW_COLUMNS = (
    "visitors, views, sessions, bounces, total_duration_us",
    "uniqState(cityHash64(person)), sum(pageviews), count(), sum(is_bounce), sum(duration_us)",
    "uniqMerge(visitors), sum(views), sum(sessions), sum(bounces), sum(total_duration_us)",
)
# ...and of a breakdown, each side grouped by value.
_BREAKDOWN_COLUMNS = (
    "value, visitors, views, sessions, bounces",
    "value, uniqState(cityHash64(person)), sum(value_views), count(), sum(is_bounce)",
    "value, uniqMerge(visitors) AS visitors, sum(views) AS views, sum(sessions), sum(bounces)",
)


def _preaggregated_sql(
    by: str | None,
    complete_days_only: bool,
    raw_spans: int = 0,
    timezone_count: int = 1,
    raw_days_only: bool = False,
) -> str:
    """The overview (``by`` None) or the breakdown by ``by`` of the stats rows of the range
    (with ``complete_days_only``, of its complete days), together with the same rows
    computed from the raw sessions of ``raw_spans`` spans (with ``raw_days_only``, of their
    buckets in ``{raw_days}``): sums add, and one ``uniqMerge`` of both sides' visitor
    states counts a visitor seen on both sides once."""
    stats_columns, raw_columns, merged = _BREAKDOWN_COLUMNS if by else _OVERVIEW_COLUMNS
    rows = f"{{stats:Identifier}}\nWHERE {PREAGGREGATED_FILTER}"
    if complete_days_only:
        rows += _COMPLETE_DAYS
    if raw_spans:
        expand = _expand(by) if by else ""
        where = "WHERE toDate(period_bucket) IN {raw_days:Array(Date)}" if raw_days_only else ""
        group = "GROUP BY value" if by else ""
        raw = "".join(
            f"\nUNION ALL\nSELECT {raw_columns}\n"
            f"FROM ({_span_sessions(timezone_count, span)})\n{expand}\n{where}\n{group}"
            for span in range(raw_spans)
        )
        rows = f"\n(\nSELECT {stats_columns}\nFROM {rows}{raw}\n)"
    return f"SELECT {merged}\nFROM {rows}\n{_BREAKDOWN_ORDER if by else ''}"


def _raw_sql(timezone_count: int, by: str | None) -> str:
    """The overview (``by`` None) or the breakdown by ``by`` straight from raw sessions, with
    exact visitor counts."""
    sessions = sessions_query(timezone_count, EVENTS)
    if by is None:
        return f"""
SELECT uniqExact(person), sum(pageviews), count(), sum(is_bounce), sum(duration_us)
FROM ({sessions})
"""
    return f"""
SELECT value, uniqExact(person) AS visitors, sum(value_views) AS views, count() AS sessions,
    sum(is_bounce)
FROM ({sessions})
{_expand(by)}
{_BREAKDOWN_ORDER}
"""


def _read(
    session: Session,
    team: Team,
    by: str | None,
    date_from: date,
    date_to: date,
    source: str,
    limit: int,
    cluster: str | None,
    now: datetime,
) -> tuple[list[tuple[Any, ...]], Freshness]:
    """The rows of the overview (``by`` None) or breakdown from ``source``, and where they
    came from. ``auto`` asks the gap detection's tables first, then reads complete days from
    the stats table and the rest from raw events, in one query."""
    bucket_from, bucket_to = local_bucket_range(team.timezone, date_from, date_to)
    count, parameters = sessions_parameters({team.team_id: team.timezone}, bucket_from, bucket_to)
    parameters |= {"stats": STATS, "team_id": team.team_id, "dimension": by or ALL}
    if by is not None:
        parameters["limit"] = limit
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
        return session.query(_raw_sql(count, by), parameters), plan.freshness
    spans = plan.raw_spans
    raw_days_only = len(spans) > MAX_RAW_SPANS
    if raw_days_only:
        spans = ((spans[0][0], spans[-1][1]),)
        parameters["raw_days"] = list(plan.raw_days)
    if source == "auto":
        parameters["complete_days"] = list(plan.complete_days)
        for span, (span_from, span_to) in enumerate(spans):
            parameters |= {f"bucket_from_{span}": span_from, f"bucket_to_{span}": span_to}
    sql = _preaggregated_sql(by, source == "auto", len(spans), count, raw_days_only)
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
    rows, where = _read(session, team, None, date_from, date_to, source, 0, cluster, now)
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
    rows, where = _read(session, team, by, date_from, date_to, source, limit, cluster, now)
    return Breakdown(
        (
            BreakdownRow(
                value=value or None,
                visitors=int(visitors),
                views=int(views),
                sessions=int(sessions),
                bounce_rate=_rate(int(bounces or 0), int(sessions)),
            )
            for value, visitors, views, sessions, bounces in rows
        ),
        where,
    )
