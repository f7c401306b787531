"""Gap detection and coverage: the state of every enabled team and UTC day in a window, for
each pre-aggregated table, from the per-day source summary and the backfill status records.

Never reads raw events, and costs the same two queries (after the team list) whatever the
number of teams and days.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from functools import cached_property
from itertools import groupby

from web_analytics.warehouse.connection import Session
from web_analytics.warehouse.schema import (
    ALL,
    BACKFILL_STATUS,
    COVERAGE,
    PRE_AGGREGATED_TABLES,
)
from web_analytics.warehouse.source import SOURCE_DAY_TOTALS, SOURCE_DAYS


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


_LETTERS = {
    "e": DayState.EMPTY,
    "m": DayState.MISSING,
    "s": DayState.STALE,
    "f": DayState.FAILED,
    "c": DayState.COMPLETE,
}
_NEEDS_BACKFILL_LETTERS = frozenset("msf")


@dataclass(frozen=True)
class GapReport:
    """The state of every enabled team, UTC day and table in ``[first_day, last_day]``.

    States are kept as one letter per day for each team and table, so a report over a
    thousand teams and a year stays small; ``days`` lists them as ``DayStatus`` objects.
    """

    first_day: date
    last_day: date
    team_ids: tuple[int, ...]
    # (team_id, table) -> one letter per day of the window (see _LETTERS)
    states: dict[tuple[int, str], str]
    # Per UTC day needing backfill: a key that changes when its source data or its latest
    # attempt changes, so a day that goes stale (or fails) again is launched again.
    day_keys: dict[date, str] = field(default_factory=dict)
    queries: int = 0

    def _day(self, index: int) -> date:
        return self.first_day + timedelta(days=index)

    @cached_property
    def days(self) -> list[DayStatus]:
        return [
            DayStatus(team, self._day(i), table, _LETTERS[letter])
            for (team, table), letters in sorted(self.states.items())
            for i, letter in enumerate(letters)
        ]

    def by_state(self, state: DayState | str) -> list[DayStatus]:
        return [status for status in self.days if status.state == DayState(state)]

    def counts(self) -> dict[str, dict[DayState, int]]:
        """Number of team-days per table and state (every state present, zero or not)."""
        counts = {table: dict.fromkeys(DayState, 0) for table in PRE_AGGREGATED_TABLES}
        for (_, table), letters in self.states.items():
            for letter, state in _LETTERS.items():
                counts[table][state] += letters.count(letter)
        return counts

    @property
    def needing_backfill(self) -> list[date]:
        """Sorted UTC days with at least one missing, stale or failed team and table."""
        indexes = {
            i
            for letters in self.states.values()
            if not _NEEDS_BACKFILL_LETTERS.isdisjoint(letters)
            for i, letter in enumerate(letters)
            if letter in _NEEDS_BACKFILL_LETTERS
        }
        return [self._day(i) for i in sorted(indexes)]

    def ranges(self, states: Iterable[DayState | str] | None = None) -> list[GapRange]:
        """Runs of consecutive days per team and table in one state (all states by default),
        ordered by team, table and first day."""
        wanted = {DayState(state) for state in states} if states is not None else set(DayState)
        ranges = []
        for (team, table), letters in sorted(self.states.items()):
            index = 0
            for letter, run in groupby(letters):
                length = len(list(run))
                if _LETTERS[letter] in wanted:
                    first, last = self._day(index), self._day(index + length - 1)
                    ranges.append(GapRange(team, table, first, last, _LETTERS[letter]))
                index += length
        return ranges


@dataclass(frozen=True)
class CoverageReport:
    first_day: date
    last_day: date
    rows_written: int
    counts: dict[str, dict[DayState, int]]
    computed_at: datetime


# Per table and UTC day of the window: the latest attempt, whether its partition exists, and
# whether every team is unchanged since the latest success (one comparison per day:
# fingerprints add up). Team fingerprints are unpacked only for days whose total changed.
_DAYS = f"""
current AS ({SOURCE_DAY_TOTALS}),
attempts AS
(
    SELECT table, day,
        argMax(status, started_at) AS last_status,
        argMax(run_id, started_at) AS last_run_id,
        countIf(status = 'succeeded') > 0 AS computed,
        argMaxIf(source_fingerprints, started_at, status = 'succeeded') AS recorded,
        argMaxIf(source_fingerprint_total, started_at, status = 'succeeded') AS recorded_total
    FROM {BACKFILL_STATUS} FINAL
    WHERE day BETWEEN {{first_day:Date}} AND {{last_day:Date}}
    GROUP BY table, day
),
partitions AS
(
    SELECT DISTINCT table, toDate(parseDateTime(partition_id, '%Y%m%d')) AS day
    FROM system.parts
    WHERE active AND database = currentDatabase() AND table IN {{tables:Array(String)}}
),
days AS
(
    SELECT attempts.table AS table, attempts.day AS day, last_status, last_run_id,
        current.total AS total,
        computed AND ({{trust_records:Bool}} OR partitions.day = attempts.day) AS written,
        written AND recorded_total = current.total AS unchanged
    FROM attempts
    LEFT JOIN current ON current.day = attempts.day
    LEFT JOIN partitions ON partitions.table = attempts.table AND partitions.day = attempts.day
),
recorded AS
(
    SELECT table, day, team_id, fingerprint
    FROM
    (
        SELECT table, day, recorded FROM attempts
        WHERE (table, day) IN (SELECT table, day FROM days WHERE written AND NOT unchanged)
    )
    ARRAY JOIN mapKeys(recorded) AS team_id, mapValues(recorded) AS fingerprint
)"""
# A written day whose partition is gone (dropped by hand) counts as missing again; on a
# cluster the parts live on other nodes, so the status records are trusted there.

# One row per team with traffic and table: a letter per day of the window, 'e' (empty) where
# the team had no events.
_STATES = f"""
WITH {_DAYS},
source AS ({SOURCE_DAYS})
SELECT team_id, table,
    arrayStringConcat(groupArrayInsertAt('e', {{day_count:UInt32}})(letter, offset))
