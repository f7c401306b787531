"""The definitions the CLI, the daemon and the UI load: built from one settings object that
the ``WEB_ANALYTICS_*`` variables give (read once, with errors that name the variable), and a
connection URL bound to its variable so that the UI never shows a password."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from support import traffic

import web_analytics
from web_analytics.definitions import build_definitions
from web_analytics.orchestration.settings import (
    AUTOMATION_ENV,
    LOOKBACK_ENV,
    MAX_DAYS_PER_RUN_ENV,
    MAX_DAYS_PER_TICK_ENV,
    RETENTION_ENV,
    SENSOR_INTERVAL_ENV,
    START_DATE_ENV,
    WebAnalyticsSettings,
)
from web_analytics.warehouse.schema import PRE_AGGREGATED_TABLES

SENSOR = "web_analytics_backfill_sensor"
SCHEDULES = (
    "web_analytics_daily_schedule",
    "web_analytics_backfill_schedule",
    "web_analytics_maintenance_schedule",
)


# --- settings from the environment -----------------------------------------------------------


def test_settings_of_an_empty_environment_are_the_defaults() -> None:
    settings = WebAnalyticsSettings.from_environment({})

    assert settings == WebAnalyticsSettings()
    assert (
        settings.start_date,
        settings.max_days_per_run,
        settings.lookback_days,
        settings.max_days_per_tick,
        settings.sensor_interval_seconds,
        settings.retention_days,
        settings.automation_running,
    ) == ("2024-01-01", 14, 30, 14, 6 * 3600, 90, True)


def test_settings_take_every_variable_that_is_set() -> None:
    settings = WebAnalyticsSettings.from_environment(
        {
            START_DATE_ENV: "2024-03-01",
            MAX_DAYS_PER_RUN_ENV: "0",
            LOOKBACK_ENV: "7",
            MAX_DAYS_PER_TICK_ENV: "3",
            SENSOR_INTERVAL_ENV: " 5 ",
            RETENTION_ENV: " ",  # blank means the default
            AUTOMATION_ENV: "Stopped",
        }
    )

    assert settings == WebAnalyticsSettings(
        start_date="2024-03-01",
        max_days_per_run=0,
        lookback_days=7,
        max_days_per_tick=3,
        sensor_interval_seconds=5,
        retention_days=90,
        automation_running=False,
    )
    assert settings.first_day == date(2024, 3, 1)


def test_settings_are_read_from_the_process_environment_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(LOOKBACK_ENV, "12")

    assert WebAnalyticsSettings.from_environment().lookback_days == 12


@pytest.mark.parametrize(
    ("name", "value", "bounds"),
    [
        (LOOKBACK_ENV, "-1", "1 to 3650"),
        (LOOKBACK_ENV, "abc", "1 to 3650"),
        (LOOKBACK_ENV, "0", "1 to 3650"),
        (LOOKBACK_ENV, "3651", "1 to 3650"),
        (LOOKBACK_ENV, "7.5", "1 to 3650"),
        (MAX_DAYS_PER_TICK_ENV, "0", "1 to 3650"),
        (MAX_DAYS_PER_RUN_ENV, "-1", "0 to 3650"),
        (SENSOR_INTERVAL_ENV, "4", "5 to 604800"),  # under 5 s would hammer the store
        (SENSOR_INTERVAL_ENV, "six hours", "5 to 604800"),
        (RETENTION_ENV, "0", "1 to 3650"),
    ],
)
def test_a_bad_number_is_refused_naming_the_variable_and_the_bounds(
    name: str, value: str, bounds: str
) -> None:
    with pytest.raises(web_analytics.ConfigurationError) as refused:
        WebAnalyticsSettings.from_environment({name: value})

    assert str(refused.value) == f"{name}={value!r} must be a whole number from {bounds}"


def test_the_lookback_message_is_the_one_operators_see() -> None:
    with pytest.raises(
        ValueError,
        match="^WEB_ANALYTICS_BACKFILL_LOOKBACK_DAYS='0' must be a whole number from 1 to 3650$",
    ):
        WebAnalyticsSettings.from_environment({LOOKBACK_ENV: "0"})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            AUTOMATION_ENV,
            "paused",
            "WEB_ANALYTICS_AUTOMATION='paused' must be 'running' or 'stopped'",
        ),
        (START_DATE_ENV, "2024-13-01", "WEB_ANALYTICS_START_DATE='2024-13-01' is not valid: "),
        (START_DATE_ENV, "yesterday", "WEB_ANALYTICS_START_DATE='yesterday' is not valid: "),
    ],
)
def test_a_bad_word_or_date_is_refused_naming_the_variable(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(web_analytics.ConfigurationError) as refused:
        WebAnalyticsSettings.from_environment({name: value})

    assert str(refused.value).startswith(message)


# --- the definitions built from the settings -------------------------------------------------


@pytest.mark.parametrize(
    ("automation", "sensor_status", "schedule_status"),
    [
        (None, dg.DefaultSensorStatus.RUNNING, dg.DefaultScheduleStatus.RUNNING),
        ("running", dg.DefaultSensorStatus.RUNNING, dg.DefaultScheduleStatus.RUNNING),
        ("stopped", dg.DefaultSensorStatus.STOPPED, dg.DefaultScheduleStatus.STOPPED),
    ],
)
def test_the_automation_variable_starts_the_sensor_and_every_schedule_running_or_stopped(
    automation: str | None,
    sensor_status: dg.DefaultSensorStatus,
    schedule_status: dg.DefaultScheduleStatus,
) -> None:
    environ = {} if automation is None else {AUTOMATION_ENV: automation}
    defs = build_definitions(WebAnalyticsSettings.from_environment(environ))

    assert defs.resolve_sensor_def(SENSOR).default_status == sensor_status
    for name in SCHEDULES:
        assert defs.resolve_schedule_def(name).default_status == schedule_status, name


def test_partitions_run_sizes_and_the_sensor_interval_come_from_the_settings(
    instance: dg.DagsterInstance,
) -> None:
    defs = build_definitions(
        WebAnalyticsSettings.from_environment(
            {START_DATE_ENV: "2024-03-01", MAX_DAYS_PER_RUN_ENV: "3", SENSOR_INTERVAL_ENV: "60"}
        )
    )

    assert defs.resolve_sensor_def(SENSOR).minimum_interval_seconds == 60
    for table in PRE_AGGREGATED_TABLES:
        assets = defs.resolve_assets_def(table)
        assert assets.backfill_policy == dg.BackfillPolicy.multi_run(max_partitions_per_run=3)
        partitions = assets.partitions_def
        assert isinstance(partitions, dg.DailyPartitionsDefinition)
        assert partitions.get_first_partition_key() == "2024-03-01"
    # The daily schedule never asks for a day before the first partition.
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=datetime(2024, 3, 2, 1, tzinfo=UTC)
    )
    [request] = defs.resolve_schedule_def(SCHEDULES[0]).evaluate_tick(context).run_requests or []
    assert request.tags["dagster/asset_partition_range_start"] == "2024-03-01"
    assert request.tags["dagster/asset_partition_range_end"] == "2024-03-01"

    # 0: the whole range in one run, which `dg launch --partition-range` requires.
    whole = build_definitions(WebAnalyticsSettings(max_days_per_run=0))
    assert whole.resolve_assets_def(PRE_AGGREGATED_TABLES[0]).backfill_policy == (
        dg.BackfillPolicy.single_run()
    )


# --- the connection URL ----------------------------------------------------------------------

# Loads the definitions as the CLI does, prints what the UI shows of the ClickHouse resource,
# then points the variable at a store and runs a job: the URL is read when the run starts.
LOAD_AND_RUN = """
import json, os, sys
from web_analytics.definitions import defs

