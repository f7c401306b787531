"""Quiet, readable output and a UI that tells the truth (issue 14, items 2 and 3), each test
one failure an operator met: jobs printing about 18 DEBUG lines around their 1-3 useful
ones, a SupersessionWarning on every `dagster job execute`, counts without their unit, a gap
list silently cut, the demo's summary buried in Dagster's DEBUG lines, the UI showing 2 % of
the partitions filled after the demo, stale days visible only inside job metadata, and the
days of a range run without their own materialization and check result."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml
from support import definitions, pageviews_on, records

import web_analytics
from web_analytics.orchestration.assets import ACCURACY_CHECK, COVERAGE_ASSET
from web_analytics.orchestration.partitions import daily_partitions, range_tags
from web_analytics.orchestration.settings import WebAnalyticsSettings
from web_analytics.warehouse.gap_text import gap_groups, groups_table, team_list
from web_analytics.warehouse.gaps import GapReport
from web_analytics.warehouse.schema import BOUNCES, PRE_AGGREGATED_TABLES, STATS

ROOT = Path(__file__).resolve().parents[1]
ACTIVATE = ROOT / ".venv" / "bin" / "activate"
INSTANCE_CONFIG = ROOT / "deploy" / "dagster.yaml"
TEAMS = (1, 2, 3)
DAYS_BACK = 7


def project_instance_config() -> dict[str, object]:
    """deploy/dagster.yaml, the instance every `tasks.py` command and the activated CLI use."""
    config = yaml.safe_load(INSTANCE_CONFIG.read_text())
    assert isinstance(config, dict)
    return config


@pytest.fixture
def project_instance() -> Iterator[dg.DagsterInstance]:
    """A test instance configured like the project's own (logging included)."""
    with dg.instance_for_test(overrides=project_instance_config()) as instance:
        yield instance


@pytest.fixture
def two_missing_days(warehouse: web_analytics.Warehouse, today: date) -> list[date]:
    """Teams 1-3 (UTC) with one session on each of 4 and 3 days ago, never pre-aggregated."""
    days = [today - timedelta(days=4), today - timedelta(days=3)]
    for team in TEAMS:
        warehouse.upsert_team(team, "UTC")
    warehouse.insert_events(
        [event for t in TEAMS for d in days for event in pageviews_on(t, d, f"s-{t}-{d}")]
    )
    return days


def dagster_lines(output: str, level: str) -> list[str]:
    return [line for line in output.splitlines() if f" - dagster - {level} - " in line]


# --- item 2: quiet, readable output ---------------------------------------------------------


def test_a_job_logs_one_summary_with_units_and_no_debug_lines(
    store_url: str,
    two_missing_days: list[date],
    today: date,
    project_instance: dg.DagsterInstance,
    capsys: pytest.CaptureFixture[str],
) -> None:
    job = definitions(store_url).resolve_job_def("check_missing_data_job")
    result = job.execute_in_process(
        instance=project_instance,
        run_config={"ops": {"check_missing_data_op": {"config": {"days_back": DAYS_BACK}}}},
    )

    assert result.success
    err = capsys.readouterr().err
    assert dagster_lines(err, "DEBUG") == []  # was about 18 per job
    [info] = dagster_lines(err, "INFO")
    # 7 days x 3 teams = 21 team-days per table: 3 teams x 2 days missing, 15 empty.
    first, last = today - timedelta(days=7), today - timedelta(days=1)
    assert info.endswith(
        f"{first} to {last} (7 UTC days x 3 teams): 2 UTC days need backfill "
        "(6 team-days: 6 missing in each table)"
    )
    table = err.split(info, 1)[1].strip().splitlines()
    assert table[:3] == [
        "team-days                   empty  missing  stale  failed  running  inaccurate  complete",
        "web_pre_aggregated_stats       15        6      0       0        0           0         0",
        "web_pre_aggregated_bounces     15        6      0       0        0           0         0",
    ]
    assert table[3] == f"Latest: {two_missing_days[0]}, {two_missing_days[1]}"
    # Dagster's own DEBUG events are still stored: the UI and `tasks.py logs --debug` have them.
    stored = project_instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_START)
    assert len(stored) == 1


