"""A run killed at any moment leaves every day as it was or as the new run computes it.

A child process re-aggregates days whose source grew since the last complete run and is
killed with SIGKILL: after a delay, or the instant a data part lands in a given table (seen
through inotify, so the kill hits a precise step: staging written, a day swapped in). The
test process opens the store only while no child runs (chDB is one engine per process, and
the embedded store's lock belongs to whoever aggregates).
"""

from __future__ import annotations

import ctypes
import os
import random
import re
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
from support import finalized, load_generated

import web_analytics
from web_analytics.generator import GeneratorOptions, generate_batches
from web_analytics.warehouse.schema import (
    BOUNCES,
    PRE_AGGREGATED_TABLES,
    STAGING_SUFFIX,
    STATS,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="uses inotify and SIGKILL")

CHILD = """
import sys
from datetime import date

import web_analytics

warehouse = web_analytics.connect(sys.argv[1])
first_day, last_day = date.fromisoformat(sys.argv[2]), date.fromisoformat(sys.argv[3])
print("aggregating", flush=True)
warehouse.aggregate(first_day, last_day)
"""

_IN_MOVED_TO = 0x80  # a finished part is renamed into the table's directory
_INOTIFY_EVENT = struct.Struct("iIII")
_PART_NAME = re.compile(rb"^\d{8}_\d+_\d+_\d+$")  # partition_minblock_maxblock_level

Dump = dict[tuple[str, date], list[tuple[object, ...]]]


@dataclass(frozen=True)
class Kill:
    """When to SIGKILL the child: ``delay`` (a fraction of a complete run's duration) after
    it starts aggregating, or the instant a data part lands in table ``part_in``."""

    delay: float | None = None
    part_in: str | None = None


@contextmanager
def part_arrivals(directory: Path) -> Iterator[int]:
    """An inotify descriptor that becomes readable when a data part lands in ``directory``."""
    libc = ctypes.CDLL(None, use_errno=True)
    descriptor = libc.inotify_init1(os.O_CLOEXEC)
    assert descriptor >= 0, os.strerror(ctypes.get_errno())
    try:
        watch = libc.inotify_add_watch(descriptor, str(directory).encode(), _IN_MOVED_TO)
        assert watch >= 0, os.strerror(ctypes.get_errno())
        yield descriptor
    finally:
        os.close(descriptor)


def part_landed(descriptor: int) -> bool:
    """Read pending inotify events; True if one of them is a data part (not a temporary)."""
    buffer = os.read(descriptor, 65536)
    offset = 0
    while offset < len(buffer):
        *_, length = _INOTIFY_EVENT.unpack_from(buffer, offset)
        start = offset + _INOTIFY_EVENT.size
        if _PART_NAME.match(buffer[start : start + length].rstrip(b"\0")):
            return True
        offset = start + length
    return False


def aggregate_and_kill(store: Path, days: list[date], kill: Kill, run_seconds: float) -> bool:
    """Aggregate ``days`` in a child and SIGKILL it as ``kill`` says; False if it finished
    before the moment came."""
    watched = store / "data" / "default" / (kill.part_in or STATS)
    with part_arrivals(watched.resolve()) as arrivals:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, f"chdb://{store}", str(days[0]), str(days[-1])],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None and child.stdout.readline() == "aggregating\n"
            deadline = time.monotonic() + (kill.delay or 600) * run_seconds
            while child.poll() is None and time.monotonic() < deadline:
                ready, _, _ = select.select([arrivals], [], [], 0.01)
                if ready and part_landed(arrivals) and kill.part_in:
                    break
            finished = child.poll() is not None
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait(timeout=30)
    return not finished


def per_day(warehouse: web_analytics.Warehouse, days: list[date]) -> Dump:
    """Finalized contents of each (table, UTC day)."""
    with warehouse.session():
        return {
            (table, day): rows
            for day in days
            for table, rows in finalized(warehouse, day, day).items()
        }


