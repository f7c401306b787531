"""Pre-aggregated totals compared with the raw computation, per team and UTC day, and the
record of each check's outcome that gap detection reads (a failed day is ``inaccurate``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from web_analytics.warehouse.connection import Session
from web_analytics.warehouse.schema import (
    ACCURACY_CHECKS,
    ALL,
    DAILY_STATS,
    DAILY_VISITORS,
    EVENTS,
    HOURLY_VISITORS,
    STATS,
    TABLE_METRICS,
    with_combinator,
)
from web_analytics.warehouse.sessions import sessions_parameters, sessions_query

# Visitors are approximate (sketches) and may differ by this share; the rest exactly.
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

    def inaccurate_teams(self, day: date) -> list[int]:
        """Teams whose numbers differ from the raw events on ``day``."""
        return sorted({d.team_id for d in self.discrepancies if d.day == day})

    def for_day(self, day: date) -> AccuracyReport:
        """The part of this report that concerns one day."""
        return AccuracyReport(
            self.table,
            day,
            day,
            self.teams_checked,
            [d for d in self.discrepancies if d.day == day],
        )


_VISITORS = {DAILY_STATS: DAILY_VISITORS}
_PREAGGREGATED = {
    table: "SELECT team_id, toDate(period_bucket) AS utc_day, "
    + ", ".join(
        f"{with_combinator(_VISITORS.get(table, HOURLY_VISITORS), 'Merge')}(visitors)"
        if metric == "visitors"
        else f"sum({metric})"
        for metric in TABLE_METRICS[table]
    )
    + " FROM {table:Identifier}"
    for table in TABLE_METRICS
}
# The stats table's check covers its day grain too: each UTC day's segments sum to the same
# totals as its hours. A difference there names its metric "views (day grain)" and so on.
_GRAINS = {STATS: ((STATS, ""), (DAILY_STATS, " (day grain)"))}
_PREAGGREGATED_FILTER = """
WHERE dimension = {dimension:String} AND team_id IN {team_ids:Array(UInt64)}
  AND utc_day BETWEEN {first_day:Date} AND {last_day:Date}
GROUP BY team_id, utc_day"""
_RAW_METRICS = ("visitors", "views", "sessions", "bounces", "total_duration_us")


def _raw_sql(timezone_count: int) -> str:
    return f"""
SELECT team_id, toDate(period_bucket) AS day, uniqExact(person), sum(pageviews), count(),
    sum(is_bounce), sum(duration_us)
FROM ({sessions_query(timezone_count, EVENTS)})
GROUP BY team_id, day"""


def _differs(metric: str, preaggregated: int, raw: int) -> bool:
    if metric == "visitors":
        return abs(preaggregated - raw) > VISITORS_TOLERANCE * max(raw, 1)
    return preaggregated != raw


def compare_with_raw(
    session: Session,
    tables: Sequence[str],
    team_timezones: dict[int, str],
    first_day: date,
    last_day: date,
) -> dict[str, AccuracyReport]:
    """Every team and day where each of ``tables`` disagrees with the raw events; the raw
    reference is computed once for all of them."""
    bucket_from = datetime.combine(first_day, datetime.min.time(), UTC)
    bucket_to = datetime.combine(last_day + timedelta(days=1), datetime.min.time(), UTC)
    count, raw_parameters = sessions_parameters(team_timezones, bucket_from, bucket_to)
    raw = {
        (int(team), day): dict(zip(_RAW_METRICS, map(int, values), strict=True))
        for team, day, *values in session.query(_raw_sql(count), raw_parameters)
    }
    return {
        table: _compare(session, table, raw, team_timezones, first_day, last_day)
        for table in tables
    }


def _compare(
    session: Session,
    table: str,
    raw: dict[tuple[int, date], dict[str, int]],
    team_timezones: dict[int, str],
    first_day: date,
    last_day: date,
) -> AccuracyReport:
    discrepancies = []
    for grain, suffix in _GRAINS.get(table, ((table, ""),)):
        parameters = {
            "table": grain,
            "dimension": ALL,
            "team_ids": sorted(team_timezones),
            "first_day": first_day,
            "last_day": last_day,
        }
        metrics = TABLE_METRICS[grain]
        preaggregated = {
            (int(team), day): dict(zip(metrics, map(int, values), strict=True))
            for team, day, *values in session.query(
                _PREAGGREGATED[grain] + _PREAGGREGATED_FILTER, parameters
            )
        }
        zero = dict.fromkeys(_RAW_METRICS, 0)
        discrepancies += [
            Discrepancy(team, day, metric + suffix, pre.get(metric, 0), ref[metric])
            for team, day in sorted(set(preaggregated) | set(raw))
            for pre, ref in [(preaggregated.get((team, day), zero), raw.get((team, day), zero))]
            for metric in metrics
            if _differs(metric, pre.get(metric, 0), ref[metric])
        ]
    return AccuracyReport(table, first_day, last_day, len(team_timezones), discrepancies)


def record_checks(
    session: Session, reports: Sequence[AccuracyReport], checked_at: datetime
) -> None:
    """Store each report's outcome per table and day: gap detection marks the teams that
    differ ``inaccurate`` until the day is computed again."""
    rows = [
        (report.table, day, report.teams_checked, report.inaccurate_teams(day))
        for report in reports
        for day in (
            report.first_day + timedelta(days=i)
            for i in range((report.last_day - report.first_day).days + 1)
        )
    ]
    session.insert_columns(
        ACCURACY_CHECKS,
        {
            "table": [table for table, _, _, _ in rows],
            "day": [day for _, day, _, _ in rows],
            "checked_at": [checked_at] * len(rows),
            "teams_checked": [teams for _, _, teams, _ in rows],
            "inaccurate_teams": [inaccurate for _, _, _, inaccurate in rows],
        },
    )
