"""The deployment as an operator runs it.

Production: a real PostgreSQL started from the Debian binaries in a temporary folder,
``python3 tasks.py prod start`` (webserver and daemon on deploy/production), and a store with
missing days: the backfill sensor launches runs, the queue runs them one at a time under the
``clickhouse`` pool limit, they complete, their history is in PostgreSQL, the days are filled,
and ``prod stop`` stops every process it started.

The seed's commands (`dagster job execute -j ...`, `dagster job list`, `dagster run list`)
work as typed in a shell that sourced ``.venv/bin/activate``.

Development: ``python3 tasks.py dev`` stopped by SIGTERM to its pid, or by Ctrl-C at a
terminal, stops the webserver, the daemon and the code servers within seconds, without a
traceback.

Run with ``python3 tasks.py test -m deploy`` (about three minutes; needs Debian's
``postgresql`` package, which ``.ci/run`` installs).
"""

from __future__ import annotations

import fcntl
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import termios
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from support import pageviews

import web_analytics
from web_analytics.orchestration.partitions import tagged_days

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "tasks.py"
SENSOR = "web_analytics_backfill_sensor"
DAILY_JOB = "web_analytics_daily_job"
LOCK_TIMEOUT = 300
FILL_TIMEOUT = 360  # seconds for the sensor's runs to fill two days, one after another (a bound)
START_TIMEOUT = 150  # seconds for the webserver to answer on a busy 2-core machine
STOP_WITHIN = 20  # seconds a stopped command may take to end with everything it started
IN_PROGRESS = {dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED}
IN_FLIGHT = IN_PROGRESS | {dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED}


# --- processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: state, ppid, pgrp, ..."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def _processes() -> Iterator[tuple[int, list[str]]]:
    """Every process that is not a zombie, with its stat fields."""
    for entry in Path("/proc").iterdir():
        fields = _stat(int(entry.name)) if entry.name.isdigit() else None
        if fields is not None and fields[0] != "Z":
            yield int(entry.name), fields


def alive(pids: set[int]) -> set[int]:
    """The processes of ``pids`` that still run (zombies have ended)."""
    return pids & {pid for pid, _ in _processes()}


def descendants(root: int) -> set[int]:
    """Every live process below ``root``."""
    children: dict[int, set[int]] = {}
    for pid, fields in _processes():
        children.setdefault(int(fields[1]), set()).add(pid)
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = set().union(*(children.get(pid, set()) for pid in frontier)) - found
        found |= frontier
    return found


def group(pgid: int) -> set[int]:
    """Live members of a process group."""
    return {pid for pid, fields in _processes() if int(fields[2]) == pgid}


def command_line(pid: int) -> str:
    with suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


def wait_until(condition: Callable[[], bool], seconds: float, explain: Callable[[], str]) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s: {explain()}"
        time.sleep(0.5)