def kill_runs(
    store: Path, options: GeneratorOptions, kills: list[Kill]
) -> tuple[Dump, Dump, list[tuple[Kill, Dump]]]:
    """Aggregate ``options``' traffic (old), add more traffic to every day, kill a child run
    for each of ``kills`` and read every day after it, then aggregate cleanly (new) and check
    that the clean run matches the raw events."""
    warehouse = web_analytics.connect(f"chdb://{store}")
    days = [options.first_day + timedelta(days=i) for i in range(options.days)]
    with warehouse.session():
        warehouse.ensure_schema()
        load_generated(warehouse, options)
        started = time.monotonic()
        warehouse.aggregate(days[0], days[-1])
        run_seconds = time.monotonic() - started
        old = per_day(warehouse, days)
        more = GeneratorOptions(
            seed=options.seed + 1,
            events=options.events // 2,
            days=options.days,
            last_day=options.last_day,
            teams=options.teams,
        )
        warehouse.insert_event_columns(generate_batches(more))

    after_kills = []
    for kill in kills:
        assert aggregate_and_kill(store, days, kill, run_seconds), f"{kill}: finished first"
        after_kills.append((kill, per_day(warehouse, days)))

    with warehouse.session():
        warehouse.aggregate(days[0], days[-1])
        new = per_day(warehouse, days)
        # A complete run repairs whatever the killed ones left behind.
        for table in PRE_AGGREGATED_TABLES:
            report = warehouse.compare_with_raw(table, days[0], days[-1])
            assert report.passed, report.discrepancies[:5]
    for key in old:
        assert old[key] and new[key], f"{key} is empty after a complete run"
        assert old[key] != new[key], f"{key}: the added traffic did not change it"
    return old, new, after_kills


SMALL = GeneratorOptions(seed=21, events=100_000, days=3, last_day=date(2024, 1, 3), teams=3)
# Where the kill lands does not depend on the size: the smallest data set that fills each day.
TINY = GeneratorOptions(seed=23, events=20_000, days=2, last_day=date(2024, 1, 2), teams=2)


def test_a_run_killed_before_its_swaps_leaves_every_day_as_it_was(tmp_path: Path) -> None:
    kills = [
        Kill(delay=0.1),  # reading events
        Kill(part_in=STATS + STAGING_SUFFIX),  # the one pass over events has been written
        Kill(part_in=BOUNCES + STAGING_SUFFIX),  # staging holds the new days, none swapped yet
    ]

    old, _, after_kills = kill_runs(tmp_path / "store", SMALL, kills)

    for kill, dump in after_kills:
        assert dump == old, kill


@pytest.mark.parametrize("table", PRE_AGGREGATED_TABLES)
def test_a_run_killed_during_its_swaps_leaves_every_day_old_or_new(
    tmp_path: Path, table: str
) -> None:
    old, new, after_kills = kill_runs(tmp_path / "store", TINY, [Kill(part_in=table)])

    for kill, dump in after_kills:
        for key, rows in dump.items():
            assert rows in (old[key], new[key]), f"{key} after {kill}: neither old nor new"


@pytest.mark.slow
def test_kills_at_random_moments_leave_every_day_old_or_new(tmp_path: Path) -> None:
    rng = random.Random(os.environ.get("CRASH_SEED", "crash"))
    options = GeneratorOptions(
        seed=22, events=1_000_000, days=10, last_day=date(2024, 1, 10), teams=6
    )
    kills = [Kill(delay=rng.uniform(0.05, 0.9)) for _ in range(8)]
    kills += [Kill(part_in=table) for table in (STATS, BOUNCES, STATS + STAGING_SUFFIX)]
    rng.shuffle(kills)

    old, new, after_kills = kill_runs(tmp_path / "store", options, kills)

    for kill, dump in after_kills:
        for key, rows in dump.items():
            assert rows in (old[key], new[key]), f"{key} after {kill}: neither old nor new"
