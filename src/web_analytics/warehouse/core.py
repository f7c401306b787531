"""The warehouse: one object that knows where ClickHouse is and does every data operation."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from web_analytics.warehouse import accuracy, aggregation, backfill, gaps, queries
from web_analytics.warehouse.connection import (
    ConnectionTarget,
    EmbeddedStore,
    ServerStore,
    Session,
    open_store,
    parse_url,
)
from web_analytics.warehouse.errors import ConfigurationError
from web_analytics.warehouse.events import (
    INSERT_BATCH_ROWS,
    InsertReport,
    RejectedEvent,
    normalize_events,
    read_json_lines,
    rows_to_columns,
)
from web_analytics.warehouse.schema import (
    BOUNCES,
    EVENTS,
    PRE_AGGREGATED_TABLES,
    SOURCE_DAY_SUMMARY,
    STATS,
    TEAMS,
    schema_statements,
)
from web_analytics.warehouse.settings import resolve_settings


@dataclass(frozen=True)
class Team:
    team_id: int
    timezone: str
    enabled: bool


@dataclass(frozen=True)
class StoreSummary:
    """What the store holds: events per team and the UTC days they span."""

    events: int
    teams: int
    first_day: date | None
    last_day: date | None
    events_per_team: dict[int, int]


def validate_timezone(timezone: str) -> str:
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"unknown timezone {timezone!r}: use an IANA name such as 'Europe/London'"
        ) from None
    return timezone


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class Warehouse:
    """Everything the system does to ClickHouse, as plain Python calls.

    Each public method is one unit of work: it opens a session (on the embedded store:
    takes the cross-process lock), runs its statements and closes it. ``session()`` lets a
    caller group several calls into one unit.
    """

    def __init__(
        self,
        target: ConnectionTarget,
        store: EmbeddedStore | ServerStore,
        settings: dict[str, int | float | str],
    ):
        self.target = target
        self.store = store
        self.settings = settings
        self.cluster = target.cluster

    def __repr__(self) -> str:
        return f"Warehouse({self.target.describe()})"

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.store.session() as session:
            if aggregation.finish_interrupted_swaps(session):
                logging.getLogger(__name__).warning(
                    "finished the partition swaps of a run that died while swapping"
                )
            yield session

    # --- schema and teams ------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create every table and view the system needs; safe to run any number of times."""
        with self.session() as session:
            for statement in schema_statements(self.cluster):
                session.command(statement)

    def upsert_team(self, team_id: int, timezone: str = "UTC", enabled: bool = True) -> Team:
        """Register a team or change its timezone or enabled flag."""
        if isinstance(team_id, bool) or not isinstance(team_id, int) or team_id <= 0:
            raise ConfigurationError(f"team_id must be a positive integer, got {team_id!r}")
        validate_timezone(timezone)
        with self.session() as session:
            session.insert_columns(
                TEAMS,
                {"team_id": [team_id], "timezone": [timezone], "enabled": [enabled]},
            )
        return Team(team_id, timezone, enabled)

    def teams(self) -> list[Team]:
        """Every known team: registry rows, plus teams with events (enabled, in UTC)."""
        with self.session() as session:
            rows = session.query(
                "SELECT * FROM ("
                "SELECT team_id, timezone, enabled FROM {teams:Identifier} FINAL "
                "UNION ALL "
                "SELECT DISTINCT team_id, 'UTC', true FROM {summary:Identifier} "
                "WHERE team_id NOT IN (SELECT team_id FROM {teams:Identifier})"
                ") ORDER BY team_id",
                {"teams": TEAMS, "summary": SOURCE_DAY_SUMMARY},
            )
        return [Team(int(team), tz, bool(enabled)) for team, tz, enabled in rows]

    def team(self, team_id: int) -> Team:
        """One known team, or ``ValueError`` if the store has never heard of it."""
        with self.session() as session:
            rows = session.query(
                "SELECT timezone, enabled FROM ("
                "SELECT timezone, enabled, 0 AS rank FROM {teams:Identifier} FINAL "
                "WHERE team_id = {team_id:UInt64} "
                "UNION ALL "
                "SELECT 'UTC', true, 1 FROM {summary:Identifier} WHERE team_id = {team_id:UInt64} "
                "LIMIT 1"
                ") ORDER BY rank LIMIT 1",
                {"teams": TEAMS, "summary": SOURCE_DAY_SUMMARY, "team_id": team_id},
            )
        if not rows:
            raise ValueError(f"unknown team {team_id}: it has no events and no registry entry")
        [(timezone, enabled)] = rows
        return Team(team_id, timezone, bool(enabled))

    # --- events ----------------------------------------------------------------------------

    def insert_events(self, events: Iterable[Mapping[str, Any]]) -> InsertReport:
        """Store PostHog-shaped events in large batches; invalid ones are reported, not stored."""
        inserted = 0
        rejected: list[RejectedEvent] = []
        with self.session() as session:
            for offset, chunk in enumerate(_chunks(events, INSERT_BATCH_ROWS)):
                rows, bad = normalize_events(chunk)
                base = offset * INSERT_BATCH_ROWS
                rejected.extend(RejectedEvent(base + r.position, r.reason) for r in bad)
                if rows:
                    session.insert_columns(EVENTS, rows_to_columns(rows))
                    inserted += len(rows)
        return InsertReport(inserted=inserted, rejected=rejected)

    def insert_events_file(self, path: str | Path) -> InsertReport:
        """Load a JSON-lines file of PostHog-shaped events; rejected positions are 0-based
        line indexes of the file (blank lines are skipped)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigurationError(f"events file {path} does not exist")
        return self.insert_events(read_json_lines(path))

    def insert_event_columns(self, batches: Iterable[Mapping[str, Sequence[Any]]]) -> int:
        """Store already-canonical column batches (the generator's output); returns rows."""
        total = 0
        with self.session() as session:
            for batch in batches:
                session.insert_arrow(EVENTS, batch)
                total += len(next(iter(batch.values())))
        return total

    def summary(self) -> StoreSummary:
        """Events per team and the span of days in the store."""
        with self.session() as session:
            rows = session.query(
                "SELECT team_id, sum(events), min(day), max(day) FROM {summary:Identifier} "
                "GROUP BY team_id ORDER BY team_id",
                {"summary": SOURCE_DAY_SUMMARY},
            )
        per_team = {int(team): int(events) for team, events, _, _ in rows}
        return StoreSummary(
            events=sum(per_team.values()),
            teams=len(per_team),
            first_day=min((row[2] for row in rows), default=None),
            last_day=max((row[3] for row in rows), default=None),
            events_per_team=per_team,
        )

    # --- pre-aggregation -------------------------------------------------------------------

    def aggregate(
        self,
        first_day: date,
        last_day: date,
        team_ids: Sequence[int] | None = None,
        settings_preset: str = "default",
        extra_settings: str | None = None,
        run_id: str | None = None,
        trigger: str = "manual",
        max_events_per_pass: int = aggregation.DEFAULT_MAX_EVENTS_PER_PASS,
    ) -> aggregation.AggregationResult:
        """Compute both pre-aggregated tables for UTC days ``[first_day, last_day]``.

        Every enabled team is computed (or only ``team_ids``; other teams' rows are kept as
        they were). Each day is swapped in atomically, so readers see the old or the new
        day, never a mix; rerunning gives identical contents. The attempt is recorded in
        the backfill status records (``run_id`` and ``trigger`` say who asked). Memory is
        bounded by reading at most about ``max_events_per_pass`` events' sessions at a time.
        """
        queries.validate_range(first_day, last_day, ("first_day", "last_day"))
        settings = resolve_settings(settings_preset, extra_settings)
        computed = self.enabled_team_timezones(team_ids)
        kept = (
            []
            if team_ids is None
            else sorted({team.team_id for team in self.teams()} - set(computed))
        )
        run_id = run_id or f"manual-{uuid.uuid4()}"
        days = aggregation.days_between(first_day, last_day)
        started_at = datetime.now(UTC)
        with self.session() as session:
            attempt = {"days": days, "run_id": run_id, "trigger": trigger, "started_at": started_at}
            backfill.record_attempt(session, status=backfill.AttemptStatus.STARTED, **attempt)
            try:
                result = aggregation.aggregate_range(
                    session,
                    computed,
                    first_day,
                    last_day,
                    kept,
                    settings,
                    self.cluster,
                    max_events_per_pass,
                )
            except Exception as error:
                self._record_failure(session, attempt, error)
                raise
            # Teams carried over unchanged keep the fingerprints they were computed with.
            carried = backfill.recorded_fingerprints(session, kept, first_day, last_day)
            backfill.record_attempt(
                session,
                status=backfill.AttemptStatus.SUCCEEDED,
                finished_at=datetime.now(UTC),
                rows={table: result.rows_for(table) for table in PRE_AGGREGATED_TABLES},
                fingerprints={**carried, **result.fingerprints},
                **attempt,
            )
        return result

    @staticmethod
    def _record_failure(session: Session, attempt: dict[str, Any], error: Exception) -> None:
        try:
            backfill.record_attempt(
                session,
                status=backfill.AttemptStatus.FAILED,
                finished_at=datetime.now(UTC),
                error=f"{type(error).__name__}: {error}",
                **attempt,
            )
        except Exception:  # the store may be what failed; the 'started' record then stands
            logging.getLogger(__name__).exception("could not record the failed attempt")

    def enabled_team_timezones(self, team_ids: Sequence[int] | None = None) -> dict[int, str]:
        """Timezone of every enabled team (or of the enabled teams among ``team_ids``)."""
        teams = self.teams()
        if team_ids is not None:
            unknown = sorted(set(team_ids) - {team.team_id for team in teams})
            if unknown:
                raise ValueError(
                    f"unknown team(s) {unknown}: they have no events and no registry entry"
                )
        return {
            team.team_id: team.timezone
            for team in teams
            if team.enabled and (team_ids is None or team.team_id in team_ids)
        }

    def compare_with_raw(
        self, table: str, first_day: date, last_day: date
    ) -> accuracy.AccuracyReport:
        """Per team and UTC day, where ``table`` disagrees with the raw events: views,
        sessions, bounces and duration exactly, visitors within 1 %."""
        if table not in PRE_AGGREGATED_TABLES:
            raise ValueError(f"table must be one of {', '.join(PRE_AGGREGATED_TABLES)}")
        queries.validate_range(first_day, last_day, ("first_day", "last_day"))
        with self.session() as session:
            return accuracy.compare_with_raw(
                session,
                table,
                self._read_tables(),
                self.enabled_team_timezones(),
                first_day,
                last_day,
            )

    # --- gaps, coverage and backfill records ---------------------------------------------

    @staticmethod
    def _window(days_back: int, today: date | None) -> tuple[date, date]:
        if (
            isinstance(days_back, bool)
            or not isinstance(days_back, int)
            or not 1 <= days_back <= 3650
        ):
            raise ValueError(f"days_back must be a whole number from 1 to 3650, got {days_back!r}")
        today = today or datetime.now(UTC).date()
        return today - timedelta(days=days_back), today - timedelta(days=1)

    def find_gaps(
        self, days_back: int = 30, team_ids: Sequence[int] | None = None, today: date | None = None
    ) -> gaps.GapReport:
        """State of every enabled team and UTC day in ``[today - days_back, today - 1]`` for
        both tables: empty, missing, stale, failed or complete."""
        first_day, last_day = self._window(days_back, today)
        if team_ids is None:
            with self.session() as session:
                return gaps.detect(session, None, first_day, last_day, self.cluster)
        team_ids_sorted = sorted(self.enabled_team_timezones(team_ids))
        with self.session() as session:
            report = gaps.detect(session, team_ids_sorted, first_day, last_day, self.cluster)
        return dataclasses.replace(report, queries=report.queries + 1)  # + the teams query

    def update_coverage(
        self, days_back: int = 30, today: date | None = None
    ) -> gaps.CoverageReport:
        """Refresh the coverage table: per team, UTC day and table, source and aggregated
        pageviews and the state."""
        first_day, last_day = self._window(days_back, today)
        with self.session() as session:
            report = gaps.detect(session, None, first_day, last_day, self.cluster)
            return gaps.write_coverage(session, report, datetime.now(UTC))

    def backfill_records(self, first_day: date, last_day: date) -> list[backfill.BackfillRecord]:
        """Every recorded attempt for the UTC days ``[first_day, last_day]``."""
        with self.session() as session:
            return backfill.read_records(session, first_day, last_day)

    def cleanup_backfill_records(
        self, retention_days: int = 90, now: datetime | None = None
    ) -> backfill.CleanupReport:
        """Delete status records older than ``retention_days``, always keeping the latest
        record (and the latest success) of every table and day."""
        if isinstance(retention_days, bool) or not isinstance(retention_days, int):
            raise ValueError(f"retention_days must be a whole number, got {retention_days!r}")
        if not 1 <= retention_days <= 3650:
            raise ValueError(f"retention_days must be from 1 to 3650, got {retention_days}")
        with self.session() as session:
            return backfill.cleanup_records(
                session, retention_days, now or datetime.now(UTC), self.cluster
            )

    # --- dashboard queries -----------------------------------------------------------------

    def _read_tables(self) -> dict[str, str]:
        return {EVENTS: EVENTS, STATS: STATS, BOUNCES: BOUNCES}

    def overview(
        self, team_id: int, date_from: date, date_to: date, source: str = "preaggregated"
    ) -> queries.Overview:
        """Visitors, views, sessions, average duration and bounce rate over local dates."""
        queries.validate_range(date_from, date_to)
        queries.validate_source(source)
        team = self.team(team_id)
        with self.session() as session:
            return queries.overview(
                session, team_id, team.timezone, date_from, date_to, source, self._read_tables()
            )

    def breakdown(
        self,
        team_id: int,
        by: str,
        date_from: date,
        date_to: date,
        source: str = "preaggregated",
        limit: int = 100,
    ) -> list[queries.BreakdownRow]:
        """Metrics split by ``by``, sorted by visitors then views, descending."""
        queries.validate_dimension(by)
        queries.validate_range(date_from, date_to)
        queries.validate_source(source)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        team = self.team(team_id)
        with self.session() as session:
            return queries.breakdown(
                session,
                team_id,
                team.timezone,
                by,
                date_from,
                date_to,
                source,
                limit,
                self._read_tables(),
            )


def connect(url: str | None = None, lock_timeout: float | None = None) -> Warehouse:
    """A warehouse for ``url``; ``None`` means ``WEB_ANALYTICS_URL`` or ``./.data/clickhouse``.

    Forms: ``chdb:///absolute/path`` (embedded), ``http(s)://user:password@host:port/db``
    (server), with ``?cluster=NAME`` for cluster DDL. Nothing is opened until first use.
    """
    target = parse_url(url)
    return Warehouse(target, open_store(target, lock_timeout), resolve_settings())
