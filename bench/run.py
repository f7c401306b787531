"""Benchmark: the system measured side by side against raw queries, a minimal-work floor and
a PostHog-style gap detector, on generated traffic. ``python3 tasks.py bench``.

Every figure is a ratio of two timings taken in the same run (the machine is shared and
noisy): alternating repeats, medians. Results go to ``bench/results/latest.json`` and a
dated copy beside it.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import web_analytics
from web_analytics.generator import GeneratorOptions, generate_batches, team_profiles
from web_analytics.warehouse import aggregation, attempts, dashboard, freshness
from web_analytics.warehouse.connection import Session
from web_analytics.warehouse.gaps import detect
from web_analytics.warehouse.schema import (
    ALL,
    BACKFILL_STATUS,
    BREAKDOWN_DIMENSIONS,
    DAILY_STATS,
    DAILY_VISITORS,
    EVENTS,
    PRE_AGGREGATED_TABLES,
    SOURCE_DAY_SUMMARY,
    STAGING_SUFFIX,
    STATS,
    TEAMS,
    WRITTEN_TABLES,
    with_combinator,
)
from web_analytics.warehouse.settings import resolve_settings

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
LAST_DAY = date(2024, 1, 30)

FLOOR = f"""
INSERT INTO bench_floor
SELECT team_id, toStartOfHour(timestamp) AS hour,
    uniqState(if(person_id = '', distinct_id, person_id)), uniqState(session_id), count()
