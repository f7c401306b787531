"""End to end with the real Dagster daemon: the backfill sensor finds the missing and stale
days of an embedded store and launches runs that fill them, while the daemon, its code
server, the run workers and this test take turns on the store.

Slow (a few minutes): run with ``pytest -m slow tests/test_daemon.py``."""

from __future__ import annotations

import os
import time
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest
from support import ROOT, pageviews_on, start_daemon, stop_group, traffic

import web_analytics
from web_analytics.definitions import build_definitions
from web_analytics.orchestration.backfill_requests import IN_FLIGHT
from web_analytics.orchestration.partitions import tagged_days
from web_analytics.orchestration.resources import ClickhouseCluster
from web_analytics.orchestration.settings import WebAnalyticsSettings
from web_analytics.warehouse.attempts import AttemptStatus

LOCK_TIMEOUT = 300.0
FILL_TIMEOUT = 8 * 60
SENSOR = "web_analytics_backfill_sensor"

pytestmark = pytest.mark.slow


def prepare_store(url: str, today: date) -> list[date]:
    """Team 1 with traffic on T-4..T-1: T-4 computed then a late session (stale), T-3 and
    T-2 never computed (missing), T-1 complete. Returns the days to fill."""

    def ago(days: int) -> date:
        return today - timedelta(days=days)

    warehouse = web_analytics.connect(url, lock_timeout=LOCK_TIMEOUT)
    warehouse.ensure_schema()
    warehouse.insert_events(traffic((1,), [ago(n) for n in (4, 3, 2, 1)]))
    warehouse.aggregate(ago(4), ago(4))
    warehouse.aggregate(ago(1), ago(1))
    warehouse.insert_events(pageviews_on(1, ago(4), "late", hour=15, count=1))
    report = warehouse.find_gaps(days_back=30)
    assert report.needing_backfill == [ago(4), ago(3), ago(2)]
    assert {s.state.value for s in report.days if s.day == ago(4)} == {"stale"}
    return report.needing_backfill


def runs_of(filters: dg.RunsFilter) -> list[dg.DagsterRun]:
    """Runs of the instance in $DAGSTER_HOME (the daemon's)."""
    with dg.DagsterInstance.get() as instance:
        return list(instance.get_runs(filters=filters))


def test_the_daemon_fills_missing_and_stale_days_through_the_sensor(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch, today: date
) -> None:
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text((ROOT / "deploy" / "dagster.yaml").read_text())
    to_fill = prepare_store(store_url, today)

    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "WEB_ANALYTICS_URL": store_url,
        "WEB_ANALYTICS_BACKFILL_SENSOR_INTERVAL_SECONDS": "5",
        "WEB_ANALYTICS_LOCK_TIMEOUT": str(int(LOCK_TIMEOUT)),
    }
    log = (tmp_path / "daemon.log").open("w")
    daemon = start_daemon(env, log)
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))  # the daemon's instance, read here
    warehouse = web_analytics.connect(store_url, lock_timeout=LOCK_TIMEOUT)
    try:
        # Filled, and every launched run finished (its accuracy checks run after the write).
        deadline = time.monotonic() + FILL_TIMEOUT
        needing: list[date] = to_fill
        running: list[dg.DagsterRun] = []
        while (needing or running) and time.monotonic() < deadline:
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-5000:]
            time.sleep(10)
            needing = warehouse.find_gaps(days_back=30).needing_backfill
            running = runs_of(dg.RunsFilter(statuses=IN_FLIGHT))
        assert (needing, running) == ([], []), (
            f"after {FILL_TIMEOUT} s; daemon log:\n" + (tmp_path / "daemon.log").read_text()[-5000:]
        )
    finally:
        stop_group(daemon)
        log.close()

    # The diagnostic job agrees: nothing left to fill, nothing churned on empty days.
    defs = build_definitions(
        WebAnalyticsSettings(),
        ClickhouseCluster(url=store_url, lock_timeout_seconds=LOCK_TIMEOUT),
    )
    result = defs.resolve_job_def("check_missing_data_job").execute_in_process()
    report = result.output_for_node("check_missing_data_op")
    assert report.needing_backfill == []
    # Team 1, T-4..T-1, both tables; every other day of the window had no traffic.
    assert len(report.by_state("complete")) == 4 * 2

    # Every filled day was written by a successful run that the sensor launched, and the
    # status records name that run and the sensor.
    runs = runs_of(
        dg.RunsFilter(tags={"dagster/sensor_name": SENSOR}, statuses=[dg.DagsterRunStatus.SUCCESS])
    )
    records = warehouse.backfill_records(to_fill[0], to_fill[-1])
    for day in to_fill:
        launched = {run.run_id for run in runs if day in tagged_days(run.tags)}
        recorded = {
            r.run_id
            for r in records
            if (r.day, r.status, r.trigger) == (day, AttemptStatus.SUCCEEDED, f"sensor:{SENSOR}")
        }
        assert launched and launched <= recorded, (day, launched, records)
