"""Fault injection against the real Dagster daemon: run workers killed at random points, the
daemon's host restarted mid-backfill, a store too busy for a run to start writing, a corrupted
day and a team's new timezone. Each scenario ends with no day left needing backfill and every
day's numbers equal to the raw events.

Slow (minutes): ``python3 tasks.py test -m faults``. ``FAULTS_SEED`` (default 1201) seeds the
generated traffic and where, when and how run workers are killed; ``FAULTS_KILL_TRIALS``
(default 5) sets how many are killed.
Each test prints its figures as one ``faults {...}`` JSON line (``-rP`` shows them); the
figures of recorded runs are in docs/RELIABILITY.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import yaml
from support import ROOT, load_generated, start_daemon, stop_group

import web_analytics
from web_analytics.generator import GeneratorOptions, team_profiles
from web_analytics.orchestration.backfill_requests import IN_FLIGHT, RETRY_GRACE
from web_analytics.orchestration.jobs import web_analytics_daily_job
from web_analytics.orchestration.partitions import tagged_days
from web_analytics.orchestration.sensors import SENSOR_NAME
from web_analytics.warehouse.attempts import RUN_WORKER_DIED, AttemptStatus, BackfillRecord
from web_analytics.warehouse.gaps import DayState
from web_analytics.warehouse.schema import PRE_AGGREGATED_TABLES, STATS

T = TypeVar("T")

pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(sys.platform != "linux", reason="reads /proc and sends SIGKILL"),
]

SEED = int(os.environ.get("FAULTS_SEED", "1201"))
KILL_TRIALS = int(os.environ.get("FAULTS_KILL_TRIALS", "5"))
TICK_SECONDS = 5
LOOKBACK_DAYS = 7
EVENTS_PER_DAY = 300
# A killed run's days are queued again within this many sensor ticks: Dagster's retry comes
# within RETRY_GRACE, else the sensor's relaunch after at most one tick of back-off.
RELAUNCH_TICKS = RETRY_GRACE // timedelta(seconds=TICK_SECONDS) + 3
# Backfill runs' maximum runtime when the host dies: a few times a run's length on 2 cores.
HOST_RESTART_MAX_RUNTIME = 90
# Run monitoring as deploy/dagster.yaml ships it, with clocks short enough for a test.
FAST_MONITORING = {
    "enabled": True,
    "start_timeout_seconds": 60,
    "cancel_timeout_seconds": 30,
    "poll_interval_seconds": 2,
    "free_slots_after_run_end_seconds": 3,
}


# --- the daemon ----------------------------------------------------------------------------------


class Daemon:
    """``dagster-daemon run`` on its own DAGSTER_HOME over the store at ``store_url``. Every
    start is a new process group (daemon, code server, run workers); all are stopped at
    teardown."""

    def __init__(self, tmp_path: Path, store_url: str):
        self.home = tmp_path / "dagster_home"
        self.home.mkdir()
        self.log_path = tmp_path / "daemon.log"
        self.store_url = store_url
        self.settings = {
            "WEB_ANALYTICS_BACKFILL_SENSOR_INTERVAL_SECONDS": str(TICK_SECONDS),
            "WEB_ANALYTICS_BACKFILL_LOOKBACK_DAYS": str(LOOKBACK_DAYS),
            "WEB_ANALYTICS_LOCK_TIMEOUT": "120",
        }
        self.groups: list[subprocess.Popen] = []  # one per start, the latest last
        self.started_at = 0.0
        self._instance: dg.DagsterInstance | None = None

    @property
    def process(self) -> subprocess.Popen:
        """The daemon started last."""
        return self.groups[-1]

    def configure(self, **settings: str) -> None:
        """Project settings (``WEB_ANALYTICS_...`` variables) for the next start."""
        self.settings.update(settings)

    @property
    def instance(self) -> dg.DagsterInstance:
        """The daemon's instance, read from this process."""
        if self._instance is None:
            self._write_instance_config()
            self._instance = dg.DagsterInstance.from_config(str(self.home))
        return self._instance

    def _write_instance_config(self) -> None:
        config = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text()) or {}
        config["run_monitoring"] = {**config.get("run_monitoring", {}), **FAST_MONITORING}
        (self.home / "dagster.yaml").write_text(yaml.safe_dump(config))

    def start(self) -> None:
        self._write_instance_config()
        _ = self.instance  # storage created here, before the daemon opens it
        env = {
            **os.environ,
            "DAGSTER_HOME": str(self.home),
            "WEB_ANALYTICS_URL": self.store_url,
            **self.settings,
        }
        with self.log_path.open("a") as log:
            process = start_daemon(env, log)
        self.groups.append(process)
        self.started_at = time.time()

    def kill_host(self) -> None:
        """SIGKILL the daemon, its code server and its run workers at once, as a restart of
        the machine they run on does."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        for process in self.groups:
            stop_group(process)
        if self._instance is not None:
            self._instance.dispose()
            self._instance = None

    def check_alive(self) -> None:
        assert self.process.poll() is None, "the daemon exited:\n" + self.log_tail()

    def log_tail(self, chars: int = 6000) -> str:
        return self.log_path.read_text()[-chars:]


@pytest.fixture
def daemon(tmp_path: Path, store_url: str) -> Iterator[Daemon]:
    daemon = Daemon(tmp_path, store_url)
    try:
        yield daemon
    finally:
        daemon.stop()


def load_traffic(warehouse: web_analytics.Warehouse, days: int, teams: int = 2) -> GeneratorOptions:
    """A few hundred generated events per UTC day on the ``days`` days before today."""
    today = datetime.now(UTC).date()
    options = GeneratorOptions(
        seed=SEED,
        events=EVENTS_PER_DAY * days,
        days=days,
        last_day=today - timedelta(days=1),
        teams=teams,
    )
    load_generated(warehouse, options)
    return options


def traffic_days(options: GeneratorOptions) -> list[date]:
    return [options.first_day + timedelta(days=i) for i in range(options.days)]


# --- runs, ticks and processes -------------------------------------------------------------------


def daily_runs(instance: dg.DagsterInstance) -> list[dg.RunRecord]:
    """Every pre-aggregation run, oldest first."""
    filters = dg.RunsFilter(job_name=web_analytics_daily_job.name)
    return sorted(instance.get_run_records(filters=filters), key=lambda r: r.create_timestamp)


def run_record(instance: dg.DagsterInstance, run_id: str) -> dg.RunRecord:
    record = instance.get_run_record_by_id(run_id)
    assert record is not None, run_id
    return record


def in_flight(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    filters = dg.RunsFilter(job_name=web_analytics_daily_job.name, statuses=IN_FLIGHT)
    return list(instance.get_runs(filters=filters))


def worker_start(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """Process id of a run's worker and when it started, once the worker has reported it."""
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        event = record.dagster_event
        if event is None or record.step_key is not None:
            continue
        pid = event.engine_event_data.metadata.get("pid")
        if pid is not None:
            return int(str(pid.value)), record.timestamp
    return None