FROM {EVENTS}
WHERE timestamp >= {{start:DateTime64(6, 'UTC')}} AND timestamp < {{end:DateTime64(6, 'UTC')}}
GROUP BY team_id, hour
"""
FLOOR_TABLE = """
CREATE TABLE IF NOT EXISTS bench_floor (
    team_id UInt64, hour DateTime,
    persons AggregateFunction(uniq, String), sessions AggregateFunction(uniq, String),
    events UInt64
) ENGINE = Null
"""
# What PostHog's detector does: every enabled team and date, left-joined against the distinct
# team/day rows of the pre-aggregated table.
POSTHOG_DETECTOR = f"""
SELECT t.team_id, d.day
FROM (SELECT team_id FROM {TEAMS} FINAL WHERE enabled) AS t
CROSS JOIN
(
    SELECT toDate({{first_day:Date}}) + number AS day
    FROM numbers(dateDiff('day', {{first_day:Date}}, {{last_day:Date}}) + 1)
) AS d
LEFT JOIN
(
    SELECT DISTINCT team_id, toDate(period_bucket) AS day FROM {STATS}
    WHERE day BETWEEN {{first_day:Date}} AND {{last_day:Date}}
) AS p ON p.team_id = t.team_id AND p.day = d.day
WHERE p.team_id = 0
"""


def settle(session: Session, tables: Iterable[str]) -> None:
    """Merge the parts of ``tables``: the embedded engine merges only while it is open."""
    for table in tables:
        session.command(f"OPTIMIZE TABLE {table} FINAL")


def median_time(operation: Callable[[], object], repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        operation()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def side_by_side(*operations: Callable[[], object], repeats: int) -> tuple[float, ...]:
    """Median timings of the operations, alternated so noise hits them alike."""
    timings: list[list[float]] = [[] for _ in operations]
    for _ in range(repeats):
        for operation, taken in zip(operations, timings, strict=True):
            taken.append(median_time(operation, 1))
    return tuple(statistics.median(taken) for taken in timings)


def utc(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC)


def load_dataset(url: str, events: int, teams: int, days: int) -> tuple[int, float]:
    warehouse = web_analytics.connect(url)
    warehouse.ensure_schema()
    options = GeneratorOptions(seed=11, events=events, days=days, last_day=LAST_DAY, teams=teams)
    for team in team_profiles(teams, options.seed):
        warehouse.upsert_team(team.team_id, team.timezone)
    started = time.perf_counter()
    inserted = warehouse.insert_event_columns(generate_batches(options))
    # Merge the bulk load's parts now: the embedded engine merges only while it is open, and
    # the figures are about aggregation, not about merges left over from loading.
    with warehouse.session() as session:
        session.command(f"OPTIMIZE TABLE {EVENTS} FINAL")
    return inserted, time.perf_counter() - started


def last_line_in_fresh_process(code: str) -> str:
    """The last line ``code`` prints, run by a new interpreter of this environment."""
    output = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return output.strip().splitlines()[-1]


def peak_memory_of_aggregation(url: str, first: date, last: date) -> tuple[float, float]:
    """Seconds and peak resident memory (GiB) of ``aggregate`` in a fresh process.

    The peak is the child's own high-water mark (``VmHWM``): ``ru_maxrss`` would carry over
    the peak of this (larger) process through fork and exec.
    """
    code = (
        "import json, time, datetime as d, web_analytics as w\n"
        f"wh = w.connect({url!r})\n"
        "t = time.perf_counter()\n"
        f"wh.aggregate(d.date.fromisoformat({first.isoformat()!r}), "
        f"d.date.fromisoformat({last.isoformat()!r}))\n"
        "hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
        "print(json.dumps([time.perf_counter() - t, int(hwm.split()[1])]))\n"
    )
    seconds, peak_kib = json.loads(last_line_in_fresh_process(code))
    return seconds, peak_kib / 1024**2


def find_gaps_in_fresh_process(url: str, days_back: int, today: date) -> float:
    """Seconds of ``find_gaps`` in a new process, as a sensor tick pays them: opening the
    embedded store, the detection queries and closing it. Not the interpreter start nor the
    import of the engine library: the code server that evaluates sensors imported it once."""
    code = (
        "import time, datetime as d, chdb, web_analytics as w\n"
        "t = time.perf_counter()\n"
        f"w.connect({url!r}).find_gaps(days_back={days_back}, "
        f"today=d.date.fromisoformat({today.isoformat()!r}))\n"
        "print(time.perf_counter() - t)\n"
    )
    return float(last_line_in_fresh_process(code))


def aggregation_steps(
    warehouse: web_analytics.Warehouse, session: Session, first: date, last: date
) -> tuple[float, float]:
    """Seconds of the two steps of ``aggregate`` over ``[first, last]``, timed apart: the
    sessions of each pass into a Memory table, then the dimension rows of both grains grouped
    from it and written into their staging tables (as ``aggregate`` does). Either step alone
    against the floor bounds ``aggregation_vs_floor`` whatever is done to the other."""
    staging = {table: table + STAGING_SUFFIX for table in (STATS, DAILY_STATS)}
    settings = {**resolve_settings(), **aggregation.UNIQUE_ROWS_INSERT}
    sessions_seconds = rows_seconds = 0.0
    for sessions, parameters in aggregation.pass_sessions(
        warehouse.enabled_team_timezones(),
        warehouse.summary().events_per_team,
        aggregation.DEFAULT_MAX_EVENTS_PER_PASS,
        first,
        last,
    ):
        session.command("DROP TABLE IF EXISTS bench_sessions")
        started = time.perf_counter()
        session.command(
            f"CREATE TABLE bench_sessions ENGINE = Memory AS {sessions}",
            parameters,
            settings=settings,
        )
        sessions_seconds += time.perf_counter() - started
        started = time.perf_counter()
        session.command(
            aggregation.stats_insert_sql(staging[STATS], "bench_sessions"), settings=settings
        )
        session.command(
            aggregation.daily_stats_insert_sql(staging[DAILY_STATS], "bench_sessions"),
            settings=settings,
        )
        rows_seconds += time.perf_counter() - started
    session.command("DROP TABLE bench_sessions")
    for table in staging.values():
        session.command(f"TRUNCATE TABLE {table}")
    return sessions_seconds, rows_seconds


# The least a dashboard query can do with the day-grain rows it reads: count them, or decode
# their visitor states once (each must be read to report visitors, whatever the grouping).
ROWS_READ = {"rows": "count()", "states": f"{with_combinator(DAILY_VISITORS, 'Merge')}(visitors)"}


def rows_read(
    session: Session,
    what: str,
    team: web_analytics.Team,
    dimension: str,
    first: date,
    last: date,
) -> object:
    """``ROWS_READ[what]`` over the day-grain rows a dashboard query of ``dimension`` reads."""
    return session.query(
        f"SELECT {ROWS_READ[what]} FROM {DAILY_STATS} WHERE {dashboard.DAILY_FILTER}",
        {"team_id": team.team_id, "dimension": dimension, "date_from": first, "date_to": last},
    )


def merge_in_memory(
    session: Session,
    team: web_analytics.Team,
    dimension: str,
    first: date,
    last: date,
    repeats: int,
) -> float:
    """Median time of merging the visitor states a dashboard query of ``dimension`` reads,
    grouped by value as the query groups them, from a copy of its rows already in memory:
    what the sketch alone costs, without reading a table."""
    merge = with_combinator(DAILY_VISITORS, "Merge")
    session.command("DROP TABLE IF EXISTS bench_grain_rows")
    session.command(
        f"CREATE TABLE bench_grain_rows ENGINE = Memory AS SELECT value, visitors "
        f"FROM {DAILY_STATS} WHERE {dashboard.DAILY_FILTER}",
        {"team_id": team.team_id, "dimension": dimension, "date_from": first, "date_to": last},
    )
    grouped = f"SELECT value, {merge}(visitors) FROM bench_grain_rows GROUP BY value"
    seconds = median_time(lambda: session.query(grouped), repeats)
    session.command("DROP TABLE bench_grain_rows")
    return seconds


def visitors_errors(
    warehouse: web_analytics.Warehouse, team: web_analytics.Team, first: date, last: date
) -> dict[str, float]:
    """How far the day grain's visitors are from the exact count (``uniqExact`` over raw
    sessions), in percent: for the overview, and the largest error over the top 100 paths."""

    def error(value: int, exact: int) -> float:
        return 100 * abs(value - exact) / max(exact, 1)

    overview = {
        source: warehouse.overview(team.team_id, first, last, source=source)
        for source in ("preaggregated", "raw")
    }
    paths = {
        source: {
            row.value: row.visitors
            for row in warehouse.breakdown(team.team_id, "pathname", first, last, source, 100)
        }
        for source in ("preaggregated", "raw")
    }
    return {
        "day_grain_overview_visitors_error_pct": error(
            overview["preaggregated"].visitors, overview["raw"].visitors
        ),
        "day_grain_top_paths_max_visitors_error_pct": max(
            error(paths["preaggregated"].get(path, 0), exact)
            for path, exact in paths["raw"].items()
        ),
        "day_grain_top_paths_checked": len(paths["raw"]),
    }


@contextmanager
def hourly_grain_only() -> Iterator[None]:
    """``aggregate`` as it ran before the day grain: each pass's hourly rows straight from its
    sessions, nothing else (the day grain's partitions are dropped by the swap)."""

    def hourly_only(
        session: Session,
        sessions: str,
        parameters: dict[str, Any],
        staging: Mapping[str, str],
        settings: dict[str, Any],
        cluster: str | None,
    ) -> None:
        sql = aggregation.stats_insert_sql(staging[STATS], f"({sessions})")
        session.command(sql, parameters, settings=settings)

    both_grains = aggregation.insert_both_grains
    aggregation.insert_both_grains = hourly_only
    try:
        yield
    finally:
        aggregation.insert_both_grains = both_grains


def day_grain_write_overhead(
    warehouse: web_analytics.Warehouse, first: date, last: date, repeats: int
) -> dict[str, float]:
    """The 30-day ``aggregate`` with the day grain against the same run without it, side by
    side; the last run writes both grains again."""

    def without() -> None:
        with hourly_grain_only():
            warehouse.aggregate(first, last)

    without_seconds, with_seconds = side_by_side(
        without, lambda: warehouse.aggregate(first, last), repeats=repeats
    )
    return {
        "aggregation_hourly_only_seconds": without_seconds,
        "aggregation_both_grains_seconds": with_seconds,
        "daily_grain_write_overhead": with_seconds / without_seconds,
    }


def largest_team(warehouse: web_analytics.Warehouse) -> web_analytics.Team:
    biggest = max(warehouse.summary().events_per_team.items(), key=lambda kv: kv[1])[0]
    return warehouse.team(biggest)


def dashboard_reads(
    warehouse: web_analytics.Warehouse,
    session: Session,
    team: web_analytics.Team,
    local_first: date,
    local_last: date,
    repeats: int,
) -> dict[str, float]:
    """The overview and the pathname breakdown of ``team`` over its local dates, pre-aggregated
    (the day grain) against raw, side by side; the bare reads of their rows as bounds; and
    the day grain's visitors error. ``session`` is held open around the reads, as a dashboard
    server keeps its store open."""
    figures: dict[str, float] = {}
    for name, by in (("overview", None), ("pathname", "pathname")):

        def read(source: str, by: str | None = by) -> object:
            if by is None:
                return warehouse.overview(team.team_id, local_first, local_last, source=source)
            return warehouse.breakdown(team.team_id, by, local_first, local_last, source=source)

        pre, raw = side_by_side(
            lambda: read("preaggregated"), lambda: read("raw"), repeats=2 * repeats
        )
        figures |= {f"{name}_ms": pre * 1000, f"{name}_raw_ms": raw * 1000}
        figures[f"{name}_speedup"] = raw / pre
        for what in ROWS_READ:
            bare = partial(rows_read, session, what, team, by or ALL, local_first, local_last)
            seconds = median_time(bare, 2 * repeats)
            figures[f"{name}_{what}_ms"] = seconds * 1000
            figures[f"{name}_{what}_speedup"] = raw / seconds
        seconds = merge_in_memory(session, team, by or ALL, local_first, local_last, 2 * repeats)
        figures[f"{name}_memory_merge_ms"] = seconds * 1000
        figures[f"{name}_memory_merge_speedup"] = raw / seconds
    return figures | visitors_errors(warehouse, team, local_first, local_last)


def auto_reads(
    warehouse: web_analytics.Warehouse,
    team: web_analytics.Team,
    local_first: date,
    local_last: date,
    repeats: int,
) -> dict[str, float]:
    """``source="auto"`` on the largest team's overview, against what it must match: with
    every day complete, the pre-aggregated read over ``[local_first, local_last]`` (the cost
    of asking the gap detection's tables first); with one stale day and today in 30 days,
    the raw read. Needs the dataset aggregated and merged; leaves the middle day stale."""
    auto, pre = side_by_side(
        lambda: warehouse.overview(team.team_id, local_first, local_last, source="auto"),
        lambda: warehouse.overview(team.team_id, local_first, local_last, source="preaggregated"),
        repeats=repeats,
    )
    complete = warehouse.overview(team.team_id, local_first, local_last, source="auto")
    if complete != warehouse.overview(team.team_id, local_first, local_last, "preaggregated"):
        raise AssertionError("auto differs from preaggregated with every day complete")
    with warehouse.session() as session:
        day_states = median_time(
            lambda: freshness.read_plan(
                session, team, local_first, local_last, None, datetime.now(UTC)
            ),
            repeats,
        )

    # A hundred late pageviews (new ones on every run) at midday make the middle day stale, and
    # only it; "today" is the last day of the data, read at its noon (UTC): 30 local dates up
    # to the team's local today.
    stale_day = LAST_DAY - timedelta(days=15)
    run = uuid.uuid4().hex[:8]
    warehouse.insert_events(
        {
            "event": "$pageview",
            "timestamp": f"{stale_day}T12:{minute:02d}:{second:02d}Z",
            "team_id": team.team_id,
            "distinct_id": f"late-{run}-{minute}",
            "properties": {"$session_id": f"late-{run}-{minute}", "$pathname": "/late"},
        }
        for minute in range(50)
        for second in (0, 20)
    )
    now = utc(LAST_DAY) + timedelta(hours=12)
    local_today = now.astimezone(ZoneInfo(team.timezone)).date()
    first = local_today - timedelta(days=29)
    with warehouse.session() as session:

        def read(source: str, dates: tuple[date, date] = (first, local_today)) -> object:
            """What ``Warehouse.overview`` does after its team lookup, as if it were ``now``."""
            return dashboard.overview(session, team, *dates, source, None, now)

        answer, reference = read("auto"), read("raw")
        assert isinstance(answer, dashboard.Overview) and answer.freshness is not None
        assert isinstance(reference, dashboard.Overview)
        exact = ("views", "sessions", "bounce_rate", "avg_session_duration")
        visitors_off = abs(answer.visitors - reference.visitors) / max(reference.visitors, 1)
        if visitors_off > 0.01 or any(
            getattr(answer, name) != getattr(reference, name) for name in exact
        ):
            raise AssertionError(f"auto {answer} differs from raw {reference}")
        # The bound: the dates auto reads raw, each read raw alone (sessions are read from a
        # day before to a day after them, whatever reads them).
        auto_today, raw_today, raw_part = side_by_side(
            lambda: read("auto"),
            lambda: read("raw"),
            lambda: [read("raw", (day, day)) for day in answer.freshness.raw],
            repeats=repeats,
        )
    return {
        "auto_complete_ms": auto * 1000,
        "auto_complete_preaggregated_ms": pre * 1000,
        "auto_complete_overhead": auto / pre,
        "auto_day_states_ms": day_states * 1000,
        "auto_stale_today_ms": auto_today * 1000,
        "auto_stale_today_raw_ms": raw_today * 1000,
        "auto_stale_today_speedup": raw_today / auto_today,
        "auto_stale_today_raw_part_ms": raw_part * 1000,
        "auto_stale_today_raw_part_speedup": raw_today / raw_part,
        "auto_stale_today_read": answer.freshness.describe(),
    }


def dagster_overhead(url: str, first: date, last: date, repeats: int) -> tuple[float, float]:
    import dagster as dg

    from web_analytics.orchestration.assets import pre_aggregation_assets
    from web_analytics.orchestration.resources import ClickhouseCluster
    from web_analytics.orchestration.settings import WebAnalyticsSettings

    warehouse = web_analytics.connect(url)
    web_pre_aggregated_tables, _ = pre_aggregation_assets(WebAnalyticsSettings())
    resources = {"clickhouse": ClickhouseCluster(url=url)}
    with dg.instance_for_test() as instance:
        through_dagster, direct = side_by_side(
            lambda: dg.materialize(
                [web_pre_aggregated_tables],
                resources=resources,
                instance=instance,
                tags={
                    "dagster/asset_partition_range_start": first.isoformat(),
                    "dagster/asset_partition_range_end": last.isoformat(),
                },
            ),
            lambda: warehouse.aggregate(first, last),
            repeats=repeats,
        )
    return through_dagster, direct


def sensor_ranges_vs_daily_runs(url: str, first: date, last: date) -> dict[str, float]:
    """A gap over every day of ``[first, last]`` filled through the runs the backfill sensor
    plans (ranges of up to the backfill policy's days, one plan for the whole gap), against
    the same days launched one run per day. Both through Dagster, accuracy checks included;
    each gap is made by changing every team (their days all turn stale)."""
    import dagster as dg

    from web_analytics.definitions import build_definitions
    from web_analytics.orchestration.partitions import range_tags
    from web_analytics.orchestration.resources import ClickhouseCluster
    from web_analytics.orchestration.settings import WebAnalyticsSettings
    from web_analytics.warehouse.backfill_plan import plan_backfill
    from web_analytics.warehouse.source_summary import mark_team_changed

    settings = WebAnalyticsSettings(start_date=first.isoformat())
    job = build_definitions(settings, ClickhouseCluster(url=url)).resolve_job_def(
        "web_analytics_daily_job"
    )
    warehouse = web_analytics.connect(url)
    days = (last - first).days + 1
    today = last + timedelta(days=1)

    def make_gap() -> None:
        with warehouse.session() as session:
            for team in warehouse.teams():
                mark_team_changed(session, team.team_id, uuid.uuid4().int % 2**63 | 1)
        assert len(warehouse.find_gaps(days_back=days, today=today).needing_backfill) == days

    with dg.instance_for_test() as instance:
        make_gap()
        plan = plan_backfill(
            warehouse.find_gaps(days_back=days, today=today),
            in_flight=set(),
            now=datetime.now(UTC),
            tick=timedelta(seconds=settings.sensor_interval_seconds),
            max_failures=settings.max_failures,
            max_days=days,
            max_days_per_run=settings.max_days_per_run,
        )
        started = time.perf_counter()
        for planned in plan.ranges:
            assert planned.team_ids is None  # every team changed
            job.execute_in_process(
                instance=instance, tags=range_tags(planned.first_day, planned.last_day)
            )
        ranges = time.perf_counter() - started
        assert warehouse.find_gaps(days_back=days, today=today).needing_backfill == []

        make_gap()
        started = time.perf_counter()
        for offset in range(days):
            job.execute_in_process(
                instance=instance, partition_key=(first + timedelta(days=offset)).isoformat()
            )
        daily = time.perf_counter() - started
    return {
        "sensor_ranges_seconds": ranges,
        "sensor_ranges_runs": len(plan.ranges),
        "sensor_daily_runs_seconds": daily,
        "sensor_ranges_vs_daily_runs_speedup": daily / ranges,
    }


def gap_detection_at_scale(url: str, teams: int, days: int, repeats: int) -> dict[str, float]:
    """find_gaps over ``teams`` x ``days`` of synthetic summary and status history, against a
    PostHog-style detector over the same data."""
    warehouse = web_analytics.connect(url)
    warehouse.ensure_schema()
    today = LAST_DAY + timedelta(days=1)
    first_day = today - timedelta(days=days)
    with warehouse.session() as session:
        session.command(
            f"INSERT INTO {TEAMS} (team_id, timezone, enabled) "
            "SELECT number + 1, 'UTC', true FROM numbers({teams:UInt64})",
            {"teams": teams},
        )
        # Every team has traffic every day; in the last three days every tenth team got late
        # events (stale), one day's run failed and two days were never computed.
        session.command(
            f"INSERT INTO {SOURCE_DAY_SUMMARY} SELECT team, day, 100, 40, "
            "cityHash64(team, day, if(team % 10 = 0 AND day >= {stale_from:Date}, 1, 0)), 0 "
            "FROM (SELECT number % {teams:UInt64} + 1 AS team, "
            "{first_day:Date} + intDiv(number, {teams:UInt64}) AS day "
            "FROM numbers({rows:UInt64}))",
            {
                "teams": teams,
                "first_day": first_day,
                "rows": teams * days,
                "stale_from": today - timedelta(days=3),
            },
        )
        # What each day was computed with: the same events, without the late ones.
        computed = session.query(
            "SELECT day, groupArray(team_id), groupArray(cityHash64(team_id, day, 0)) "
            f"FROM {SOURCE_DAY_SUMMARY} GROUP BY day"
        )
        started_at = datetime.now(UTC)
        never_computed = {today - timedelta(days=20), today - timedelta(days=21)}
        failed_day = today - timedelta(days=40)
        for day, team_ids, fingerprints in computed:
            if day in never_computed:
                continue
            fingerprints_of_day = {(t, day): f for t, f in zip(team_ids, fingerprints, strict=True)}
            status = (
                attempts.AttemptStatus.FAILED
                if day == failed_day
                else attempts.AttemptStatus.SUCCEEDED
            )
            attempts.record_attempt(
                session,
                [day],
                run_id=f"bench-{day}",
                trigger="bench",
                status=status,
                started_at=started_at,
                fingerprints=fingerprints_of_day if status == "succeeded" else None,
            )
        # The pre-aggregated tables the PostHog-style detector scans, as sparse as real ones
        # can be: every hour with a session has a row per dimension (totals, pathname and
        # each session attribute), here one value each. Real tables hold one row per value.
        for table in PRE_AGGREGATED_TABLES:
            # The detector reads the stats table; the bounces table needs only its partitions.
            dimensions = [ALL, *BREAKDOWN_DIMENSIONS] if table == STATS else [ALL]
            session.command(
                f"INSERT INTO {table} (team_id, period_bucket, dimension, value) "
                "SELECT number % {teams:UInt64} + 1, "
                "toDateTime({first_day:Date}) + toIntervalHour(intDiv(number, {per_hour:UInt64})), "
                "{dimensions:Array(String)}[intDiv(number, {teams:UInt64}) % {count:UInt64} + 1], "
                "'' FROM numbers({rows:UInt64})",
                {
                    "teams": teams,
                    "first_day": first_day,
                    "dimensions": dimensions,
                    "count": len(dimensions),
                    "per_hour": teams * len(dimensions),
                    "rows": teams * days * 24 * len(dimensions),
                },
                # Rows come in order of hour: blocks of one day make one part per partition.
                settings={
                    "max_partitions_per_insert_block": 0,
                    "max_block_size": teams * 24 * len(dimensions),
                    "min_insert_block_size_rows": teams * 24 * len(dimensions),
                },
            )
        # The stats table's day grain: a day of the stats table is written only with it.
        session.command(
            f"INSERT INTO {DAILY_STATS} (team_id, period_bucket, day, dimension, value) "
            f"SELECT DISTINCT team_id, toStartOfDay(period_bucket), toDate(period_bucket), '', '' "
            f"FROM {STATS}",
            settings={"max_partitions_per_insert_block": 0},
        )
        # A year of history has long been merged by the time detection runs over it.
        settle(session, (TEAMS, SOURCE_DAY_SUMMARY, BACKFILL_STATUS))
        [(records,)] = session.query(f"SELECT count() FROM {BACKFILL_STATUS}")
        ours, posthog = side_by_side(
            lambda: detect(
                session, None, first_day, today - timedelta(days=1), None, datetime.now(UTC)
            ),
            lambda: session.query(
                POSTHOG_DETECTOR, {"first_day": first_day, "last_day": today - timedelta(days=1)}
            ),
            repeats=repeats,
        )
    report = warehouse.find_gaps(days_back=days, today=today)
    end_to_end = statistics.median(find_gaps_in_fresh_process(url, days, today) for _ in range(3))
    return {
        "gap_detection_seconds": end_to_end,
        "gap_detection_query_seconds": ours,
        "gap_detection_queries": report.queries,
        "posthog_detector_seconds": posthog,
        "gap_detection_vs_posthog_speedup": posthog / ours,
        "status_records": int(records),
        "team_days": len(report.days) // 2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--teams", type=int, default=50)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--store", type=Path, default=ROOT / ".data" / "bench")
    parser.add_argument(
        "--only",
        choices=["auto", "sensor", "grain"],
        help='only the figures of source="auto" (or of the sensor\'s ranges against daily runs, '
        "or of the day grain: dashboard speedups, visitors error, write overhead), on the "
        "dataset an earlier run left in --store (loaded and aggregated first if there is "
        "none); written to bench/results/auto.json (or sensor.json, grain.json)",
    )
    args = parser.parse_args()
    url = f"chdb://{args.store.absolute() / 'events'}"
    first_day = LAST_DAY - timedelta(days=args.days - 1)
    if args.only == "auto":
        auto_only(args, url, first_day)
        return
    if args.only == "sensor":
        sensor_only(args, url, first_day)
        return
    if args.only == "grain":
        grain_only(args, url, first_day)
        return
    shutil.rmtree(args.store, ignore_errors=True)
    figures: dict[str, object] = {}
    started_all = time.perf_counter()

    events, load_seconds = load_dataset(url, args.events, args.teams, args.days)
    print(f"Loaded {events:,} events in {load_seconds:.0f} s ({events / load_seconds:,.0f}/s)")

    seconds, peak_gib = peak_memory_of_aggregation(url, first_day, LAST_DAY)
    figures["peak_memory_gib"] = peak_gib
    print(f"First aggregation: {seconds:.1f} s, peak resident memory {peak_gib:.2f} GiB")

    warehouse = web_analytics.connect(url)
    with warehouse.session() as session:
        session.command(FLOOR_TABLE)
        window = {"start": utc(first_day), "end": utc(LAST_DAY + timedelta(days=1))}
        aggregation_seconds, floor_seconds = side_by_side(
            lambda: warehouse.aggregate(first_day, LAST_DAY),
            lambda: session.command(FLOOR, window),
            repeats=max(2, args.repeats // 2),
        )
        figures["aggregation_seconds"] = aggregation_seconds
        figures["floor_seconds"] = floor_seconds
        figures["aggregation_vs_floor"] = aggregation_seconds / floor_seconds
        figures["aggregation_events_per_second"] = events / aggregation_seconds

        # Once, next to a floor: these explain the ratio above, they are not targets.
        sessions_step, rows_step = aggregation_steps(warehouse, session, first_day, LAST_DAY)
        floor_seconds = median_time(lambda: session.command(FLOOR, window), 1)
        figures |= {"sessions_step_seconds": sessions_step, "rows_step_seconds": rows_step}
        figures["sessions_step_vs_floor"] = sessions_step / floor_seconds
        figures["rows_step_vs_floor"] = rows_step / floor_seconds

        daily = sum(
            median_time(lambda d=day: warehouse.aggregate(d, d), 1)
            for day in (first_day + timedelta(days=i) for i in range(args.days))
        )
        figures["daily_runs_seconds"] = daily
        figures["range_vs_daily_speedup"] = daily / aggregation_seconds

        growth = {}
        for days in (3, 9):
            first = LAST_DAY - timedelta(days=days - 1)
            [(count,)] = session.query(
                f"SELECT count() FROM {EVENTS} WHERE toDate(timestamp) BETWEEN "
                "{first:Date} AND {last:Date}",
                {"first": first, "last": LAST_DAY},
            )
            growth[int(count)] = median_time(lambda f=first: warehouse.aggregate(f, LAST_DAY), 1)
        figures["growth"] = {**growth, events: aggregation_seconds}

        figures |= day_grain_write_overhead(
            warehouse, first_day, LAST_DAY, repeats=max(2, args.repeats // 2)
        )

        # Dashboards are timed on merged tables, as a server's background merges leave them
        # minutes after a write; the events were merged after loading.
        settle(session, WRITTEN_TABLES)
        team = largest_team(warehouse)
        local_first, local_last = first_day + timedelta(days=1), LAST_DAY - timedelta(days=1)
        figures |= dashboard_reads(warehouse, session, team, local_first, local_last, args.repeats)
        figures |= auto_reads(warehouse, team, local_first, local_last, 2 * args.repeats)

    week_first = LAST_DAY - timedelta(days=6)
    through_dagster, direct = dagster_overhead(url, week_first, LAST_DAY, max(3, args.repeats // 2))
    figures |= {"dagster_seconds": through_dagster, "direct_seconds": direct}
    figures["dagster_overhead"] = through_dagster / direct

    figures |= sensor_ranges_vs_daily_runs(url, first_day, LAST_DAY)

    gaps_url = f"chdb://{args.store.absolute() / 'gaps'}"
    figures |= gap_detection_at_scale(gaps_url, teams=1000, days=365, repeats=2 * args.repeats)

    result = {
        **run_description(events, args, started_all, load_seconds),
        **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in figures.items()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2, default=str) + "\n"
    (RESULTS / "latest.json").write_text(text)
    (RESULTS / f"{datetime.now(UTC):%Y-%m-%d}.json").write_text(text)
    print_table(result)


def run_description(
    events: int, args: argparse.Namespace, started: float, load_seconds: float | None = None
) -> dict[str, object]:
    """When, where and on what a run measured, and how long it took."""
    dataset: dict[str, object] = {"events": events, "teams": args.teams, "days": args.days}
    if load_seconds is not None:
        dataset["load_seconds"] = round(load_seconds, 1)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "versions": {"chdb": version("chdb"), "dagster": version("dagster")},
        "dataset": dataset,
        "total_seconds": round(time.perf_counter() - started, 1),
    }


def auto_only(args: argparse.Namespace, url: str, first_day: date) -> None:
    """The ``auto_reads`` figures alone, on the benchmark's dataset as the full run leaves
    it; the days an earlier run made stale are recomputed first, as the backfill would."""
    started = time.perf_counter()
    if not (args.store / "events").exists():
        load_dataset(url, args.events, args.teams, args.days)
        web_analytics.connect(url).aggregate(first_day, LAST_DAY)
    warehouse = web_analytics.connect(url)
    with warehouse.session() as session:
        report = warehouse.find_gaps(days_back=args.days, today=LAST_DAY + timedelta(days=1))
        for day in report.needing_backfill:
            warehouse.aggregate(day, day)
        settle(session, WRITTEN_TABLES)
        team = largest_team(warehouse)
        figures = auto_reads(
            warehouse,
            team,
            first_day + timedelta(days=1),
            LAST_DAY - timedelta(days=1),
            2 * args.repeats,
        )
    result = {
        **run_description(warehouse.summary().events, args, started),
        **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in figures.items()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "auto.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_targets(result)
    bound = "auto_stale_today_raw_part_speedup"
    print(f"{BOUNDS[bound]:<44} {result[bound]:>10.2f}")
    print(f"{'  the day states query alone (ms)':<44} {result['auto_day_states_ms']:>10.1f}")
    print(f"(total {result['total_seconds']:.0f} s; written to bench/results/auto.json)")


def grain_only(args: argparse.Namespace, url: str, first_day: date) -> None:
    """The day grain's figures alone, on the benchmark's dataset: its write overhead, then
    the dashboard reads on merged tables."""
    started = time.perf_counter()
    if not (args.store / "events").exists():
        load_dataset(url, args.events, args.teams, args.days)
    warehouse = web_analytics.connect(url)
    with warehouse.session() as session:
        figures = day_grain_write_overhead(
            warehouse, first_day, LAST_DAY, repeats=max(2, args.repeats // 2)
        )
        settle(session, WRITTEN_TABLES)
        local_first, local_last = first_day + timedelta(days=1), LAST_DAY - timedelta(days=1)
        team = largest_team(warehouse)
        figures |= dashboard_reads(warehouse, session, team, local_first, local_last, args.repeats)
    result = {
        **run_description(warehouse.summary().events, args, started),
        **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in figures.items()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "grain.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_targets(result)
    for key in BOUNDS:
        if key.startswith(("overview_", "pathname_")):
            print(f"{BOUNDS[key]:<44} {result[key]:>10.2f}")
    print(f"(total {result['total_seconds']:.0f} s; written to bench/results/grain.json)")


def sensor_only(args: argparse.Namespace, url: str, first_day: date) -> None:
    """The sensor's ranges against daily runs alone, on the benchmark's dataset."""
    started = time.perf_counter()
    if not (args.store / "events").exists():
        load_dataset(url, args.events, args.teams, args.days)
        web_analytics.connect(url).aggregate(first_day, LAST_DAY)
    figures = sensor_ranges_vs_daily_runs(url, first_day, LAST_DAY)
    warehouse = web_analytics.connect(url)
    result = {
        **run_description(warehouse.summary().events, args, started),
        **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in figures.items()},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sensor.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_targets(result)
    print(f"(total {result['total_seconds']:.0f} s; written to bench/results/sensor.json)")


TARGETS = {
    "overview_speedup": ("30-day overview, pre-aggregated vs raw", ">= 50x", lambda v: v >= 50),
    "pathname_speedup": ("30-day pathname breakdown vs raw", ">= 20x", lambda v: v >= 20),
    "auto_complete_overhead": (
        "auto vs pre-aggregated, every day complete",
        "<= 1.2x",
        lambda v: v <= 1.2,
    ),
    "auto_stale_today_speedup": ("auto vs raw, a stale day and today", ">= 5x", lambda v: v >= 5),
    "aggregation_vs_floor": ("aggregation vs floor scan", "<= 3x", lambda v: v <= 3),
    "range_vs_daily_speedup": ("30-day range vs 30 daily runs", ">= 2x", lambda v: v >= 2),
    "sensor_ranges_vs_daily_runs_speedup": (
        "30-day gap: sensor's ranges vs a run per day",
        ">= 1.7x",
        lambda v: v >= 1.7,
    ),
    "daily_grain_write_overhead": (
        "30-day aggregate, both grains vs hourly only",
        "<= 1.25x",
        lambda v: v <= 1.25,
    ),
    "day_grain_overview_visitors_error_pct": (
        "day grain overview visitors error (%)",
        "<= 1",
        lambda v: v <= 1,
    ),
    "day_grain_top_paths_max_visitors_error_pct": (
        "day grain top-100 paths max visitors error (%)",
        "<= 1",
        lambda v: v <= 1,
    ),
    "dagster_overhead": ("7-day materialization vs direct", "<= 1.3x", lambda v: v <= 1.3),
    "gap_detection_seconds": ("gap detection, 1,000 teams x 365 days", "< 1 s", lambda v: v < 1),
    "gap_detection_vs_posthog_speedup": (
        "gap detection vs PostHog-style",
        ">= 10x",
        lambda v: v >= 10,
    ),
    "peak_memory_gib": ("peak memory of the 30-day aggregation", "< 2 GiB", lambda v: v < 2),
}


BOUNDS = {
    "auto_stale_today_raw_part_speedup": "  raw 30 days / its stale day and today raw",
    "overview_rows_speedup": "  raw overview / counting its rows",
    "overview_states_speedup": "  raw overview / merging its visitor states",
    "pathname_rows_speedup": "  raw pathname breakdown / counting its rows",
    "pathname_states_speedup": "  raw pathname / merging its visitor states",
    "overview_memory_merge_speedup": "  raw overview / its states merged in memory",
    "pathname_memory_merge_speedup": "  raw pathname / its states merged per value in memory",
    "sessions_step_vs_floor": "  sessions step alone / floor",
    "rows_step_vs_floor": "  dimension rows step alone / floor",
}


def print_targets(result: dict) -> None:
    """The figures of ``result`` that have a target, each with whether it holds."""
    print(f"\n{'figure':<44} {'value':>10}  {'target':<9} ok")
    for key, (label, target, holds) in TARGETS.items():
        if key in result:
            value = result[key]
            print(f"{label:<44} {value:>10.2f}  {target:<9} {'yes' if holds(value) else 'NO'}")
    if "auto_stale_today_read" in result:
        print(f"{'  read with a stale day and today':<44} {result['auto_stale_today_read']}")


def print_table(result: dict) -> None:
    print_targets(result)
    print(
        f"{'aggregation events per second':<44} {result['aggregation_events_per_second']:>10,.0f}"
    )
    print(f"{'gap detection queries':<44} {result['gap_detection_queries']:>10}")
    print("bounds: one step or the bare read alone, against the same baseline")
    for key, label in BOUNDS.items():
        print(f"{label:<44} {result[key]:>10.2f}")
    for events, seconds in result["growth"].items():
        print(f"{f'aggregation of {int(events):,} events (s)':<44} {seconds:>10.2f}")
    print(f"(total {result['total_seconds']:.0f} s; written to bench/results/latest.json)")


if __name__ == "__main__":
    main()
