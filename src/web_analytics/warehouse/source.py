"""What the source events look like per team and UTC day, read from the per-day summary
that a materialized view keeps at insert time (never from raw events)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from web_analytics.warehouse.connection import Session
from web_analytics.warehouse.schema import SOURCE_DAY_SUMMARY

# A day's sessions start on that day and, in practice, end on it or within the next day's
# first hour; the fingerprint of a day covers exactly those events.
SOURCE_FINGERPRINTS = f"""
SELECT team_id, day,
    cityHash64(sumIf(content_hash, source_day = day), sumIf(first_hour_hash, source_day = day + 1))
        AS fingerprint
FROM
(
    SELECT team_id, day AS source_day,
        sum(content_hash) AS content_hash, sum(first_hour_hash) AS first_hour_hash
    FROM {SOURCE_DAY_SUMMARY}
    WHERE team_id IN {{team_ids:Array(UInt64)}}
      AND day BETWEEN {{first_day:Date}} AND {{last_day:Date}} + 1
    GROUP BY team_id, source_day
)
ARRAY JOIN [source_day, source_day - 1] AS day
WHERE day BETWEEN {{first_day:Date}} AND {{last_day:Date}}
GROUP BY team_id, day
"""

SOURCE_EVENTS = f"""
SELECT sum(events) FROM {SOURCE_DAY_SUMMARY}
WHERE team_id IN {{team_ids:Array(UInt64)}}
  AND day BETWEEN {{first_day:Date}} - 1 AND {{last_day:Date}} + 1
"""


def source_fingerprints(
    session: Session, team_ids: Sequence[int], first_day: date, last_day: date
) -> dict[tuple[int, date], int]:
    """Fingerprint of the source events behind each (team, UTC day) that has any."""
    parameters = {"team_ids": list(team_ids), "first_day": first_day, "last_day": last_day}
    rows = session.query(SOURCE_FINGERPRINTS, parameters)
    return {(int(team), day): int(fingerprint) for team, day, fingerprint in rows}


def source_events(
    session: Session, team_ids: Sequence[int], first_day: date, last_day: date
) -> int:
    """Events of the UTC days an aggregation of ``[first_day, last_day]`` reads."""
    parameters = {"team_ids": list(team_ids), "first_day": first_day, "last_day": last_day}
    [(events,)] = session.query(SOURCE_EVENTS, parameters)
    return int(events or 0)