def test_the_gap_report_folds_teams_into_an_aligned_table(
    store_url: str,
    two_missing_days: list[date],
    project_instance: dg.DagsterInstance,
    capsys: pytest.CaptureFixture[str],
) -> None:
    job = definitions(store_url).resolve_job_def("show_data_gaps_job")
    result = job.execute_in_process(instance=project_instance, run_config={"days_back": DAYS_BACK})

    assert result.success
    err = capsys.readouterr().err
    [info] = dagster_lines(err, "INFO")
    lines = err.split(info, 1)[1].strip().splitlines()
    first, last = two_missing_days
    # "3 teams x 2 days missing", once for both tables, not 6 lines of one team and table.
    assert lines[3:] == [
        "first day   last day    state    extent            teams  tables",
        f"{first}  {last}  missing  3 teams x 2 days  1-3    both",
    ]
    # The UI keeps a row per team and table.
    [output] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT]
    assert output.step_output_data is not None
    rows = records(output.step_output_data.metadata["gap_ranges"])
    assert [(row["team"], row["table"], row["days"]) for row in rows] == [
        (team, table, 2) for team in TEAMS for table in (BOUNCES, STATS)
    ]


def test_a_cut_list_says_how_many_it_shows_and_where_the_rest_is() -> None:
    # Team t is missing its t-th day only: four ranges that fold into nothing.
    first_day = date(2024, 1, 1)
    states = {
        (team, table): "c" * (team - 1) + "m" + "c" * (4 - team)
        for team in range(1, 5)
        for table in PRE_AGGREGATED_TABLES
    }
    report = GapReport(first_day, date(2024, 1, 4), (1, 2, 3, 4), states)

    text = groups_table(gap_groups(report), 3, "show_data_gaps_job")

    assert text.splitlines()[-1] == "3 of 4 shown; all: show_data_gaps_job"
    assert len(text.splitlines()) == 1 + 3 + 1  # header, 3 rows, the notice
    assert team_list([7, 1, 2, 3, 5]) == "1-3, 5, 7"


def test_dagster_job_execute_prints_no_warning_and_no_debug_lines(
    tmp_path: Path, store_url: str, two_missing_days: list[date]
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(INSTANCE_CONFIG, home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "WEB_ANALYTICS"))}
    env["WEB_ANALYTICS_URL"] = store_url
    command = (
        f". {shlex.quote(str(ACTIVATE))} && export DAGSTER_HOME={shlex.quote(str(home))} && "
        "dagster job execute -j check_missing_data_job"
    )
    output = subprocess.run(
        ["bash", "-c", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )

    printed = output.stdout + output.stderr
    assert "Warning" not in printed  # was a SupersessionWarning on every call
    assert dagster_lines(printed, "DEBUG") == []
    assert len(dagster_lines(printed, "INFO")) == 1
    assert "2 UTC days need backfill (6 team-days: 6 missing in each table)" in printed


# --- item 3: a UI that tells the truth -----------------------------------------------------


def test_each_day_of_a_range_run_has_its_materialization_and_check_in_the_event_log(
    warehouse: web_analytics.Warehouse, store_url: str, project_instance: dg.DagsterInstance
) -> None:
    days = [date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)]
    warehouse.upsert_team(1, "UTC")
    warehouse.insert_events([e for d in days for e in pageviews_on(1, d, f"s-{d}")])
    job = definitions(store_url).resolve_job_def("web_analytics_daily_job")

    result = job.execute_in_process(instance=project_instance, tags=range_tags(days[0], days[-1]))

    assert result.success
    log = project_instance.all_logs(result.run_id)
    materialized = {
        (e.dagster_event.asset_key.to_user_string(), e.dagster_event.partition)
        for e in log
        if e.dagster_event
        and e.dagster_event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
        and e.dagster_event.asset_key
    }
    checked = {
        (data.asset_key.to_user_string(), data.partition, data.check_name, data.passed)
        for e in log
        if e.dagster_event
        and e.dagster_event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        for data in [e.dagster_event.event_specific_data]
        if isinstance(data, dg.AssetCheckEvaluation)
    }
    keys = [str(day) for day in days]
    assert materialized == {(table, key) for table in PRE_AGGREGATED_TABLES for key in keys}
    assert checked == {
        (table, key, ACCURACY_CHECK, True) for table in PRE_AGGREGATED_TABLES for key in keys
    }
    for table in PRE_AGGREGATED_TABLES:
        assert project_instance.get_materialized_partitions(dg.AssetKey(table)) == set(keys)
    # Dagster no longer says the check "did not yield expected outputs".
    assert not [e for e in log if "did not yield" in e.user_message]


