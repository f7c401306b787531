"""Gap detection and coverage: the state of every enabled team and UTC day in a window, for
each pre-aggregated table, from the per-day source summary and the backfill status records.

Never reads raw events, and costs the same two queries whatever the number of teams and
days.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import cached_property
from itertools import groupby

from web_analytics.warehouse.connection import Session
from web_analytics.warehouse.schema import (
    ACCURACY_CHECKS,
    ALL,
    BACKFILL_STATUS,
    COVERAGE,
    GRAIN_OWNERS,
    PRE_AGGREGATED_TABLES,
    SOURCE_DAY_SUMMARY,
    TEAMS,
    WRITTEN_TABLES,
)
from web_analytics.warehouse.source_summary import (
    SOURCE_DAY_TOTALS,
    SOURCE_DAYS,
    TEAM_FILTER,
    fingerprint,
)


class DayState(StrEnum):
    EMPTY = "empty"  # no source pageviews: never a gap
    MISSING = "missing"  # source has pageviews, the table has none for the team and day
    STALE = "stale"  # computed, but the source changed afterwards
    FAILED = "failed"  # the last attempt failed (or died) and the day is not complete
    RUNNING = "running"  # an attempt is in flight and within its maximum runtime
    INACCURATE = "inaccurate"  # computed, but its accuracy check against raw events failed
    COMPLETE = "complete"


NEEDS_BACKFILL = frozenset({DayState.MISSING, DayState.STALE, DayState.FAILED, DayState.INACCURATE})
# An attempt still 'started' after this long is taken for dead (its run worker died).
DEFAULT_MAX_RUNTIME = timedelta(hours=4)


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
    "r": DayState.RUNNING,
    "i": DayState.INACCURATE,
    "c": DayState.COMPLETE,
}
_NEEDS_BACKFILL = re.compile("[msfi]")


@dataclass(frozen=True)
class DayFailures:
    """Consecutive failed attempts of a day since its latest success, and when the latest
    one ended: what backfill backs off on."""

    count: int
    last_failed_at: datetime


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
    # Per UTC day needing backfill whose latest attempts failed: how many, and when.
    failures: dict[date, DayFailures] = field(default_factory=dict)
    queries: int = 0

    def with_extra_queries(self, count: int) -> GapReport:
        """The same report, counting ``count`` more queries spent on it."""
        return dataclasses.replace(self, queries=self.queries + count)

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

    @cached_property
    def needing_backfill(self) -> list[date]:
        """Sorted UTC days with at least one missing, stale or failed team and table."""
        # Most teams share a history letter for letter: each distinct one is searched once.
        indexes = {
            match.start()
            for letters in set(self.states.values())
            for match in _NEEDS_BACKFILL.finditer(letters)
        }
        return [self._day(i) for i in sorted(indexes)]

    def teams_needing_backfill(self, day: date) -> set[int]:
        """Teams with a missing, stale, failed or inaccurate table on ``day``."""
        index = (day - self.first_day).days
        return {
            team
            for (team, _), letters in self.states.items()
            if 0 <= index < len(letters) and _NEEDS_BACKFILL.match(letters[index])
        }

    def failing_days(self, max_failures: int) -> list[date]:
        """Days needing backfill whose last ``max_failures`` attempts or more all failed."""
        return sorted(day for day, f in self.failures.items() if f.count >= max_failures)

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


# Per table and UTC day of the window: the latest attempt, whether its partition exists,
# whether every team is unchanged since the latest success (one comparison per day:
# fingerprints add up), the failures since that success, and the teams the latest accuracy
# check after it found wrong. Small: one row per table and day, whatever the number of teams.
_DAYS = f"""
WITH
current AS ({SOURCE_DAY_TOTALS}),
attempts AS
(
    SELECT table, day,
        argMax(status, started_at) AS last_status,
        argMax(run_id, started_at) AS last_run_id,
        max(started_at) AS last_started_at,
        countIf(status = 'succeeded') > 0 AS computed,
        maxIf(started_at, status = 'succeeded') AS succeeded_at,
        argMax(failed_teams, started_at) AS last_failed_teams,
        maxIf(started_at, status = 'succeeded' AND empty(failed_teams)) AS clean_success_at,
        argMaxIf(run_id, started_at, status = 'succeeded') AS recorded_run_id,
        argMaxIf(source_fingerprint_total, started_at, status = 'succeeded') AS recorded_total,
        arrayCount((s, t, f) -> (s != 'succeeded' OR notEmpty(f)) AND t > clean_success_at,
            groupArray(status), groupArray(started_at), groupArray(failed_teams))
            AS attempts_since_success,
        max(ifNull(finished_at, started_at)) AS last_finished_at
    FROM {BACKFILL_STATUS} FINAL
    WHERE day BETWEEN {{first_day:Date}} AND {{last_day:Date}}
    GROUP BY table, day
),
checks AS
(
    SELECT table, day, argMax(inaccurate_teams, checked_at) AS teams, max(checked_at) AS at
    FROM {ACCURACY_CHECKS}
    WHERE day BETWEEN {{first_day:Date}} AND {{last_day:Date}}
    GROUP BY table, day
),
partitions AS
(
    -- a table's day is there if the partitions of all its grains are
    SELECT transform(grain, {{grains:Array(String)}}, {{grain_owners:Array(String)}}, grain)
        AS table, day
    FROM
    (
        SELECT DISTINCT table AS grain, toDate(parseDateTime(partition_id, '%Y%m%d')) AS day
        FROM system.parts
        WHERE active AND database = currentDatabase() AND table IN {{written:Array(String)}}
    )
    GROUP BY table, day
    HAVING count() = 1 + countEqual({{grain_owners:Array(String)}}, table)
)
SELECT attempts.table, attempts.day, last_status, last_run_id, recorded_run_id, current.total,
    computed AND ({{trust_records:Bool}} OR partitions.day = attempts.day) AS written,
    written AND recorded_total = current.total AS unchanged,
    last_status = 'started' AND last_started_at >= {{running_since:DateTime64(6, 'UTC')}}
        AS running,
    if(last_status = 'succeeded' AND empty(last_failed_teams), 0,
        attempts_since_success - toUInt64(running)) AS failures,
    last_finished_at,
    if(checks.at > succeeded_at, checks.teams, []) AS inaccurate_teams,
    if(running, [], mapKeys(last_failed_teams)) AS failed_teams
