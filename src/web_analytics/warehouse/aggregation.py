"""Computing both pre-aggregated tables for a range of UTC days in one pass over events,
then swapping each day in atomically from staging."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from web_analytics.warehouse.connection import Session
from web_analytics.warehouse.schema import (
    ALL,
    COMBINED_STAGING,
    EVENTS,
    PRE_AGGREGATED_TABLES,
    SESSION_DIMENSIONS,
    STAGING_SUFFIX,
    TABLE_METRICS,
    local_name,
)
from web_analytics.warehouse.sessions import sessions_parameters, sessions_query
from web_analytics.warehouse.source import source_snapshot


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

    def rows_for(self, table: str) -> dict[date, int]:
        return {day.day: day.rows[table] for day in self.days}


# Each session contributes one row per dimension: the totals, each path it viewed (with that
# path's views), and each session attribute.
_DIMENSION_ROWS = (
    f"arrayConcat([('{ALL}', '', pageviews)], "
    "arrayMap((p, n) -> ('pathname', p, n), path_names, path_views), ["
    + ", ".join(f"('{name}', {name}, pageviews)" for name in SESSION_DIMENSIONS)
    + "])"
)


def combined_insert_sql(timezone_count: int, combined: str, events: str) -> str:
    """One pass over events writing every metric of every dimension row into ``combined``."""
    return f"""
INSERT INTO {combined}
SELECT team_id, period_bucket, row.1 AS dimension, row.2 AS value,
    uniqState(cityHash64(person)) AS visitors,
    sum(row.3) AS views,
    count() AS sessions,
    sum(is_bounce) AS bounces,
    sum(duration_us) AS total_duration_us
FROM ({sessions_query(timezone_count, events)})
ARRAY JOIN {_DIMENSION_ROWS} AS row
GROUP BY team_id, period_bucket, dimension, value
"""


def days_between(first_day: date, last_day: date) -> list[date]:
    return [first_day + timedelta(days=i) for i in range((last_day - first_day).days + 1)]


def partition_id(day: date) -> str:
    """ClickHouse's partition id of ``toDate(period_bucket)`` for a day: YYYYMMDD."""
    return day.strftime("%Y%m%d")


def _alter_partitions(
    session: Session, table: str, commands: list[str], cluster: str | None
) -> None:
    """Run partition commands on ``table`` in one ALTER (where the data lives)."""
    if commands:
        on_cluster = f" ON CLUSTER {cluster}" if cluster else ""
        session.command(
            f"ALTER TABLE {local_name(table, cluster)}{on_cluster} " + ", ".join(commands)
        )


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
    settings: dict[str, object],
    cluster: str | None,
) -> AggregationResult:
    """Compute ``[first_day, last_day]`` for ``team_timezones`` and swap each day in.

    Rows of ``kept_team_ids`` already in the target days are carried over unchanged. In
    cluster mode inserts go through the Distributed tables (each shard computes its own
    teams) and partitions are swapped on the local tables of every node.
    """
    started = time.monotonic()
    days = days_between(first_day, last_day)
    # Taken before reading events: an event that lands during the run makes the day stale.
    snapshot = source_snapshot(session, sorted(team_timezones), first_day, last_day)
    staging = {table: table + STAGING_SUFFIX for table in PRE_AGGREGATED_TABLES}
    day_filter = {"first_day": first_day, "last_day": last_day}
    if cluster:  # run INSERT ... SELECT on every shard, from and into its local tables
        settings = {**settings, "parallel_distributed_insert_select": 2}

    def clear_staging() -> None:
        drops = [f"DROP PARTITION ID '{partition_id(day)}'" for day in days]
        for table in (COMBINED_STAGING, *staging.values()):
            _alter_partitions(session, table, drops, cluster)

    clear_staging()  # leftovers of a crashed run
    if team_timezones:
        bucket_from = datetime.combine(first_day, datetime.min.time(), UTC)
        bucket_to = datetime.combine(last_day + timedelta(days=1), datetime.min.time(), UTC)
        count, parameters = sessions_parameters(team_timezones, bucket_from, bucket_to)
        session.command(
            combined_insert_sql(count, COMBINED_STAGING, EVENTS), parameters, settings=settings
        )
    rows: dict[str, dict[date, int]] = {}
    in_range = "toDate(period_bucket) BETWEEN {first_day:Date} AND {last_day:Date}"
    for table in PRE_AGGREGATED_TABLES:
        columns = ", ".join(
            ("team_id", "period_bucket", "dimension", "value", *TABLE_METRICS[table])
        )
        session.command(
            f"INSERT INTO {staging[table]} SELECT {columns} FROM {COMBINED_STAGING} "
            f"WHERE {in_range}",
            day_filter,
            settings=settings,
        )
        if kept_team_ids:
            session.command(
                f"INSERT INTO {staging[table]} SELECT {columns} FROM {table} "
                f"WHERE {in_range} AND team_id IN {{kept:Array(UInt64)}}",
                {**day_filter, "kept": list(kept_team_ids)},
                settings=settings,
            )
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
        for table in PRE_AGGREGATED_TABLES
    }
    with _journaled(session, swaps):
        for table, commands in swaps.items():
            _alter_partitions(session, table, commands, cluster)
    clear_staging()
    return AggregationResult(
        first_day=first_day,
        last_day=last_day,
        days=[DayResult(day, {table: rows[table][day] for table in rows}) for day in days],
        fingerprints=snapshot.fingerprints,
        source_events=snapshot.events,
        seconds=time.monotonic() - started,
    )
