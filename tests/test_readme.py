"""The README's "Operating" commands, typed as written at the project root in a shell that has
sourced `.venv/bin/activate`, do what the README says: the diagnostic jobs report the days
that need backfill, `dg launch` pre-aggregates the named days, a JSON-lines file loads, the
CLI lists the jobs and runs, `tasks.py logs` prints a run's events and `tasks.py dev` serves
the UI with the daemon.

The commands are read from the README itself, so the test follows it when it changes. They
share one Dagster instance and one store, in the README's order (the run list and the logs
read the runs the earlier commands made).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import dagster as dg
import pytest
import yaml
from support import pageviews_on

import web_analytics
from web_analytics.definitions import defs
from web_analytics.warehouse.attempts import AttemptStatus
from web_analytics.warehouse.schema import PRE_AGGREGATED_TABLES

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
ACTIVATE = ROOT / ".venv" / "bin" / "activate"
COMMAND_TIMEOUT = 300  # seconds; a pre-aggregation run over a week takes about a minute
DEV_URL = "http://127.0.0.1:3000/server_info"
DEV_PORT = 3000
DEV_START_TIMEOUT = 90
DEV_STOP_GRACE = 10
SENSOR_TICK_LOG = "Checking for new runs for sensor: web_analytics_backfill_sensor"

TEAM = 1  # the hand-written traffic; the JSON-lines file brings team 2
FILE_TEAM = 2
RECENT_DAYS_AGO = (3, 10, 20)  # days with traffic before today; the fixture aggregates the last
AGGREGATED_DAYS_AGO = 20
RUN_ID_IN_LOG = re.compile(r" - ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}) - ")


def operating_commands(readme: Path) -> list[str]:
    """The commands of the fenced ```sh block under "## Operating", without comments."""
    section = readme.read_text(encoding="utf-8").split("\n## Operating\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    block = re.search(r"^```sh\n(.*?)^```", section, re.DOTALL | re.MULTILINE)
    assert block, "README.md has no ```sh block under ## Operating"
    return [
        line.strip()
        for line in block.group(1).splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def partition_days(command: str) -> list[date]:
    """UTC days a `dg launch --partition DAY` or `--partition-range FIRST...LAST` names."""
    tokens = shlex.split(command)
    if "--partition" in tokens:
        return [date.fromisoformat(tokens[tokens.index("--partition") + 1])]
    if "--partition-range" in tokens:
        first, last = tokens[tokens.index("--partition-range") + 1].split("...")
        first_day, last_day = date.fromisoformat(first), date.fromisoformat(last)
        return [first_day + timedelta(days=i) for i in range((last_day - first_day).days + 1)]
    return []


COMMANDS = operating_commands(README)
# The days the README pre-aggregates get hand-written traffic: N pageviews on day N of a month.
README_DAYS = sorted({day for command in COMMANDS for day in partition_days(command)})


@dataclass
class Operated:
    """What the commands share: their environment, the store, and the runs they made."""

    env: dict[str, str]
    home: Path
    url: str
    events_file: Path
    today: date
    runs: dict[str, str] = field(default_factory=dict)  # run id -> output of its command

    def day(self, days_ago: int) -> date:
        return self.today - timedelta(days=days_ago)

    def warehouse(self) -> web_analytics.Warehouse:
        # Each Warehouse call opens and closes the store, so commands never find it held.
        return web_analytics.connect(self.url)

    @contextmanager
    def instance(self) -> Iterator[dg.DagsterInstance]:
        with (
            mock.patch.dict(os.environ, {"DAGSTER_HOME": str(self.home)}),
            dg.DagsterInstance.get() as instance,
        ):
            yield instance


@pytest.fixture(scope="module")
def operated(tmp_path_factory: pytest.TempPathFactory) -> Operated:
    """A fresh Dagster home and store: team 1 has traffic on the README's days and on 3, 10
    and 20 days ago (the last already aggregated); a JSON-lines file holds two events of team
    2 and one broken line."""
    base = tmp_path_factory.mktemp("readme")
    home = base / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    url = f"chdb://{base / 'store'}"
    today = datetime.now(UTC).date()

    warehouse = web_analytics.connect(url)
    warehouse.ensure_schema()
    # N pageviews on day N of a month, a minute apart from 10:00 UTC.
    events = [
        event
        for day in README_DAYS
        for event in pageviews_on(TEAM, day, f"s-{day}", hour=10, count=day.day, seconds_apart=60)
    ]
    for days_ago in RECENT_DAYS_AGO:
        day = today - timedelta(days=days_ago)
        events += pageviews_on(TEAM, day, f"s-{day}", hour=10, count=2, seconds_apart=60)
    assert warehouse.insert_events(events).rejected == []
    aggregated = today - timedelta(days=AGGREGATED_DAYS_AGO)
    warehouse.aggregate(aggregated, aggregated)

    events_file = base / "events.jsonl"
    lines = [json.dumps(event) for event in pageviews_on(FILE_TEAM, date(2024, 1, 3), "f")]
    events_file.write_text("\n".join([*lines, "not json"]) + "\n", encoding="utf-8")

    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DAGSTER_", "WEB_ANALYTICS_"))
    }
    env.update(DAGSTER_HOME=str(home), WEB_ANALYTICS_URL=url)
    return Operated(env=env, home=home, url=url, events_file=events_file, today=today)