clickhouse = defs.resources["clickhouse"]
shown = clickhouse.get_resource_definition().config_schema.default_value_as_json_str
os.environ["WEB_ANALYTICS_URL"] = sys.argv[1]
result = defs.resolve_job_def("check_missing_data_job").execute_in_process()
needing = result.output_for_node("check_missing_data_op").needing_backfill
print(json.dumps({"repr": repr(clickhouse), "shown": json.loads(shown),
                  "needing": [str(day) for day in needing]}))
"""
SECRET_URL = "http://analyst:s3cret@clickhouse.invalid:8123/web"


def test_the_url_is_bound_to_its_variable_shown_by_name_and_read_when_a_run_starts(
    warehouse: web_analytics.Warehouse, store_url: str, today: date
) -> None:
    missing_day = today - timedelta(days=2)
    warehouse.insert_events(traffic((1,), [missing_day]))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEB_ANALYTICS_", "DAGSTER_"))}
    env["WEB_ANALYTICS_URL"] = SECRET_URL

    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_AND_RUN, store_url],
        env=env,
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert loaded.returncode == 0, loaded.stderr[-5000:]
    shown = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert shown["shown"]["url"] == {"env": "WEB_ANALYTICS_URL"}
    assert "s3cret" not in json.dumps(shown["shown"]) + shown["repr"]
    assert "s3cret" not in loaded.stdout + loaded.stderr
    # The run read the store the variable named when it started.
    assert shown["needing"] == [str(missing_day)]