def sensor_tick_times(instance: dg.DagsterInstance) -> list[float]:
    """When the backfill sensor was evaluated."""
    return sorted(
        tick.timestamp
        for state in instance.all_instigator_state()
        if state.name == SENSOR_NAME
        for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id)
    )


def ticks_between(ticks: list[float], start: float, end: float) -> int:
    return sum(start < tick <= end for tick in ticks)


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    return children


def _stopped(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] in "Tt"
    except OSError:
        return True  # gone


def kill_run_worker(pid: int, with_steps: bool) -> None:
    """SIGKILL a run worker; with ``with_steps`` also every process it started (its step
    workers), as a dead machine or container does. The processes are frozen first, so none
    starts another between the listing and the kill."""
    frozen: list[int] = []
    pending = [pid]
    while pending:
        for process in pending:
            try:
                os.kill(process, signal.SIGSTOP)
            except ProcessLookupError:
                continue
            frozen.append(process)
            deadline = time.monotonic() + 2
            while not _stopped(process) and time.monotonic() < deadline:
                time.sleep(0.005)
        if not with_steps:
            break
        children = _children()
        pending = [child for process in pending for child in children.get(process, [])]
    for process in frozen:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process, signal.SIGKILL)


# --- waiting and checking ------------------------------------------------------------------------