FROM attempts
LEFT JOIN current ON current.day = attempts.day
LEFT JOIN partitions ON partitions.table = attempts.table AND partitions.day = attempts.day
LEFT JOIN checks ON checks.table = attempts.table AND checks.day = attempts.day
SETTINGS join_use_nulls = 0
"""
# A written day whose partition is gone (dropped by hand, or a day grain never written: days
# computed before it existed) counts as missing again; on a cluster the parts live on other
# nodes, so the status records are trusted there.
_GRAIN_PARAMETERS = {
    "written": list(WRITTEN_TABLES),
    "grains": list(GRAIN_OWNERS),
    "grain_owners": list(GRAIN_OWNERS.values()),
}

# A day's code per table, from _DAYS: 'r' an attempt in flight; 'c' unchanged; 'x' written
# but changed ('X' when the latest attempt then failed or died); 'f' not written and the
# latest attempt failed or died; 'm' not written. Team fingerprints are compared only on
# 'x' and 'X' days. An attempt 'started' but no longer running died with its run worker.
_FAILED_STATUSES = ("failed", "started")


def _day_code(written: bool, unchanged: bool, last_status: str, running: bool) -> str:
    failed = last_status in _FAILED_STATUSES
    if running:
        return "r"
    if unchanged:
        return "c"
    if written:
        return "X" if failed else "x"
    return "f" if failed else "m"


# Per team the filter keeps (with events or in the registry), from one scan of its summary
# rows: the days of the window without pageviews, its fingerprints on the days that changed
# since they were computed, and what the latest success of those days recorded for it.
# Registry teams join the scan as rows outside the window, so a team without events is
# listed too and the summary is grouped once.
_TEAMS = f"""
WITH
source AS
(
    SELECT team_id,
        groupArrayIf(toUInt32(day - {{first_day:Date}}), pageviews > 0
            AND day BETWEEN {{first_day:Date}} AND {{last_day:Date}}) AS present,
        sumMapIf(
            ([toUInt32(day - {{first_day:Date}})], [content_hash], [next_first_hour_hash]),
            day IN {{changed_days:Array(Date)}}
        ) AS hashes
    FROM
    (
        SELECT team_id, day, pageviews, content_hash, next_first_hour_hash
        FROM {SOURCE_DAY_SUMMARY}
        UNION ALL
        SELECT team_id, toDate(0), 0, 0, 0 FROM {TEAMS}
    )
    WHERE {TEAM_FILTER}
    GROUP BY team_id
),
recorded AS
(
    SELECT team_id,
        groupArray(toUInt8(indexOf({{tables:Array(String)}}, table))) AS table_numbers,
        groupArray(toUInt32(day - {{first_day:Date}})) AS offsets,
        groupArray(fingerprint) AS fingerprints
    FROM {BACKFILL_STATUS}
    ARRAY JOIN
        mapKeys(source_fingerprints) AS team_id, mapValues(source_fingerprints) AS fingerprint
    WHERE day IN {{changed_days:Array(Date)}} AND status = 'succeeded'
      AND has({{recorded_runs:Array(String)}}, concat(table, ' ', toString(day), ' ', run_id))
    GROUP BY team_id
)
SELECT source.team_id,
    arrayExcept(range({{day_count:UInt32}}), source.present),
    source.hashes.1,
    arrayMap((c, n) -> {fingerprint("c", "n")}, source.hashes.2, source.hashes.3),
    recorded.table_numbers, recorded.offsets, recorded.fingerprints
