"""Gap detection and coverage: the state of every enabled team and UTC day in a window, for
each pre-aggregated table, from the per-day source summary and the backfill status records.

Never reads raw events, and costs the same two queries whatever the number of teams and days.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from itertools import groupby

from web_analytics.warehouse.connection import Session
from web_analytics.warehouse.schema import (
    ALL,
    BACKFILL_STATUS,
    COVERAGE,
    PRE_AGGREGATED_TABLES,
    SOURCE_DAY_SUMMARY,
)
from web_analytics.warehouse.source import SOURCE_FINGERPRINTS


class DayState(StrEnum):
    EMPTY = "empty"  # no source pageviews: never a gap
    MISSING = "missing"  # source has pageviews, the table has none for the team and day
    STALE = "stale"  # computed, but the source changed afterwards
    FAILED = "failed"  # the last attempt failed (or died) and the day is not complete
    COMPLETE = "complete"


NEEDS_BACKFILL = frozenset({DayState.MISSING, DayState.STALE, DayState.FAILED})


@dataclass(frozen=True)
class DayStatus:
    team_id: int
    day: date
    table: str
    state: DayState


@dataclass(frozen=True)
class GapRange:
    """Consecutive days of one team and table in one state."""

    team_id: int
    table: str
    first_day: date
    last_day: date
    state: DayState

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1

    def __str__(self) -> str:
        if self.first_day == self.last_day:
            return str(self.first_day)
        return f"{self.first_day} to {self.last_day}"


@dataclass(frozen=True)
class GapReport:
    """The state of every enabled team, UTC day and table in ``[first_day, last_day]``."""

    first_day: date
    last_day: date
    team_ids: tuple[int, ...]
    days: list[DayStatus]
    # Per UTC day needing backfill: a key that changes when its source data or its latest
    # attempt changes, so a day that goes stale (or fails) again is launched again.
    day_keys: dict[date, str] = field(default_factory=dict)
    queries: int = 0

    def by_state(self, state: DayState | str) -> list[DayStatus]:
        return [status for status in self.days if status.state == DayState(state)]

    def counts(self) -> dict[str, dict[DayState, int]]:
        """Number of team-days per table and state (every state present, zero or not)."""
        counter = Counter((status.table, status.state) for status in self.days)
        return {
            table: {state: counter[(table, state)] for state in DayState}
            for table in PRE_AGGREGATED_TABLES
        }

    @property
    def needing_backfill(self) -> list[date]:
        """Sorted UTC days with at least one missing, stale or failed team and table."""
        return sorted({status.day for status in self.days if status.state in NEEDS_BACKFILL})

    def ranges(self, states: Iterable[DayState | str] | None = None) -> list[GapRange]:
        """Runs of consecutive days per team and table in one state (all states by default)."""
        wanted = {DayState(state) for state in states} if states is not None else set(DayState)
        ordered = sorted(
            (s for s in self.days if s.state in wanted), key=lambda s: (s.team_id, s.table, s.day)
        )
        ranges: list[GapRange] = []
        for (team, table), statuses in groupby(ordered, key=lambda s: (s.team_id, s.table)):
            for status in statuses:
                last = ranges[-1] if ranges else None
                if (
                    last is not None
                    and (last.team_id, last.table, last.state) == (team, table, status.state)
                    and last.last_day + timedelta(days=1) == status.day
                ):
                    ranges[-1] = GapRange(team, table, last.first_day, status.day, status.state)
                else:
                    ranges.append(GapRange(team, table, status.day, status.day, status.state))
        return ranges


@dataclass(frozen=True)
class CoverageReport:
    first_day: date
    last_day: date
    rows_written: int
    counts: dict[str, dict[DayState, int]]
    computed_at: datetime


def _detection_sql(check_partitions: bool) -> str:
    """Every non-empty (team, day) of the window, per table, with its state; empty team-days
    are all the others, so they need no row. A day written but whose partition is gone
    (dropped by hand) counts as missing; on a cluster the parts live on other nodes, so the
    status records are trusted there."""
    has_data = "attempts.computed AND mapContains(computed_fingerprints, source.team_id)"
    if check_partitions:
        has_data += " AND partitions.day != toDate(0)"
    return f"""
