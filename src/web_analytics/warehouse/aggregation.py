"""Computing both pre-aggregated tables for a range of UTC days in one pass over events,
then swapping each day in atomically from staging."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from web_analytics.warehouse.connection import Session
from web_analytics.warehouse.schema import (
    ALL,
    COMBINED_STAGING,
    PRE_AGGREGATED_TABLES,
    SESSION_DIMENSIONS,
    SOURCE_DAY_SUMMARY,
    STAGING_SUFFIX,
    TABLE_METRICS,
)
from web_analytics.warehouse.sessions import sessions_parameters, sessions_query

# A day's computation reads events from the day before to two days after (see sessions_query);
# its fingerprint covers the same days so that any late event among them makes it stale.
FINGERPRINT_DAYS_BEFORE = 1
FINGERPRINT_DAYS_AFTER = 2


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


_FINGERPRINTS = f"""
SELECT team_id, day,
    cityHash64(arraySort(groupArray((source_day, day_events, day_hash)))) AS fingerprint
FROM
(
    SELECT team_id, day AS source_day, sum(events) AS day_events, sum(content_hash) AS day_hash
    FROM {{summary:Identifier}}
    WHERE team_id IN {{team_ids:Array(UInt64)}}
      AND day >= {{first_day:Date}} - {FINGERPRINT_DAYS_BEFORE}
      AND day <= {{last_day:Date}} + {FINGERPRINT_DAYS_AFTER}
    GROUP BY team_id, source_day
)
ARRAY JOIN arrayMap(
    d -> source_day + d, range(-{FINGERPRINT_DAYS_AFTER}, {FINGERPRINT_DAYS_BEFORE + 1})
) AS day
WHERE day BETWEEN {{first_day:Date}} AND {{last_day:Date}}
GROUP BY team_id, day
"""


def source_fingerprints(
    session: Session, team_ids: Sequence[int], first_day: date, last_day: date, summary: str
) -> tuple[dict[tuple[int, date], int], int]:
    """Fingerprint per (team, day) of the events a computation of that day reads, and the
    number of source events in the range. Reads the per-day summary, never raw events."""
    parameters = {
        "summary": summary,
        "team_ids": list(team_ids),
        "first_day": first_day,
        "last_day": last_day,
    }
    rows = session.query(_FINGERPRINTS, parameters)
    fingerprints = {(int(team), day): int(fingerprint) for team, day, fingerprint in rows}
    [(events,)] = session.query(
        "SELECT sum(events) FROM {summary:Identifier} WHERE team_id IN {team_ids:Array(UInt64)} "
        f"AND day >= {{first_day:Date}} - {FINGERPRINT_DAYS_BEFORE} "
        f"AND day <= {{last_day:Date}} + {FINGERPRINT_DAYS_AFTER}",
        parameters,
    )
    return fingerprints, int(events or 0)


def aggregate_range(
    session: Session,
    tables: dict[str, str],
    team_timezones: dict[int, str],
    first_day: date,
    last_day: date,
    kept_team_ids: Sequence[int],
    settings: dict[str, object],
    cluster: str | None,
    on_day: Callable[[date], None] | None = None,
) -> AggregationResult:
    """Compute ``[first_day, last_day]`` for ``team_timezones`` and swap each day in.

    ``tables`` maps logical names to the tables that hold data (local tables in cluster
    mode). Rows of ``kept_team_ids`` already in the target days are carried over unchanged.
    """
    started = time.monotonic()
    days = days_between(first_day, last_day)
    on_cluster = f" ON CLUSTER {cluster}" if cluster else ""

    combined = tables[COMBINED_STAGING]
    staging = {table: tables[table + STAGING_SUFFIX] for table in PRE_AGGREGATED_TABLES}
    day_filter = {"first_day": first_day, "last_day": last_day}

    def clear_staging() -> None:
        for table in (combined, *staging.values()):
            for day in days:
                session.command(
                    f"ALTER TABLE {table}{on_cluster} DROP PARTITION ID '{partition_id(day)}'"
                )

    clear_staging()  # leftovers of a crashed run
    if team_timezones:
        bucket_from = datetime.combine(first_day, datetime.min.time(), UTC)
        bucket_to = datetime.combine(last_day + timedelta(days=1), datetime.min.time(), UTC)
        count, parameters = sessions_parameters(team_timezones, bucket_from, bucket_to)
        session.command(
            combined_insert_sql(count, combined, tables["events"]), parameters, settings=settings
        )
    rows: dict[date, dict[str, int]] = {day: {} for day in days}
    for table in PRE_AGGREGATED_TABLES:
        columns = ", ".join(
            ("team_id", "period_bucket", "dimension", "value", *TABLE_METRICS[table])
        )
        in_range = "toDate(period_bucket) BETWEEN {first_day:Date} AND {last_day:Date}"
        session.command(
            f"INSERT INTO {staging[table]} SELECT {columns} FROM {combined} WHERE {in_range}",
            day_filter,
        )
        if kept_team_ids:
            session.command(
                f"INSERT INTO {staging[table]} SELECT {columns} FROM {tables[table]} "
                f"WHERE {in_range} AND team_id IN {{kept:Array(UInt64)}}",
                {**day_filter, "kept": list(kept_team_ids)},
            )
        counts = dict(
            session.query(
                f"SELECT toDate(period_bucket) AS day, count() FROM {staging[table]} "
                "WHERE day BETWEEN {first_day:Date} AND {last_day:Date} GROUP BY day",
                day_filter,
            )
        )
        for day in days:
            rows[day][table] = int(counts.get(day, 0))
        if cluster:  # every replica must hold the staging rows before it swaps them in
            session.command(f"SYSTEM SYNC REPLICA ON CLUSTER {cluster} {staging[table]}")
    for day in days:
        for table in PRE_AGGREGATED_TABLES:
            if rows[day][table]:
                change = f"REPLACE PARTITION ID '{partition_id(day)}' FROM {staging[table]}"
            else:  # ClickHouse refuses to replace from an empty partition: the day is empty
                change = f"DROP PARTITION ID '{partition_id(day)}'"
            session.command(f"ALTER TABLE {tables[table]}{on_cluster} {change}")
        if on_day is not None:
            on_day(day)
    clear_staging()
    fingerprints, source_events = source_fingerprints(
        session, sorted(team_timezones), first_day, last_day, tables[SOURCE_DAY_SUMMARY]
    )
    return AggregationResult(
        first_day=first_day,
        last_day=last_day,
        days=[DayResult(day, rows[day]) for day in days],
        fingerprints=fingerprints,
        source_events=source_events,
        seconds=time.monotonic() - started,
    )
