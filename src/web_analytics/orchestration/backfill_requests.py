"""Turning a gap report into backfill runs: the one evaluation the sensor and the backfill
schedule share. Before it looks for gaps it closes the attempts of runs that ended without
recording their outcome (killed workers, runs failed in the queue), so no day stays wedged."""

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from web_analytics.orchestration.assets import TRIGGER_TAG, run_trigger
from web_analytics.orchestration.jobs import web_analytics_daily_job
from web_analytics.orchestration.partitions import partition_key, range_tags, tagged_days
from web_analytics.orchestration.resources import ClickhouseCluster
from web_analytics.orchestration.settings import WebAnalyticsSettings
from web_analytics.warehouse.attempts import EndedRun
from web_analytics.warehouse.backfill_plan import BackfillPlan, BackfillRange, plan_backfill

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
ENDED_WITHOUT_SUCCESS = {
    dg.DagsterRunStatus.FAILURE: "failed",
    dg.DagsterRunStatus.CANCELED: "was cancelled",
}
PRE_AGGREGATION_OP = "web_pre_aggregated_tables"
# Days of a crashed run wait this long for Dagster's retry (seconds, or lost) before the sensor's.
RETRY_GRACE = timedelta(seconds=60)


def days_in_flight(instance: dg.DagsterInstance, now: datetime) -> set[date]:
    """UTC days that a queued or running pre-aggregation run already covers, or whose run
    failed within ``RETRY_GRACE`` before ``now`` and waits for Dagster to retry it."""
    job = web_analytics_daily_job.name
    runs = list(instance.get_runs(filters=dg.RunsFilter(job_name=job, statuses=IN_FLIGHT)))
    recently_failed = instance.get_runs(
        filters=dg.RunsFilter(
            job_name=job,
            statuses=[dg.DagsterRunStatus.FAILURE],
            updated_after=now - RETRY_GRACE,
        )
    )
    runs += [run for run in recently_failed if run.is_complete_and_waiting_to_retry]
    return {day for run in runs for day in tagged_days(run.tags)}