def wait_until_settled(daemon: Daemon, warehouse: web_analytics.Warehouse, timeout: float) -> float:
    """Wait until no pre-aggregation run is queued or running and no day of the lookback
    window needs backfill or is running; returns when (epoch seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        daemon.check_alive()
        if not in_flight(daemon.instance):
            report = warehouse.find_gaps(days_back=LOOKBACK_DAYS)
            if not report.needing_backfill and not report.by_state(DayState.RUNNING):
                return time.time()
        assert time.monotonic() < deadline, (
            f"not settled after {timeout:.0f} s; runs:\n"
            + describe_runs(daemon.instance)
            + "\ndaemon log:\n"
            + daemon.log_tail()
        )
        time.sleep(3)


def wait_for(condition: Callable[[], T], timeout: float, what: str, daemon: Daemon) -> T:
    """The first truthy value of ``condition``, polled every half second."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        daemon.check_alive()
        assert time.monotonic() < deadline, f"no {what} after {timeout:.0f} s:\n{daemon.log_tail()}"
        time.sleep(0.5)
    return value


def describe_runs(instance: dg.DagsterInstance) -> str:
    return "\n".join(
        f"{r.dagster_run.run_id[:8]} {r.dagster_run.status.value} "
        f"{[str(d) for d in tagged_days(r.dagster_run.tags)]} "
        f"key={r.dagster_run.tags.get('dagster/run_key', '')[:40]}"
        for r in daily_runs(instance)
    )


def assert_no_duplicate_runs(instance: dg.DagsterInstance) -> None:
    """No two runs covering one day were ever queued or running at the same time, and no two
    successful runs covering one day share a run key."""
    spans: dict[date, list[tuple[float, float, str]]] = {}
    successes: Counter[tuple[date, str]] = Counter()
    for record in daily_runs(instance):
        run = record.dagster_run
        end = record.end_time or float("inf")
        for day in tagged_days(run.tags):
            spans.setdefault(day, []).append((record.create_timestamp.timestamp(), end, run.run_id))
            if run.status == dg.DagsterRunStatus.SUCCESS:
                successes[(day, run.tags.get("dagster/run_key", run.run_id))] += 1
    for day, day_spans in spans.items():
        busy_until, busy_run = 0.0, ""
        for created, ended, run_id in sorted(day_spans):
            assert created >= busy_until, (
                f"{day}: run {run_id[:8]} queued while {busy_run[:8]} was in flight\n"
                + describe_runs(instance)
            )
            busy_until, busy_run = max((busy_until, busy_run), (ended, run_id))
    assert [key for key, count in successes.items() if count > 1] == []


def assert_days_match_raw(warehouse: web_analytics.Warehouse, days: list[date]) -> None:
    """Every team and table of the window complete (or empty), and each day equal to the raw
    events: nothing stuck, nothing mixed or counted twice."""
    report = warehouse.find_gaps(days_back=LOOKBACK_DAYS)
    stuck = [s for s in report.days if s.state not in (DayState.COMPLETE, DayState.EMPTY)]
    assert stuck == []
    for day in days:
        for table in PRE_AGGREGATED_TABLES:
            comparison = warehouse.compare_with_raw(table, day, day)
            assert comparison.passed, (table, day, comparison.discrepancies[:5])


def matching_days(warehouse: web_analytics.Warehouse, days: list[date]) -> set[date]:
    """Days complete for every team and table and equal to the raw events."""
    report = warehouse.find_gaps(days_back=LOOKBACK_DAYS)
    bad = {s.day for s in report.days if s.state not in (DayState.COMPLETE, DayState.EMPTY)}
    return {
        day
        for day in days
        if day not in bad
        and all(
            warehouse.compare_with_raw(table, day, day).passed for table in PRE_AGGREGATED_TABLES
        )
    }


def report_figures(scenario: str, **figures: object) -> None:
    """One JSON line per scenario: ``trials`` faults injected, ``survived`` those after which
    every affected day ended complete and equal to the raw events, ``lost`` days that did not."""
    print("faults " + json.dumps({"scenario": scenario, "seed": SEED, **figures}, default=str))


