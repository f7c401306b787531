"""Dashboard queries in a team's own timezone: from the pre-aggregated tables, or straight
from raw events with the same definitions (the reference the accuracy checks use)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from web_analytics.warehouse.connection import Session
from web_analytics.warehouse.errors import ConfigurationError
from web_analytics.warehouse.schema import ALL, BREAKDOWN_DIMENSIONS, EVENTS, STATS
from web_analytics.warehouse.sessions import sessions_parameters, sessions_query

SOURCES = ("preaggregated", "raw")
# Rows a breakdown returns at most (its LIMIT is bound as a UInt32).
MAX_LIMIT = 1_000_000


@dataclass(frozen=True)
class Overview:
    visitors: int
    views: int
    sessions: int
    avg_session_duration: float | None  # seconds
    bounce_rate: float | None  # 0..1


@dataclass(frozen=True)
class BreakdownRow:
    value: str | None
    visitors: int
    views: int
    sessions: int
    bounce_rate: float | None


def validate_dimension(by: str) -> None:
    if by not in BREAKDOWN_DIMENSIONS:
        raise ConfigurationError(
            f"cannot break down by {by!r}: choose one of {', '.join(BREAKDOWN_DIMENSIONS)}"
        )


def local_bucket_range(timezone: str, date_from: date, date_to: date) -> tuple[datetime, datetime]:
    """UTC instants of local midnight starting ``date_from`` and ending ``date_to``."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(date_from, time(), zone).astimezone(ZoneInfo("UTC"))
    end = datetime.combine(date_to + timedelta(days=1), time(), zone).astimezone(ZoneInfo("UTC"))
    return start, end


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# Dashboards read the stats table alone: it holds every metric (the bounces table is a
# projection of it), so one read of the team's rows answers each query; this filter selects
# them (the benchmark also reads them bare, as the least any dashboard query costs).
PREAGGREGATED_FILTER = """team_id = {team_id:UInt64} AND dimension = {dimension:String}
      AND period_bucket >= {bucket_from:DateTime('UTC')}
      AND period_bucket < {bucket_to:DateTime('UTC')}"""

_PREAGGREGATED_BREAKDOWN = f"""
SELECT value, uniqMerge(visitors) AS visitors, sum(views) AS views, sum(sessions),
    sum(bounces)
FROM {{stats:Identifier}}
WHERE {PREAGGREGATED_FILTER}
GROUP BY value
ORDER BY visitors DESC, views DESC, value
LIMIT {{limit:UInt32}}
"""

_PREAGGREGATED_OVERVIEW = f"""
SELECT uniqMerge(visitors), sum(views), sum(sessions), sum(bounces), sum(total_duration_us)
FROM {{stats:Identifier}}
WHERE {PREAGGREGATED_FILTER}
"""


def _raw_overview_sql(timezone_count: int, events: str) -> str:
    return f"""
SELECT uniqExact(person), sum(pageviews), count(), sum(is_bounce), sum(duration_us)
FROM ({sessions_query(timezone_count, events)})
"""


def _raw_breakdown_sql(timezone_count: int, events: str, by: str) -> str:
    # ``by`` is checked against BREAKDOWN_DIMENSIONS before it gets here.
    if by == "pathname":
        expand = "ARRAY JOIN path_names AS value, path_views AS value_views"
    else:
        expand = f"ARRAY JOIN [{by}] AS value, [pageviews] AS value_views"
    return f"""
SELECT value, uniqExact(person) AS visitors, sum(value_views) AS views, count() AS sessions,
    sum(is_bounce)
FROM ({sessions_query(timezone_count, events)})
{expand}
GROUP BY value
ORDER BY visitors DESC, views DESC, value
LIMIT {{limit:UInt32}}
"""


def _preaggregated_parameters(
    team_id: int,
    dimension: str,
    bucket_from: datetime,
    bucket_to: datetime,
) -> dict[str, object]:
    return {
        "stats": STATS,
        "team_id": team_id,
        "dimension": dimension,
        "bucket_from": bucket_from,
        "bucket_to": bucket_to,
    }


def overview(
    session: Session,
    team_id: int,
    timezone: str,
    date_from: date,
    date_to: date,
    source: str,
) -> Overview:
    bucket_from, bucket_to = local_bucket_range(timezone, date_from, date_to)
    if source == "preaggregated":
        parameters = _preaggregated_parameters(team_id, ALL, bucket_from, bucket_to)
        row = session.query(_PREAGGREGATED_OVERVIEW, parameters)[0]
    else:
        count, parameters = sessions_parameters({team_id: timezone}, bucket_from, bucket_to)
        row = session.query(_raw_overview_sql(count, EVENTS), parameters)[0]
    visitors, views, sessions, bounces, duration_us = (int(v or 0) for v in row)
    return Overview(
        visitors=visitors,
        views=views,
        sessions=sessions,
        avg_session_duration=(duration_us / sessions / 1_000_000 if sessions else None),
        bounce_rate=_rate(bounces, sessions),
    )


def breakdown(
    session: Session,
    team_id: int,
    timezone: str,
    by: str,
    date_from: date,
    date_to: date,
    source: str,
    limit: int,
) -> list[BreakdownRow]:
    bucket_from, bucket_to = local_bucket_range(timezone, date_from, date_to)
    if source == "preaggregated":
        parameters = _preaggregated_parameters(team_id, by, bucket_from, bucket_to)
        rows = session.query(_PREAGGREGATED_BREAKDOWN, {**parameters, "limit": limit})
    else:
        count, parameters = sessions_parameters({team_id: timezone}, bucket_from, bucket_to)
        parameters["limit"] = limit
        rows = session.query(_raw_breakdown_sql(count, EVENTS, by), parameters)
    return [
        BreakdownRow(
            value=value or None,
            visitors=int(visitors),
            views=int(views),
            sessions=int(sessions),
            bounce_rate=_rate(int(bounces or 0), int(sessions)),
        )
        for value, visitors, views, sessions, bounces in rows
    ]