FROM source
LEFT JOIN recorded ON recorded.team_id = source.team_id
ORDER BY source.team_id
SETTINGS join_use_nulls = 0
"""


def _changed_letter(code: int, current: int | None, recorded: int | None) -> int:
    """A team's letter on an 'x' or 'X' day: its fingerprint against the recorded one."""
    if recorded is not None and recorded == current:
        return ord("c")
    if code == ord("X"):
        return ord("f")
    return ord("s" if recorded is not None else "m")


def detect(
    session: Session,
    team_ids: Sequence[int] | None,
    first_day: date,
    last_day: date,
    cluster: str | None,
    now: datetime,
    max_runtime: timedelta = DEFAULT_MAX_RUNTIME,
) -> GapReport:
    """The gap report of ``team_ids`` (``None``: every enabled team) over ``[first_day,
    last_day]``, in two queries: one row per table and day, then one row per team. An
    attempt started within ``max_runtime`` before ``now`` is still running."""
    day_count = (last_day - first_day).days + 1
    parameters: dict[str, object] = {
        "team_ids": list(team_ids or []),
        "all_teams": team_ids is None,
        "first_day": first_day,
        "last_day": last_day,
        "tables": list(PRE_AGGREGATED_TABLES),
        **_GRAIN_PARAMETERS,
        "trust_records": cluster is not None,
        "day_count": day_count,
        "running_since": now - max_runtime,
    }
    codes = {table: bytearray(b"m" * day_count) for table in PRE_AGGREGATED_TABLES}
    attempts: dict[date, list[tuple[str, int, str]]] = {}
    failures: dict[date, DayFailures] = {}
    inaccurate: dict[tuple[str, int], set[int]] = {}
    failed_alone: dict[tuple[str, int], set[int]] = {}  # teams the latest attempt failed
    recorded_runs, changed_days = [], set()
    for (
        table,
        day,
        last_status,
        last_run_id,
        recorded_run,
        total,
        written,
        unchanged,
        running,
        failed_attempts,
        last_finished_at,
        inaccurate_teams,
        failed_teams,
    ) in session.query(_DAYS, parameters):
        code = _day_code(written, unchanged, last_status, running)
        offset = (day - first_day).days
        codes[table][offset] = ord(code)
        attempts.setdefault(day, []).append((table, int(total), last_run_id))
        if failed_attempts and not running:
            last_finished_at = _utc(last_finished_at)
            earlier = failures.get(day)
            failures[day] = DayFailures(
                max(int(failed_attempts), earlier.count if earlier else 0),
                max(last_finished_at, earlier.last_failed_at) if earlier else last_finished_at,
            )
        if inaccurate_teams:
            inaccurate[(table, offset)] = {int(team) for team in inaccurate_teams}
        if failed_teams:
            failed_alone[(table, offset)] = {int(team) for team in failed_teams}
        if code in "xX":
            recorded_runs.append(f"{table} {day} {recorded_run}")
            changed_days.add(day)
    parameters["recorded_runs"] = recorded_runs
    parameters["changed_days"] = sorted(changed_days)
    changed_offsets = sorted((day - first_day).days for day in changed_days)
    states: dict[tuple[int, str], str] = {}
    for (
        team,
        empty_offsets,
        offsets,
        fingerprints,
        recorded_tables,
        recorded_offsets,
        recorded_fingerprints,
    ) in session.query(_TEAMS, parameters):
        current = dict(zip(offsets, fingerprints, strict=True))
        recorded = {
            (PRE_AGGREGATED_TABLES[number - 1], offset): value
            for number, offset, value in zip(
                recorded_tables, recorded_offsets, recorded_fingerprints, strict=True
            )
        }
        for table in PRE_AGGREGATED_TABLES:
            letters = bytearray(codes[table])
            for offset in changed_offsets:
                if letters[offset] in b"xX":
                    letters[offset] = _changed_letter(
                        letters[offset], current.get(offset), recorded.get((table, offset))
                    )
            for (checked_table, offset), teams in inaccurate.items():
                if checked_table == table and team in teams and letters[offset] == ord("c"):
                    letters[offset] = ord("i")
            for (attempted_table, offset), teams in failed_alone.items():
                if attempted_table == table and team in teams:
                    letters[offset] = ord("f")
            for offset in empty_offsets:
                letters[offset] = ord("e")
            states[(int(team), table)] = letters.decode()
    listed = tuple(sorted({team for team, _ in states}))
    report = GapReport(first_day, last_day, listed, states, queries=2)
    needing = report.needing_backfill
    return dataclasses.replace(
        report,
        day_keys={day: _day_key(attempts[day]) for day in needing if day in attempts},
        failures={day: failures[day] for day in needing if day in failures},
    )