# --- 1. run workers killed at random points ------------------------------------------------------

AGGREGATION_STEP, CHECK_STEP = "web_pre_aggregated_tables", "matches_raw_events"
# Where a kill aims (the step it waits for, None: the worker's start) and how far into it.
KILL_POINTS = {
    "starting": (None, 8.0),
    "aggregating": (AGGREGATION_STEP, 2.0),
    "checking": (CHECK_STEP, 2.0),
}


@dataclass(frozen=True)
class Kill:
    run_id: str
    days: tuple[date, ...]
    aim: str  # a key of KILL_POINTS
    with_steps: bool
    killed_at: float


def _step_started(instance: dg.DagsterInstance, run_id: str, step: str) -> float | None:
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START):
        if record.step_key == step:
            return record.timestamp
    return None


def _next_target(
    instance: dg.DagsterInstance, targeted: set[str], kills: Counter[date]
) -> tuple[dg.DagsterRun, int, float] | None:
    """A run in flight whose worker has started, not yet targeted, whose days were killed
    fewer than twice (so back-off stays short and no day reaches the failure limit)."""
    for run in in_flight(instance):
        days = tagged_days(run.tags)
        if run.run_id in targeted or any(kills[day] >= 2 for day in days):
            continue
        start = worker_start(instance, run.run_id)
        if start is not None:
            return run, *start
    return None


def _kill_at_random_point(
    instance: dg.DagsterInstance, run: dg.DagsterRun, pid: int, started: float, rng: random.Random
) -> Kill | None:
    """Kill ``run``'s worker (alone or with its step workers) a seeded random time into a
    seeded random phase: starting, aggregating or checking. None if the run ended first."""
    aim = rng.choice(sorted(KILL_POINTS))
    step, spread = KILL_POINTS[aim]
    delay, with_steps = rng.uniform(0, spread), rng.random() < 0.5
    while (begun := started if step is None else _step_started(instance, run.run_id, step)) is None:
        if run_record(instance, run.run_id).dagster_run.is_finished:
            return None
        time.sleep(0.25)
    time.sleep(max(0.0, begun + delay - time.time()))
    if run_record(instance, run.run_id).dagster_run.is_finished:
        return None
    kill_run_worker(pid, with_steps)
    return Kill(run.run_id, tuple(tagged_days(run.tags)), aim, with_steps, time.time())


def _phase(instance: dg.DagsterInstance, kill: Kill) -> str:
    """Where the run was when it was killed, from the events it wrote before."""
    seen = {
        (record.step_key, record.dagster_event.event_type_value)
        for record in instance.all_logs(kill.run_id)
        if record.dagster_event is not None and record.timestamp < kill.killed_at
    }
    if (AGGREGATION_STEP, "STEP_START") not in seen:
        return "before the aggregation"
    if (AGGREGATION_STEP, "STEP_SUCCESS") not in seen:
        return "in the aggregation"
    if (CHECK_STEP, "STEP_START") not in seen:
        return "between the steps"
    return "in the accuracy check"


def _rewrites(records: list[BackfillRecord], kill: Kill) -> list[BackfillRecord] | None:
    """The first successful write of each day of a killed run after the kill (none for a day
    the run had written before it died); None while some day was never written again."""
    rewrites = []
    for day in kill.days:
        written = sorted(
            (r for r in records if r.day == day and r.status == AttemptStatus.SUCCEEDED),
            key=lambda r: r.finished_at or r.started_at,
        )
        finished = [(r, (r.finished_at or r.started_at).timestamp()) for r in written]
        if any(r.run_id == kill.run_id and at < kill.killed_at for r, at in finished):
            continue
        after = [r for r, at in finished if at >= kill.killed_at]
        if not after:
            return None
        rewrites.append(after[0])
    return rewrites


