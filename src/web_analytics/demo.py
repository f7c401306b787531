"""End-to-end demo on the embedded store: synthetic traffic, pre-aggregation through Dagster
with accuracy checks, deliberate gaps found by the gap report and filled by the backfill
sensor's runs, and a per-team overview read with source="auto", saying where each number
came from.

Run it with ``python3 tasks.py demo`` (``--events N`` to change the size).
"""

import argparse
import os
import shutil
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg

import web_analytics
from web_analytics.generator import GeneratorOptions, generate, generate_batches, team_profiles
from web_analytics.orchestration.partitions import RANGE_END_TAG, RANGE_START_TAG, range_tags
from web_analytics.warehouse.connection import URL_ENV
from web_analytics.warehouse.gaps import NEEDS_BACKFILL, DayState, GapReport

DEMO_STORE = Path(".data/demo")


def _instance() -> dg.DagsterInstance:
    # With DAGSTER_HOME set (tasks.py sets it) the demo's runs show up in `dagster dev`.
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def _print_gaps(title: str, report: GapReport) -> None:
    print(f"\n{title}: {len(report.needing_backfill)} UTC days need backfill")
    for table, per_state in report.counts().items():
        print(f"  {table}: " + ", ".join(f"{n} {s.value}" for s, n in per_state.items() if n))
    for gap in report.ranges(NEEDS_BACKFILL)[:12]:
        print(f"  team {gap.team_id:>2} {gap.table:<27} {gap!s:<26} {gap.state.value}")


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
    print(
        f"Team {team} on its stale day {day}, before the backfill: auto {auto.views:,} views, "
        f"{auto.sessions:,} sessions, {auto.visitors:,} visitors, read as {where}; raw "
        f"{raw.views:,}, {raw.sessions:,}, {raw.visitors:,}: "
        f"{'the same' if auto == raw else 'DIFFERENT'}"
    )


def _materialize_days(
    defs: dg.Definitions, instance: dg.DagsterInstance, first: date, last: date
) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def("web_analytics_daily_job").execute_in_process(
        instance=instance,
        tags=range_tags(first, last),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--teams", type=int, default=8)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()

    shutil.rmtree(DEMO_STORE, ignore_errors=True)
    os.environ[URL_ENV] = f"chdb://{DEMO_STORE.absolute()}"
    # Imported after the store is chosen: the definitions' resource reads WEB_ANALYTICS_URL.
    from web_analytics.definitions import defs

    warehouse = web_analytics.connect()
    instance = _instance()
    print(f"Demo store: {warehouse.target.describe()}")
    defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey("web_analytics_tables")]
    )

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
    for team in team_profiles(options.teams, options.seed):
        warehouse.upsert_team(team.team_id, team.timezone)
    started = time.monotonic()
    inserted = warehouse.insert_event_columns(generate_batches(options))
    seconds = time.monotonic() - started
    print(
        f"Stored {inserted:,} synthetic events (1 % delivered twice) for {options.teams} teams, "
        f"{options.first_day} to {last_day}, no traffic on {no_traffic} "
        f"({seconds:.1f} s, {inserted / seconds:,.0f} events/s)"
    )

    # Leave gaps on purpose: four days never computed, then late events on two computed days.
    never_computed = (last_day - timedelta(days=5), last_day - timedelta(days=2))
    started = time.monotonic()
    for first, last in (
        (options.first_day, never_computed[0] - timedelta(days=1)),
        (never_computed[1] + timedelta(days=1), last_day),
    ):
        result = _materialize_days(defs, instance, first, last)
        checks = result.get_asset_check_evaluations()
        print(
            f"Pre-aggregated {first} to {last} through Dagster (run {result.run_id[:8]}); "
            f"accuracy checks {'passed' if all(c.passed for c in checks) else 'FAILED'}"
        )
    print(
        f"Left {never_computed[0]} to {never_computed[1]} uncomputed "
        f"({time.monotonic() - started:.1f} s)"
    )
    late_days = (last_day - timedelta(days=20), last_day - timedelta(days=9))
    for day in late_days:
        late = generate(
            GeneratorOptions(seed=99, events=2_000, days=1, last_day=day, teams=options.teams)
        )
        warehouse.insert_event_columns([late])
    print(f"Late events arrived for {late_days[0]} and {late_days[1]} after they were computed")

    report = warehouse.find_gaps(days_back=args.days)
    _print_gaps("Gap report", report)
    _print_stale_day(warehouse, report)

    print("\nBackfill: the sensor's evaluation, and the runs it requests")
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
        )
        first = request.partition_key or request.tags[RANGE_START_TAG]
        last = request.partition_key or request.tags[RANGE_END_TAG]
        days = first if first == last else f"{first} to {last}"
        outcome = "ok" if result.success else "FAILED"
        print(f"  {days}: run {result.run_id[:8]} {outcome}")
    print(f"  ({time.monotonic() - started:.1f} s)")

    _print_gaps("Gap report after the backfill", warehouse.find_gaps(days_back=args.days))

    date_from = last_day - timedelta(days=6)
    print(
        f"\nLast 7 days ({date_from} to {last_day}, each team's local dates), "
        'source="auto": complete days pre-aggregated, any other day from raw events'
    )
    print(
        f"{'team':>4}  {'timezone':<20} {'visitors':>9} {'views':>9} {'sessions':>9} "
        f"{'avg dur':>8} {'bounce':>7}  from"
    )
    for known in warehouse.teams():
        o = warehouse.overview(known.team_id, date_from, last_day, source="auto")
        duration = f"{o.avg_session_duration:.0f} s" if o.avg_session_duration is not None else "-"
        bounce = f"{o.bounce_rate:.1%}" if o.bounce_rate is not None else "-"
        where = o.freshness.describe() if o.freshness else ""
        print(
            f"{known.team_id:>4}  {known.timezone:<20} {o.visitors:>9,} {o.views:>9,} "
            f"{o.sessions:>9,} {duration:>8} {bounce:>7}  {where}"
        )


if __name__ == "__main__":
    main()
