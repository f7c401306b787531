"""The one definition of a web session, shared by the aggregation and the raw reference.

A session is every event sharing a session id. It starts at its earliest event and is
attributed to the team-local hour of that start; its person is the person of its latest
event; its attributes come from its first event and its exit page from its last pageview.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from web_analytics.warehouse.schema import PAGEVIEW_EVENTS_SQL

MAX_SESSION = timedelta(hours=24)
BOUNCE_MAX_SECONDS = 10


def bucket_expression(timezone_count: int, column: str = "start") -> str:
    """Start of the team-local hour of ``column`` as a UTC instant.

    ClickHouse needs a constant timezone per call, so each distinct timezone is a bound
    parameter ``tz{i}`` and ``tz_index`` (see ``team_timezone_parameters``) picks one.
    """
    branches = [
        f"tz_index = {i}, toUnixTimestamp(toStartOfHour({column}, {{tz{i}:String}}))"
        for i in range(1, timezone_count)
    ]
    fallback = f"toUnixTimestamp(toStartOfHour({column}, {{tz0:String}}))"
    expression = f"multiIf({', '.join(branches)}, {fallback})" if branches else fallback
    return f"toDateTime({expression}, 'UTC')"


def local_day_expression(timezone_count: int, column: str = "start") -> str:
    """The team-local date of ``column``, each team's timezone picked as in
    ``bucket_expression``."""
    branches = [
        f"tz_index = {i}, toDate({column}, {{tz{i}:String}})" for i in range(1, timezone_count)
    ]
    fallback = f"toDate({column}, {{tz0:String}})"
    return f"multiIf({', '.join(branches)}, {fallback})" if branches else fallback


def team_timezone_parameters(team_timezones: dict[int, str]) -> tuple[int, dict[str, object]]:
    """Bound parameters mapping each team to the index of its timezone."""
    timezones = sorted(set(team_timezones.values())) or ["UTC"]
    index = {name: i for i, name in enumerate(timezones)}
    team_ids = sorted(team_timezones)
    parameters: dict[str, object] = {f"tz{i}": name for i, name in enumerate(timezones)}
    parameters["team_ids"] = team_ids
    parameters["tz_indexes"] = [index[team_timezones[team]] for team in team_ids]
    return len(timezones), parameters


def sessions_query(timezone_count: int, events_table: str, narrow: bool = False) -> str:
    """SELECT of one row per session with at least one pageview, for the teams in
    ``{team_ids}`` and hour buckets in ``[{bucket_from}, {bucket_to})``.

    Sessions can be split into ``{session_shards}`` disjoint shards by a hash of their id,
    ``{session_shard}`` selecting one. A bucket starts at most an hour before its sessions,
    which last at most a day: events
    are read from a day before ``bucket_from`` (to find each session's true start) to a day
    and an hour after ``bucket_to`` (to see each session to its end). The result has the
    columns the aggregation and the raw queries group.

    ``narrow`` reads, in those two days around the range, only the events of sessions that
    have an event inside it (every session that starts there does): the same rows, cheaper
    for a short range, dearer for a long one, whose session ids fill a large set.
    """
    bucket = bucket_expression(timezone_count)
    in_range = (
        f"""
      AND session_id IN (
        SELECT session_id FROM {events_table}
        WHERE team_id IN {{team_ids:Array(UInt64)}}
          AND timestamp >= {{bucket_from:DateTime64(6, 'UTC')}}
          AND timestamp < {{bucket_to:DateTime64(6, 'UTC')}} + INTERVAL 1 HOUR
      )"""
        if narrow
        else ""
    )
    return f"""
SELECT
    team_id,
    {bucket} AS period_bucket,
    {local_day_expression(timezone_count)} AS local_day,
    person,
    pageviews,
    toUInt8(pageviews = 1 AND autocaptures = 0
            AND duration_us < {BOUNCE_MAX_SECONDS * 1_000_000}) AS is_bounce,
    duration_us,
    arrayDistinct(paths) AS path_names,
    arrayMap(p -> toUInt64(countEqual(paths, p)), path_names) AS path_views,
    first.1 AS entry_pathname,
    exit_pathname,
    first.2 AS host,
    first.3 AS referring_domain,
    first.4 AS utm_source,
    first.5 AS utm_medium,
    first.6 AS utm_campaign,
    first.7 AS device_type,
    first.8 AS browser,
    first.9 AS os,
    first.10 AS country_code
FROM
(
    SELECT
        team_id,
        transform(team_id, {{team_ids:Array(UInt64)}}, {{tz_indexes:Array(UInt16)}},
            toUInt16(0)) AS tz_index,
        min(timestamp) AS start,
        toUInt64(toUnixTimestamp64Micro(max(timestamp)) - toUnixTimestamp64Micro(start))
            AS duration_us,
        argMax(if(person_id = '', distinct_id, person_id), timestamp) AS person,
        countIf(event IN {PAGEVIEW_EVENTS_SQL}) AS pageviews,
        countIf(event = '$autocapture') AS autocaptures,
        groupArrayIf(pathname, event IN {PAGEVIEW_EVENTS_SQL}) AS paths,
        argMaxIf(pathname, timestamp, event IN {PAGEVIEW_EVENTS_SQL}) AS exit_pathname,
        argMin((pathname, host, referring_domain, utm_source, utm_medium, utm_campaign,
                device_type, browser, os, country_code), timestamp) AS first
    FROM {events_table} FINAL
    WHERE team_id IN {{team_ids:Array(UInt64)}}
      AND timestamp >= {{bucket_from:DateTime64(6, 'UTC')}} - INTERVAL 1 DAY
      AND timestamp < {{bucket_to:DateTime64(6, 'UTC')}} + INTERVAL 25 HOUR
      AND session_id != ''
      AND cityHash64(session_id) % {{session_shards:UInt32}} = {{session_shard:UInt32}}{in_range}
    GROUP BY team_id, cityHash64(session_id)
    HAVING pageviews > 0
       AND start >= {{bucket_from:DateTime64(6, 'UTC')}}
       AND start < {{bucket_to:DateTime64(6, 'UTC')}} + INTERVAL 1 HOUR
)
WHERE period_bucket >= {{bucket_from:DateTime64(6, 'UTC')}}
  AND period_bucket < {{bucket_to:DateTime64(6, 'UTC')}}
"""


# The columns of ``sessions_query``, and their types.
SESSION_COLUMNS = (
    ("team_id", "UInt64"),
    ("period_bucket", "DateTime('UTC')"),
    ("local_day", "Date"),
    ("person", "String"),
    ("pageviews", "UInt64"),
    ("is_bounce", "UInt8"),
    ("duration_us", "UInt64"),
    ("path_names", "Array(String)"),
    ("path_views", "Array(UInt64)"),
    ("entry_pathname", "String"),
    ("exit_pathname", "String"),
    ("host", "String"),
    ("referring_domain", "String"),
    ("utm_source", "String"),
    ("utm_medium", "String"),
    ("utm_campaign", "String"),
    ("device_type", "String"),
    ("browser", "String"),
    ("os", "String"),
    ("country_code", "String"),
)


def sessions_parameters(
    team_timezones: dict[int, str],
    bucket_from: datetime,
    bucket_to: datetime,
    session_shard: int = 0,
    session_shards: int = 1,
) -> tuple[int, dict[str, object]]:
    """Timezone count and every bound parameter ``sessions_query`` needs. With
    ``session_shards`` > 1 only the sessions whose id hashes to ``session_shard`` are read."""
    count, parameters = team_timezone_parameters(team_timezones)
    parameters.update(
        bucket_from=bucket_from,
        bucket_to=bucket_to,
        session_shard=session_shard,
        session_shards=session_shards,
    )
    return count, parameters
