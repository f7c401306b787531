"""Where each part of a dashboard read comes from: UTC days the gap detection finds complete
are read from the pre-aggregated stats (their day grain, or their hours for hourly series),
every other UTC day with events from the raw events, and the answer says which local dates
came from where, and why.

A team-local date spans parts of two UTC days in most timezones, so a read is planned in
hour buckets: the range's buckets are split at UTC midnights and each UTC day's buckets go
to one side.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from web_analytics.warehouse import gaps
from web_analytics.warehouse.connection import Session
from web_analytics.warehouse.gaps import DayState
from web_analytics.warehouse.schema import STATS
from web_analytics.warehouse.teams import Team

_DAY = timedelta(days=1)


class Reason(StrEnum):
    """Why a date was computed from raw events."""

    MISSING = "missing"  # the pre-aggregated tables have none of the team's rows that day
    STALE = "stale"  # computed, but events arrived or changed afterwards
    FAILED = "failed"  # the last attempt failed or died
    RUNNING = "running"  # an attempt is computing it now
    INACCURATE = "inaccurate"  # its accuracy check against the raw events failed
    # After the last day the tables were computed for, or in a UTC day not over yet.
    NOT_YET_COMPUTED = "not yet computed"
    TODAY = "today"  # the team's local today (or later): its events so far
    NOT_PRE_AGGREGATED = "team not pre-aggregated"  # the team is disabled
    REQUESTED = "requested"  # the caller asked for source="raw"


_STATE_REASONS = {
    DayState.MISSING: Reason.MISSING,
    DayState.STALE: Reason.STALE,
    DayState.FAILED: Reason.FAILED,
    DayState.RUNNING: Reason.RUNNING,
    DayState.INACCURATE: Reason.INACCURATE,
}


@dataclass(frozen=True)
class Freshness:
    """Where the numbers of one dashboard answer came from, per team-local date of its range:
    each date is in exactly one of ``preaggregated``, ``raw`` and ``no_events``. A date that
    is partly raw (a local date spans two UTC days) is listed as raw."""

    preaggregated: tuple[date, ...]
    raw: dict[date, Reason]
    # Dates without events: before the team's first, in the future, or without traffic.
    no_events: tuple[date, ...]
    # Every event before this instant is counted (the end of the range, or now if sooner);
    # None when the source was forced to "preaggregated", whose completeness is not checked.
    complete_until: datetime | None

    def describe(self) -> str:
        """One line, e.g. ``7 days pre-aggregated``, ``6 pre-aggregated + today raw`` or
        ``5 pre-aggregated + 2 raw (stale, today)``."""
        reasons = list(dict.fromkeys(self.raw.values()))
        parts = [f"{len(self.preaggregated)} pre-aggregated"] if self.preaggregated else []
        if reasons == [Reason.TODAY] and len(self.raw) == 1:
            parts.append("today raw")
        elif reasons:
            parts.append(f"{len(self.raw)} raw ({', '.join(reasons)})")
        if self.no_events:
            parts.append(f"{len(self.no_events)} without events")
        if len(parts) == 1 and not self.raw:
            count, kind = parts[0].split(" ", 1)
            return f"{count} day{'' if count == '1' else 's'} {kind}"
        return " + ".join(parts)


@dataclass(frozen=True)
class ReadPlan:
    """How one team's local date range is read: ``complete_days`` (UTC) from the
    pre-aggregated stats (day grain or hours), the buckets of ``raw_days`` (UTC) from the raw
    events, as ``raw_spans`` of consecutive buckets (``[start, end)``, UTC), nothing elsewhere
    (no events)."""

    complete_days: tuple[date, ...]
    raw_days: tuple[date, ...]
    raw_spans: tuple[tuple[datetime, datetime], ...]
    freshness: Freshness


def local_bucket_range(timezone: str, date_from: date, date_to: date) -> tuple[datetime, datetime]:
    """UTC instants of local midnight starting ``date_from`` and ending ``date_to``."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(date_from, time(), zone).astimezone(UTC)
    end = datetime.combine(date_to + _DAY, time(), zone).astimezone(UTC)
    return start, end


