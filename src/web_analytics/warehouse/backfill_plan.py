"""Which days a backfill launches now, grouped into runs: the decision the sensor and the
02:00 schedule make from a gap report, kept free of any orchestrator so it can be tested
and reused on its own."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from web_analytics.warehouse.gaps import GapReport


@dataclass(frozen=True)
class BackfillRange:
    """Consecutive UTC days computed in one run; ``team_ids`` set when only those teams need
    it (the other teams' rows are kept as they are)."""

    first_day: date
    last_day: date
    team_ids: tuple[int, ...] | None
    key: str  # changes whenever a day of the range changes or fails again

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1


@dataclass(frozen=True)
class BackfillPlan:
    ranges: list[BackfillRange]  # newest first
    needing: list[date]  # every day needing backfill, newest first
    in_flight: list[date]  # days a queued or running run already covers
    backing_off: list[date]  # failed recently: retried on a later tick
    failing: list[date]  # failed too often in a row: reported, not relaunched

    @property
    def launched_days(self) -> int:
        return sum(r.days for r in self.ranges)


def plan_backfill(
    report: GapReport,
    in_flight: Collection[date],
    now: datetime,
    tick: timedelta,
    max_failures: int,
    max_days: int,
    max_days_per_run: int,
) -> BackfillPlan:
    """At most ``max_days`` days needing backfill, newest first, in runs of consecutive days
    of at most ``max_days_per_run`` (0: no limit).

    A day already in flight is left alone. A day whose latest ``n`` attempts failed waits
    ``2 ** (n - 1) - 1`` ticks after the last failure (so 0, 1, 3 ... ticks) and is reported
    as failing, not launched, from ``max_failures`` failures on. Only days that can launch
    count towards ``max_days``, so a stuck day never starves the others.
    """
    needing = sorted(report.needing_backfill, reverse=True)
    busy, backing_off, failing, launchable = [], [], [], []
    for day in needing:
        failures = report.failures.get(day)
        if day in in_flight:
            busy.append(day)
        elif failures and failures.count >= max_failures:
            failing.append(day)
        elif (
            failures
            and failures.count > 1
            and now < failures.last_failed_at + _wait(failures.count, tick)
        ):
            backing_off.append(day)
        else:
            launchable.append(day)
    launchable = launchable[:max_days]
    return BackfillPlan(
        ranges=_ranges(report, launchable, max_days_per_run),
        needing=needing,
        in_flight=busy,
        backing_off=backing_off,
        failing=failing,
    )


def _wait(failures: int, tick: timedelta) -> timedelta:
    """How long a day waits after its latest failure: 0, 1, 3, 7 ... ticks."""
    return tick * (2 ** (failures - 1) - 1)


def _ranges(report: GapReport, days: list[date], max_days_per_run: int) -> list[BackfillRange]:
    """``days`` (newest first) grouped into runs of consecutive days."""
    groups: list[list[date]] = []
    for day in days:
        group = groups[-1] if groups else None
        if (
            group is not None
            and group[-1] - day == timedelta(days=1)
            and (max_days_per_run == 0 or len(group) < max_days_per_run)
        ):
            group.append(day)
        else:
            groups.append([day])
    return [_range(report, sorted(group)) for group in groups]


def _range(report: GapReport, days: list[date]) -> BackfillRange:
    needing_teams = set().union(*(report.teams_needing_backfill(day) for day in days))
    all_teams = {
        team
        for day in days
        for (team, _), letters in report.states.items()
        if letters[(day - report.first_day).days] != "e"
    }
    # Only the teams that need it when some other team of these days is fine as it is.
    team_ids = tuple(sorted(needing_teams)) if needing_teams < all_teams else None
    day_keys = [report.day_keys.get(day, "none") for day in days]
    key = hashlib.sha1(repr((day_keys, team_ids)).encode(), usedforsecurity=False)
    return BackfillRange(days[0], days[-1], team_ids, key.hexdigest()[:16])
