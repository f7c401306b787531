"""Backfill status records: one row per partition write attempt (table and UTC day), with
the Dagster run, what triggered it, how it ended and the source fingerprints it read."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from web_analytics.warehouse.aggregation import AggregationResult
from web_analytics.warehouse.connection import Session
from web_analytics.warehouse.schema import BACKFILL_STATUS, PRE_AGGREGATED_TABLES, local_name

MAX_ERROR_CHARS = 4000


class AttemptStatus(StrEnum):
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class BackfillRecord:
    table: str
    day: date
    run_id: str
    trigger: str
    status: AttemptStatus
    started_at: datetime
    finished_at: datetime | None
    rows_written: int
    error: str


@dataclass(frozen=True)
class CleanupReport:
    cutoff: datetime
    deleted: int
    kept: int


def record_attempt(
    session: Session,
    days: Sequence[date],
    run_id: str,
    trigger: str,
    status: AttemptStatus,
    started_at: datetime,
    finished_at: datetime | None = None,
    rows: Mapping[str, Mapping[date, int]] | None = None,
    fingerprints: Mapping[tuple[int, date], int] | None = None,
    error: str = "",
    failed_teams: Mapping[int, str] | None = None,
) -> None:
    """Write the state of one attempt for every (table, day) it covers."""
    per_day: dict[date, dict[int, int]] = {day: {} for day in days}
    for (team, day), fingerprint in (fingerprints or {}).items():
        per_day.setdefault(day, {})[team] = fingerprint
    keys = [(table, day) for table in PRE_AGGREGATED_TABLES for day in days]
    session.insert_columns(
        BACKFILL_STATUS,
        {
            "table": [table for table, _ in keys],
            "day": [day for _, day in keys],
            "run_id": [run_id] * len(keys),
            "trigger": [trigger] * len(keys),
            "status": [str(status)] * len(keys),
            "started_at": [started_at] * len(keys),
            "finished_at": [finished_at] * len(keys),
            "rows_written": [(rows or {}).get(table, {}).get(day, 0) for table, day in keys],
            "source_fingerprints": [per_day[day] for _, day in keys],
            # Fingerprints are sums of event hashes, so a day's total is the sum of its teams'.
            "source_fingerprint_total": [sum(per_day[day].values()) % 2**64 for _, day in keys],
            "error": [error[:MAX_ERROR_CHARS]] * len(keys),
            "failed_teams": [
                {team: text[:MAX_ERROR_CHARS] for team, text in (failed_teams or {}).items()}
            ]
            * len(keys),
        },
    )


def recorded_aggregation(
    session: Session,
    days: Sequence[date],
    run_id: str,
    trigger: str,
    kept_team_ids: Sequence[int],
    aggregate: Callable[[], AggregationResult],
) -> AggregationResult:
    """Run ``aggregate`` as one recorded attempt over ``days``: 'started' before it, then
    'succeeded' with the rows and source fingerprints, or 'failed' with the error.

    Teams carried over unchanged (``kept_team_ids``) keep the fingerprints they were
    computed with, so they stay complete; teams whose computation failed keep theirs too,
    and are listed with their error (their days are then failed for them alone).
    """
    attempt: dict[str, Any] = {
        "days": days,
        "run_id": run_id,
        "trigger": trigger,
        "started_at": _now(),
    }
    record_attempt(session, status=AttemptStatus.STARTED, **attempt)
    try:
        result = aggregate()
    except Exception as error:
        _record_failure(session, attempt, error)
        raise
    carried = recorded_fingerprints(
        session, [*kept_team_ids, *result.failed_teams], days[0], days[-1]
    )
    record_attempt(
        session,
        status=AttemptStatus.SUCCEEDED,
        finished_at=_now(),
        rows={table: result.rows_for(table) for table in PRE_AGGREGATED_TABLES},
        fingerprints={**carried, **result.fingerprints},
        error="; ".join(f"team {team}: {text}" for team, text in result.failed_teams.items()),
        failed_teams=result.failed_teams,
        **attempt,
    )
    return result


def _now() -> datetime:
    return datetime.now(UTC)


def _record_failure(session: Session, attempt: dict[str, Any], error: Exception) -> None:
    try:
        record_attempt(
            session,
            status=AttemptStatus.FAILED,
            finished_at=_now(),
            error=f"{type(error).__name__}: {error}",
            **attempt,
        )
    except Exception:  # the store may be what failed; the 'started' record then stands
        logging.getLogger(__name__).exception("could not record the failed attempt")


@dataclass(frozen=True)
class EndedRun:
    """A run that ended without success, as the orchestrator saw it."""

    run_id: str
    days: tuple[date, ...]
    trigger: str
    started_at: datetime
    outcome: str  # how it ended, e.g. "failed" or "was cancelled"


RUN_WORKER_DIED = "run worker died"

# Per run: when its attempt started, and whether it recorded how it ended.
_RUN_OUTCOMES = f"""
SELECT run_id, min(started_at), countIf(status != 'started') > 0
FROM {BACKFILL_STATUS} FINAL
WHERE run_id IN {{run_ids:Array(String)}}
GROUP BY run_id
"""


def record_ended_runs(session: Session, runs: Sequence[EndedRun], now: datetime) -> list[str]:
    """Record a failed attempt for each run that ended without recording its outcome: one
    that started writing died with its worker; one that never started writing (the store
    was busy, the run was cancelled in the queue) failed before it could. Runs that recorded
    their own outcome are left alone, so calling this again changes nothing."""
    if not runs:
        return []
    known = {
        run_id: (started_at, finished)
        for run_id, started_at, finished in session.query(
            _RUN_OUTCOMES, {"run_ids": [run.run_id for run in runs]}
        )
    }
    recorded = []
    for run in runs:
        started_at, finished = known.get(run.run_id, (run.started_at, False))
        if finished or not run.days:
            continue
        error = (
            RUN_WORKER_DIED
            if run.run_id in known
            else f"the run {run.outcome} before it started writing"
        )
        record_attempt(
            session,
            run.days,
            run.run_id,
            run.trigger,
            AttemptStatus.FAILED,
            started_at,
            finished_at=now,
            error=error,
        )
        recorded.append(run.run_id)
    return recorded


_RECORDED_FINGERPRINTS = f"""
SELECT day, argMaxIf(source_fingerprints, started_at, status = 'succeeded') AS fingerprints
FROM {BACKFILL_STATUS} FINAL
WHERE table = {{table:String}} AND day BETWEEN {{first_day:Date}} AND {{last_day:Date}}
GROUP BY day
"""


def recorded_fingerprints(
    session: Session, team_ids: Sequence[int], first_day: date, last_day: date
) -> dict[tuple[int, date], int]:
    """The fingerprints the latest successful writes recorded for ``team_ids``."""
    wanted = set(team_ids)
    rows = session.query(
        _RECORDED_FINGERPRINTS,
        {"table": PRE_AGGREGATED_TABLES[0], "first_day": first_day, "last_day": last_day},
    )
    return {
        (int(team), day): int(fingerprint)
        for day, fingerprints in rows
        for team, fingerprint in fingerprints.items()
        if team in wanted
    }


_RECORDS = f"""
SELECT table, day, run_id, trigger, status, started_at, finished_at, rows_written, error
FROM {BACKFILL_STATUS} FINAL
WHERE day BETWEEN {{first_day:Date}} AND {{last_day:Date}}
ORDER BY table, day, started_at, run_id
"""


def read_records(session: Session, first_day: date, last_day: date) -> list[BackfillRecord]:
    rows = session.query(_RECORDS, {"first_day": first_day, "last_day": last_day})
    return [
        BackfillRecord(
            table, day, run_id, trigger, AttemptStatus(status), started, finished, int(rows), error
        )
        for table, day, run_id, trigger, status, started, finished, rows, error in rows
    ]


# The latest attempt of every (table, day), and its latest success: detection needs both.
_KEPT = f"""
SELECT table, day, argMax(run_id, started_at) FROM {BACKFILL_STATUS} FINAL GROUP BY table, day
UNION DISTINCT
SELECT table, day, argMaxIf(run_id, started_at, status = 'succeeded')
FROM {BACKFILL_STATUS} FINAL GROUP BY table, day HAVING countIf(status = 'succeeded') > 0
"""
_COUNT = f"SELECT count() FROM {BACKFILL_STATUS} FINAL"


def cleanup_records(
    session: Session, retention_days: int, now: datetime, cluster: str | None
) -> CleanupReport:
    """Delete attempts started more than ``retention_days`` ago, except the latest attempt and
    the latest success of every (table, day)."""
    cutoff = now - timedelta(days=retention_days)
    kept = [tuple(row) for row in session.query(_KEPT)]
    [(before,)] = session.query(_COUNT)
    on_cluster = f" ON CLUSTER {cluster}" if cluster else ""
    session.command(
        f"ALTER TABLE {local_name(BACKFILL_STATUS, cluster)}{on_cluster} "
        "DELETE WHERE started_at < {cutoff:DateTime64(6, 'UTC')} "
        "AND (table, day, run_id) NOT IN {kept:Array(Tuple(String, Date, String))}",
        {"cutoff": cutoff, "kept": kept},
        settings={"mutations_sync": 2},
    )
    [(after,)] = session.query(_COUNT)
    return CleanupReport(cutoff=cutoff, deleted=int(before) - int(after), kept=int(after))
