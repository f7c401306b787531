"""End-to-end demo on the embedded store: synthetic traffic, pre-aggregation through Dagster
with accuracy checks, deliberate gaps found by the gap report and filled by the backfill
sensor's runs, and a per-team overview read with source="auto", saying where each number
came from.

Run it with ``python3 tasks.py demo`` (``--events N`` to change the size). It prints its own
narrative, one progress line per phase; Dagster's log goes to DAGSTER_LOG. The daily
partitions start on the first day of the demo's data, and DEMO_ENVIRONMENT records that day
with the store's URL, so ``python3 tasks.py dev`` and the activated ``dagster`` commands show
the demo's days, all of them materialized.
"""

import argparse
import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TextIO

import dagster as dg

import web_analytics
from web_analytics.generator import GeneratorOptions, generate, generate_batches, team_profiles
from web_analytics.orchestration.partitions import RANGE_END_TAG, RANGE_START_TAG, range_tags
from web_analytics.orchestration.settings import START_DATE_ENV
from web_analytics.warehouse.connection import URL_ENV
from web_analytics.warehouse.gap_text import counts_table, gap_groups, groups_table, summary
from web_analytics.warehouse.gaps import DayState, GapReport

DEMO_STORE = Path(".data/demo")
# Read by tasks.py (DEMO_ENVIRONMENT there) and the venv's activate script: keep in step.
DEMO_ENVIRONMENT = Path(".data/demo.env")
DAGSTER_LOG = Path(".data/demo-dagster.log")
PHASES = 6
MAX_GAP_ROWS = 12
INDENT = "      "


def _instance() -> dg.DagsterInstance:
    # With DAGSTER_HOME set (tasks.py sets it) the demo's runs show up in `dagster dev`.
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def _phase(number: int, text: str) -> None:
    print(f"[{number}/{PHASES}] {text}", flush=True)


def _detail(text: str) -> None:
    print("\n".join(INDENT + line for line in text.splitlines()), flush=True)


@contextlib.contextmanager
def _dagster_output_to(log: TextIO) -> Iterator[None]:
    """Dagster's console log (and any warning) goes to ``log`` while the block runs: its
    console logger writes to whatever sys.stderr is at the time."""
    with contextlib.redirect_stderr(log):
        yield
        log.flush()


def _write_environment(url: str, first_day: date) -> None:
    DEMO_ENVIRONMENT.parent.mkdir(parents=True, exist_ok=True)
    DEMO_ENVIRONMENT.write_text(
        "# Written by `python3 tasks.py demo`: its store and the first day of its data. tasks.py\n"
        "# (dev, dagster, dg) and the venv's activate script use both unless WEB_ANALYTICS_URL\n"
        "# names another store or WEB_ANALYTICS_START_DATE is set. Delete this file to stop.\n"
        f"{URL_ENV}={url}\n{START_DATE_ENV}={first_day}\n"
    )


def _print_gaps(report: GapReport, days_back: int) -> None:
    everything = (
        "python3 tasks.py dg launch --job show_data_gaps_job "
        f"--config-json '{{\"days_back\": {days_back}}}'"
    )
    _detail(summary(report))
    _detail(counts_table(report.counts()))
    groups = gap_groups(report)
    if groups:
        _detail(groups_table(groups, MAX_GAP_ROWS, everything))


def _print_stale_day(warehouse: web_analytics.Warehouse, report: GapReport) -> None:
    """One team's stale day read through "auto" and straight from raw events, before the
    backfill recomputes it: the same numbers."""
    stale = report.ranges([DayState.STALE])
    if not stale:
        return
    team, day = stale[0].team_id, stale[0].first_day
    auto = warehouse.overview(team, day, day, source="auto")
    raw = warehouse.overview(team, day, day, source="raw")
    where = auto.freshness.describe() if auto.freshness else ""
    _detail(
        f"Team {team} on its stale day {day}, before the backfill: auto {auto.views:,} views, "
        f"{auto.sessions:,} sessions, {auto.visitors:,} visitors, read as {where}; raw "
        f"{raw.views:,}, {raw.sessions:,}, {raw.visitors:,}: "
        f"{'the same' if auto == raw else 'DIFFERENT'}"
    )