def ended_runs(instance: dg.DagsterInstance, since: datetime) -> list[EndedRun]:
    """Pre-aggregation runs that ended without success since ``since``."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(
            job_name=web_analytics_daily_job.name,
            statuses=list(ENDED_WITHOUT_SUCCESS),
            updated_after=since,
        )
    )
    return [
        EndedRun(
            run_id=record.dagster_run.run_id,
            days=tuple(tagged_days(record.dagster_run.tags)),
            trigger=run_trigger(record.dagster_run.tags),
            started_at=datetime.fromtimestamp(
                record.start_time or record.create_timestamp.timestamp(), UTC
            ),
            outcome=ENDED_WITHOUT_SUCCESS[record.dagster_run.status],
        )
        for record in records
    ]


def backfill_requests(
    context: dg.SensorEvaluationContext | dg.ScheduleEvaluationContext,
    clickhouse: ClickhouseCluster,
    settings: WebAnalyticsSettings,
    max_days: int,
    trigger: str,
) -> list[dg.RunRequest] | dg.SkipReason:
    """Runs for the missing, stale, failed and inaccurate days of the lookback window (see
    ``plan_backfill``): newest range first, never a day already in flight, backing off on
    days that keep failing. Each run key holds its days' source fingerprints and latest
    attempts, so a range that changes or fails again is launched again."""
    warehouse = clickhouse.warehouse()
    now = datetime.now(UTC)
    # Before the ended runs: a run ending in between then counts as in flight, not as neither.
    in_flight = days_in_flight(context.instance, now)
    closed = warehouse.record_ended_runs(
        ended_runs(context.instance, now - timedelta(days=settings.lookback_days))
    )
    if closed:
        context.log.warning(
            f"{len(closed)} pre-aggregation runs ended without recording their outcome; "
            f"their days now count as failed: {', '.join(run_id[:8] for run_id in closed)}"
        )
    report = warehouse.find_gaps(
        days_back=settings.lookback_days,
        max_runtime=timedelta(seconds=settings.max_runtime_seconds),
    )
    plan = plan_backfill(
        report,
        in_flight=in_flight,
        now=now,
        tick=timedelta(seconds=settings.sensor_interval_seconds),
        max_failures=settings.max_failures,
        max_days=max_days,
        max_days_per_run=settings.max_days_per_run,
    )
    if plan.failing:
        context.log.warning(
            f"{len(plan.failing)} UTC days failed {settings.max_failures} times in a row and are "
            "not relaunched: "
            + ", ".join(str(day) for day in plan.failing)
            + "; fix the cause (see their runs' errors), then materialize them by hand"
        )
    if not plan.ranges:
        return dg.SkipReason(_nothing_to_launch(plan, report.team_ids, settings.lookback_days))
    context.log.info(
        f"{len(plan.needing)} UTC days need backfill; launching {plan.launched_days} of them in "
        f"{len(plan.ranges)} runs: " + ", ".join(_describe(r) for r in plan.ranges)
    )
    return [_request(r, trigger, settings.max_runtime_seconds) for r in plan.ranges]


def _nothing_to_launch(plan: BackfillPlan, team_ids: tuple[int, ...], lookback_days: int) -> str:
    if not plan.needing:
        teams = len(team_ids)
        return (
            f"No missing, stale, failed or inaccurate days in the last {lookback_days} days "
            f"({teams} enabled team{'' if teams == 1 else 's'})."
        )
    return (
        f"{len(plan.needing)} UTC days need backfill: {len(plan.in_flight)} already have runs "
        f"queued or in progress, {len(plan.backing_off)} wait after a recent failure, "
        f"{len(plan.failing)} keep failing."
    )


def _describe(backfill: BackfillRange) -> str:
    days = (
        str(backfill.first_day)
        if backfill.days == 1
        else f"{backfill.first_day} to {backfill.last_day}"
    )
    return days if backfill.team_ids is None else f"{days} (teams {list(backfill.team_ids)})"


def _request(backfill: BackfillRange, trigger: str, max_runtime_seconds: int) -> dg.RunRequest:
    first, last = partition_key(backfill.first_day), partition_key(backfill.last_day)
    run_config = (
        {"ops": {PRE_AGGREGATION_OP: {"config": {"team_ids": list(backfill.team_ids)}}}}
        if backfill.team_ids is not None
        else {}
    )
    # Run monitoring fails the run past this: the one clock that sees a worker dead with its host.
    tags = {TRIGGER_TAG: trigger, dg.MAX_RUNTIME_SECONDS_TAG: str(max_runtime_seconds)}
    if backfill.days > 1:
        tags.update(range_tags(backfill.first_day, backfill.last_day))
    return dg.RunRequest(
        run_key=f"{first}..{last}:{backfill.key}",
        job_name=web_analytics_daily_job.name,
        partition_key=first if backfill.days == 1 else None,
        run_config=run_config,
        tags=tags,
    )


BackfillEvaluation = Callable[
    [
        dg.SensorEvaluationContext | dg.ScheduleEvaluationContext,
        ClickhouseCluster,
        WebAnalyticsSettings,
    ],
    list[dg.RunRequest] | dg.SkipReason,
]


def backfill_evaluation(
    max_days: Callable[[WebAnalyticsSettings], int], trigger: str
) -> BackfillEvaluation:
    """The body of a sensor or schedule that launches backfill runs: at most
    ``max_days(settings)`` days per evaluation, tagged with ``trigger``."""

    def evaluate(
        context: dg.SensorEvaluationContext | dg.ScheduleEvaluationContext,
        clickhouse: ClickhouseCluster,
        web_analytics_settings: WebAnalyticsSettings,
    ) -> list[dg.RunRequest] | dg.SkipReason:
        return backfill_requests(
            context, clickhouse, web_analytics_settings, max_days(web_analytics_settings), trigger
        )

    return evaluate