FROM
(
    SELECT source.team_id AS team_id, tables.table AS table,
        toUInt32(source.day - {{first_day:Date}}) AS offset,
        recorded.day = source.day AS was_computed,
        multiIf(
            source.pageviews = 0, 'e',
            days.unchanged, 'c',
            was_computed AND recorded.fingerprint = source.fingerprint, 'c',
            days.last_status IN ('failed', 'started'), 'f',
            was_computed, 's',
            'm'
        ) AS letter
    FROM source
    CROSS JOIN (SELECT arrayJoin({{tables:Array(String)}}) AS table) AS tables
    LEFT JOIN days ON days.table = tables.table AND days.day = source.day
    LEFT JOIN recorded
        ON recorded.table = tables.table AND recorded.day = source.day
        AND recorded.team_id = source.team_id
)
GROUP BY team_id, table
SETTINGS join_use_nulls = 0
"""

_DAY_KEYS = f"""
WITH {_DAYS}
SELECT day, groupArray((table, total, last_run_id)) FROM days GROUP BY day
SETTINGS join_use_nulls = 0
"""


def detect(
    session: Session, team_ids: list[int], first_day: date, last_day: date, cluster: str | None
) -> GapReport:
    """The gap report of ``team_ids`` over ``[first_day, last_day]``, in two queries."""
    parameters = {
        "team_ids": team_ids,
        "first_day": first_day,
        "last_day": last_day,
        "tables": list(PRE_AGGREGATED_TABLES),
        "trust_records": cluster is not None,
        "day_count": (last_day - first_day).days + 1,
    }
    no_traffic = "e" * parameters["day_count"]
    states = {(team, table): no_traffic for team in team_ids for table in PRE_AGGREGATED_TABLES}
    if team_ids:
        for team, table, letters in session.query(_STATES, parameters):
            states[(int(team), table)] = letters
    report = GapReport(first_day, last_day, tuple(team_ids), states, queries=1)
    needing = set(report.needing_backfill)
    day_keys = {
        day: hashlib.sha1(repr(sorted(entries)).encode(), usedforsecurity=False).hexdigest()[:16]
        for day, entries in session.query(_DAY_KEYS, parameters)
        if day in needing
    }
    return dataclasses.replace(report, day_keys=day_keys, queries=2)


_AGGREGATED_PAGEVIEWS = f"""
SELECT team_id, toDate(period_bucket) AS day, sum(views)
FROM {{table:Identifier}}
WHERE dimension = '{ALL}' AND team_id IN {{team_ids:Array(UInt64)}}
  AND day BETWEEN {{first_day:Date}} AND {{last_day:Date}}
GROUP BY team_id, day
"""


def write_coverage(session: Session, report: GapReport, computed_at: datetime) -> CoverageReport:
    """Store one coverage row per team, day and table of the report."""
    window = {
        "team_ids": list(report.team_ids),
        "first_day": report.first_day,
        "last_day": report.last_day,
    }
    source = {
        (int(team), day): int(views)
        for team, day, views in session.query(
            f"SELECT team_id, day, pageviews FROM ({SOURCE_DAYS})", window
        )
    }
    aggregated = {
        (table, int(team), day): int(views)
        for table in PRE_AGGREGATED_TABLES
        for team, day, views in session.query(_AGGREGATED_PAGEVIEWS, {**window, "table": table})
    }
    statuses = report.days
    session.insert_columns(
        COVERAGE,
        {
            "table": [s.table for s in statuses],
            "team_id": [s.team_id for s in statuses],
            "day": [s.day for s in statuses],
            "source_pageviews": [source.get((s.team_id, s.day), 0) for s in statuses],
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