def _dates(date_from: date, date_to: date) -> list[date]:
    return [date_from + timedelta(days=i) for i in range((date_to - date_from).days + 1)]


def _utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def _utc_days(start: datetime, end: datetime) -> list[date]:
    """The UTC days that hold a part of ``[start, end)``."""
    return _dates(start.date(), (end - timedelta(microseconds=1)).date())


def forced(timezone: str, date_from: date, date_to: date, source: str, now: datetime) -> Freshness:
    """The freshness of a read the caller forced to ``source`` ("preaggregated" or "raw"):
    every date from there, unchecked."""
    dates = tuple(_dates(date_from, date_to))
    if source == "raw":
        end = local_bucket_range(timezone, date_from, date_to)[1]
        return Freshness((), dict.fromkeys(dates, Reason.REQUESTED), (), min(now, end))
    return Freshness(dates, {}, (), None)


def plan(
    timezone: str,
    date_from: date,
    date_to: date,
    team_days: gaps.TeamDays | None,
    now: datetime,
) -> ReadPlan:
    """Which buckets of the local dates ``[date_from, date_to]`` come from where, given the
    team's UTC day states (``None``: the team is not pre-aggregated, so every day is raw).

    A UTC day is read from the pre-aggregated table only if it is complete and over; a day
    without pageviews is not read at all; every other day is read from raw events.
    """
    start, end = local_bucket_range(timezone, date_from, date_to)
    utc_today = now.astimezone(UTC).date()
    complete: list[date] = []
    raw_days: dict[date, Reason] = {}
    for day in _utc_days(start, end):
        if team_days is None:
            raw_days[day] = Reason.NOT_PRE_AGGREGATED
            continue
        state = team_days.states[day]
        if state is DayState.EMPTY:
            continue
        if day >= utc_today:  # not over: its local dates before today are not computed yet
            raw_days[day] = Reason.NOT_YET_COMPUTED
        elif state is DayState.COMPLETE:
            complete.append(day)
        elif state is DayState.MISSING and (
            team_days.last_computed_day is None or day > team_days.last_computed_day
        ):
            raw_days[day] = Reason.NOT_YET_COMPUTED
        else:
            raw_days[day] = _STATE_REASONS[state]

    local_today = now.astimezone(ZoneInfo(timezone)).date()
    preaggregated, no_events, raw = [], [], {}
    for local_date in _dates(date_from, date_to):
        parts = _utc_days(*local_bucket_range(timezone, local_date, local_date))
        reasons = [raw_days[day] for day in parts if day in raw_days]
        if reasons:
            today = local_date >= local_today and team_days is not None
            raw[local_date] = Reason.TODAY if today else reasons[0]
        elif any(day in complete for day in parts):
            preaggregated.append(local_date)
        else:
            no_events.append(local_date)

    spans: list[tuple[datetime, datetime]] = []
    for day in sorted(raw_days):
        span = (max(start, _utc_midnight(day)), min(end, _utc_midnight(day + _DAY)))
        if spans and spans[-1][1] == span[0]:
            spans[-1] = (spans[-1][0], span[1])
        else:
            spans.append(span)
    freshness = Freshness(tuple(preaggregated), raw, tuple(no_events), min(now, end))
    return ReadPlan(tuple(complete), tuple(sorted(raw_days)), tuple(spans), freshness)


def read_plan(
    session: Session,
    team: Team,
    date_from: date,
    date_to: date,
    cluster: str | None,
    now: datetime,
) -> ReadPlan:
    """The plan of an ``auto`` read, from one query of the gap detection's own tables (none
    for a disabled team, which is never pre-aggregated)."""
    team_days = None
    if team.enabled:
        utc_days = _utc_days(*local_bucket_range(team.timezone, date_from, date_to))
        team_days = gaps.team_days(
            session, team.team_id, STATS, utc_days[0], utc_days[-1], cluster, now
        )
    return plan(team.timezone, date_from, date_to, team_days, now)