# --- running commands ---------------------------------------------------------------------


def as_typed(operated: Operated, command: str) -> list[str]:
    """``command`` typed into a shell at the project root after ``source .venv/bin/activate``
    (as the README says), with the test's own Dagster home."""
    line = f". {ACTIVATE} && export DAGSTER_HOME={shlex.quote(str(operated.home))} && {command}"
    return ["bash", "-c", line]


def run(operated: Operated, command: str) -> str:
    """Run ``command`` as a user would; it must exit 0. Returns stdout and stderr."""
    result = subprocess.run(
        as_typed(operated, command),
        cwd=ROOT,
        env=operated.env,
        timeout=COMMAND_TIMEOUT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert result.returncode == 0, f"`{command}` exited {result.returncode}:\n{result.stdout}"
    return result.stdout


def run_one_dagster_run(operated: Operated, command: str) -> tuple[str, str]:
    """Run a command that executes one Dagster run; the run must have succeeded."""
    output = run(operated, command)
    run_ids = set(RUN_ID_IN_LOG.findall(output))
    assert len(run_ids) == 1, f"expected one run, got {sorted(run_ids)}:\n{output}"
    [run_id] = run_ids
    with operated.instance() as instance:
        dagster_run = instance.get_run_by_id(run_id)
        assert dagster_run is not None, f"run {run_id} is not in {operated.home}"
        assert dagster_run.status == dg.DagsterRunStatus.SUCCESS, output
    operated.runs[run_id] = output
    return run_id, output


def gap_summary(first_day: date, last_day: date, teams: int, needing: list[date]) -> str:
    """The first line the gap ops log, when every day needing backfill is one team's
    missing day (as in the fixture)."""
    window = (last_day - first_day).days + 1
    line = (
        f"{first_day} to {last_day} ({window} UTC days x {teams} team{'s' * (teams > 1)}): "
        f"{len(needing)} UTC day{'s' * (len(needing) != 1)} "
        f"need{'s' * (len(needing) == 1)} backfill"
    )
    if not needing:
        return line
    team_days = f"{len(needing)} team-day{'s' * (len(needing) != 1)}"
    return f"{line} ({team_days}: {len(needing)} missing in each table)"


def coverage_line(operated: Operated) -> str:
    # One row per team, UTC day of the 30-day window and table.
    rows = 1 * 30 * len(PRE_AGGREGATED_TABLES)
    return f"Coverage of {operated.day(30)} to {operated.day(1)}: {rows} rows"


def cleanup_line(operated: Operated) -> str:
    # Nothing is old enough to delete; the fixture's aggregation left one record per table.
    return (
        f"Deleted 0 backfill status records started before {operated.day(90)}; "
        f"{len(PRE_AGGREGATED_TABLES)} kept"
    )


def job_run_config(command: str) -> dict[str, Any]:
    """The run config a command passes: a `-c` file (YAML) or `--config-json`."""
    tokens = shlex.split(command)
    if "-c" in tokens:
        return yaml.safe_load((ROOT / tokens[tokens.index("-c") + 1]).read_text())
    if "--config-json" in tokens:
        return json.loads(tokens[tokens.index("--config-json") + 1])
    return {}


# --- what each command must do --------------------------------------------------------------


def reports_missing_data(operated: Operated, command: str) -> None:
    _, output = run_one_dagster_run(operated, command)
    # The 30-day lookback: 3 and 10 days ago are missing, 20 days ago is complete.
    needing = [operated.day(10), operated.day(3)]
    assert gap_summary(operated.day(30), operated.day(1), 1, needing) in output
    # Team-days per table and state, aligned under their headers.
    assert (
        "team-days                   empty  missing  stale  failed  running  inaccurate  complete\n"
        "web_pre_aggregated_stats       27        2      0       0        0           0         1\n"
        "web_pre_aggregated_bounces     27        2      0       0        0           0         1\n"
        f"Latest: {needing[0]}, {needing[1]}"
    ) in output


def shows_data_gaps(operated: Operated, command: str) -> None:
    _, output = run_one_dagster_run(operated, command)
    days_back = job_run_config(command).get("days_back", 7)
    needing = [operated.day(n) for n in (10, 3) if n <= days_back]
    assert needing, "the README's window should reach a day with missing data"
    assert gap_summary(operated.day(days_back), operated.day(1), 1, needing) in output
    for day in needing:
        # One row per range for both tables: first day, last day, state, extent, teams.
        assert re.search(rf"^{day}  {day}  missing  1 team x 1 day\s+{TEAM}\s+both$", output, re.M)


def updates_coverage(operated: Operated, command: str) -> None:
    _, output = run_one_dagster_run(operated, command)
    assert coverage_line(operated) in output


def runs_maintenance(operated: Operated, command: str) -> None:
    _, output = run_one_dagster_run(operated, command)
    coverage = output.index(coverage_line(operated))
    report = output.index(gap_summary(operated.day(7), operated.day(1), 1, [operated.day(3)]))
    cleanup = output.index(cleanup_line(operated))
    assert coverage < report < cleanup, "maintenance runs coverage, then the report, then cleanup"


def cleans_up_records(operated: Operated, command: str) -> None:
    _, output = run_one_dagster_run(operated, command)
    assert cleanup_line(operated) in output


def pre_aggregates_days(operated: Operated, command: str) -> None:
    run_id, output = run_one_dagster_run(operated, command)
    days = partition_days(command)
    assert f"Wrote {days[0]} to {days[-1]}" in output, "one run computes the whole range"
    warehouse = operated.warehouse()
    written = {
        (record.table, record.day)
        for record in warehouse.backfill_records(date(2024, 1, 1), operated.today)
        if record.run_id == run_id and record.status == AttemptStatus.SUCCEEDED
    }
    assert written == {(table, day) for table in PRE_AGGREGATED_TABLES for day in days}
    for day in days:
        overview = warehouse.overview(TEAM, day, day, source="preaggregated")
        bounce_rate = 1 if day.day == 1 else 0  # a session of one pageview bounces
        assert (overview.views, overview.sessions, overview.bounce_rate) == (
            day.day,
            1,
            bounce_rate,
        ), day


def loads_events_file(operated: Operated, command: str) -> None:
    assert "events.jsonl" in command
    command = command.replace("events.jsonl", str(operated.events_file))
    _, output = run_one_dagster_run(operated, command)
    assert "line 3 rejected: not valid JSON" in output
    assert "Inserted 2 events, rejected 1" in output
    assert operated.warehouse().summary().events_per_team[FILE_TEAM] == 2


def lists_jobs(operated: Operated, command: str) -> None:
    output = run(operated, command)
    listed = set(re.findall(r"^Job: (\S+)$", output, re.MULTILINE))
    assert listed == {job.name for job in defs.resolve_all_job_defs()}


def requires_earlier_runs(operated: Operated) -> None:
    if not operated.runs:
        pytest.skip("reads the runs of the README's earlier commands: run the whole file")


def lists_runs(operated: Operated, command: str) -> None:
    requires_earlier_runs(operated)
    output = run(operated, command)
    listed = set(re.findall(r"^Run: (\S+)$", output, re.MULTILINE))
    with operated.instance() as instance:
        in_instance = {dagster_run.run_id for dagster_run in instance.get_runs()}
    assert listed == in_instance
    assert set(operated.runs) <= listed


def prints_run_logs(operated: Operated, command: str) -> None:
    requires_earlier_runs(operated)
    with operated.instance() as instance:
        [latest] = instance.get_runs(limit=1)
    assert latest.run_id in operated.runs, "the latest run is one the README's commands made"
    output = run(operated, command.replace("RUN_ID", latest.run_id))
    assert f"Run {latest.run_id} of {latest.job_name}: SUCCESS" in output
    assert "PIPELINE_SUCCESS" in output
    # What the run logged while its command ran is in its event log.
    launched = operated.runs[latest.run_id]
    messages = re.findall(
        rf" - (?:INFO|WARNING) - \S+ - {latest.run_id} - \S+ - (.+)$", launched, re.MULTILINE
    )
    assert messages
    for message in messages:
        assert message in output


def port_taken(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the command's whole process group, then SIGKILL whatever is left."""
    group = process.pid  # the command leads its own session and group
    try:
        os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + DEV_STOP_GRACE
        while time.monotonic() < deadline:
            process.poll()
            os.killpg(group, 0)  # ProcessLookupError once the group is gone
            time.sleep(0.5)
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


def wait_for_server_info(process: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    deadline = time.monotonic() + DEV_START_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, f"`dev` exited {process.returncode}:\n{log.read_text()}"
        try:
            with urllib.request.urlopen(DEV_URL, timeout=2) as response:
                return json.load(response)
        except (urllib.error.URLError, OSError):
            time.sleep(1)
    pytest.fail(f"{DEV_URL} did not answer in {DEV_START_TIMEOUT} s:\n{log.read_text()}")


def wait_for_log(log: Path, text: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while text not in log.read_text():
        assert time.monotonic() < deadline, f"no {text!r} in {seconds} s:\n{log.read_text()}"
        time.sleep(1)


def serves_ui_with_daemon(operated: Operated, command: str) -> None:
    if port_taken(DEV_PORT):
        pytest.skip(f"port {DEV_PORT} is taken: `dagster dev` would serve elsewhere or fail")
    log = operated.home.parent / "dev.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            as_typed(operated, command),
            cwd=ROOT,
            env=operated.env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        info = wait_for_server_info(process, log)
        assert info["dagster_webserver_version"] == dg.__version__
        # The daemon runs too, and the sensor is on by default.
        wait_for_log(log, SENSOR_TICK_LOG, DEV_START_TIMEOUT)
    finally:
        stop_process_group(process)


EXPECTATIONS: list[tuple[str, Callable[[Operated, str], None]]] = [
    (r"-j check_missing_data_job\b", reports_missing_data),
    (r"\bshow_data_gaps_job\b", shows_data_gaps),
    (r"-j update_data_coverage_job\b", updates_coverage),
    (r"-j web_analytics_maintenance_job\b", runs_maintenance),
    (r"-j cleanup_backfill_records_job\b", cleans_up_records),
    (r"dg launch --assets .* --partition(-range)? ", pre_aggregates_days),
    (r"--job load_events_job\b", loads_events_file),
    (r"\bdagster job list$", lists_jobs),
    (r"\bdagster run list$", lists_runs),
    (r"tasks\.py logs RUN_ID$", prints_run_logs),
    (r"tasks\.py dev$", serves_ui_with_daemon),
]

# Over three minutes for the whole file otherwise; `python3 tasks.py test -m slow` runs these.
# The default suite keeps `dagster job execute` (with and without -c), every `dg launch`, the
# job and run lists and the logs.
SLOW = (
    r"-j update_data_coverage_job\b",
    r"-j web_analytics_maintenance_job\b",
    r"-j cleanup_backfill_records_job\b",
    r"tasks\.py dev$",
)


def case(index: int, command: str) -> Any:
    words = re.sub(r"^.*?tasks\.py\s+", "", command)
    words = re.sub(r"--assets \S+ ", "", words)
    slug = re.sub(r"[^A-Za-z0-9_.]+", "-", words).strip("-")[:80]
    marks = [pytest.mark.slow] if any(re.search(slow, command) for slow in SLOW) else []
    return pytest.param(command, id=f"{index:02d}-{slug}", marks=marks)


@pytest.mark.parametrize("command", [case(i, c) for i, c in enumerate(COMMANDS, start=1)])
def test_readme_operating_command(operated: Operated, command: str) -> None:
    checks = [check for pattern, check in EXPECTATIONS if re.search(pattern, command)]
    assert len(checks) == 1, f"no single expectation for the README command `{command}`: add one"
    checks[0](operated, command)
