"""Turning a gap report into backfill runs: shared by the sensor and the backfill schedule."""

from datetime import date, timedelta

import dagster as dg

from web_analytics.orchestration.jobs import web_analytics_daily_job
from web_analytics.orchestration.partitions import partition_key
from web_analytics.warehouse.core import Warehouse

TRIGGER_TAG = "web_analytics/trigger"
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def days_in_flight(instance: dg.DagsterInstance) -> set[date]:
    """UTC days that a queued or running pre-aggregation run already covers."""
    days: set[date] = set()
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT)):
        tags = run.tags
        if PARTITION_TAG in tags:
            days.add(date.fromisoformat(tags[PARTITION_TAG]))
        elif RANGE_START_TAG in tags and RANGE_END_TAG in tags:
            first = date.fromisoformat(tags[RANGE_START_TAG])
            last = date.fromisoformat(tags[RANGE_END_TAG])
            days.update(first + timedelta(days=i) for i in range((last - first).days + 1))
    return days


def backfill_requests(
    warehouse: Warehouse,
    instance: dg.DagsterInstance,
    lookback_days: int,
    max_days: int,
    trigger: str,
    log: dg.DagsterLogManager | None = None,
) -> list[dg.RunRequest] | dg.SkipReason:
    """One run per missing, stale or failed day, newest first, at most ``max_days``, never
    for a day already in flight. The run key holds the day's source fingerprint and latest
    attempt, so a day that goes stale or fails again is launched again."""
    report = warehouse.find_gaps(days_back=lookback_days)
    needing = sorted(report.needing_backfill, reverse=True)
    if not needing:
        return dg.SkipReason(
            f"No missing, stale or failed days in the last {lookback_days} days "
            f"({len(report.team_ids)} enabled team{'' if len(report.team_ids) == 1 else 's'})."
        )
    busy = days_in_flight(instance)
    to_launch = [day for day in needing if day not in busy][:max_days]
    if not to_launch:
        return dg.SkipReason(
            f"All {len(needing)} days needing backfill already have runs queued or in progress."
        )
    if log is not None:
        log.info(
            f"{len(needing)} days need backfill; launching {len(to_launch)}: "
            + ", ".join(str(day) for day in to_launch)
        )
    return [_request(day, report.day_keys.get(day, "none"), trigger) for day in to_launch]


def _request(day: date, day_key: str, trigger: str) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=f"{partition_key(day)}:{day_key}",
        job_name=web_analytics_daily_job.name,
        partition_key=partition_key(day),
        tags={TRIGGER_TAG: trigger},
    )