def clean_environment(**overrides: str) -> dict[str, str]:
    """This environment without the Dagster and project variables `tasks.py test` sets."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DAGSTER_", "WEB_ANALYTICS_"))
    }
    return {**env, **overrides}


def tasks(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TASKS), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- PostgreSQL from the Debian binaries --------------------------------------------------


def postgres_bin() -> Path:
    """The directory of `initdb` and `pg_ctl` (not on PATH on Debian)."""
    with suppress(OSError, subprocess.CalledProcessError):
        found = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True
        ).stdout.strip()
        if (Path(found) / "initdb").exists():
            return Path(found)
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not candidates:
        pytest.fail("PostgreSQL is not installed: apt-get install -y postgresql (.ci/run does)")
    return candidates[-1].parent


@dataclass(frozen=True)
class Postgres:
    url: str  # for psql
    env: dict[str, str]  # for the production instance configuration


@contextmanager
def running_postgres() -> Iterator[Postgres]:
    """A PostgreSQL server on a free loopback port with a `dagster` database and a password
    login; stopped and deleted afterwards, whatever happens."""
    bin_dir = postgres_bin()
    folder = Path(tempfile.mkdtemp(prefix="web-analytics-pg-"))  # readable by the server user
    # The server refuses to run as root: run it as Debian's `postgres` user then.
    as_server = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_server:
        account = pwd.getpwnam("postgres")
        os.chown(folder, account.pw_uid, account.pw_gid)
    password, port = secrets.token_hex(8), free_port()
    (folder / "password").write_text(password)
    if as_server:
        os.chown(folder / "password", account.pw_uid, account.pw_gid)
    data = folder / "data"
    pg_ctl = [*as_server, str(bin_dir / "pg_ctl"), "-D", str(data)]
    started = False

    def run(command: list[str]) -> None:
        result = subprocess.run(command, capture_output=True, text=True)
        log = folder / "server.log"
        assert result.returncode == 0, f"{command}:\n{result.stdout}{result.stderr}" + (
            log.read_text() if log.exists() else ""
        )

    try:
        run(
            [*as_server, str(bin_dir / "initdb"), "-D", str(data), "-U", "dagster"]
            + ["--pwfile", str(folder / "password"), "--auth-local=trust"]
            + ["--auth-host=scram-sha-256", "-E", "UTF8", "--no-instructions"]
        )
        started = True  # from here on, stop it whatever happens
        run(
            [*pg_ctl, "-l", str(folder / "server.log"), "-w", "-t", "60", "start"]
            + ["-o", f"-h 127.0.0.1 -p {port} -k {folder}"]
        )
        server = f"postgresql://dagster:{password}@127.0.0.1:{port}"
        psql(f"{server}/postgres", "CREATE DATABASE dagster")
        yield Postgres(
            url=f"{server}/dagster",
            env={
                "DAGSTER_PG_HOST": "127.0.0.1",
                "DAGSTER_PG_PORT": str(port),
                "DAGSTER_PG_USERNAME": "dagster",
                "DAGSTER_PG_PASSWORD": password,
                "DAGSTER_PG_DB": "dagster",
            },
        )
    finally:
        if started:
            subprocess.run([*pg_ctl, "-m", "fast", "-w", "-t", "60", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def psql(url: str, sql: str) -> list[str]:
    """Rows of a query, one `|`-separated line each."""
    result = subprocess.run(
        [str(postgres_bin() / "psql"), url, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.splitlines()


# --- the production deployment ------------------------------------------------------------


def days_ago(days: int) -> date:
    return datetime.now(UTC).date() - timedelta(days=days)


def store_with_gaps(url: str) -> list[date]:
    """Team 1 with traffic on T-3..T-1, only T-1 pre-aggregated: two days to fill."""
    warehouse = web_analytics.connect(url, lock_timeout=LOCK_TIMEOUT)
    warehouse.ensure_schema()
    warehouse.upsert_team(1, "UTC")
    for n in (3, 2, 1):
        day = days_ago(n)
        warehouse.insert_events(pageviews(1, f"s-{day}", f"{day}T12:00:00Z", f"{day}T12:00:30Z"))
    warehouse.aggregate(days_ago(1), days_ago(1))
    to_fill = warehouse.find_gaps(days_back=30).needing_backfill
    assert to_fill == [days_ago(3), days_ago(2)]
    return to_fill


def pid_files(home: Path) -> dict[str, int]:
    return {
        path.stem: int(path.read_text().split()[0]) for path in (home / "services").glob("*.pid")
    }


def test_production_fills_gaps_through_the_queue_with_its_history_in_postgresql(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    to_fill = store_with_gaps(store_url)
    home = tmp_path / "production"
    with running_postgres() as postgres:
        env = clean_environment(
            **postgres.env,
            WEB_ANALYTICS_PRODUCTION_HOME=str(home),
            WEB_ANALYTICS_URL=store_url,
            WEB_ANALYTICS_AUTOMATION="running",
            WEB_ANALYTICS_BACKFILL_SENSOR_INTERVAL_SECONDS="5",
            WEB_ANALYTICS_MAX_DAYS_PER_RUN="1",  # one run per day: runs to queue
            WEB_ANALYTICS_LOCK_TIMEOUT=str(LOCK_TIMEOUT),
        )
        port = free_port()
        services: dict[str, int] = {}
        try:
            started = tasks("prod", "start", "--port", str(port), env=env, timeout=START_TIMEOUT)
            services = pid_files(home)
            assert started.returncode == 0, started.stdout + started.stderr
            assert f"http://127.0.0.1:{port}" in started.stdout
            # Two processes, each leading its own group, on the production configuration.
            assert set(services) == {"webserver", "daemon"}
            assert services["webserver"] != services["daemon"]
            assert "dagster-webserver" in command_line(services["webserver"])
            assert "dagster-daemon" in command_line(services["daemon"])
            assert "env: DAGSTER_PG_PASSWORD" in (home / "dagster.yaml").read_text()

            # This test reads the same instance: PostgreSQL, credentials from the environment.
            monkeypatch.setenv("DAGSTER_HOME", str(home))
            for name, value in postgres.env.items():
                monkeypatch.setenv(name, value)
            samples = fill_and_sample(store_url, home, to_fill)
        finally:
            stopped = tasks("prod", "stop", env=env, timeout=2 * 60)
            left = set().union(*(group(pid) for pid in services.values()))

        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert left == set(), [command_line(pid) for pid in left]
        assert tasks("prod", "status", env=env, timeout=60).returncode == 3  # both stopped
        assert_launched_queued_and_recorded(postgres.url, to_fill, samples)

    warehouse = web_analytics.connect(store_url, lock_timeout=LOCK_TIMEOUT)
    assert warehouse.find_gaps(days_back=30).needing_backfill == []


def fill_and_sample(store_url: str, home: Path, to_fill: list[date]) -> list[tuple[int, int]]:
    """Wait until the days are filled and no run is in flight; returns (runs in progress,
    runs queued) of the pre-aggregation job, sampled every second meanwhile."""
    warehouse = web_analytics.connect(store_url, lock_timeout=LOCK_TIMEOUT)
    samples: list[tuple[int, int]] = []
    needing, in_flight = to_fill, 1
    next_gap_check = time.monotonic()
    deadline = time.monotonic() + FILL_TIMEOUT
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        while needing or in_flight:
            assert time.monotonic() < deadline, (
                f"after {FILL_TIMEOUT} s: {needing} still need backfill, {in_flight} runs in "
                f"flight; daemon log:\n{(home / 'services' / 'daemon.log').read_text()[-4000:]}"
            )
            statuses = [run.status for run in instance.get_runs(dg.RunsFilter(job_name=DAILY_JOB))]
            samples.append(
                (
                    sum(status in IN_PROGRESS for status in statuses),
                    statuses.count(dg.DagsterRunStatus.QUEUED),
                )
            )
            in_flight = sum(status in IN_FLIGHT for status in statuses)
            if time.monotonic() >= next_gap_check:  # the store is shared with the runs: rarely
                needing = warehouse.find_gaps(days_back=30).needing_backfill
                next_gap_check = time.monotonic() + 10
            time.sleep(1)
    return samples


def assert_launched_queued_and_recorded(
    pg_url: str, to_fill: list[date], samples: list[tuple[int, int]]
) -> None:
    with dg.DagsterInstance.get() as instance:
        records = instance.get_run_records(dg.RunsFilter(job_name=DAILY_JOB))
        # Launched by the sensor, one run per day to fill, each succeeded.
        days = sorted(day for record in records for day in tagged_days(record.dagster_run.tags))
        assert days == to_fill
        for record in records:
            assert record.dagster_run.tags["dagster/sensor_name"] == SENSOR
            assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
            enqueued = instance.get_records_for_run(
                record.dagster_run.run_id, of_type=dg.DagsterEventType.RUN_ENQUEUED
            ).records
            assert enqueued, f"run {record.dagster_run.run_id} did not go through the queue"
        # The pool limit of 1: never two in progress; the others waited in the queue.
        assert max(in_progress for in_progress, _ in samples) == 1
        assert any(in_progress == 1 and queued >= 1 for in_progress, queued in samples), samples
        spans = sorted((record.start_time, record.end_time) for record in records)
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert end is not None and start is not None and end <= start, spans
        assert instance.event_log_storage.get_concurrency_info("clickhouse").slot_count == 1
        run_ids = {record.dagster_run.run_id for record in records}

    # The history is PostgreSQL's own: the runs and their events, read with psql.
    rows = psql(pg_url, f"SELECT run_id, status FROM runs WHERE pipeline_name = '{DAILY_JOB}'")
    assert {tuple(row.split("|")) for row in rows} == {(run_id, "SUCCESS") for run_id in run_ids}
    finished = psql(
        pg_url,
        "SELECT count(DISTINCT run_id) FROM event_logs "
        "WHERE dagster_event_type = 'PIPELINE_SUCCESS' AND run_id IN "
        f"({', '.join(repr(run_id) for run_id in run_ids)})",
    )
    assert finished == [str(len(run_ids))]


# --- the seed's commands, as typed -------------------------------------------------------

SEED_JOBS = ["check_missing_data_job", "update_data_coverage_job", "web_analytics_maintenance_job"]


def test_the_seed_commands_work_as_typed_in_the_activated_shell(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_with_gaps(store_url)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    activate = ROOT / ".venv" / "bin" / "activate"

    def typed(command: str) -> str:
        """``command`` in a shell that sourced the activate script (the test's own home)."""
        result = subprocess.run(
            ["bash", "-c", f"source '{activate}' && export DAGSTER_HOME='{home}' && {command}"],
            cwd=ROOT,
            env=clean_environment(WEB_ANALYTICS_URL=store_url, WEB_ANALYTICS_LOCK_TIMEOUT="300"),
            capture_output=True,
            text=True,
            timeout=5 * 60,
        )
        assert result.returncode == 0, f"`{command}`:\n{result.stdout}\n{result.stderr}"
        return result.stdout + result.stderr

    for job in SEED_JOBS:
        typed(f"dagster job execute -j {job}")
    listed_jobs = typed("dagster job list")
    listed_runs = typed("dagster run list")

    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
    assert sorted(run.job_name for run in runs) == sorted(SEED_JOBS)
    for run in runs:
        assert run.status == dg.DagsterRunStatus.SUCCESS
        # Filed under its job in the UI's code location (the one `dagster dev` loads).
        assert run.tags[".dagster/repository"] == "__repository__@web_analytics"
        assert f"Run: {run.run_id}" in listed_runs
    for job in SEED_JOBS:
        assert f"Job: {job}" in listed_jobs


# --- stopping `tasks.py dev` --------------------------------------------------------------


class Terminal:
    """A pseudo-terminal whose output is collected as it comes (a full one would block)."""

    def __init__(self) -> None:
        self.controller, self.device = os.openpty()
        self.output = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        with suppress(OSError):
            while chunk := os.read(self.controller, 65536):
                self.output += chunk

    def text(self) -> str:
        return self.output.decode(errors="replace")

    def close(self) -> None:
        os.close(self.device)
        self._reader.join(timeout=5)
        with suppress(OSError):
            os.close(self.controller)


def _take_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # stdin becomes the new session's terminal


@pytest.mark.parametrize("stop", ["SIGTERM", "Ctrl-C"])
def test_stopping_dev_stops_everything_it_started_without_a_traceback(
    tmp_path: Path, store_url: str, stop: str
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    env = clean_environment(
        DAGSTER_HOME=str(home), WEB_ANALYTICS_URL=store_url, WEB_ANALYTICS_AUTOMATION="stopped"
    )
    terminal = Terminal() if stop == "Ctrl-C" else None
    output = tmp_path / "output.log"
    with open(output, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(TASKS), "dev", "-p", str(port)],
            cwd=ROOT,
            env=env,
            stdin=terminal.device if terminal else subprocess.DEVNULL,
            stdout=terminal.device if terminal else log,
            stderr=terminal.device if terminal else log,
            start_new_session=True,
            preexec_fn=_take_terminal if terminal else None,
        )

    def text() -> str:
        return terminal.text() if terminal else output.read_text(errors="replace")

    started: set[int] = set()
    try:
        wait_until(
            lambda: (
                process.poll() is None
                and answers(f"http://127.0.0.1:{port}/server_info")
                and "Instance is configured with the following daemons" in text()
            ),
            START_TIMEOUT,
            lambda: f"exit {process.poll()}:\n{text()[-4000:]}",
        )
        started = descendants(process.pid)
        commands = " ".join(command_line(pid) for pid in started)
        assert "dagster_webserver" in commands and "dagster._daemon" in commands, commands
        assert "code-server" in commands or "api grpc" in commands, commands

        stopping = time.monotonic()
        if terminal:
            os.write(terminal.controller, b"\x03")
        else:
            process.send_signal(signal.SIGTERM)
        process.wait(timeout=STOP_WITHIN)
        took = time.monotonic() - stopping
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for pid in alive(started):
            with suppress(ProcessLookupError):
                os.killpg(os.getpgid(pid), signal.SIGKILL)
        if terminal:
            terminal.close()

    assert took < STOP_WITHIN
    assert alive(started) == set(), [command_line(pid) for pid in alive(started)]
    assert not answers(f"http://127.0.0.1:{port}/server_info")
    assert "Shutting down Dagster services" in text(), text()[-4000:]
    assert "Traceback" not in text(), text()[-4000:]