@dataclass(frozen=True)
class Outcome:
    """What became of a killed run and its days, in seconds and sensor ticks after the kill."""

    aim: str
    phase: str  # where the run was, from the events it wrote before the kill
    kind: str
    status: str
    failed_after_s: float | None  # until the run was marked finished
    relaunched_s: (
        float | None
    )  # until a run for its days was queued (Dagster's retry or the sensor)
    relaunch_ticks: int | None
    recovered_s: float | None  # until its days were written again (0: written before the kill)
    recovery_ticks: int | None
    rewritten_by_another_run: bool  # else by its own orphaned step, or before the kill
    survived: bool  # its days ended complete and equal to the raw events


def _outcome(
    instance: dg.DagsterInstance,
    records: list[BackfillRecord],
    ticks: list[float],
    good_days: set[date],
    kill: Kill,
) -> Outcome:
    run = run_record(instance, kill.run_id)
    relaunches = [
        r.create_timestamp.timestamp()
        for r in daily_runs(instance)
        if r.create_timestamp.timestamp() > kill.killed_at
        and set(kill.days) & set(tagged_days(r.dagster_run.tags))
    ]
    relaunched_at = min(relaunches, default=None)
    rewrites = _rewrites(records, kill)
    recovered_at = (
        max(((r.finished_at or r.started_at).timestamp() for r in rewrites), default=kill.killed_at)
        if rewrites is not None
        else None
    )

    def after_kill(at: float | None) -> tuple[float | None, int | None]:
        if at is None:
            return None, None
        return round(at - kill.killed_at, 1), ticks_between(ticks, kill.killed_at, at)

    return Outcome(
        aim=kill.aim,
        phase=_phase(instance, kill),
        kind="worker and steps" if kill.with_steps else "worker",
        status=run.dagster_run.status.value,
        failed_after_s=after_kill(run.end_time)[0],
        relaunched_s=after_kill(relaunched_at)[0],
        relaunch_ticks=after_kill(relaunched_at)[1],
        recovered_s=after_kill(recovered_at)[0],
        recovery_ticks=after_kill(recovered_at)[1],
        rewritten_by_another_run=any(r.run_id != kill.run_id for r in rewrites or []),
        survived=set(kill.days) <= good_days,
    )


def test_killed_run_workers_are_failed_and_their_days_computed_again(
    daemon: Daemon, warehouse: web_analytics.Warehouse
) -> None:
    """SIGKILL pre-aggregation run workers, alone or with their step workers, at seeded
    random moments while starting, aggregating or checking: each run is marked failed, its
    pool slot is freed, its days are queued again within a bounded number of ticks (by
    Dagster's run retry or the sensor, never both at once) and written again, and every day
    ends equal to the raw events.

    Before 78000fd a day killed before its run wrote a status record kept its run key (the
    key held its latest attempt, and there was none), so the daemon never launched it again;
    a killed run that had written 'started' made its day 'failed' while it was still counted
    in flight; and the per-tick cap let such stuck days starve the others.
    """
    options = load_traffic(warehouse, days=4)
    days = traffic_days(options)
    daemon.configure(WEB_ANALYTICS_MAX_DAYS_PER_RUN="1")  # one day per run: more runs to kill
    daemon.start()
    instance = daemon.instance
    rng = random.Random(SEED)

    kills: list[Kill] = []
    killed_days: Counter[date] = Counter()
    targeted: set[str] = set()
    deadline = time.monotonic() + 120 + 90 * KILL_TRIALS
    while len(kills) < KILL_TRIALS:
        daemon.check_alive()
        assert time.monotonic() < deadline, (
            f"{len(kills)} of {KILL_TRIALS} kills\n" + describe_runs(instance) + daemon.log_tail()
        )
        target = _next_target(instance, targeted, killed_days)
        if target is None:
            time.sleep(0.5)
            continue
        targeted.add(target[0].run_id)
        if kill := _kill_at_random_point(instance, *target, rng):
            kills.append(kill)
            killed_days.update(kill.days)

    settled_at = wait_until_settled(daemon, warehouse, timeout=600)
    pool = instance.event_log_storage.get_concurrency_info("clickhouse")
    daemon.stop()

    records = warehouse.backfill_records(days[0], days[-1])
    ticks = sensor_tick_times(instance)
    good_days = matching_days(warehouse, days)
    trials = [_outcome(instance, records, ticks, good_days, kill) for kill in kills]
    survived = sum(trial.survived for trial in trials)
    report_figures(
        "kill run worker",
        trials=len(trials),
        survived=survived,
        lost=len(days) - len(good_days),
        targeted_runs=len(targeted),
        settled_s=round(settled_at - daemon.started_at),
        details=[dataclasses.asdict(trial) for trial in trials],
    )

    for kill, trial in zip(kills, trials, strict=True):
        # Marked failed at once (the code server sees its worker die), never left STARTED.
        assert trial.status == "FAILURE", trial
        assert trial.failed_after_s is not None and trial.failed_after_s < 30, trial
        # No attempt of a killed run is left 'started': it failed, died or finished.
        own = [r for r in records if r.run_id == kill.run_id]
        assert all(r.status != AttemptStatus.STARTED for r in own), own
        dead = [r for r in own if r.status == AttemptStatus.FAILED]
        assert all(
            r.error == RUN_WORKER_DIED or "before it started writing" in r.error for r in dead
        ), dead
        # Written again, by a run queued within the retry grace and a tick of back-off.
        assert trial.recovered_s is not None, trial
        if trial.rewritten_by_another_run:
            assert trial.relaunch_ticks is not None and trial.relaunch_ticks <= RELAUNCH_TICKS, (
                trial
            )
    # The slot of every killed run was given back: nothing holds or waits for the pool.
    assert (pool.active_slot_count, pool.pending_step_count) == (0, 0)
    assert_no_duplicate_runs(instance)
    assert_days_match_raw(warehouse, days)


