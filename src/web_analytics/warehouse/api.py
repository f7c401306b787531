"""The warehouse's public entry point: one object per store, one thin method per operation.

Each method checks its arguments (``validation``), opens one session and calls the module
that owns the logic; none of them holds SQL.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

from web_analytics.warehouse import (
    accuracy,
    aggregation,
    attempts,
    dashboard,
    gaps,
    loading,
    source_summary,
    teams,
    validation,
)
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
    TimestampBounds,
    normalize_events,
    read_json_lines,
    rows_to_columns,
)
from web_analytics.warehouse.schema import PRE_AGGREGATED_TABLES, schema_statements
from web_analytics.warehouse.settings import ExtraSettings, resolve_settings
from web_analytics.warehouse.teams import Team
from web_analytics.warehouse.validation import (
    DEFAULT_LOOKBACK_DAYS,
    DEFAULT_RETENTION_DAYS,
    MAX_WINDOW_DAYS,
)

StoreSummary = source_summary.StoreSummary


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _window(days_back: int, today: date | None) -> tuple[date, date]:
    """The UTC days ``[today - days_back, today - 1]``."""
    validation.whole_number(days_back, "days_back", 1, MAX_WINDOW_DAYS)
    today = datetime.now(UTC).date() if today is None else validation.day(today, "today")
    return today - timedelta(days=days_back), today - timedelta(days=1)


@dataclass(frozen=True)
class Warehouse:
    """Everything the system does to ClickHouse, as plain Python calls.

    Each public method is one unit of work: it opens a session (on the embedded store:
    takes the cross-process lock), runs its statements and closes it. ``session()`` lets a
    caller group several calls into one unit.
    """

    target: ConnectionTarget
    store: EmbeddedStore | ServerStore

    @property
    def cluster(self) -> str | None:
        return self.target.cluster

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
        team = Team(validation.team_id(team_id), validation.timezone(timezone), bool(enabled))
        with self.session() as session:
            teams.upsert(session, team)
        return team

    def teams(self) -> list[Team]:
        """Every known team: registry rows, plus teams with events (enabled, in UTC)."""
        with self.session() as session:
            return teams.known_teams(session)

    def team(self, team_id: int) -> Team:
        """One known team, or ``ConfigurationError`` if the store has never heard of it."""
        validation.team_id(team_id)
        with self.session() as session:
            return teams.team(session, team_id)

    def enabled_team_timezones(self, team_ids: Sequence[int] | None = None) -> dict[int, str]:
        """Timezone of every enabled team (or of the enabled teams among ``team_ids``)."""
        team_ids = validation.team_ids(team_ids)
        with self.session() as session:
            return teams.enabled_team_timezones(session, team_ids)

    # --- events ----------------------------------------------------------------------------

    def insert_events(
        self,
        events: Iterable[Mapping[str, Any]],
        timestamp_bounds: TimestampBounds | None = None,
    ) -> InsertReport:
        """Store PostHog-shaped events in large batches, each event once however often it is
        delivered. Invalid events are reported with their 0-based position and a reason, not
        stored; timestamps outside ``timestamp_bounds`` (default: 2000-01-01 to one day after
        now) are invalid."""
        if isinstance(events, str | bytes | Mapping) or not isinstance(events, Iterable):
            raise ConfigurationError(
                f"events must be an iterable of event mappings, got {type(events).__name__}"
            )
        window = (timestamp_bounds or TimestampBounds()).window(datetime.now(UTC))
        inserted = duplicates = 0
        rejected: list[RejectedEvent] = []
        with self.session() as session:
            for offset, chunk in enumerate(_chunks(events, INSERT_BATCH_ROWS)):
                rows, bad = normalize_events(chunk, window, offset * INSERT_BATCH_ROWS)
                rejected.extend(bad)
                if rows:
                    result = loading.store_batch(session, rows_to_columns(rows))
                    inserted += result.stored
                    duplicates += result.duplicates
        return InsertReport(inserted=inserted, rejected=rejected, duplicates=duplicates)

    def insert_events_file(
        self, path: str | Path, timestamp_bounds: TimestampBounds | None = None
    ) -> InsertReport:
        """Load a JSON-lines file of PostHog-shaped events, as ``insert_events``; rejected
        positions are 0-based line indexes of the file (blank lines are skipped), and a line
        that is not JSON costs that line alone."""
        path = Path(path)
        if not path.is_file():
            raise ConfigurationError(f"events file {path} does not exist")
        return self.insert_events(read_json_lines(path), timestamp_bounds)

    def insert_event_columns(self, batches: Iterable[Mapping[str, Any]]) -> int:
        """Store already-canonical column batches (the generator's output), each event once;
        returns the rows received, repeated deliveries included."""
        total = 0
        with self.session() as session:
            for batch in batches:
                loading.store_batch(session, batch)
                total += len(next(iter(batch.values())))
        return total

    def summary(self) -> StoreSummary:
        """Events per team and the span of days in the store."""
        with self.session() as session:
            return source_summary.store_summary(session)

    # --- pre-aggregation -------------------------------------------------------------------

    def aggregate(
        self,
        first_day: date,
        last_day: date,
        team_ids: Sequence[int] | None = None,
        settings_preset: str = "default",
        extra_settings: ExtraSettings = None,
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
        ``extra_settings`` is a mapping of ClickHouse setting to value (or the text
        ``"name=value,name=value"``).
        """
        validation.date_range(first_day, last_day, ("first_day", "last_day"))
        team_ids = validation.team_ids(team_ids)
        settings = resolve_settings(settings_preset, extra_settings)
        with self.session() as session:
            computed = teams.enabled_team_timezones(session, team_ids)
            kept = (
                []
                if team_ids is None
                else sorted({team.team_id for team in teams.known_teams(session)} - set(computed))
            )
            return attempts.recorded_aggregation(
                session,
                aggregation.days_between(first_day, last_day),
                run_id or f"manual-{uuid.uuid4()}",
                trigger,
                kept,
                lambda: aggregation.aggregate_range(
                    session,
                    computed,
                    first_day,
                    last_day,
                    kept,
                    settings,
                    self.cluster,
                    max_events_per_pass,
                ),
            )

    def compare_with_raw(
        self, table: str, first_day: date, last_day: date
    ) -> accuracy.AccuracyReport:
        """Per team and UTC day, where ``table`` disagrees with the raw events: views,
        sessions, bounces and duration exactly, visitors within 1 %."""
        validation.one_of(table, PRE_AGGREGATED_TABLES, "table")
        validation.date_range(first_day, last_day, ("first_day", "last_day"))
        with self.session() as session:
            team_timezones = teams.enabled_team_timezones(session)
            return accuracy.compare_with_raw(session, [table], team_timezones, first_day, last_day)[
                table
            ]

    def check_accuracy(self, first_day: date, last_day: date) -> dict[str, accuracy.AccuracyReport]:
        """Both tables against one computation of the raw events over UTC days
        ``[first_day, last_day]``, recorded per day: teams that differ make their day
        ``inaccurate`` until it is computed again."""
        validation.date_range(first_day, last_day, ("first_day", "last_day"))
        with self.session() as session:
            team_timezones = teams.enabled_team_timezones(session)
            reports = accuracy.compare_with_raw(
                session, PRE_AGGREGATED_TABLES, team_timezones, first_day, last_day
            )
            accuracy.record_checks(session, list(reports.values()), datetime.now(UTC))
        return reports

    # --- gaps, coverage and backfill records ---------------------------------------------

    def find_gaps(
        self,
        days_back: int = DEFAULT_LOOKBACK_DAYS,
        team_ids: Sequence[int] | None = None,
        today: date | None = None,
        max_runtime: timedelta = gaps.DEFAULT_MAX_RUNTIME,
    ) -> gaps.GapReport:
        """State of every enabled team and UTC day in ``[today - days_back, today - 1]`` for
        both tables: empty, missing, stale, failed, running, inaccurate or complete. An
        attempt still in progress after ``max_runtime`` is taken for dead (failed)."""
        first_day, last_day = _window(days_back, today)
        team_ids = validation.team_ids(team_ids)
        now = datetime.now(UTC)
        with self.session() as session:
            if team_ids is None:
                return gaps.detect(
                    session, None, first_day, last_day, self.cluster, now, max_runtime
                )
            enabled = sorted(teams.enabled_team_timezones(session, team_ids))
            report = gaps.detect(
                session, enabled, first_day, last_day, self.cluster, now, max_runtime
            )
        return report.with_extra_queries(1)  # the teams query

    def record_ended_runs(self, runs: Sequence[attempts.EndedRun]) -> list[str]:
        """Close the attempts of runs that ended (failed, cancelled, killed) without recording
        how, so their days count as failed; returns the ids of the runs recorded now."""
        with self.session() as session:
            return attempts.record_ended_runs(session, runs, datetime.now(UTC))

    def update_coverage(
        self, days_back: int = DEFAULT_LOOKBACK_DAYS, today: date | None = None
    ) -> gaps.CoverageReport:
        """Refresh the coverage table: per team, UTC day and table, source and aggregated
        pageviews and the state."""
        first_day, last_day = _window(days_back, today)
        with self.session() as session:
            now = datetime.now(UTC)
            report = gaps.detect(session, None, first_day, last_day, self.cluster, now)
            return gaps.write_coverage(session, report, now)

    def backfill_records(self, first_day: date, last_day: date) -> list[attempts.BackfillRecord]:
        """Every recorded attempt for the UTC days ``[first_day, last_day]``."""
        validation.date_range(first_day, last_day, ("first_day", "last_day"))
        with self.session() as session:
            return attempts.read_records(session, first_day, last_day)

    def cleanup_backfill_records(
        self, retention_days: int = DEFAULT_RETENTION_DAYS, now: datetime | None = None
    ) -> attempts.CleanupReport:
        """Delete status records older than ``retention_days``, always keeping the latest
        record (and the latest success) of every table and day."""
        validation.whole_number(retention_days, "retention_days", 1, MAX_WINDOW_DAYS)
        with self.session() as session:
            return attempts.cleanup_records(
                session, retention_days, now or datetime.now(UTC), self.cluster
            )

    # --- dashboard queries -----------------------------------------------------------------

    def overview(
        self, team_id: int, date_from: date, date_to: date, source: str = "auto"
    ) -> dashboard.Overview:
        """Visitors, views, sessions, average duration and bounce rate over local dates.

        ``source="auto"`` reads the UTC days the gap detection finds complete from the
        pre-aggregated tables and every other day with events (missing, stale, failed,
        running, inaccurate, not yet computed, today so far) from the raw events, in one
        answer; ``"preaggregated"`` and ``"raw"`` read only from there. ``.freshness`` says
        which dates came from where, and why."""
        validation.team_id(team_id)
        validation.date_range(date_from, date_to)
        validation.one_of(source, dashboard.SOURCES, "source")
        now = datetime.now(UTC)
        with self.session() as session:
            team = teams.team(session, team_id)
            return dashboard.overview(session, team, date_from, date_to, source, self.cluster, now)

    def breakdown(
        self,
        team_id: int,
        by: str,
        date_from: date,
        date_to: date,
        source: str = "auto",
        limit: int = 100,
    ) -> dashboard.Breakdown:
        """Metrics split by ``by``, sorted by visitors then views, descending: a list of
        ``BreakdownRow`` with a ``.freshness``, read from ``source`` as in ``overview``."""
        validation.team_id(team_id)
        dashboard.validate_dimension(by)
        validation.date_range(date_from, date_to)
        validation.one_of(source, dashboard.SOURCES, "source")
        validation.whole_number(limit, "limit", 1, dashboard.MAX_LIMIT)
        now = datetime.now(UTC)
        with self.session() as session:
            team = teams.team(session, team_id)
            return dashboard.breakdown(
                session, team, by, date_from, date_to, source, limit, self.cluster, now
            )

    def timeseries(
        self,
        team_id: int,
        date_from: date,
        date_to: date,
        interval: str = "day",
        source: str = "auto",
    ) -> dashboard.Timeseries:
        """Visitors, views, sessions, bounce rate and average duration per local day
        (``interval="day"``) or local hour (``"hour"``): a list of ``Point`` with a
        ``.freshness``, read from ``source`` as in ``overview``."""
        validation.team_id(team_id)
        validation.date_range(date_from, date_to)
        validation.one_of(interval, dashboard.INTERVALS, "interval")
        validation.one_of(source, dashboard.SOURCES, "source")
        now = datetime.now(UTC)
        with self.session() as session:
            team = teams.team(session, team_id)
            return dashboard.timeseries(
                session, team, date_from, date_to, interval, source, self.cluster, now
            )


def connect(url: str | None = None, lock_timeout: float | None = None) -> Warehouse:
    """A warehouse for ``url``; ``None`` means ``WEB_ANALYTICS_URL`` or ``./.data/clickhouse``.

    Forms: ``chdb:///absolute/path`` (embedded), ``http(s)://user:password@host:port/db``
    (server), with ``?cluster=NAME`` for cluster DDL. Nothing is opened until first use.
    """
    target = parse_url(url)
    return Warehouse(target, open_store(target, lock_timeout))