WITH
source AS
(
    SELECT team_id, day, sum(pageviews) AS pageviews
    FROM {SOURCE_DAY_SUMMARY}
    WHERE team_id IN {{team_ids:Array(UInt64)}}
      AND day BETWEEN {{first_day:Date}} AND {{last_day:Date}}
    GROUP BY team_id, day
    HAVING pageviews > 0
),
fingerprints AS ({SOURCE_FINGERPRINTS}),
attempts AS
(
    SELECT table, day,
        argMax(status, started_at) AS last_status,
        argMax(run_id, started_at) AS last_run_id,
        countIf(status = 'succeeded') > 0 AS computed,
        argMaxIf(source_fingerprints, started_at, status = 'succeeded') AS computed_fingerprints
    FROM {BACKFILL_STATUS} FINAL
    WHERE day BETWEEN {{first_day:Date}} AND {{last_day:Date}}
    GROUP BY table, day
),
partitions AS
(
    SELECT DISTINCT table, toDate(parseDateTime(partition_id, '%Y%m%d')) AS day
    FROM system.parts
    WHERE active AND database = currentDatabase() AND table IN {{tables:Array(String)}}
)
SELECT
    source.team_id,
    source.day,
    tables.table,
    source.pageviews,
    fingerprints.fingerprint,
    attempts.last_run_id,
    multiIf(
        ({has_data}) AND computed_fingerprints[source.team_id] = fingerprints.fingerprint,
            'complete',
        attempts.last_status IN ('failed', 'started'), 'failed',
        {has_data}, 'stale',
        'missing'
    ) AS state
FROM source
CROSS JOIN (SELECT arrayJoin({{tables:Array(String)}}) AS table) AS tables
LEFT JOIN fingerprints ON fingerprints.team_id = source.team_id AND fingerprints.day = source.day
LEFT JOIN attempts ON attempts.table = tables.table AND attempts.day = source.day
LEFT JOIN partitions ON partitions.table = tables.table AND partitions.day = source.day
SETTINGS join_use_nulls = 0
"""


def _day_key(entries: list[tuple[int, int, str]]) -> str:
    digest = hashlib.sha1(repr(sorted(entries)).encode(), usedforsecurity=False)
    return digest.hexdigest()[:16]


def detect(
    session: Session,
    team_ids: list[int],
    first_day: date,
    last_day: date,
    cluster: str | None,
) -> tuple[GapReport, dict[tuple[int, date], int]]:
    """The gap report, and the source pageviews of each non-empty (team, day)."""
    rows = (
        session.query(
            _detection_sql(check_partitions=cluster is None),
            {
                "team_ids": team_ids,
                "first_day": first_day,
                "last_day": last_day,
                "tables": list(PRE_AGGREGATED_TABLES),
            },
        )
        if team_ids
        else []
    )
    states: dict[tuple[int, date, str], DayState] = {}
    pageviews: dict[tuple[int, date], int] = {}
    key_parts: dict[date, list[tuple[int, int, str]]] = {}
    for team, day, table, views, fingerprint, last_run, state in rows:
        states[(int(team), day, table)] = DayState(state)
        pageviews[(int(team), day)] = int(views)
        key_parts.setdefault(day, []).append((int(team), int(fingerprint), last_run))
    window = [first_day + timedelta(days=i) for i in range((last_day - first_day).days + 1)]
    days = [
        DayStatus(team, day, table, states.get((team, day, table), DayState.EMPTY))
        for team in team_ids
        for table in PRE_AGGREGATED_TABLES
        for day in window
    ]
    report = GapReport(
        first_day=first_day,
        last_day=last_day,
        team_ids=tuple(team_ids),
        days=days,
        day_keys={day: _day_key(parts) for day, parts in key_parts.items()},
        queries=1,
    )
    return report, pageviews


_AGGREGATED_PAGEVIEWS = f"""
SELECT team_id, toDate(period_bucket) AS day, sum(views)
FROM {{table:Identifier}}
WHERE dimension = '{ALL}' AND team_id IN {{team_ids:Array(UInt64)}}
  AND day BETWEEN {{first_day:Date}} AND {{last_day:Date}}
GROUP BY team_id, day
"""


def write_coverage(
    session: Session,
    report: GapReport,
    source_pageviews: dict[tuple[int, date], int],
    computed_at: datetime,
) -> CoverageReport:
    """Store one coverage row per team, day and table of the report."""
    aggregated: dict[tuple[str, int, date], int] = {}
    for table in PRE_AGGREGATED_TABLES:
        for team, day, views in session.query(
            _AGGREGATED_PAGEVIEWS,
            {
                "table": table,
                "team_ids": list(report.team_ids),
                "first_day": report.first_day,
                "last_day": report.last_day,
            },
        ):
            aggregated[(table, int(team), day)] = int(views)
    statuses = report.days
    session.insert_columns(
        COVERAGE,
        {
            "table": [s.table for s in statuses],
            "team_id": [s.team_id for s in statuses],
            "day": [s.day for s in statuses],
            "source_pageviews": [source_pageviews.get((s.team_id, s.day), 0) for s in statuses],
            "aggregated_pageviews": [
                aggregated.get((s.table, s.team_id, s.day), 0) for s in statuses
            ],
            "state": [str(s.state) for s in statuses],
            "computed_at": [computed_at] * len(statuses),
        },
    )
    return CoverageReport(
        report.first_day, report.last_day, len(statuses), report.counts(), computed_at
    )
