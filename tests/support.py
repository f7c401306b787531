"""Helpers shared by test modules: the event builders, finalized dumps of the pre-aggregated
tables, loading generated traffic, definitions built from chosen settings, runs placed in a
Dagster instance, and reading table metadata."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from time import monotonic, sleep
from typing import IO, Any

import dagster as dg

import web_analytics
from web_analytics.definitions import build_definitions
from web_analytics.generator import GeneratorOptions, generate_batches, team_profiles
from web_analytics.orchestration.resources import ClickhouseCluster
from web_analytics.orchestration.settings import WebAnalyticsSettings
from web_analytics.warehouse.connection import EmbeddedStore
from web_analytics.warehouse.schema import PRE_AGGREGATED_TABLES, TABLE_METRICS

Event = dict[str, Any]

# Extra settings under which the aggregation's big INSERT reads too many rows and fails mid-way.
FAILING_SETTINGS = {"max_rows_to_read": 1}


# --- events ------------------------------------------------------------------------------------


def visit(
    team_id: int,
    session_id: str | None,
    steps: Iterable[tuple[str, str, str]],
    *,
    person: str | None,
    distinct_id: str | None = None,
    device: str = "Desktop",
    browser: str = "Chrome",
    country: str | None = None,
    utm_source: str | None = None,
) -> list[Event]:
    """PostHog events of one session: ``steps`` are (UTC ISO timestamp, event, pathname)."""
    events = []
    for timestamp, name, path in steps:
        properties: dict[str, object] = {
            "$pathname": path,
            "$host": "shop.example.com",
            "$device_type": device,
            "$browser": browser,
            "$os": "Mac OS X",
        }
        if session_id is not None:
            properties["$session_id"] = session_id
        if country is not None:
            properties["$geoip_country_code"] = country
        if utm_source is not None:
            properties["utm_source"] = utm_source
        event: Event = {
            "event": name,
            "timestamp": timestamp,
            "team_id": team_id,
            "distinct_id": distinct_id or person,
            "properties": properties,
        }
        if person is not None:
            event["person_id"] = person
        events.append(event)
    return events


def pageviews(
    team_id: int, session_id: str, *timestamps: str, path: str = "/", person: str | None = None
) -> list[Event]:
    """One pageview of ``path`` per timestamp, in one session of ``person`` (by default a
    person named after the session)."""
    return visit(
        team_id,
        session_id,
        [(timestamp, "$pageview", path) for timestamp in timestamps],
        person=person or f"person-{session_id}",
    )


def pageviews_on(
    team_id: int,
    day: date,
    session_id: str,
    hour: int = 12,
    count: int = 2,
    seconds_apart: int = 30,
) -> list[Event]:
    """``count`` pageviews of one session on UTC ``day``, ``seconds_apart`` apart from
    ``hour``:00."""
    start = datetime.combine(day, time(hour), UTC)
    return pageviews(
        team_id,
        session_id,
        *((start + timedelta(seconds=seconds_apart * i)).isoformat() for i in range(count)),
    )


def traffic(teams: Iterable[int], days: Sequence[date]) -> list[Event]:
    """One two-pageview session per team and day, at 12:00 and 12:00:30 UTC."""
    return [e for t in teams for d in days for e in pageviews_on(t, d, f"s-{t}-{d}")]


# --- the pre-aggregated tables -----------------------------------------------------------------

# Every aggregate state finalized, one row per key: what a reader of the table would see.
_FINALIZED = {
    table: ", ".join(
        f"uniqMerge({metric})" if metric == "visitors" else f"sum({metric})"
        for metric in TABLE_METRICS[table]
    )
    for table in PRE_AGGREGATED_TABLES
}


def finalized(
    warehouse: web_analytics.Warehouse,
    first_day: date = date(1970, 1, 1),
    last_day: date = date(2149, 1, 1),
) -> dict[str, list[tuple[object, ...]]]:
    """Contents of both pre-aggregated tables for UTC days ``[first_day, last_day]``."""
    with warehouse.session() as session:
        return {
            table: session.query(
                f"SELECT team_id, period_bucket, dimension, value, {_FINALIZED[table]} "
                "FROM {table:Identifier} "
                "WHERE toDate(period_bucket) BETWEEN {first_day:Date} AND {last_day:Date} "
                "GROUP BY team_id, period_bucket, dimension, value "
                "ORDER BY team_id, period_bucket, dimension, value",
                {"table": table, "first_day": first_day, "last_day": last_day},
            )
            for table in PRE_AGGREGATED_TABLES
        }


def team_rows(
    dump: dict[str, list[tuple[object, ...]]], team_id: int
) -> dict[str, list[tuple[object, ...]]]:
    return {table: [row for row in rows if row[0] == team_id] for table, rows in dump.items()}


def load_generated(warehouse: web_analytics.Warehouse, options: GeneratorOptions) -> None:
    for profile in team_profiles(options.teams, options.seed):
        warehouse.upsert_team(profile.team_id, profile.timezone)
    warehouse.insert_event_columns(generate_batches(options))


# --- Dagster -----------------------------------------------------------------------------------


def definitions(url: str | None = None, **settings: Any) -> dg.Definitions:
    """The project's definitions over the store at ``url``, with ``settings`` instead of the
    defaults (never the environment's)."""
    return build_definitions(WebAnalyticsSettings(**settings), ClickhouseCluster(url=url))


def add_run(
    instance: dg.DagsterInstance,
    job_name: str,
    status: dg.DagsterRunStatus,
    tags: dict[str, str],
) -> dg.DagsterRun:
    """A run of ``job_name`` in ``instance`` with ``status``, as the daemon would leave it."""
    origin = _queued_origin(job_name) if status == dg.DagsterRunStatus.QUEUED else None
    return instance.add_run(
        dg.DagsterRun(job_name=job_name, status=status, tags=tags, remote_job_origin=origin)
    )


def _queued_origin(job_name: str) -> Any:
    # Private API: Dagster refuses a queued run without its code location's origin, and only a
    # workspace (private too) builds one in public code.
    from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteRepositoryOrigin

    location = RegisteredCodeLocationOrigin("web_analytics")
    return RemoteRepositoryOrigin(location, "__repository__").get_job_origin(job_name)


def records(value: object) -> list[dict[str, Any]]:
    """The rows of a table metadata value, as dicts."""
    assert isinstance(value, dg.TableMetadataValue), value
    return [dict(record.data) for record in value.records]


# --- other processes ---------------------------------------------------------------------------


def start_python(code: str, *args: str, **popen: Any) -> subprocess.Popen[str]:
    """``code`` run by a new interpreter of this environment with ``args``; text pipes for
    stdout and stderr (and whatever else ``popen`` asks for)."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def lock_timeout_of(warehouse: web_analytics.Warehouse) -> float:
    """The lock timeout of a warehouse on the embedded store."""
    store = warehouse.store
    assert isinstance(store, EmbeddedStore), store
    return store.lock_timeout


def stdout_of(process: subprocess.Popen[str]) -> IO[str]:
    """The standard output of a process started with ``stdout=PIPE``."""
    assert process.stdout is not None
    return process.stdout


# --- the Dagster daemon ------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def start_daemon(env: dict[str, str], log: IO[str]) -> subprocess.Popen[bytes]:
    """``dagster-daemon run`` on the project's definitions, in its own process group (its code
    server and run workers join it), writing to ``log``."""
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("dagster-daemon")),
            "run",
            "-m",
            "web_analytics.definitions",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM ``process``'s group, then SIGKILL whatever of it is left (run workers and
    orphaned steps share the group: none may outlive a test)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=60)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


# --- the Dagster webserver ---------------------------------------------------------------------

DEFINITIONS_MODULE = "web_analytics.definitions"  # also the code location's name in the UI


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_webserver(env: dict[str, str], port: int, log: IO[str]) -> subprocess.Popen[bytes]:
    """``dagster-webserver`` on 127.0.0.1:``port`` serving the project's definitions, in its own
    process group (its code server joins it), writing to ``log``."""
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("dagster-webserver")),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-m",
            DEFINITIONS_MODULE,
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_until_serving(url: str, process: subprocess.Popen[bytes], seconds: float) -> None:
    """Return once ``url`` answers 200; fail if ``process`` (its server) exits or ``seconds``
    pass first."""
    deadline = monotonic() + seconds
    while monotonic() < deadline:
        assert process.poll() is None, f"the server of {url} exited with {process.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        sleep(0.5)
    raise AssertionError(f"{url} did not answer within {seconds} s")


def stop_groups(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """``stop_group`` for each process at the same time: each takes seconds to shut down."""
    with ThreadPoolExecutor(max_workers=max(len(processes), 1)) as pool:
        list(pool.map(stop_group, processes))
