"""Computing both pre-aggregated tables for a range of UTC days in one pass over events,
then swapping each day in atomically from staging."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from web_analytics.warehouse.connection import Session
from web_analytics.warehouse.errors import QueryFailed, WriteInterrupted
from web_analytics.warehouse.schema import (
    ALL,
    BOUNCES,
    DAILY_STATS,
    DAILY_VISITORS,
    EVENTS,
    HOURLY_VISITORS,
    PASS_SESSIONS,
    PRE_AGGREGATED_TABLES,
    SESSION_DIMENSIONS,
    STAGING_SUFFIX,
    STATS,
    TABLE_METRICS,
    WRITTEN_TABLES,
    local_name,
    with_combinator,
)
from web_analytics.warehouse.sessions import (
    SESSION_COLUMNS,
    sessions_parameters,
    sessions_query,
)
from web_analytics.warehouse.source_summary import source_snapshot


@dataclass(frozen=True)
class DayResult:
    day: date
    rows: dict[str, int]  # table name -> rows written for the day


@dataclass(frozen=True)
class AggregationResult:
    """What ``aggregate`` wrote, and the source fingerprint of each team and day it read."""

    first_day: date
    last_day: date
    days: list[DayResult]
    fingerprints: dict[tuple[int, date], int]  # (team_id, day) -> fingerprint
    source_events: int
    seconds: float
    # Teams whose computation failed (their rows were kept as they were): team -> error.
    failed_teams: dict[int, str] = field(default_factory=dict)

    def rows_for(self, table: str) -> dict[date, int]:
        return {day.day: day.rows[table] for day in self.days}


# Each session contributes one row per dimension: the totals, each path it viewed (with that
# path's views), and each session attribute. Dimensions are grouped by number (cheaper to hash
# than names) and named on output.
_DIMENSIONS = (ALL, "pathname", *SESSION_DIMENSIONS)
_DIMENSION_ROWS = (
    "arrayConcat([(0, '', pageviews)], "
    "arrayMap((p, n) -> (1, p, n), path_names, path_views), ["
    + ", ".join(f"({i}, {name}, pageviews)" for i, name in enumerate(SESSION_DIMENSIONS, 2))
    + "])"
)
_DIMENSION_NAMES = "[" + ", ".join(f"'{name}'" for name in _DIMENSIONS) + "]"


def _rows_insert_sql(target: str, sessions: str, key: str, group_by: str, visitors: str) -> str:
    """Every metric of every dimension row of ``sessions`` (a subquery or table with the
    columns of ``sessions_query``), grouped by ``group_by`` (selected as ``key``), written into
    ``target`` with visitor states of ``visitors``."""
    return f"""
INSERT INTO {target}
SELECT {key}, {_DIMENSION_NAMES}[row.1 + 1] AS dimension, row.2 AS value,
    {with_combinator(visitors, "State")}(cityHash64(person)) AS visitors,
    sum(row.3) AS views,
    count() AS sessions,
    sum(is_bounce) AS bounces,
    sum(duration_us) AS total_duration_us
