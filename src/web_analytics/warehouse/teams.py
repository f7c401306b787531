"""The team registry: each team's timezone and whether it is pre-aggregated.

A team with events but no registry row is known too: enabled, in UTC.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

from web_analytics.warehouse import source_summary
from web_analytics.warehouse.connection import ConnectionTarget, Session
from web_analytics.warehouse.errors import ConfigurationError
from web_analytics.warehouse.schema import SOURCE_DAY_SUMMARY, TEAMS


@dataclass(frozen=True)
class Team:
    team_id: int
    timezone: str
    enabled: bool = True


# The registry's rows; ``{all_teams}`` or ``{team_ids}`` selects which.
_REGISTERED = f"""
SELECT team_id, timezone, enabled FROM {TEAMS} FINAL
WHERE {{all_teams:Bool}} OR team_id IN {{team_ids:Array(UInt64)}}
"""
# Registry rows first (rank 0), then teams seen only in the events (rank 1, UTC, enabled).
_KNOWN_TEAMS = f"""
SELECT team_id, argMin(timezone, rank), argMin(enabled, rank)
FROM
(
    SELECT *, 0 AS rank FROM ({_REGISTERED})
    UNION ALL
    SELECT DISTINCT team_id, 'UTC', true, 1 FROM {SOURCE_DAY_SUMMARY}
    WHERE {{all_teams:Bool}} OR team_id IN {{team_ids:Array(UInt64)}}
)
GROUP BY team_id
ORDER BY team_id
"""


def _teams(session: Session, sql: str, team_ids: Sequence[int] | None) -> list[Team]:
    rows = session.query(sql, {"all_teams": team_ids is None, "team_ids": list(team_ids or [])})
    return [Team(int(team), timezone, bool(enabled)) for team, timezone, enabled in rows]


def known_teams(session: Session, team_ids: Sequence[int] | None = None) -> list[Team]:
    """Every known team (or those of ``team_ids`` that are known), ordered by id."""
    return _teams(session, _KNOWN_TEAMS, team_ids)


def team(session: Session, team_id: int) -> Team:
    """One known team, or ``ConfigurationError`` if the store has never heard of it. Every
    dashboard read starts here: a registered team costs one small read of the registry."""
    found = _teams(session, _REGISTERED, [team_id]) or known_teams(session, [team_id])
    if not found:
        raise ConfigurationError(f"unknown team {team_id}: it has no events and no registry entry")
    return found[0]


def enabled_team_timezones(
    session: Session, team_ids: Sequence[int] | None = None
) -> dict[int, str]:
    """Timezone of every enabled team (or of the enabled teams among ``team_ids``, each of
    which must be known)."""
    teams = known_teams(session, team_ids)
    if team_ids is not None:
        unknown = sorted(set(team_ids) - {team.team_id for team in teams})
        if unknown:
            raise ConfigurationError(
                f"unknown team(s) {unknown}: they have no events and no registry entry"
            )
    return {team.team_id: team.timezone for team in teams if team.enabled}


# Per store: the timezone names its engine knows (fewer than Python's: every right/* is
# refused), read once per process.
_ENGINE_TIMEZONES: dict[ConnectionTarget, frozenset[str]] = {}


def engine_timezones(session: Session) -> frozenset[str]:
    """The timezone names ClickHouse knows on this store."""
    if session.target not in _ENGINE_TIMEZONES:
        rows = session.query("SELECT time_zone FROM system.time_zones")
        _ENGINE_TIMEZONES[session.target] = frozenset(name for (name,) in rows)
    return _ENGINE_TIMEZONES[session.target]


def upsert(session: Session, team: Team) -> None:
    """Register ``team`` or change it; a new timezone makes its computed days stale (their
    hour buckets move), so the backfill recomputes them. A timezone ClickHouse does not
    know is refused: one such team would fail every aggregation and check."""
    if team.timezone not in engine_timezones(session):
        raise ConfigurationError(
            f"timezone {team.timezone!r} is not known to ClickHouse (SELECT * FROM "
            "system.time_zones lists those it knows): use a canonical IANA name such as "
            "'Europe/London'"
        )
    known = known_teams(session, [team.team_id])
    if known and known[0].timezone != team.timezone:
        change = f"{team.team_id}:{known[0].timezone}->{team.timezone}:{time.time_ns()}"
        digest = hashlib.sha1(change.encode(), usedforsecurity=False).digest()
        source_summary.mark_team_changed(session, team.team_id, int.from_bytes(digest[:8]) | 1)
    session.insert_columns(
        TEAMS,
        {"team_id": [team.team_id], "timezone": [team.timezone], "enabled": [team.enabled]},
    )
