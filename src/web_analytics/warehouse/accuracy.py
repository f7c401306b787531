"""Pre-aggregated totals compared with the raw computation, per team and UTC day."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from web_analytics.warehouse.connection import Session
from web_analytics.warehouse.schema import ALL, EVENTS, TABLE_METRICS
from web_analytics.warehouse.sessions import sessions_parameters, sessions_query

# Visitors are approximate (uniq states) and may differ by this share; the rest exactly.
VISITORS_TOLERANCE = 0.01


@dataclass(frozen=True)
class Discrepancy:
    team_id: int
    day: date
    metric: str
    preaggregated: int
    raw: int


@dataclass(frozen=True)
class AccuracyReport:
    table: str
    first_day: date
    last_day: date
    teams_checked: int
    discrepancies: list[Discrepancy]

    @property
    def passed(self) -> bool:
        return not self.discrepancies


_PREAGGREGATED = {
    table: "SELECT team_id, toDate(period_bucket) AS day, "
    + ", ".join(
        "uniqMerge(visitors)" if metric == "visitors" else f"sum({metric})"
        for metric in TABLE_METRICS[table]
    )
    + " FROM {table:Identifier}"
    for table in TABLE_METRICS
}
_PREAGGREGATED_FILTER = """
WHERE dimension = {dimension:String} AND team_id IN {team_ids:Array(UInt64)}
  AND day BETWEEN {first_day:Date} AND {last_day:Date}
GROUP BY team_id, day"""


def _raw_sql(timezone_count: int, events: str) -> str:
    return f"""
SELECT team_id, toDate(period_bucket) AS day, uniqExact(person), sum(pageviews), count(),
    sum(is_bounce), sum(duration_us)
FROM ({sessions_query(timezone_count, events)})
GROUP BY team_id, day"""


def _differs(metric: str, preaggregated: int, raw: int) -> bool:
    if metric == "visitors":
        return abs(preaggregated - raw) > VISITORS_TOLERANCE * max(raw, 1)
    return preaggregated != raw


def compare_with_raw(
    session: Session,
    table: str,
    team_timezones: dict[int, str],
    first_day: date,
    last_day: date,
) -> AccuracyReport:
    """Every team and day where ``table`` disagrees with the raw events."""
    parameters = {
        "table": table,
        "dimension": ALL,
        "team_ids": sorted(team_timezones),
        "first_day": first_day,
        "last_day": last_day,
    }
    metrics = TABLE_METRICS[table]
    preaggregated = {
        (int(team), day): dict(zip(metrics, map(int, values), strict=True))
        for team, day, *values in session.query(
            _PREAGGREGATED[table] + _PREAGGREGATED_FILTER, parameters
        )
    }
    bucket_from = datetime.combine(first_day, datetime.min.time(), UTC)
    bucket_to = datetime.combine(last_day + timedelta(days=1), datetime.min.time(), UTC)
    count, raw_parameters = sessions_parameters(team_timezones, bucket_from, bucket_to)
    raw: dict[tuple[int, date], dict[str, int]] = {}
    for team, day, visitors, views, sessions, bounces, duration in session.query(
        _raw_sql(count, EVENTS), raw_parameters
    ):
        all_metrics = {
            "visitors": visitors,
            "views": views,
            "sessions": sessions,
            "bounces": bounces,
            "total_duration_us": duration,
        }
        raw[(int(team), day)] = {metric: int(all_metrics[metric]) for metric in metrics}
    zero = dict.fromkeys(metrics, 0)
    discrepancies = [
        Discrepancy(team, day, metric, pre.get(metric, 0), expected)
        for team, day in sorted(set(preaggregated) | set(raw))
        for pre, ref in [(preaggregated.get((team, day), zero), raw.get((team, day), zero))]
        for metric, expected in ref.items()
        if _differs(metric, pre[metric], expected)
    ]
    return AccuracyReport(table, first_day, last_day, len(team_timezones), discrepancies)