def _run_outcome(result: dg.ExecuteInProcessResult, first: date | str, last: date | str) -> str:
    days = str(first) if first == last else f"{first} to {last}"
    checks = result.get_asset_check_evaluations()
    passed = sum(check.passed for check in checks)
    verdict = "passed" if passed == len(checks) else "FAILED"
    return (
        f"{days}: run {result.run_id[:8]} {'ok' if result.success else 'FAILED'}, "
        f"accuracy checks {verdict} ({passed} of {len(checks)} table-days)"
    )


def _materialize_days(
    defs: dg.Definitions, instance: dg.DagsterInstance, first: date, last: date
) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def("web_analytics_daily_job").execute_in_process(
        instance=instance,
        tags=range_tags(first, last),
        raise_on_error=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--teams", type=int, default=8)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()

    demo_started = time.monotonic()
    last_day = datetime.now(UTC).date() - timedelta(days=1)
    no_traffic = last_day - timedelta(days=12)
    options = GeneratorOptions(
        seed=7,
        events=args.events,
        days=args.days,
        last_day=last_day,
        teams=args.teams,
        duplicate_share=0.01,
        empty_days=(no_traffic,),
    )
    shutil.rmtree(DEMO_STORE, ignore_errors=True)
    url = f"chdb://{DEMO_STORE.absolute()}"
    os.environ[URL_ENV] = url
    # The partitions start where the data does, so the UI shows every demo day materialized.
    os.environ[START_DATE_ENV] = str(options.first_day)
    _write_environment(url, options.first_day)
    instance = _instance()
    home = f"Dagster instance {instance.root_directory}" if instance.is_persistent else ""
    print(
        f"Demo: {args.events:,} synthetic events for {args.teams} teams over "
        f"{args.days} UTC days, {options.first_day} to {last_day}\n"
        f"Store: {DEMO_STORE}; {home or 'ephemeral Dagster instance'}; Dagster's log: "
        f"{DAGSTER_LOG}\n"
        f"Partitions start on {options.first_day} (recorded in {DEMO_ENVIRONMENT} for "
        "`python3 tasks.py dev` and the activated `dagster` commands)\n",
        flush=True,
    )
    with open(DAGSTER_LOG, "w") as log, _dagster_output_to(log):
        _narrate(args, options, instance)
    print(
        f"\nDone in {time.monotonic() - demo_started:.0f} s. The UI on this store: "
        f"python3 tasks.py dev; Dagster's log of these runs: {DAGSTER_LOG}"
    )


def _narrate(
    args: argparse.Namespace, options: GeneratorOptions, instance: dg.DagsterInstance
) -> None:
    # Imported once the store and the start are chosen: the definitions read both.
    from web_analytics.definitions import defs

    last_day = options.last_day
    no_traffic = options.empty_days[0]
    warehouse = web_analytics.connect()

    _phase(1, f"Creating the tables and storing {args.events:,} synthetic events ...")
    defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey("web_analytics_tables")]
    )
    for team in team_profiles(options.teams, options.seed):
        warehouse.upsert_team(team.team_id, team.timezone)
    started = time.monotonic()
    inserted = warehouse.insert_event_columns(generate_batches(options))
    seconds = time.monotonic() - started
    _detail(
        f"Stored {inserted:,} events (1 % delivered twice) for {options.teams} teams, "
        f"{options.first_day} to {last_day}, no traffic on {no_traffic} "
        f"({seconds:.1f} s, {inserted / seconds:,.0f} events/s)"
    )

    # Leave gaps on purpose: four days never computed, then late events on two computed days.
    never_computed = (last_day - timedelta(days=5), last_day - timedelta(days=2))
    _phase(
        2,
        f"Pre-aggregating through Dagster, leaving {never_computed[0]} to "
        f"{never_computed[1]} uncomputed ...",
    )
    started = time.monotonic()
    for first, last in (
        (options.first_day, never_computed[0] - timedelta(days=1)),
        (never_computed[1] + timedelta(days=1), last_day),
    ):
        _detail(_run_outcome(_materialize_days(defs, instance, first, last), first, last))
    _detail(f"({time.monotonic() - started:.1f} s)")

    late_days = (last_day - timedelta(days=20), last_day - timedelta(days=9))
    _phase(3, f"Late events arrive for {late_days[0]} and {late_days[1]}, already computed")
    for day in late_days:
        late = generate(
            GeneratorOptions(seed=99, events=2_000, days=1, last_day=day, teams=options.teams)
        )
        warehouse.insert_event_columns([late])

    _phase(4, f"Gap report over the last {args.days} UTC days ...")
    report = warehouse.find_gaps(days_back=args.days)
    _print_gaps(report, args.days)
    _print_stale_day(warehouse, report)

    _phase(5, "Backfill: the sensor's evaluation, and the runs it requests ...")
    started = time.monotonic()
    with dg.build_sensor_context(
        instance=instance, resources=defs.resources, definitions=defs
    ) as context:
        requests = defs.resolve_sensor_def("web_analytics_backfill_sensor")(context)
    for request in requests if isinstance(requests, list) else []:
        result = defs.resolve_job_def("web_analytics_daily_job").execute_in_process(
            instance=instance,
            partition_key=request.partition_key,
            tags=request.tags,
            run_config=request.run_config,
            raise_on_error=False,
        )
        first = request.partition_key or request.tags[RANGE_START_TAG]
        last = request.partition_key or request.tags[RANGE_END_TAG]
        _detail(_run_outcome(result, first, last))
    _detail(f"({time.monotonic() - started:.1f} s)")
    _detail("After the backfill:")
    _print_gaps(warehouse.find_gaps(days_back=args.days), args.days)

    date_from = last_day - timedelta(days=6)
    _phase(
        6,
        f"Last 7 days ({date_from} to {last_day}, each team's local dates), "
        'source="auto": complete days pre-aggregated, any other day from raw events',
    )
    _detail(
        f"{'team':>4}  {'timezone':<20} {'visitors':>9} {'views':>9} {'sessions':>9} "
        f"{'avg dur':>8} {'bounce':>7}  from"
    )
    for known in warehouse.teams():
        o = warehouse.overview(known.team_id, date_from, last_day, source="auto")
        duration = f"{o.avg_session_duration:.0f} s" if o.avg_session_duration is not None else "-"
        bounce = f"{o.bounce_rate:.1%}" if o.bounce_rate is not None else "-"
        where = o.freshness.describe() if o.freshness else ""
        _detail(
            f"{known.team_id:>4}  {known.timezone:<20} {o.visitors:>9,} {o.views:>9,} "
            f"{o.sessions:>9,} {duration:>8} {bounce:>7}  {where}"
        )
    _print_daily_series(warehouse, warehouse.teams()[0], date_from, last_day)


def _print_daily_series(
    warehouse: web_analytics.Warehouse, team: web_analytics.Team, date_from: date, date_to: date
) -> None:
    """One team's days, one line each, from the day grain where complete."""
    series = warehouse.timeseries(team.team_id, date_from, date_to, interval="day")
    _detail(f"Team {team.team_id} per local day ({series.freshness.describe()}):")
    _detail(
        f"{'day':<10}  {'visitors':>9} {'views':>9} {'sessions':>9} {'avg dur':>8} {'bounce':>7}"
    )
    for point in series:
        duration = (
            f"{point.avg_session_duration:.0f} s" if point.avg_session_duration is not None else "-"
        )
        bounce = f"{point.bounce_rate:.1%}" if point.bounce_rate is not None else "-"
        _detail(
            f"{point.start.date()!s:<10}  {point.visitors:>9,} {point.views:>9,} "
            f"{point.sessions:>9,} {duration:>8} {bounce:>7}"
        )


if __name__ == "__main__":
    main()