# --- 2. the daemon's host restarted mid-backfill -------------------------------------------------


def test_the_backfill_resumes_without_duplicates_after_the_daemons_host_restarts(
    daemon: Daemon, warehouse: web_analytics.Warehouse
) -> None:
    """SIGKILL the daemon, its code server and its run workers at a seeded random moment of a
    backfill (a machine restart), start the daemon again: run monitoring fails the runs that
    died when their maximum runtime passes (the only clock that sees them), and the backfill
    resumes: every day ends computed and equal to the raw events, no two runs ever covered
    one day at once, and no run key succeeded twice.

    Before 78000fd the days of a run that died before writing a status record kept their run
    key, so the restarted daemon never launched them again and the backfill stopped short.
    """
    options = load_traffic(warehouse, days=4)
    days = traffic_days(options)
    daemon.configure(
        WEB_ANALYTICS_MAX_RUNTIME_SECONDS=str(HOST_RESTART_MAX_RUNTIME),
        WEB_ANALYTICS_MAX_DAYS_PER_RUN="2",
        WEB_ANALYTICS_BACKFILL_MAX_DAYS_PER_TICK="2",  # one run per tick: a backfill over ticks
    )
    daemon.start()
    instance = daemon.instance
    rng = random.Random(SEED)

    def a_worker_started() -> bool:
        return any(worker_start(instance, run.run_id) for run in in_flight(instance))

    wait_for(a_worker_started, 120, "run worker", daemon)
    time.sleep(rng.uniform(0, 10))
    at_kill = {run.run_id: run.status.value for run in in_flight(instance)}
    daemon.kill_host()
    restarted_at = time.time()
    daemon.start()
    settled_at = wait_until_settled(daemon, warehouse, timeout=600)
    daemon.stop()

    runs = daily_runs(instance)
    ticks = sensor_tick_times(instance)
    launched_after = [r for r in runs if r.create_timestamp.timestamp() > restarted_at]
    good_days = matching_days(warehouse, days)
    report_figures(
        "daemon host restart",
        trials=1,
        survived=int(good_days == set(days)),
        lost=len(days) - len(good_days),
        in_flight_at_kill=at_kill,
        runs=len(runs),
        launched_after_restart=len(launched_after),
        recovered_s=round(settled_at - restarted_at),
        ticks=ticks_between(ticks, restarted_at, settled_at),
    )
    # Runs that died with the host ended as failures, none is left in flight.
    for run_id, status in at_kill.items():
        assert run_record(instance, run_id).dagster_run.is_finished, (run_id, status)
    assert_no_duplicate_runs(instance)
    assert_days_match_raw(warehouse, days)


# --- 3. a run that fails before writing any status record ----------------------------------------


