"""An event counts once however often it is delivered: in one batch, across the batches of a
load, across loads, through the event API or the bulk column path. The per-day source summary
and the coverage table agree with the distinct events, a redelivery leaves a computed day
complete, a corrected event replaces the stored copy, and a load killed half way and run
again leaves every count as if it had run once."""

from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support import Event, start_python, visit

import web_analytics
from web_analytics.generator import GeneratorOptions, generate_batches
from web_analytics.warehouse import api
from web_analytics.warehouse.events import normalize_event, rows_to_columns
from web_analytics.warehouse.schema import STATS

D1, D2 = date(2024, 5, 1), date(2024, 5, 2)
TODAY = D2 + timedelta(days=1)


def steps(day: date, hour: int, *events: str) -> list[tuple[str, str, str]]:
    """(timestamp, event, pathname) one minute apart from ``hour``:00 UTC on ``day``."""
    return [
        (f"{day}T{hour:02d}:{minute:02d}:00Z", event, f"/{event.strip('$')}/{minute}")
        for minute, event in enumerate(events)
    ]


def thirty_seven_events() -> list[Event]:
    """37 distinct events of team 1.

    1 May: sessions a (5 pageviews), b (5 pageviews, 2 autocaptures), c (4 pageviews,
    2 autocaptures) and 2 pageviews without a session: 20 events, 14 pageviews (a pageview
    without a session is not part of web stats).
    2 May: sessions d (6 pageviews, 2 autocaptures) and e (4 pageviews, 3 screens,
    2 autocaptures): 17 events, 13 pageviews.
    """
    pv, ac, screen = "$pageview", "$autocapture", "$screen"
    return [
        *visit(1, "a", steps(D1, 9, *[pv] * 5), person="ann"),
        *visit(1, "b", steps(D1, 10, pv, ac, pv, pv, ac, pv, pv), person="bob"),
        *visit(1, "c", steps(D1, 11, pv, pv, ac, ac, pv, pv), person="cat"),
        *visit(1, None, steps(D1, 12, pv, pv), person="dan"),
        *visit(1, "d", steps(D2, 9, pv, pv, pv, ac, pv, pv, ac, pv), person="ann"),
        *visit(1, "e", steps(D2, 14, pv, screen, ac, pv, screen, pv, ac, screen, pv), person="eve"),
    ]


def columns_of(events: list[Event]) -> dict[str, list[Any]]:
    """``events`` as canonical columns: what the bulk path (``insert_event_columns``) takes."""
    return rows_to_columns([normalize_event(event) for event in events])


def summary(warehouse: web_analytics.Warehouse) -> dict[date, tuple[int, ...]]:
    """Per UTC day of team 1: events, pageviews and both hash sums of the source summary."""
    with warehouse.session() as session:
        rows = session.query(
            "SELECT day, sum(events), sum(pageviews), sum(content_hash), "
            "sum(next_first_hour_hash) FROM events_day_summary WHERE team_id = 1 "
            "GROUP BY day HAVING sum(events) > 0 ORDER BY day"
        )
    return {day: tuple(int(value) for value in values) for day, *values in rows}


def stored_rows(warehouse: web_analytics.Warehouse) -> tuple[int, int]:
    """Rows of the events table, and distinct events among them."""
    with warehouse.session() as session:
        [(rows, distinct)] = session.query("SELECT count(), uniqExact(uuid) FROM events")
    return int(rows), int(distinct)


def coverage(warehouse: web_analytics.Warehouse) -> list[tuple[date, int]]:
    with warehouse.session() as session:
        return session.query(
            "SELECT day, source_pageviews FROM web_analytics_data_coverage FINAL "
            "WHERE team_id = 1 AND table = {table:String} ORDER BY day",
            {"table": STATS},
        )


def states(warehouse: web_analytics.Warehouse) -> set[str]:
    return {str(s.state) for s in warehouse.find_gaps(days_back=2, today=TODAY).days}


