"""Turns on the embedded store: processes that wait for it are served in the order they
came, a waiter that died loses its place, and under steady load from four processes nobody
waits longer than the work queued before it."""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from support import pageviews_on, start_python

import web_analytics

HOLDER = textwrap.dedent(
    """
    import sys
    import web_analytics

    warehouse = web_analytics.connect(sys.argv[1])
    with warehouse.session():
        print("holding", flush=True)
        sys.stdin.readline()
    """
)

WAITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import web_analytics

    url, name, log = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    warehouse = web_analytics.connect(url, lock_timeout=60)
    print("queueing", flush=True)
    with warehouse.session():
        with log.open("a") as served:
            served.write(name + "\\n")
        time.sleep(0.1)
    """
)


def queue_behind(store_url: str, name: str, log: Path) -> subprocess.Popen[str]:
    """A process that asks for the store, once it has (almost surely) taken its place."""
    waiter = start_python(WAITER, store_url, name, str(log))
    assert waiter.stdout is not None
    assert waiter.stdout.readline() == "queueing\n"
    time.sleep(0.5)  # from here it takes its ticket in a few milliseconds
    return waiter


def test_processes_waiting_for_the_store_are_served_in_arrival_order(
    tmp_path: Path, store_url: str, warehouse: web_analytics.Warehouse
) -> None:
    log = tmp_path / "served"
    holder = start_python(HOLDER, store_url, stdin=subprocess.PIPE)
    waiters = []
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline() == "holding\n"
        for name in ("first", "second", "dies", "third"):
            waiters.append(queue_behind(store_url, name, log))
        # A waiter that dies while queued must not hold up the ones behind it.
        waiters[2].send_signal(signal.SIGKILL)
        waiters[2].wait(timeout=10)
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0
        outcomes = [waiter.communicate(timeout=60) for waiter in waiters]
    finally:
        for process in (holder, *waiters):
            process.kill()

    assert [w.returncode for w in waiters] == [0, 0, -signal.SIGKILL, 0], outcomes
    assert log.read_text().split() == ["first", "second", "third"]


def test_the_busy_error_names_the_holder_and_counts_the_waiters_before(
    tmp_path: Path, store_url: str, warehouse: web_analytics.Warehouse
) -> None:
    holder = start_python(HOLDER, store_url, stdin=subprocess.PIPE)
    waiter = None
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline() == "holding\n"
        waiter = queue_behind(store_url, "patient", tmp_path / "served")
        with pytest.raises(web_analytics.EmbeddedStoreBusy) as busy:
            web_analytics.connect(store_url, lock_timeout=0.5).teams()
        holder.stdin.close()
        waiter.communicate(timeout=60)
    finally:
        for process in (holder, waiter):
            if process is not None:
                process.kill()

    assert f"it is held by process {holder.pid} (" in str(busy.value)
    assert "s, with 1 more queued before this one; stop it or raise" in str(busy.value)
    assert waiter.returncode == 0


# --- four processes for a minute -----------------------------------------------------------------

TEAMS = (1, 2, 3)
DAYS = [date(2024, 3, 1) + timedelta(days=i) for i in range(5)]
TODAY = DAYS[-1] + timedelta(days=1)
LOCK_TIMEOUT = 10

# Each worker runs its unit of work again and again until the deadline, and reports when it
# asked for the store, got it and gave it back (wall clock, comparable across processes), how
# many units timed out and any other error.
WORKER = textwrap.dedent(
    """
    import json, sys, time, traceback, uuid
    from contextlib import contextmanager
    from datetime import date, timedelta
    import web_analytics
    from web_analytics.warehouse.connection import EmbeddedStore

    url, role, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    teams, days = (1, 2, 3), [date(2024, 3, 1) + timedelta(days=i) for i in range(5)]
    turns, timeouts, errors, sent = [], 0, [], 0
    take_turn = EmbeddedStore._file_lock

    @contextmanager
    def timed_turn(store):
        asked = time.time()
        with take_turn(store):
            taken = time.time()
            try:
                yield
            finally:
                turns.append((asked, taken, time.time()))

    EmbeddedStore._file_lock = timed_turn
    warehouse = web_analytics.connect(url, lock_timeout=%(timeout)s)
    print("ready", flush=True)
    deadline, unit = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        unit += 1
        try:
            if role == "writer":
                # 60 new pageviews (20 sessions of 3), and 6 of them delivered again.
                events = [
                    {
                        "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{unit}-{s}-{i}")),
                        "team_id": teams[s %% 3],
                        "event": "$pageview",
                        "timestamp": f"{days[unit %% 5]}T{s %% 24:02d}:{i:02d}:{unit %% 60:02d}Z",
                        "distinct_id": f"person-{unit}-{s}",
                        "properties": {"$session_id": f"{unit}-{s}", "$pathname": f"/p{i}"},
                    }
                    for s in range(20) for i in range(3)
                ]
                report = warehouse.insert_events(events + events[:6])
                assert report.inserted == 60 and report.duplicates == 6, report
                sent += 60
            elif role == "aggregator":  # one day per run, as the daily partitions are
                warehouse.aggregate(days[unit %% 5], days[unit %% 5])
            elif role == "gaps":
                warehouse.find_gaps(days_back=len(days), today=days[-1] + timedelta(days=1))
            else:  # one dashboard: overview and top pages of a team, in one turn
                team = teams[unit %% 3]
                with warehouse.session():
                    warehouse.overview(team, days[0], days[-1])
                    warehouse.breakdown(team, "pathname", days[0], days[-1], source="raw")
        except web_analytics.EmbeddedStoreBusy:
            timeouts += 1
        except Exception:
            errors.append(traceback.format_exc())
    print(json.dumps({"units": unit, "turns": turns, "timeouts": timeouts, "errors": errors,
                      "sent": sent}), flush=True)
    """
) % {"timeout": LOCK_TIMEOUT}


@pytest.mark.slow
def test_four_processes_share_the_store_for_a_minute_without_timeouts(
    store_url: str, warehouse: web_analytics.Warehouse
) -> None:
    for team in TEAMS:
        warehouse.upsert_team(team, "Asia/Kolkata" if team == 2 else "UTC")
    initial = [e for t in TEAMS for d in DAYS for e in pageviews_on(t, d, f"s-{t}-{d}")]
    assert warehouse.insert_events(initial).inserted == 30
    warehouse.aggregate(DAYS[0], DAYS[-1])

    roles = ("writer", "aggregator", "gaps", "dashboard")
    workers = [start_python(WORKER, store_url, role, "60") for role in roles]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline() == "ready\n", worker.communicate(timeout=30)
        outcomes = [worker.communicate(timeout=150) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()

    reports = {}
    for role, worker, (out, err) in zip(roles, workers, outcomes, strict=True):
        assert worker.returncode == 0, err
        reports[role] = json.loads(out.splitlines()[-1])
    turns = {role: report["turns"] for role, report in reports.items()}
    for role, own in turns.items():
        waits = [taken - asked for asked, taken, _ in own]
        holds = [released - taken for _, taken, released in own]
        print(
            f"{role}: {len(own)} turns, {reports[role]['timeouts']} timeouts, longest wait "
            f"{max(waits, default=0):.2f} s, longest hold {max(holds, default=0):.2f} s"
        )
    # First come, first served: while one waits, every other process takes the store at most
    # once (the unit it had queued before), never twice.
    for role, own in turns.items():
        for asked, taken, _ in own:
            for other, theirs in turns.items():
                cut_in = sum(asked < their_taken < taken for _, their_taken, _ in theirs)
                assert other == role or cut_in <= 1, (role, other, asked, taken)
    assert {role: report["timeouts"] for role, report in reports.items()} == dict.fromkeys(roles, 0)
    assert {role: report["errors"] for role, report in reports.items()} == dict.fromkeys(roles, [])
    assert all(len(own) >= 5 for own in turns.values()), turns
    # Everything written counts once, and the tables agree with the raw events.
    assert warehouse.summary().events == 30 + reports["writer"]["sent"]
    warehouse.aggregate(DAYS[0], DAYS[-1])
    for team in TEAMS:
        raw = warehouse.overview(team, DAYS[0], DAYS[-1], source="raw")
        assert warehouse.overview(team, DAYS[0], DAYS[-1], source="preaggregated") == raw
    for table in ("web_pre_aggregated_stats", "web_pre_aggregated_bounces"):
        assert warehouse.compare_with_raw(table, DAYS[0], DAYS[-1]).passed
    states = {day.state for day in warehouse.find_gaps(days_back=5, today=TODAY).days}
    assert {str(state) for state in states} == {"complete"}
