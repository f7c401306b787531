"""The gap report in words and aligned text tables, for the ops' logs and the demo: every
count carries its unit (UTC days, team-days), and a list that is cut says so and where the
rest is."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from web_analytics.warehouse.gaps import NEEDS_BACKFILL, DayState, GapReport
from web_analytics.warehouse.schema import PRE_AGGREGATED_TABLES


def aligned(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Rows under their headers in columns: whole numbers right-aligned (with thousands
    separators), anything else left-aligned."""
    numeric = [
        bool(rows) and all(isinstance(row[i], int) for row in rows) for i in range(len(headers))
    ]
    cells = [[f"{v:,}" if isinstance(v, int) else str(v) for v in row] for row in rows]
    widths = [
        max([len(header), *(len(row[i]) for row in cells)]) for i, header in enumerate(headers)
    ]

    def line(values: Sequence[str]) -> str:
        padded = (
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(values, widths, numeric, strict=True)
        )
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), *(line(row) for row in cells)])


def cut_notice(shown: int, total: int, where: str) -> str:
    """What a list cut at ``shown`` of ``total`` items says: how many, and where all are."""
    return f"{shown} of {total} shown; all: {where}"


def days_phrase(count: int) -> str:
    return f"{count} UTC day{'' if count == 1 else 's'}"


def summary(report: GapReport) -> str:
    """One line: the window, its teams, the UTC days needing backfill and the team-days
    behind them, per state (per table when the tables differ)."""
    window = report.last_day.toordinal() - report.first_day.toordinal() + 1
    teams = len(report.team_ids)
    head = (
        f"{report.first_day} to {report.last_day} ({days_phrase(window)} x {teams} "
        f"team{'' if teams == 1 else 's'}): {days_phrase(len(report.needing_backfill))} "
        f"need{'s' if len(report.needing_backfill) == 1 else ''} backfill"
    )
    needing = {
        table: {state: n for state, n in per_state.items() if state in NEEDS_BACKFILL and n}
        for table, per_state in report.counts().items()
    }
    if not any(needing.values()):
        return head
    per_table = list(needing.values())
    if all(counts == per_table[0] for counts in per_table):
        return f"{head} ({_team_days(per_table[0])} in each table)"
    return f"{head} (" + "; ".join(f"{t}: {_team_days(c)}" for t, c in needing.items()) + ")"


def _team_days(counts: dict[DayState, int]) -> str:
    states = ", ".join(f"{n:,} {state.value}" for state, n in counts.items())
    total = sum(counts.values())
    return f"{total:,} team-day{'' if total == 1 else 's'}: {states}"


def counts_table(counts: dict[str, dict[DayState, int]]) -> str:
    """Team-days per table and state."""
    return aligned(
        ["team-days", *(state.value for state in DayState)],
        [(table, *(per_state[state] for state in DayState)) for table, per_state in counts.items()],
    )


def dates_line(days: Sequence[date], limit: int, where: str) -> str:
    """The latest ``limit`` of ``days``, saying so when some are left out."""
    shown = days[-limit:]
    text = ", ".join(str(day) for day in shown)
    if len(shown) < len(days):
        text += f" ({cut_notice(len(shown), len(days), where)})"
    return text


@dataclass(frozen=True)
class GapGroup:
    """Teams sharing one run of consecutive days in one state, in the same tables."""

    first_day: date
    last_day: date
    state: DayState
    team_ids: tuple[int, ...]
    tables: tuple[str, ...]

    @property
    def days(self) -> int:
        return self.last_day.toordinal() - self.first_day.toordinal() + 1


def gap_groups(report: GapReport) -> list[GapGroup]:
    """The ranges needing backfill, teams with the same range and state in the same tables
    folded into one group; ordered by first day, last day and state."""
    tables_of: dict[tuple[date, date, DayState, int], set[str]] = defaultdict(set)
    for gap in report.ranges(NEEDS_BACKFILL):
        tables_of[(gap.first_day, gap.last_day, gap.state, gap.team_id)].add(gap.table)
    teams_of: dict[tuple[date, date, DayState, tuple[str, ...]], list[int]] = defaultdict(list)
    for (first, last, state, team), tables in tables_of.items():
        ordered = tuple(table for table in PRE_AGGREGATED_TABLES if table in tables)
        teams_of[(first, last, state, ordered)].append(team)
    return [
        GapGroup(first, last, state, tuple(sorted(teams)), tables)
        for (first, last, state, tables), teams in sorted(teams_of.items())
    ]


def groups_table(groups: Sequence[GapGroup], limit: int, where: str) -> str:
    """The groups as an aligned table, at most ``limit`` rows and a line saying so."""
    rows = [
        (
            str(group.first_day),
            str(group.last_day),
            group.state.value,
            f"{len(group.team_ids)} team{'' if len(group.team_ids) == 1 else 's'} x "
            f"{group.days} day{'' if group.days == 1 else 's'}",
            team_list(group.team_ids),
            "both" if len(group.tables) == len(PRE_AGGREGATED_TABLES) else ", ".join(group.tables),
        )
        for group in groups[:limit]
    ]
    text = aligned(["first day", "last day", "state", "extent", "teams", "tables"], rows)
    if len(groups) > limit:
        text += "\n" + cut_notice(limit, len(groups), where)
    return text


def team_list(team_ids: Sequence[int]) -> str:
    """Sorted team ids with consecutive runs shortened: ``1-3, 7``."""
    runs: list[list[int]] = []
    for team in sorted(team_ids):
        if runs and team == runs[-1][-1] + 1:
            runs[-1].append(team)
        else:
            runs.append([team])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)