def test_37_events_delivered_twice_in_a_batch_across_batches_and_loads_count_37(
    warehouse: web_analytics.Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = thirty_seven_events()
    assert len(events) == 37
    monkeypatch.setattr(api, "INSERT_BATCH_ROWS", 10)
    # Load 1, in batches of 10: every fifth event twice in a row (same batch), and the first
    # twelve once more at the end (later batches): 37 + 8 + 12 = 57 deliveries.
    first_load = [copy for i, e in enumerate(events) for copy in [e] * (2 if i % 5 == 0 else 1)]
    first_load += events[:12]

    first = warehouse.insert_events(first_load)
    second = warehouse.insert_events(events[5:20])  # load 2: 15 events again
    bulk = warehouse.insert_event_columns([columns_of(events[10:30])])  # load 3: 20 again

    assert (first.inserted, first.duplicates, first.rejected) == (37, 20, [])
    assert (second.inserted, second.duplicates) == (0, 15)
    assert bulk == 20  # rows received
    assert stored_rows(warehouse) == (37, 37)
    # Days as counted by hand in thirty_seven_events: (events, pageviews).
    assert {day: counts[:2] for day, counts in summary(warehouse).items()} == {
        D1: (20, 14),
        D2: (17, 13),
    }
    warehouse.update_coverage(days_back=2, today=TODAY)
    assert coverage(warehouse) == [(D1, 14), (D2, 13)]


def test_a_computed_day_stays_complete_when_its_events_are_delivered_again(
    warehouse: web_analytics.Warehouse,
) -> None:
    events = thirty_seven_events()
    warehouse.insert_events(events)
    warehouse.aggregate(D1, D2)
    before = summary(warehouse)
    assert states(warehouse) == {"complete"}

    assert warehouse.insert_events(events).inserted == 0
    warehouse.insert_event_columns([columns_of(events)])

    assert summary(warehouse) == before
    assert states(warehouse) == {"complete"}
    warehouse.update_coverage(days_back=2, today=TODAY)
    assert coverage(warehouse) == [(D1, 14), (D2, 13)]


def test_a_corrected_event_replaces_the_stored_copy_and_makes_its_day_stale(
    tmp_path: Path, warehouse: web_analytics.Warehouse
) -> None:
    uuid = "0190a1b2-0000-7000-8000-0000000000aa"
    events = thirty_seven_events()
    events[0] = {**events[0], "uuid": uuid}
    corrected = {**events[0], "properties": {**events[0]["properties"], "$pathname": "/fixed"}}
    warehouse.insert_events(events)
    warehouse.aggregate(D1, D2)

    # An older copy (a version before the stored one) changes nothing.
    older = columns_of([corrected]) | {"inserted_at": [datetime(2024, 5, 1, tzinfo=UTC)]}
    warehouse.insert_event_columns([older])
    assert states(warehouse) == {"complete"}
    report = warehouse.insert_events([corrected])

    assert (report.inserted, report.duplicates) == (1, 0)
    assert stored_rows(warehouse)[1] == 37
    # The summary is exactly that of a store that only ever saw the corrected event.
    fresh = web_analytics.connect(f"chdb://{tmp_path / 'fresh'}")
    fresh.ensure_schema()
    fresh.insert_events([corrected, *events[1:]])
    assert summary(warehouse) == summary(fresh)
    assert {day: counts[:2] for day, counts in summary(warehouse).items()} == {
        D1: (20, 14),
        D2: (17, 13),
    }
    assert {(s.day, str(s.state)) for s in warehouse.find_gaps(days_back=2, today=TODAY).days} == {
        (D1, "stale"),
        (D2, "complete"),
    }
    warehouse.aggregate(D1, D1)
    paths = {row.value: row.views for row in warehouse.breakdown(1, "pathname", D1, D1)}
    # "/pageview/0" was the first page of sessions a, b and c; a now starts on "/fixed".
    assert (paths["/fixed"], paths["/pageview/0"]) == (1, 2)


KILLED_LOAD = textwrap.dedent(
    """
    import os, signal, sys
    import web_analytics
    from web_analytics.generator import GeneratorOptions, generate_batches

    options = GeneratorOptions(events=4_000, days=3, teams=2, duplicate_share=0.05)

    def batches():
        for number, batch in enumerate(generate_batches(options, batch_events=1_000)):
            if number == 2:  # two batches stored: killed before the third
                os.kill(os.getpid(), signal.SIGKILL)
            yield batch

    web_analytics.connect(sys.argv[1]).insert_event_columns(batches())
    """
)
OPTIONS = GeneratorOptions(events=4_000, days=3, teams=2, duplicate_share=0.05)


def all_summaries(warehouse: web_analytics.Warehouse) -> list[tuple[Any, ...]]:
    with warehouse.session() as session:
        return session.query(
            "SELECT team_id, day, sum(events), sum(pageviews), sum(content_hash), "
            "sum(next_first_hour_hash) FROM events_day_summary GROUP BY team_id, day "
            "ORDER BY team_id, day"
        )


def test_a_load_killed_half_way_and_run_again_counts_as_if_it_ran_once(
    tmp_path: Path, store_url: str, warehouse: web_analytics.Warehouse
) -> None:
    batches = list(generate_batches(OPTIONS, batch_events=1_000))
    keys = {
        (team, str(timestamp)[:10], session, uuid)
        for batch in batches
        for team, timestamp, session, uuid in zip(
            batch["team_id"], batch["timestamp"], batch["session_id"], batch["uuid"], strict=True
        )
    }
    delivered = sum(len(batch["uuid"]) for batch in batches)
    assert delivered > len(keys)  # the generator repeats some events

    killed = start_python(KILLED_LOAD, store_url)
    killed.communicate(timeout=120)
    assert killed.returncode < 0  # killed, not finished
    assert 0 < warehouse.summary().events < len(keys)
    assert warehouse.insert_event_columns(generate_batches(OPTIONS, batch_events=1_000)) == (
        delivered
    )

    assert stored_rows(warehouse) == (len(keys), len(keys))
    assert warehouse.summary().events == len(keys)
    once = web_analytics.connect(f"chdb://{tmp_path / 'once'}")
    once.ensure_schema()
    once.insert_event_columns(generate_batches(OPTIONS, batch_events=1_000))
    assert all_summaries(warehouse) == all_summaries(once)


def test_of_the_copies_in_one_batch_the_newest_version_is_stored(
    warehouse: web_analytics.Warehouse,
) -> None:
    first, second = thirty_seven_events()[:2]
    renamed = {**first, "properties": {**first["properties"], "$pathname": "/renamed"}}
    moved = {**second, "properties": {**second["properties"], "$pathname": "/moved"}}
    # Same version (one load): the last copy wins. Explicit versions: the newest wins.
    warehouse.insert_events([first, renamed])
    versions = [datetime(2024, 5, 2, tzinfo=UTC), datetime(2024, 5, 1, tzinfo=UTC)]
    warehouse.insert_event_columns([columns_of([second, moved]) | {"inserted_at": versions}])

    with warehouse.session() as session:
        rows = session.query("SELECT pathname FROM events ORDER BY timestamp")
    assert rows == [("/renamed",), ("/pageview/1",)]
    assert {day: counts[:2] for day, counts in summary(warehouse).items()} == {D1: (2, 2)}
