"""The operator's command line: what `source .venv/bin/activate` sets for the `dagster` and
`dg` commands, and `python3 tasks.py logs` (web_analytics.run_logs) reading a run's event log
with human timestamps, level names, short run ids and --follow."""

from __future__ import annotations

import re
import shlex
import subprocess
import threading
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

import web_analytics.run_logs as run_logs

ROOT = Path(__file__).resolve().parents[1]
ACTIVATE = ROOT / ".venv" / "bin" / "activate"
SEED_COMMANDS = [
    "dagster job execute -j check_missing_data_job",
    "dagster job execute -j update_data_coverage_job",
    "dagster job execute -j web_analytics_maintenance_job",
    "dagster job list",
    "dagster run list",
]
VARIABLES = ("DAGSTER_HOME", "DAGSTER_CLI_JOB_EXECUTE_MODULE_NAME", "DAGSTER_CLI_JOB_EXECUTE_TAGS")
ISO_UTC = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def code_location() -> str:
    with open(ROOT / "pyproject.toml", "rb") as file:
        return tomllib.load(file)["tool"]["dagster"]["code_location_name"]


def shell(script: str) -> dict[str, str]:
    """The values of VARIABLES after ``script`` runs in bash (`-` for unset)."""
    report = "; ".join(f'echo "{name}=${{{name}--}}"' for name in VARIABLES)
    output = subprocess.run(
        ["bash", "-c", f"{script}; {report}"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def test_activating_the_venv_sets_what_the_dagster_commands_need() -> None:
    activated = shell(f"source {shlex.quote(str(ACTIVATE))}")
    assert activated == {
        "DAGSTER_HOME": str(ROOT / ".dagster_home"),
        "DAGSTER_CLI_JOB_EXECUTE_MODULE_NAME": "web_analytics.definitions",
        # The UI files a job's runs under this label: repository @ code location.
        "DAGSTER_CLI_JOB_EXECUTE_TAGS": (
            f'{{".dagster/repository": "__repository__@{code_location()}"}}'
        ),
    }
    deactivated = shell(f"source {shlex.quote(str(ACTIVATE))}; deactivate")
    assert deactivated == dict.fromkeys(VARIABLES, "-")


def test_the_readme_gives_the_seed_commands_as_typed() -> None:
    operating = (ROOT / "README.md").read_text().split("\n## Operating\n", 1)[1]
    operating = operating.split("\n## ", 1)[0]
    assert "source .venv/bin/activate" in operating
    lines = {line.strip() for line in operating.splitlines()}
    assert [command for command in SEED_COMMANDS if command not in lines] == []


# --- tasks.py logs ----------------------------------------------------------------------------

release = threading.Event()


@dg.op
def report(context) -> None:  # type: ignore[no-untyped-def]
    context.log.info("3 teams x 2 days missing\nteam 1: 2024-01-01")
    context.log.debug("a detail nobody asked for")
    if not release.wait(timeout=60):
        raise TimeoutError("the test never released the op")
    context.log.warning("done after the wait")


@dg.op
def broken(context) -> None:  # type: ignore[no-untyped-def]
    raise RuntimeError("the store is unreachable")


@dg.job
def report_job() -> None:
    report()


@dg.job
def broken_job() -> None:
    broken()


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    """The instance in a fresh $DAGSTER_HOME, which the logs command reads too."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    release.set()
    with dg.DagsterInstance.get() as instance:
        yield instance


def run_id(number: int) -> str:
    """Ids alike up to their ninth character, then unique."""
    return f"0123abcd-{number:04d}-4000-8000-000000000000"


def logs(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = run_logs.main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_logs_print_iso_times_in_utc_level_names_and_skip_debug(
    instance: dg.DagsterInstance, capsys: pytest.CaptureFixture[str]
) -> None:
    before = datetime.now(UTC)
    report_job.execute_in_process(instance=instance, run_id=run_id(1))

    status, out, _ = logs(capsys, run_id(1)[:8])
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == f"Run {run_id(1)} of report_job: SUCCESS"
    info = next(line for line in lines if "3 teams x 2 days missing" in line)
    assert re.fullmatch(rf"{ISO_UTC} INFO    \[report\] 3 teams x 2 days missing", info)
    stamp = datetime.fromisoformat(info.split()[0])
    assert before <= stamp <= datetime.now(UTC)
    assert lines[lines.index(info) + 1] == "    team 1: 2024-01-01"  # a message's next lines
    assert re.search(rf"^{ISO_UTC} WARNING \[report\] done after the wait$", out, re.M)
    # Quiet: the milestones of the run and its step, not Dagster's or the op's DEBUG chatter.
    assert re.search(rf"^{ISO_UTC} DEBUG   PIPELINE_SUCCESS: ", out, re.M)
    assert re.search(rf"^{ISO_UTC} DEBUG   \[report\] STEP_SUCCESS: ", out, re.M)
    assert "a detail nobody asked for" not in out
    assert "RESOURCE_INIT_STARTED" not in out

    status, out, _ = logs(capsys, run_id(1), "--debug")
    assert status == 0
    assert re.search(rf"^{ISO_UTC} DEBUG   \[report\] a detail nobody asked for$", out, re.M)
    assert "RESOURCE_INIT_STARTED" in out


def test_logs_accept_a_unique_start_of_a_run_id_only(
    instance: dg.DagsterInstance, capsys: pytest.CaptureFixture[str]
) -> None:
    for number in (1, 2):
        report_job.execute_in_process(instance=instance, run_id=run_id(number))

    status, _, err = logs(capsys, run_id(1)[:8])
    assert status == 1
    assert "'0123abcd' is the start of 2 run ids" in err
    assert run_id(1) in err and run_id(2) in err and "give more of it" in err
    status, out, _ = logs(capsys, run_id(2)[:13])
    assert (status, out.splitlines()[0]) == (0, f"Run {run_id(2)} of report_job: SUCCESS")
    status, _, err = logs(capsys, "ffff")
    assert status == 1
    assert "no run 'ffff'" in err


def test_logs_follow_a_running_run_until_it_ends(
    instance: dg.DagsterInstance, capsys: pytest.CaptureFixture[str]
) -> None:
    release.clear()
    running = threading.Thread(
        target=report_job.execute_in_process,
        kwargs={"instance": instance, "run_id": run_id(3)},
    )
    running.start()
    try:
        while instance.get_run_by_id(run_id(3)) is None:
            threading.Event().wait(0.1)
        threading.Timer(2.0, release.set).start()  # the op finishes while the log is followed
        status, out, _ = logs(capsys, run_id(3)[:8], "--follow")
    finally:
        release.set()
        running.join(timeout=60)

    assert status == 0
    header = out.splitlines()[0]
    assert header.startswith(f"Run {run_id(3)} of report_job: "), header
    assert header.rsplit(" ", 1)[1] in ("NOT_STARTED", "STARTING", "STARTED"), header
    assert "done after the wait" in out
    assert out.index("3 teams x 2 days missing") < out.index("done after the wait")
    assert out.index("PIPELINE_SUCCESS") < out.index(f"Run {run_id(3)} ended: SUCCESS")
    assert out.splitlines()[-1] == f"Run {run_id(3)} ended: SUCCESS"


def test_following_a_failed_run_exits_with_an_error(
    instance: dg.DagsterInstance, capsys: pytest.CaptureFixture[str]
) -> None:
    broken_job.execute_in_process(instance=instance, run_id=run_id(4), raise_on_error=False)
    status, out, _ = logs(capsys, run_id(4)[:8], "--follow")
    assert status == 1
    assert re.search(rf"^{ISO_UTC} ERROR   \[broken\] STEP_FAILURE: ", out, re.M)
    assert out.splitlines()[-1] == f"Run {run_id(4)} ended: FAILURE"