FROM {sessions}
ARRAY JOIN {_DIMENSION_ROWS} AS row
GROUP BY {group_by}, row.1, row.2
"""


def stats_insert_sql(target: str, sessions: str) -> str:
    """The rows of ``sessions`` per hour bucket, into ``target`` (the stats staging table)."""
    key = "team_id, period_bucket"
    return _rows_insert_sql(target, sessions, key, key, HOURLY_VISITORS)


def daily_stats_insert_sql(target: str, sessions: str) -> str:
    """The same rows per team-local day and segment (the UTC day of their hour buckets),
    into ``target`` (the day grain's staging table)."""
    key = "team_id, toDateTime(toDate(period_bucket), 'UTC') AS segment, local_day AS day"
    return _rows_insert_sql(target, sessions, key, "team_id, local_day, segment", DAILY_VISITORS)


def _pass_sessions_statements() -> list[str]:
    """A session-local table for one pass's sessions, emptied."""
    columns = ",\n    ".join(f"`{name}` {type_}" for name, type_ in SESSION_COLUMNS)
    return [
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {PASS_SESSIONS}\n(\n    {columns}\n)\n"
        "ENGINE = Memory",
        f"TRUNCATE TABLE {PASS_SESSIONS}",
    ]


def insert_both_grains(
    session: Session,
    sessions: str,
    parameters: dict[str, Any],
    staging: Mapping[str, str],
    settings: dict[str, Any],
    cluster: str | None,
) -> None:
    """Group the sessions of one pass (``sessions``, a SELECT with ``parameters``) into the
    hourly and the daily stats staging tables. On a single node they are computed once into
    a session-local table that both groupings read; on a cluster each shard computes its own
    teams' sessions in each INSERT ... SELECT, so they are computed once per grain."""
    if cluster:
        for table, insert_sql in ((STATS, stats_insert_sql), (DAILY_STATS, daily_stats_insert_sql)):
            session.command(
                insert_sql(staging[table], f"({sessions})"), parameters, settings=settings
            )
        return
    for statement in _pass_sessions_statements():
        session.command(statement)
    session.command(f"INSERT INTO {PASS_SESSIONS} {sessions}", parameters, settings=settings)
    session.command(stats_insert_sql(staging[STATS], PASS_SESSIONS), settings=settings)
    session.command(daily_stats_insert_sql(staging[DAILY_STATS], PASS_SESSIONS), settings=settings)
    session.command(f"TRUNCATE TABLE {PASS_SESSIONS}")


# Rows leave the GROUP BY unique per key: merging them again on insert is wasted work.
UNIQUE_ROWS_INSERT = {"optimize_on_insert": 0}


@dataclass(frozen=True)
class Pass:
    """One read of the events: some teams over the whole range, one large team over some of
    its days, or one shard of a large team's sessions."""

    team_ids: tuple[int, ...]
    session_shard: int = 0
    session_shards: int = 1
    days: tuple[date, date] | None = None  # first and last UTC day; None: the whole range


def plan_passes(
    events_per_team: dict[int, int], max_events: int, first_day: date, last_day: date
) -> list[Pass]:
    """Passes that each aggregate the sessions of at most about ``max_events`` events, so
    memory stays bounded whatever the range: small teams share a pass; a team larger than
    that is split into runs of consecutive days (each read with its neighbouring days), or,
    when the range has too few days for that, its sessions are split into hash shards (its
    events are then read once per shard)."""
    days = days_between(first_day, last_day)
    passes: list[Pass] = []
    batch: list[int] = []
    batch_events = 0
    for team, events in sorted(events_per_team.items(), key=lambda item: (-item[1], item[0])):
        if events > max_events:
            parts = -(-events // max_events)
            if parts <= len(days):
                passes.extend(Pass((team,), days=(run[0], run[-1])) for run in _split(days, parts))
            else:
                passes.extend(Pass((team,), shard, parts) for shard in range(parts))
            continue
        if batch and batch_events + events > max_events:
            passes.append(Pass(tuple(batch)))
            batch, batch_events = [], 0
        batch.append(team)
        batch_events += events
    if batch:
        passes.append(Pass(tuple(batch)))
    return passes


def pass_sessions(
    team_timezones: dict[int, str],
    events_per_team: dict[int, int],
    max_events: int,
    first_day: date,
    last_day: date,
) -> Iterator[tuple[str, dict[str, object]]]:
    """The sessions SELECT of each pass of ``[first_day, last_day]`` (see ``plan_passes``),
    with its bound parameters."""
    for one_pass in plan_passes(events_per_team, max_events, first_day, last_day):
        pass_first, pass_last = one_pass.days or (first_day, last_day)
        count, parameters = sessions_parameters(
            {team: team_timezones[team] for team in one_pass.team_ids},
            datetime.combine(pass_first, datetime.min.time(), UTC),
            datetime.combine(pass_last + timedelta(days=1), datetime.min.time(), UTC),
            one_pass.session_shard,
            one_pass.session_shards,
        )
        yield sessions_query(count, EVENTS), parameters


def _split(days: list[date], parts: int) -> list[list[date]]:
    """``days`` in ``parts`` runs of consecutive days, as even as can be."""
    size, longer = divmod(len(days), parts)
    runs, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < longer else 0)
        runs.append(days[start:end])
        start = end
    return runs


def days_between(first_day: date, last_day: date) -> list[date]:
    return [first_day + timedelta(days=i) for i in range((last_day - first_day).days + 1)]


def partition_id(day: date) -> str:
    """ClickHouse's partition id of ``toDate(period_bucket)`` for a day: YYYYMMDD."""
    return day.strftime("%Y%m%d")


def _pass_teams(parameters: Mapping[str, object]) -> list[int]:
    teams = parameters["team_ids"]
    assert isinstance(teams, list)
    return teams


def _delete_team_rows(
    session: Session, table: str, team_ids: Sequence[int], cluster: str | None
) -> None:
    """Remove what a failed pass may have left of ``team_ids`` in a staging table."""
    on_cluster = f" ON CLUSTER {cluster}" if cluster else ""
    session.command(
        f"ALTER TABLE {local_name(table, cluster)}{on_cluster} "
        "DELETE WHERE team_id IN {team_ids:Array(UInt64)}",
        {"team_ids": list(team_ids)},
        settings={"mutations_sync": 2},
    )


def _alter_partitions(
    session: Session, table: str, commands: list[str], cluster: str | None
) -> None:
    """Run partition commands on ``table`` in one ALTER (where the data lives)."""
    if commands:
        on_cluster = f" ON CLUSTER {cluster}" if cluster else ""
        session.command(
            f"ALTER TABLE {local_name(table, cluster)}{on_cluster} " + ", ".join(commands)
        )


# Events one pass reads at most: its sessions and their states stay well within memory.
DEFAULT_MAX_EVENTS_PER_PASS = 2_000_000

# On the embedded store the engine dies with the process, and a partition swap cut short can
# leave a day's old and new parts both active. Swaps are therefore journaled: the journal
# lists them before they start, and whoever opens the store next redoes them from staging
# (which is cleared only after the journal is gone), so every day ends new and complete.
SWAP_JOURNAL = ".web_analytics.swaps.json"


@contextmanager
def _journaled(session: Session, swaps: dict[str, list[str]]) -> Iterator[None]:
    directory = session.local_state_dir
    if directory is None:
        yield
        return
    journal = directory / SWAP_JOURNAL
    temporary = journal.with_suffix(".tmp")
    with open(temporary, "w") as handle:
        json.dump(swaps, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, journal)
    yield
    journal.unlink()


def finish_interrupted_swaps(session: Session) -> bool:
    """Redo the swaps of a run that died while swapping; ``True`` if there were any."""
    directory = session.local_state_dir
    journal = directory / SWAP_JOURNAL if directory is not None else None
    if journal is None or not journal.exists():
        return False
    swaps = json.loads(journal.read_text())
    for table, commands in swaps.items():
        _alter_partitions(session, table, commands, cluster=None)
    journal.unlink()
    return True


def aggregate_range(
    session: Session,
    team_timezones: dict[int, str],
    first_day: date,
    last_day: date,
    kept_team_ids: Sequence[int],
    settings: Mapping[str, object],
    cluster: str | None,
    max_events_per_pass: int = DEFAULT_MAX_EVENTS_PER_PASS,
) -> AggregationResult:
    """Compute ``[first_day, last_day]`` for ``team_timezones`` and swap each day in.

    Events are read in passes of at most about ``max_events_per_pass`` events (see
    ``plan_passes``).
    Rows of ``kept_team_ids`` already in the target days are carried over unchanged. In
    cluster mode inserts go through the Distributed tables (each shard computes its own
    teams) and partitions are swapped on the local tables of every node.
    """
    started = time.monotonic()
    days = days_between(first_day, last_day)
    # Taken before reading events: an event that lands during the run makes the day stale.
    snapshot = source_snapshot(session, sorted(team_timezones), first_day, last_day)
    staging = {table: table + STAGING_SUFFIX for table in WRITTEN_TABLES}
    day_filter = {"first_day": first_day, "last_day": last_day}
    insert_settings = {**settings, **UNIQUE_ROWS_INSERT}
    if cluster:  # run INSERT ... SELECT on every shard, from and into its local tables
        insert_settings["parallel_distributed_insert_select"] = 2

    def clear_staging() -> None:
        drops = [f"DROP PARTITION ID '{partition_id(day)}'" for day in days]
        for table in staging.values():
            _alter_partitions(session, table, drops, cluster)

    clear_staging()  # leftovers of a crashed run
    events_per_team = {team: snapshot.events_per_team.get(team, 0) for team in team_timezones}
    failed: dict[int, str] = {}

    def compute(timezones: dict[int, str]) -> None:
        """Insert the passes of ``timezones``; a failed pass of several teams is retried team
        by team, so one team's failure costs that team alone."""
        events = {team: events_per_team[team] for team in timezones}
        for sessions, parameters in pass_sessions(
            timezones, events, max_events_per_pass, first_day, last_day
        ):
            teams = [team for team in _pass_teams(parameters) if team not in failed]
            if not teams:
                continue  # a team split into several passes whose first one failed
            try:
                insert_both_grains(session, sessions, parameters, staging, insert_settings, cluster)
            except WriteInterrupted:
                raise  # transient: the whole run is redone from clean staging
            except QueryFailed as error:
                for table in (STATS, DAILY_STATS):
                    _delete_team_rows(session, staging[table], teams, cluster)
                if len(teams) == 1:
                    failed[teams[0]] = str(error)
                else:
                    for team in teams:
                        compute({team: timezones[team]})

    compute(team_timezones)
    if failed and len(failed) == len(team_timezones):
        raise QueryFailed(next(iter(failed.values())))
    kept_team_ids = [*kept_team_ids, *sorted(failed)]
    in_range = "toDate(period_bucket) BETWEEN {first_day:Date} AND {last_day:Date}"
    key = "team_id, period_bucket, dimension, value"
    for table in (STATS, DAILY_STATS) if kept_team_ids else ():
        session.command(
            f"INSERT INTO {staging[table]} SELECT * FROM {table} "
            f"WHERE {in_range} AND team_id IN {{kept:Array(UInt64)}}",
            {**day_filter, "kept": list(kept_team_ids)},
            settings=insert_settings,
        )
    session.command(
        f"INSERT INTO {staging[BOUNCES]} SELECT {key}, {', '.join(TABLE_METRICS[BOUNCES])} "
        f"FROM {staging[STATS]} WHERE {in_range}",
        day_filter,
        settings=insert_settings,
    )
    rows: dict[str, dict[date, int]] = {}
    for table in WRITTEN_TABLES:
        counts = dict(
            session.query(
                f"SELECT toDate(period_bucket) AS day, count() FROM {staging[table]} "
                f"WHERE {in_range} GROUP BY day",
                day_filter,
            )
        )
        rows[table] = {day: int(counts.get(day, 0)) for day in days}
        if cluster:  # every replica must hold the staging rows before it swaps them in
            session.command(
                f"SYSTEM SYNC REPLICA ON CLUSTER {cluster} {local_name(staging[table], cluster)}"
            )
    swaps = {
        table: [
            f"REPLACE PARTITION ID '{partition_id(day)}' FROM {local_name(staging[table], cluster)}"
            if rows[table][day]
            # ClickHouse refuses to replace from an empty partition: the day is empty.
            else f"DROP PARTITION ID '{partition_id(day)}'"
            for day in days
        ]
        for table in WRITTEN_TABLES
    }
    with _journaled(session, swaps):
        for table, commands in swaps.items():
            _alter_partitions(session, table, commands, cluster)
    clear_staging()
    return AggregationResult(
        first_day=first_day,
        last_day=last_day,
        # Rows of the tables the assets and status records know; the day grain's are its own.
        days=[
            DayResult(day, {table: rows[table][day] for table in PRE_AGGREGATED_TABLES})
            for day in days
        ],
        fingerprints={
            key: value for key, value in snapshot.fingerprints.items() if key[0] not in failed
        },
        source_events=snapshot.events,
        seconds=time.monotonic() - started,
        failed_teams=failed,
    )