def _utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime (the driver may return it naive)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _day_key(attempts: list[tuple[str, int, str]]) -> str:
    """Keyed on each table's source total and latest attempt: a day that changes again, or
    fails again, gets a new key."""
    return hashlib.sha1(repr(sorted(attempts)).encode(), usedforsecurity=False).hexdigest()[:16]


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
        "all_teams": False,
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


# --- one team's days, for dashboard reads ------------------------------------------------------


@dataclass(frozen=True)
class TeamDays:
    """One team's state of each UTC day of a window for one table, as ``detect`` gives it,
    and the latest UTC day from the window's first on that the table was computed for
    (``None``: none)."""

    states: dict[date, DayState]
    last_computed_day: date | None


# ``detect``'s inputs for one team and table, per UTC day, in one grouping of four small reads
# (a dashboard pays for this query on every read, so it avoids _DAYS's joins and FINAL): the
# team's source summary, the status records (``at`` orders them: the latest attempt, and of
# its run the latest version), the accuracy checks and the table's partitions.
_TEAM_DAYS = f"""
SELECT day,
    sumIf(pageviews, part = 'source') AS pageviews,
    sumIf(fingerprint, part = 'source') AS current,
    argMaxIf(status, at, part = 'attempt') AS last_status,
    maxIf(at.1, part = 'attempt') AS last_started_at,
    countIf(part = 'attempt' AND status = 'succeeded') > 0 AS computed,
    argMaxIf((team_recorded, fingerprint), at, part = 'attempt' AND status = 'succeeded')
        AS recorded,
    argMaxIf(team_failed, at, part = 'attempt') AS failed_alone,
    argMaxIf(team_inaccurate, at, part = 'check')
        AND maxIf(at, part = 'check') > maxIf(at, part = 'attempt' AND status = 'succeeded')
        AS inaccurate,
    uniqExactIf(status, part = 'partition')
        = 1 + countEqual({{grain_owners:Array(String)}}, {{table:String}}) AS partition_exists
FROM
(
    SELECT 'source' AS part, day, toUInt64(pageviews) AS pageviews,
        {fingerprint("content_hash", "next_first_hour_hash")} AS fingerprint, '' AS status,
        (toDateTime64(0, 6, 'UTC'), toDateTime64(0, 6, 'UTC')) AS at,
        false AS team_recorded, false AS team_failed, false AS team_inaccurate
    FROM {SOURCE_DAY_SUMMARY}
    WHERE team_id = {{team_id:UInt64}} AND day BETWEEN {{first_day:Date}} AND {{last_day:Date}}
    UNION ALL
    -- every attempt from the first day on, each run's latest version: days after the window
    -- tell whether the table was computed after its missing days
    SELECT 'attempt', day, 0, source_fingerprints[{{team_id:UInt64}}], status,
        (started_at, updated_at), mapContains(source_fingerprints, {{team_id:UInt64}}),
        mapContains(failed_teams, {{team_id:UInt64}}), false
    FROM {BACKFILL_STATUS}
    WHERE table = {{table:String}} AND day >= {{first_day:Date}}
    UNION ALL
    SELECT 'check', day, 0, 0, '', (checked_at, checked_at), false, false,
        has(inaccurate_teams, {{team_id:UInt64}})
    FROM {ACCURACY_CHECKS}
    WHERE table = {{table:String}} AND day BETWEEN {{first_day:Date}} AND {{last_day:Date}}
    UNION ALL
    -- the grain's name in place of a status: the day is there if all its grains are
    SELECT DISTINCT 'partition', toDate(parseDateTime(partition_id, '%Y%m%d')) AS day, 0, 0,
        table, (toDateTime64(0, 6, 'UTC'), toDateTime64(0, 6, 'UTC')), false, false, false
    FROM system.parts
    WHERE active AND database = currentDatabase()
      AND transform(table, {{grains:Array(String)}}, {{grain_owners:Array(String)}}, table)
          = {{table:String}}
      AND day BETWEEN {{first_day:Date}} AND {{last_day:Date}}
)
GROUP BY day
"""


