"""End-to-end demo on the embedded store: synthetic traffic, pre-aggregation through
Dagster with accuracy checks, and a per-team overview read from the pre-aggregated tables.

Run it with ``python3 tasks.py demo`` (``--events N`` to change the size).
"""

import argparse
import os
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

import web_analytics
from web_analytics.generator import GeneratorOptions, generate_batches, team_profiles
from web_analytics.orchestration.assets import (
    accuracy_checks,
    web_analytics_tables,
    web_pre_aggregated_tables,
)
from web_analytics.orchestration.partitions import partition_key
from web_analytics.orchestration.resources import ClickhouseCluster

DEMO_STORE = Path(".data/demo")


def _instance() -> dg.DagsterInstance:
    # With DAGSTER_HOME set (tasks.py sets it) the demo's runs show up in `dagster dev`.
    return (
        dg.DagsterInstance.get()
        if os.environ.get("DAGSTER_HOME")
        else dg.DagsterInstance.ephemeral()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--teams", type=int, default=8)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()

    shutil.rmtree(DEMO_STORE, ignore_errors=True)
    url = f"chdb://{DEMO_STORE.absolute()}"
    resources = {"clickhouse": ClickhouseCluster(url=url)}
    warehouse = web_analytics.connect(url)
    instance = _instance()
    print(f"Demo store: {warehouse.target.describe()}")

    started = time.monotonic()
    dg.materialize([web_analytics_tables], resources=resources, instance=instance)
    print(f"Schema ready ({time.monotonic() - started:.1f} s)")

    last_day = datetime.now(UTC).date() - timedelta(days=1)
    options = GeneratorOptions(
        seed=7, events=args.events, days=args.days, last_day=last_day, teams=args.teams
    )
    for team in team_profiles(options.teams, options.seed):
        warehouse.upsert_team(team.team_id, team.timezone)
    started = time.monotonic()
    inserted = warehouse.insert_event_columns(generate_batches(options))
    seconds = time.monotonic() - started
    print(
        f"Generated and stored {inserted:,} events for {options.teams} teams over "
        f"{options.first_day} to {last_day} ({seconds:.1f} s, {inserted / seconds:,.0f} events/s)"
    )

    started = time.monotonic()
    result = dg.materialize(
        [web_analytics_tables, web_pre_aggregated_tables, *accuracy_checks],
        selection=[web_pre_aggregated_tables, *accuracy_checks],
        resources=resources,
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": partition_key(options.first_day),
            "dagster/asset_partition_range_end": partition_key(last_day),
        },
    )
    checks = result.get_asset_check_evaluations()
    print(
        f"Pre-aggregated {options.days} days through Dagster in {time.monotonic() - started:.1f} s "
        f"(run {result.run_id[:8]}); accuracy checks: "
        + ", ".join(
            f"{c.asset_key.to_user_string()} {'passed' if c.passed else 'FAILED'}" for c in checks
        )
    )

    date_from = last_day - timedelta(days=6)
    print(f"\nLast 7 days ({date_from} to {last_day}, each team's local dates), pre-aggregated:")
    print(
        f"{'team':>4}  {'timezone':<20} {'visitors':>9} {'views':>9} {'sessions':>9} "
        f"{'avg dur':>8} {'bounce':>7}"
    )
    for team in warehouse.teams():
        o = warehouse.overview(team.team_id, date_from, last_day)
        duration = f"{o.avg_session_duration:.0f} s" if o.avg_session_duration is not None else "-"
        bounce = f"{o.bounce_rate:.1%}" if o.bounce_rate is not None else "-"
        print(
            f"{team.team_id:>4}  {team.timezone:<20} {o.visitors:>9,} {o.views:>9,} "
            f"{o.sessions:>9,} {duration:>8} {bounce:>7}"
        )

    biggest = max(warehouse.summary().events_per_team.items(), key=lambda item: item[1])[0]
    timings = {}
    for source in ("raw", "preaggregated"):
        started = time.monotonic()
        warehouse.overview(biggest, options.first_day, last_day, source=source)
        timings[source] = time.monotonic() - started
    print(
        f"\n{options.days}-day overview of team {biggest}: "
        f"raw events {timings['raw'] * 1000:.0f} ms, "
        f"pre-aggregated {timings['preaggregated'] * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
