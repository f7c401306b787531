"""What the source events look like per team and UTC day, read from the per-day summary
that a materialized view keeps at insert time (never from raw events)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from web_analytics.warehouse.connection import Session
from web_analytics.warehouse.schema import SOURCE_DAY_SUMMARY, TEAMS

# The teams a source query reads: those in ``{team_ids}``, or with ``{all_teams}`` every team
# the registry does not disable (no list to send when it is every team).
TEAM_FILTER = (
    "(team_id IN {team_ids:Array(UInt64)} OR {all_teams:Bool})"
    f" AND team_id NOT IN (SELECT team_id FROM {TEAMS} FINAL WHERE NOT enabled)"
)


# Per team and UTC day: pageviews, and the fingerprint of the events a computation of the
# day depends on: the day itself and the next day's first hour, where its sessions end. The
# fingerprint is a sum of event hashes, so fingerprints add up: a day's total over all teams
# is the sum of theirs, and one comparison per day tells whether any team changed.
def fingerprint(content_hash: str, next_first_hour_hash: str) -> str:
    """SQL of a fingerprint from the sums of the two hash columns (UInt64, wrapping)."""
    return f"{content_hash} + {next_first_hour_hash} * 11400714819323198485"


FINGERPRINT = fingerprint("sum(content_hash)", "sum(next_first_hour_hash)")
SOURCE_DAYS = f"""
SELECT team_id, day, sum(pageviews) AS pageviews, {FINGERPRINT} AS fingerprint
FROM {SOURCE_DAY_SUMMARY}
WHERE {TEAM_FILTER} AND day BETWEEN {{first_day:Date}} AND {{last_day:Date}}
GROUP BY team_id, day
"""
SOURCE_DAY_TOTALS = f"""
SELECT day, {FINGERPRINT} AS total
FROM {SOURCE_DAY_SUMMARY}
WHERE {TEAM_FILTER} AND day BETWEEN {{first_day:Date}} AND {{last_day:Date}}
GROUP BY day
"""

_EVENTS_READ = f"""
SELECT team_id, sum(events) FROM {SOURCE_DAY_SUMMARY}
WHERE team_id IN {{team_ids:Array(UInt64)}}
  AND day BETWEEN {{first_day:Date}} - 1 AND {{last_day:Date}} + 1
GROUP BY team_id
"""


# A change that alters what a team's days compute to without changing their events (a new
# timezone moves every session's hour bucket) is added to the content hash of each of the
# team's days: their fingerprints change, so every computed day becomes stale.
_TEAM_CHANGED = f"""
INSERT INTO {SOURCE_DAY_SUMMARY} (team_id, day, events, pageviews, content_hash,
    next_first_hour_hash)
SELECT team_id, day, 0, 0, {{change:UInt64}}, 0
FROM {SOURCE_DAY_SUMMARY}
WHERE team_id = {{team_id:UInt64}}
GROUP BY team_id, day
"""


def mark_team_changed(session: Session, team_id: int, change: int) -> None:
    """Make every day of ``team_id`` differ from what was computed (``change`` is any
    non-zero number that identifies the change)."""
    session.command(_TEAM_CHANGED, {"team_id": team_id, "change": change})


@dataclass(frozen=True)
class StoreSummary:
    """What the store holds: events per team and the UTC days they span."""

    events: int
    teams: int
    first_day: date | None
    last_day: date | None
    events_per_team: dict[int, int]


_PER_TEAM = f"""
SELECT team_id, sum(events), min(day), max(day) FROM {SOURCE_DAY_SUMMARY}
GROUP BY team_id ORDER BY team_id
"""


def store_summary(session: Session) -> StoreSummary:
    rows = session.query(_PER_TEAM)
    per_team = {int(team): int(events) for team, events, _, _ in rows}
    return StoreSummary(
        events=sum(per_team.values()),
        teams=len(per_team),
        first_day=min((row[2] for row in rows), default=None),
        last_day=max((row[3] for row in rows), default=None),
        events_per_team=per_team,
    )


@dataclass(frozen=True)
class SourceSnapshot:
    fingerprints: dict[tuple[int, date], int]  # (team_id, day) -> fingerprint
    # Per team: events of the UTC days an aggregation of the range reads.
    events_per_team: dict[int, int]

    @property
    def events(self) -> int:
        return sum(self.events_per_team.values())


def source_snapshot(
    session: Session, team_ids: Sequence[int], first_day: date, last_day: date
) -> SourceSnapshot:
    """Fingerprints of every (team, day) with source events, and the events a computation of
    the range reads."""
    parameters = {
        "team_ids": list(team_ids),
        "all_teams": False,
        "first_day": first_day,
        "last_day": last_day,
    }
    rows = session.query(f"SELECT team_id, day, fingerprint FROM ({SOURCE_DAYS})", parameters)
    events = session.query(_EVENTS_READ, parameters)
    return SourceSnapshot(
        fingerprints={(int(team), day): int(fingerprint) for team, day, fingerprint in rows},
        events_per_team={int(team): int(count) for team, count in events},
    )