def team_days(
    session: Session,
    team_id: int,
    table: str,
    first_day: date,
    last_day: date,
    cluster: str | None,
    now: datetime,
    max_runtime: timedelta = DEFAULT_MAX_RUNTIME,
) -> TeamDays:
    """The state ``detect`` gives ``team_id`` and ``table`` on each UTC day of ``[first_day,
    last_day]``, in one query: what a dashboard read needs to know before it reads (a test
    keeps the two equal). A disabled team's days are read as any other's, where ``detect``
    leaves disabled teams out."""
    parameters = {
        "team_id": team_id,
        "table": table,
        "first_day": first_day,
        "last_day": last_day,
        **_GRAIN_PARAMETERS,
    }
    running_since = now - max_runtime
    states = dict.fromkeys(
        (first_day + timedelta(days=i) for i in range((last_day - first_day).days + 1)),
        DayState.EMPTY,  # no summary row, no pageviews
    )
    last_computed_day = None
    for (
        day,
        pageviews,
        current,
        last_status,
        last_started_at,
        computed,
        (recorded_found, recorded),
        failed_alone,
        inaccurate,
        partition_exists,
    ) in session.query(_TEAM_DAYS, parameters):
        if computed and (last_computed_day is None or day > last_computed_day):
            last_computed_day = day
        if not pageviews or day > last_day:
            continue
        running = last_status == "started" and _utc(last_started_at) >= running_since
        written = computed and (cluster is not None or partition_exists)
        recorded = int(recorded) if recorded_found else None
        unchanged = written and recorded == int(current)
        code = ord(_day_code(written, unchanged, last_status, running))
        if code in b"xX":
            code = _changed_letter(code, int(current), recorded)
        if code == ord("c") and inaccurate:
            code = ord("i")
        if failed_alone and not running:
            code = ord("f")
        states[day] = _LETTERS[chr(code)]
    return TeamDays(states, last_computed_day)