def test_a_run_that_fails_before_writing_a_status_record_is_launched_again(
    daemon: Daemon, warehouse: web_analytics.Warehouse
) -> None:
    """Another process holds the store while a backfill run starts, longer than the run's
    lock timeout: the run fails before it writes any status record. The sensor records that
    failure for its day and launches the day again on a later tick, which completes it.

    Before 78000fd the day's run key was 'DAY:none' before and after that failure (no attempt
    recorded), so the daemon never launched it again.
    """
    lock_timeout = 15
    options = load_traffic(warehouse, days=1, teams=1)
    days = traffic_days(options)
    daemon.configure(WEB_ANALYTICS_LOCK_TIMEOUT=str(lock_timeout))
    daemon.start()
    instance = daemon.instance

    first = wait_for(lambda: daily_runs(instance), 120, "backfill run", daemon)[0]
    with warehouse.session():  # the store is busy until that run has failed
        wait_for(
            lambda: run_record(instance, first.dagster_run.run_id).dagster_run.is_finished,
            120 + lock_timeout,
            "end of the blocked run",
            daemon,
        )
    released_at = time.time()
    settled_at = wait_until_settled(daemon, warehouse, timeout=300)
    daemon.stop()

    runs = daily_runs(instance)
    ticks = sensor_tick_times(instance)
    blocked = run_record(instance, first.dagster_run.run_id)
    records = warehouse.backfill_records(days[0], days[-1])
    relaunched = [r for r in runs if r.dagster_run.status == dg.DagsterRunStatus.SUCCESS]
    good_days = matching_days(warehouse, days)
    report_figures(
        "store busy before the first write",
        trials=1,
        survived=int(good_days == set(days)),
        lost=len(days) - len(good_days),
        recovered_s=round(settled_at - released_at),
        ticks=ticks_between(ticks, released_at, settled_at),
    )
    assert blocked.dagster_run.status == dg.DagsterRunStatus.FAILURE
    assert blocked.end_time is not None
    # The sensor, not the run, recorded why the day failed.
    own = [r for r in records if r.run_id == blocked.dagster_run.run_id]
    assert {(r.status, r.error) for r in own} == {
        (AttemptStatus.FAILED, "the run failed before it started writing")
    }
    assert [r.create_timestamp.timestamp() > blocked.end_time for r in relaunched] == [True]
    assert_no_duplicate_runs(instance)
    assert_days_match_raw(warehouse, days)


# --- 4. a corrupted day --------------------------------------------------------------------------


def test_a_day_whose_accuracy_check_fails_is_repaired_by_the_sensor(
    daemon: Daemon, warehouse: web_analytics.Warehouse
) -> None:
    """One team's views on one computed day are changed in place; the accuracy check finds
    it, the day becomes 'inaccurate', and the daemon recomputes it: it ends complete and
    equal to the raw events, its check passed in Dagster.

    Before 78000fd a failed check changed nothing: the status record said succeeded, the day
    stayed complete with wrong numbers and no run was ever launched for it.
    """
    options = load_traffic(warehouse, days=2)
    days = traffic_days(options)
    warehouse.aggregate(days[0], days[-1])
    corrupted, team = days[0], team_profiles(options.teams, options.seed)[0].team_id
    with warehouse.session() as session:
        session.command(
            f"ALTER TABLE {STATS} UPDATE views = views + 1 "
            "WHERE team_id = {team:UInt64} AND toDate(period_bucket) = {day:Date} "
            "SETTINGS mutations_sync = 2",
            {"team": team, "day": corrupted},
        )
    checked = warehouse.check_accuracy(corrupted, corrupted)
    assert not checked[STATS].passed and checked[STATS].inaccurate_teams(corrupted) == [team]
    states = {(s.team_id, s.table, s.day): s.state for s in warehouse.find_gaps(LOOKBACK_DAYS).days}
    assert states[(team, STATS, corrupted)] == DayState.INACCURATE

    daemon.start()
    settled_at = wait_until_settled(daemon, warehouse, timeout=300)
    daemon.stop()

    instance = daemon.instance
    runs = daily_runs(instance)
    ticks = sensor_tick_times(instance)
    repairs = [r for r in runs if corrupted in tagged_days(r.dagster_run.tags)]
    good_days = matching_days(warehouse, days)
    report_figures(
        "corrupted day",
        trials=1,
        survived=int(good_days == set(days)),
        lost=len(days) - len(good_days),
        recovered_s=round(settled_at - daemon.started_at),
        ticks=ticks_between(ticks, daemon.started_at, settled_at),
        runs=len(runs),
    )
    assert [r.dagster_run.status for r in repairs] == [dg.DagsterRunStatus.SUCCESS]
    evaluations = [
        record.get_dagster_event().asset_check_evaluation_data
        for record in instance.all_logs(
            repairs[0].dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        )
    ]
    assert evaluations and all(e.passed for e in evaluations), evaluations
    assert_no_duplicate_runs(instance)
    assert_days_match_raw(warehouse, days)