def test_the_coverage_asset_lists_missing_and_stale_days(
    warehouse: web_analytics.Warehouse,
    store_url: str,
    today: date,
    project_instance: dg.DagsterInstance,
) -> None:
    missing, stale = today - timedelta(days=5), today - timedelta(days=3)
    warehouse.upsert_team(1, "UTC")
    warehouse.insert_events(pageviews_on(1, missing, "a") + pageviews_on(1, stale, "b"))
    warehouse.aggregate(stale, stale)
    warehouse.insert_events(pageviews_on(1, stale, "late", hour=18))  # after it was computed
    job = definitions(store_url).resolve_job_def("update_data_coverage_job")

    result = job.execute_in_process(
        instance=project_instance,
        run_config={"ops": {"update_data_coverage_op": {"config": {"days_back": DAYS_BACK}}}},
    )

    assert result.success
    latest = project_instance.get_latest_materialization_event(COVERAGE_ASSET)
    assert latest is not None and latest.asset_materialization is not None
    metadata = latest.asset_materialization.metadata
    assert metadata["days_needing_backfill"].value == 2
    assert records(metadata["gap_ranges"]) == [
        {
            "team": 1,
            "table": table,
            "first_day": str(day),
            "last_day": str(day),
            "days": 1,
            "state": state,
        }
        for table in (BOUNCES, STATS)
        for day, state in ((missing, "missing"), (stale, "stale"))
    ]
    assert latest.asset_materialization.description == (
        f"{today - timedelta(days=7)} to {today - timedelta(days=1)} (7 UTC days x 1 team): "
        "2 UTC days need backfill (2 team-days: 1 missing, 1 stale in each table)"
    )


@pytest.mark.slow  # a minute: a small demo, end to end
def test_the_demo_prints_its_narrative_and_leaves_every_partition_materialized(
    tmp_path: Path, today: date
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(INSTANCE_CONFIG, home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "WEB_ANALYTICS"))}
    env["DAGSTER_HOME"] = str(home)
    demo = subprocess.run(
        [sys.executable, "-m", "web_analytics.demo", "--events", "20000", "--teams", "3"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )

    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert demo.stderr == ""
    assert " - dagster - " not in demo.stdout  # was about 300 lines
    assert re.findall(r"^\[(\d)/6\] ", demo.stdout, re.MULTILINE) == list("123456")
    assert "Dagster's log: .data/demo-dagster.log" in demo.stdout
    assert " - dagster - INFO - " in (tmp_path / ".data" / "demo-dagster.log").read_text()
    assert "After the backfill:" in demo.stdout
    after = demo.stdout.split("After the backfill:", 1)[1]
    assert ": 0 UTC days need backfill" in after

    # The demo's data starts 30 days ago; so do the partitions it records for the UI.
    environment = dict(
        line.split("=", 1)
        for line in (tmp_path / ".data" / "demo.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    first_day = today - timedelta(days=30)
    assert environment == {
        "WEB_ANALYTICS_URL": f"chdb://{tmp_path / '.data' / 'demo'}",
        "WEB_ANALYTICS_START_DATE": str(first_day),
    }
    settings = WebAnalyticsSettings.from_environment(environment)
    keys = [str(first_day + timedelta(days=i)) for i in range(30)]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert daily_partitions(settings).get_partition_keys() == keys
        for table in PRE_AGGREGATED_TABLES:
            # 100 % of the partitions the UI shows, where it showed 2 %.
            assert instance.get_materialized_partitions(dg.AssetKey(table)) == set(keys)


def test_tasks_commands_apply_the_demos_store_and_start_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location("tasks", ROOT / "tasks.py")
    assert spec is not None and spec.loader is not None
    tasks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tasks)
    demo_file = tmp_path / "demo.env"
    monkeypatch.setattr(tasks, "DEMO_ENVIRONMENT", demo_file)
    demo = {"WEB_ANALYTICS_URL": "chdb:///demo", "WEB_ANALYTICS_START_DATE": "2026-11-02"}

    assert tasks._demo_environment({}) == {}  # no demo ran
    demo_file.write_text("# comment\n" + "".join(f"{k}={v}\n" for k, v in demo.items()))
    assert tasks._demo_environment({}) == demo
    assert tasks._demo_environment({"WEB_ANALYTICS_URL": "chdb:///demo"}) == demo
    assert tasks._demo_environment({"WEB_ANALYTICS_URL": "chdb:///mine"}) == {}
    assert tasks._demo_environment({"WEB_ANALYTICS_START_DATE": "2024-01-01"}) == {}