# --- 5. a team's new timezone --------------------------------------------------------------------


def _bucket_minute(timezone: str) -> int:
    """The UTC minute at which the team-local hours of ``timezone`` start."""
    offset = datetime(2024, 1, 1, tzinfo=ZoneInfo(timezone)).utcoffset() or timedelta()
    return int(-offset.total_seconds() // 60 % 60)


def test_a_teams_new_timezone_is_recomputed_into_its_new_buckets(
    daemon: Daemon, warehouse: web_analytics.Warehouse
) -> None:
    """A team's timezone changes after its days were computed: its days become stale, the
    daemon recomputes them, every local day's overview from the pre-aggregated tables equals
    the raw events in the new timezone, and no row is left at an old hour bucket.

    Before 78000fd and 85b1420 the change touched only the team registry: its days stayed
    complete in the old hour buckets and were never recomputed.
    """
    options = load_traffic(warehouse, days=2)
    days = traffic_days(options)
    warehouse.aggregate(days[0], days[-1])
    team = team_profiles(options.teams, options.seed)[0]
    old_minute = _bucket_minute(team.timezone)
    new_timezone = next(
        tz for tz in ("Asia/Kathmandu", "Asia/Kolkata") if _bucket_minute(tz) != old_minute
    )
    warehouse.upsert_team(team.team_id, new_timezone)
    stale = {
        s.day
        for s in warehouse.find_gaps(LOOKBACK_DAYS).by_state(DayState.STALE)
        if s.team_id == team.team_id
    }
    assert stale == set(days)

    daemon.start()
    settled_at = wait_until_settled(daemon, warehouse, timeout=300)
    daemon.stop()

    instance = daemon.instance
    ticks = sensor_tick_times(instance)
    with warehouse.session() as session:
        buckets = session.query(
            "SELECT DISTINCT toMinute(period_bucket) FROM {table:Identifier} "
            "WHERE team_id = {team:UInt64}",
            {"table": STATS, "team": team.team_id},
        )
    local_days = [days[0] + timedelta(days=i) for i in range(len(days))]
    differing = [
        day
        for day in local_days
        if _overview_numbers(warehouse, team.team_id, day, "preaggregated")
        != _overview_numbers(warehouse, team.team_id, day, "raw")
    ]
    good_days = matching_days(warehouse, days)
    report_figures(
        "timezone change",
        trials=1,
        survived=int(good_days == set(days) and not differing),
        lost=len(set(days) - good_days | set(differing)),
        recovered_s=round(settled_at - daemon.started_at),
        ticks=ticks_between(ticks, daemon.started_at, settled_at),
        timezones=f"{team.timezone} -> {new_timezone}",
    )
    assert differing == []
    assert [minute for (minute,) in buckets] == [_bucket_minute(new_timezone)]
    assert_no_duplicate_runs(instance)
    assert_days_match_raw(warehouse, days)


def _overview_numbers(
    warehouse: web_analytics.Warehouse, team_id: int, day: date, source: str
) -> tuple[object, ...]:
    overview = warehouse.overview(team_id, day, day, source=source)
    duration = overview.avg_session_duration
    return (
        overview.visitors,
        overview.views,
        overview.sessions,
        overview.bounce_rate,
        None if duration is None else round(duration, 6),
    )
