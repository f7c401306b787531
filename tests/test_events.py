"""Events in: PostHog-shaped dicts and JSON-lines files become rows of the canonical events
table; invalid events are reported by position while the valid ones land, and a redelivered
event counts once."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

import web_analytics
from web_analytics import ConfigurationError, Team
from web_analytics.orchestration.jobs import load_events_job
from web_analytics.orchestration.resources import ClickhouseCluster
from web_analytics.warehouse.events import TimestampBounds, normalize_event
from web_analytics.warehouse.schema import EVENT_COLUMN_NAMES

DAY = dt.date(2024, 5, 1)
UUID_A = "0190a1b2-0000-7000-8000-00000000000a"
UUID_B = "0190a1b2-0000-7000-8000-00000000000b"
# A normalized row has every column but inserted_at, which ClickHouse fills in.
ROW_COLUMNS = tuple(name for name in EVENT_COLUMN_NAMES if name != "inserted_at")


def pageview(
    second: int = 0, path: str = "/", session: str = "s1", team: int = 1, **fields: Any
) -> dict[str, Any]:
    """A pageview on 2024-05-01 at 10:00:<second> UTC."""
    return {
        "team_id": team,
        "event": "$pageview",
        "timestamp": f"2024-05-01T10:00:{second:02d}Z",
        "distinct_id": "visitor-1",
        "properties": {"$session_id": session, "$current_url": f"https://example.com{path}"},
        **fields,
    }


def normalized(event: Any) -> dict[str, Any]:
    return dict(zip(ROW_COLUMNS, normalize_event(event), strict=True))


def stored_rows(warehouse: web_analytics.Warehouse) -> list[dict[str, Any]]:
    """Every stored row (duplicates included) as {column: value}, oldest timestamp first."""
    with warehouse.session() as session:
        rows = session.query("SELECT * FROM events ORDER BY timestamp, inserted_at")
    return [dict(zip(EVENT_COLUMN_NAMES, row, strict=True)) for row in rows]


def count_events(warehouse: web_analytics.Warehouse) -> tuple[int, int]:
    """Stored rows, and distinct event uuids among them."""
    with warehouse.session() as session:
        return session.query("SELECT count(), uniqExact(uuid) FROM events")[0]


def test_posthog_properties_land_in_canonical_columns(warehouse: web_analytics.Warehouse) -> None:
    report = warehouse.insert_events(
        [
            {
                "uuid": UUID_A,
                "team_id": 7,
                "event": "$pageview",
                # 15:30 at +05:30 is 10:00 UTC.
                "timestamp": "2024-05-01T15:30:00+05:30",
                "distinct_id": 12345,
                "properties": {
                    "$session_id": "s1",
                    "$current_url": "https://shop.example.com/products/42?ref=mail",
                    "$referrer": "https://www.google.com/search?q=shoes",
                    "$viewport_width": 1280,
                    "$viewport_height": 720,
                    "utm_source": "newsletter",
                    "$browser": "Firefox",
                    "$device_type": "Desktop",
                    "$geoip_country_code": "IN",
                    "$geoip_city_name": "Pune",
                },
            },
            {
                "uuid": UUID_B,
                "team_id": 7,
                "event": "$autocapture",
                # Naive: taken as UTC.
                "timestamp": dt.datetime(2024, 5, 1, 10, 0, 30),
                "distinct_id": "anon-2",
                "person_id": "person-9",
                "properties": {
                    "$session_id": "s1",
                    "$current_url": "https://shop.example.com/cart",
                    "$pathname": "/basket",
                    "$host": "m.shop.example.com",
                    "$referrer": "https://www.google.com/",
                    "$referring_domain": "news.example.org",
                },
            },
        ]
    )

    assert report == web_analytics.InsertReport(inserted=2, rejected=[])
    first, second = stored_rows(warehouse)
    assert {key: first[key] for key in first if key != "inserted_at"} == {
        "uuid": first["uuid"],
        "team_id": 7,
        "event": "$pageview",
        "timestamp": dt.datetime(2024, 5, 1, 10, 0, 0),
        "distinct_id": "12345",
        "person_id": "",  # optional
        "session_id": "s1",
        # Derived from $current_url: path without the query string, and the host name.
        "pathname": "/products/42",
        "host": "shop.example.com",
        "current_url": "https://shop.example.com/products/42?ref=mail",
        # Derived from $referrer.
        "referring_domain": "www.google.com",
        "utm_source": "newsletter",
        "utm_medium": "",
        "utm_campaign": "",
        "utm_term": "",
        "utm_content": "",
        "device_type": "Desktop",
        "browser": "Firefox",
        "os": "",
        "country_code": "IN",
        "region": "",
        "city": "Pune",
        "viewport_width": 1280,
        "viewport_height": 720,
    }
    assert str(first["uuid"]) == UUID_A
    # Explicit properties win over the URL and the referrer.
    assert (second["timestamp"], second["person_id"], second["pathname"], second["host"]) == (
        dt.datetime(2024, 5, 1, 10, 0, 30),
        "person-9",
        "/basket",
        "m.shop.example.com",
    )
    assert second["referring_domain"] == "news.example.org"
    assert (second["viewport_width"], second["viewport_height"]) == (0, 0)


def test_a_url_without_a_path_is_the_root_page() -> None:
    row = normalized(pageview(path="", session=""))

    assert (row["pathname"], row["host"], row["session_id"]) == ("/", "example.com", "")


@pytest.mark.parametrize(
    ("timestamp", "utc"),
    [
        ("2024-05-01T15:30:00+05:30", dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.UTC)),
        ("2024-05-01T10:00:00Z", dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.UTC)),
        ("2024-05-01T10:00:00", dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.UTC)),
        # 2024-05-01 00:15 in Kathmandu (+05:45) is still 30 April in UTC.
        ("2024-05-01T00:15:00+05:45", dt.datetime(2024, 4, 30, 18, 30, tzinfo=dt.UTC)),
        (dt.datetime(2024, 5, 1, 10, 0), dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.UTC)),
    ],
)
def test_timestamps_are_stored_in_utc(timestamp: Any, utc: dt.datetime) -> None:
    row = normalized(pageview(timestamp=timestamp))

    assert row["timestamp"] == utc
    assert row["timestamp"].utcoffset() == dt.timedelta(0)


def test_invalid_events_are_reported_by_position_while_valid_ones_land(
    warehouse: web_analytics.Warehouse,
) -> None:
    no_team = pageview()
    del no_team["team_id"]
    events = [
        pageview(1),  # 0 valid
        no_team,  # 1
        pageview(team="abc"),  # type: ignore[arg-type]  # 2
        pageview(team=True),  # 3
        pageview(team=-1),  # 4
        pageview(5),  # 5 valid
        pageview(timestamp="yesterday at noon"),  # 6
        pageview(properties={"$viewport_width": "wide"}),  # 7
        pageview(properties="not an object"),  # 8
        42,  # 9
        pageview(10),  # 10 valid
    ]

    report = warehouse.insert_events(events)  # type: ignore[arg-type]

    assert report.inserted == 3
    assert [(r.position, r.reason) for r in report.rejected] == [
        (1, "team_id is missing"),
        (2, "team_id must be a positive integer, got 'abc'"),
        (3, "team_id must be a positive integer, got True"),
        (4, "team_id must be a positive integer, got -1"),
        (6, "timestamp 'yesterday at noon' is not ISO-8601"),
        (7, "$viewport_width must be a non-negative integer, got 'wide'"),
        (8, "properties must be an object"),
        (9, "an event must be an object, got int"),
    ]
    assert count_events(warehouse) == (3, 3)
    assert [row["timestamp"].second for row in stored_rows(warehouse)] == [1, 5, 10]


def test_an_event_delivered_twice_is_stored_once(warehouse: web_analytics.Warehouse) -> None:
    first = pageview(0, "/a", uuid=UUID_A)
    second = pageview(30, "/b", uuid=UUID_B)

    reports = [warehouse.insert_events([first, second, first]), warehouse.insert_events([first])]

    # Four deliveries of two events: the copy in the same batch and the one of the later load
    # are skipped, not stored.
    assert [(r.inserted, r.duplicates) for r in reports] == [(2, 1), (0, 1)]
    assert count_events(warehouse) == (2, 2)
    overview = warehouse.overview(1, DAY, DAY, source="raw")
    # One session: /a at 10:00:00 and /b at 10:00:30, so 2 views, 30 s, two pageviews: no bounce.
    assert overview == web_analytics.Overview(
        visitors=1, views=2, sessions=1, avg_session_duration=30.0, bounce_rate=0.0
    )
    warehouse.aggregate(DAY, DAY)
    assert warehouse.overview(1, DAY, DAY) == overview


def test_an_event_without_uuid_sent_twice_counts_once(warehouse: web_analytics.Warehouse) -> None:
    event = pageview(0, "/pricing")
    same_instant = pageview(0, "/pricing", timestamp="2024-05-01T15:30:00+05:30")

    warehouse.insert_events([event])
    warehouse.insert_events([event])
    warehouse.insert_events([same_instant])

    # One deterministic uuid: the same event at the same instant, stored once.
    assert count_events(warehouse) == (1, 1)
    assert normalized(event)["uuid"] == normalized(same_instant)["uuid"]
    assert normalized(event)["uuid"] != normalized(pageview(1, "/pricing"))["uuid"]
    # One session with one pageview and no duration: one bounce.
    assert warehouse.overview(1, DAY, DAY, source="raw") == web_analytics.Overview(
        visitors=1, views=1, sessions=1, avg_session_duration=0.0, bounce_rate=1.0
    )


def test_a_json_lines_file_loads_and_reports_the_invalid_line(
    tmp_path: Path, warehouse: web_analytics.Warehouse
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(
        json.dumps(pageview(0, "/a"))
        + "\n"
        + json.dumps(pageview(10, "/b"))
        + "\n"
        + '{"team_id": 1, "event": "$pageview", \n'
        + json.dumps(pageview(20, "/c"))
        + "\n"
        + json.dumps(pageview(30, "/d", team="abc"))  # type: ignore[arg-type]
        + "\n"
    )

    report = warehouse.insert_events_file(path)

    assert report.inserted == 3
    assert [r.position for r in report.rejected] == [2, 4]
    assert report.rejected[0].reason.startswith("not valid JSON: ")
    assert report.rejected[1].reason == "team_id must be a positive integer, got 'abc'"
    assert [row["pathname"] for row in stored_rows(warehouse)] == ["/a", "/b", "/c"]
    with pytest.raises(ConfigurationError, match="does not exist"):
        warehouse.insert_events_file(tmp_path / "missing.jsonl")


# --- bad input costs that input alone --------------------------------------------------------


def test_a_team_id_beyond_uint64_costs_that_event_alone(
    warehouse: web_analytics.Warehouse,
) -> None:
    events = [pageview(0), pageview(1, team=2**64), pageview(2, team=2**64 - 1), pageview(3)]

    report = warehouse.insert_events(events)

    assert report.inserted == 3
    assert [(r.position, r.reason) for r in report.rejected] == [
        (1, "team_id 18446744073709551616 does not fit UInt64 (at most 2**64 - 1)")
    ]
    assert [row["team_id"] for row in stored_rows(warehouse)] == [1, 2**64 - 1, 1]


@pytest.mark.parametrize(
    "timestamp",
    [
        "0001-01-01T00:00:00+05:00",  # would not even fit a datetime in UTC
        "1899-12-31T12:00:00Z",
        "1969-12-31T23:59:59Z",
        "1999-12-31T23:59:59.999999Z",
        "2206-05-02T10:00:00Z",
        "2300-01-01T00:00:00Z",
        "9999-12-31T23:59:59-05:00",
    ],
)
def test_timestamps_outside_the_supported_range_are_rejected_never_wrapped(
    warehouse: web_analytics.Warehouse, timestamp: str
) -> None:
    started = dt.datetime.now(dt.UTC)
    report = warehouse.insert_events([pageview(0), pageview(1, timestamp=timestamp)])

    assert report.inserted == 1
    [rejected] = report.rejected
    assert rejected.position == 1
    assert rejected.reason.startswith(
        f"timestamp {dt.datetime.fromisoformat(timestamp).isoformat()} is outside the supported "
        "range 2000-01-01 00:00:00 to "
    )
    # The upper bound is one day after the load started (shown to the second).
    latest = dt.datetime.strptime(rejected.reason[-23:-4], "%Y-%m-%d %H:%M:%S")
    ahead = latest.replace(tzinfo=dt.UTC) - started - dt.timedelta(days=1)
    assert -dt.timedelta(seconds=1) < ahead < dt.timedelta(minutes=1)
    # Nothing was counted on any other day (1969-12-31 and 2149-06-06 were wrapped targets).
    assert warehouse.summary().first_day == warehouse.summary().last_day == DAY


def test_the_supported_timestamps_are_configurable(warehouse: web_analytics.Warehouse) -> None:
    now = dt.datetime.now(dt.UTC)
    bounds = TimestampBounds(
        earliest=dt.datetime(2024, 5, 1, 10, 0, 1, tzinfo=dt.UTC), latest_ahead=dt.timedelta(0)
    )
    soon = (now + dt.timedelta(hours=1)).isoformat()

    report = warehouse.insert_events(
        [pageview(0), pageview(1), pageview(2, timestamp=soon)], timestamp_bounds=bounds
    )

    assert report.inserted == 1
    assert [r.position for r in report.rejected] == [0, 2]
    assert "range 2024-05-01 10:00:01 to " in report.rejected[0].reason
    # By default an hour ahead is fine (clocks drift), and the turn of the millennium too.
    assert warehouse.insert_events([pageview(timestamp=soon)]).rejected == []
    assert warehouse.insert_events([pageview(timestamp="2000-01-01T00:00:00Z")]).rejected == []
    with pytest.raises(ConfigurationError, match="earliest must lie from 1970-01-02"):
        TimestampBounds(earliest=dt.datetime(1969, 1, 1, tzinfo=dt.UTC))


def test_an_event_dated_2206_no_longer_makes_a_computed_day_stale(
    warehouse: web_analytics.Warehouse,
) -> None:
    # Day numbers are UInt16: the summary counted 2206-05-02 on 2026-11-25.
    wrapped = dt.date(2026, 11, 25)
    today = wrapped + dt.timedelta(days=1)
    anywhen = TimestampBounds(latest_ahead=dt.timedelta(days=365_000))
    warehouse.insert_events(
        [pageview(0, timestamp="2026-11-25T10:00:00Z")], timestamp_bounds=anywhen
    )
    warehouse.aggregate(wrapped, wrapped)
    assert {str(s.state) for s in warehouse.find_gaps(days_back=1, today=today).days} == {
        "complete"
    }

    report = warehouse.insert_events(
        [pageview(1, timestamp="2206-05-02T10:00:00Z")], timestamp_bounds=anywhen
    )

    assert (report.inserted, len(report.rejected)) == (0, 1)
    assert {str(s.state) for s in warehouse.find_gaps(days_back=1, today=today).days} == {
        "complete"
    }


def test_lone_surrogates_become_replacement_characters_in_every_string(
    warehouse: web_analytics.Warehouse,
) -> None:
    bad = "x\ud800y"  # what json.loads makes of "x\\ud800y"
    event = pageview(
        0,
        distinct_id=bad,
        person_id=bad,
        event="$page\udcffview",
        properties={
            "$session_id": bad,
            "$current_url": f"https://example.com/{bad}",
            "$referrer": "https://\ud83d\ude00.example/",  # a pair: one character
            "utm_campaign": bad,
            "$geoip_city_name": bad,
        },
    )

    report = warehouse.insert_events([pageview(1), event, pageview(2)])

    assert (report.inserted, report.rejected) == (3, [])
    [row] = [row for row in stored_rows(warehouse) if row["distinct_id"] != "visitor-1"]
    fixed = "x\ufffdy"
    assert (row["distinct_id"], row["person_id"], row["session_id"]) == (fixed, fixed, fixed)
    assert (row["event"], row["utm_campaign"], row["city"]) == ("$page\ufffdview", fixed, fixed)
    assert (row["current_url"], row["pathname"]) == (f"https://example.com/{fixed}", f"/{fixed}")
    assert row["referring_domain"] == "\U0001f600.example"


@pytest.mark.parametrize("url", ["http://[::1", "https://[not-an-address]/page"])
def test_an_unparsable_url_is_kept_as_sent_with_empty_derived_fields(
    warehouse: web_analytics.Warehouse, url: str
) -> None:
    event = pageview(0, properties={"$session_id": "s1", "$current_url": url, "$referrer": url})

    report = warehouse.insert_events([pageview(1), event, pageview(2)])

    assert (report.inserted, report.rejected) == (3, [])
    row = next(row for row in stored_rows(warehouse) if row["current_url"] == url)
    assert (row["pathname"], row["host"], row["referring_domain"]) == ("", "", "")


def test_a_file_with_bytes_that_are_not_utf8_and_broken_lines_loads_every_good_line(
    tmp_path: Path, warehouse: web_analytics.Warehouse
) -> None:
    def line(event: dict[str, Any]) -> bytes:
        return json.dumps(event).encode() + b"\n"

    lines = [
        b"\xef\xbb\xbf" + line(pageview(0, "/a")),  # 1: after a byte order mark
        line(pageview(1, "/b-MARK")).replace(b"MARK", b"\xff\xfe"),  # 2: stored, repaired
        b'{"team_id": 1, \xff}\n',  # 3: not JSON
        line(pageview(3))[:40] + b"\n",  # 4: cut short
        line(pageview(4, team=2**64)),  # 5
        line(pageview(5, timestamp="1899-12-31T00:00:00Z")),  # 6
        b"[" * 100_000 + b"]" * 100_000 + b"\n",  # 7: nested too deep
        line(pageview(7, distinct_id="\ud800")),  # 8: "\\ud800" in the file: stored, repaired
        b"\n",  # 9: blank, skipped
        line(pageview(9, "/c")).replace(b"\n", b"\r\n"),  # 10
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(lines))

    report = warehouse.insert_events_file(path)

    assert report.inserted == 4
    assert [(r.position + 1, r.reason.split(":")[0]) for r in report.rejected] == [
        (3, "not valid JSON"),
        (4, "not valid JSON"),
        (5, "team_id 18446744073709551616 does not fit UInt64 (at most 2**64 - 1)"),
        (6, "timestamp 1899-12-31T00"),
        (7, "not valid JSON"),
    ]
    rows = stored_rows(warehouse)
    assert [row["pathname"] for row in rows] == ["/a", "/b-\ufffd\ufffd", "/", "/c"]
    assert rows[2]["distinct_id"] == "\ufffd"


def bad_line(index: int) -> str:
    """One of ten kinds of bad line, for line ``index`` of a file."""
    good = json.dumps(pageview(0, uuid=f"0190a1b2-0000-7000-8000-{index:012d}"))
    return [
        good[:-5],
        good.replace('"team_id": 1', '"team_id": 18446744073709551616'),
        good.replace("2024-05-01T", "1969-12-31T"),
        good.replace("2024-05-01T", "2300-05-01T"),
        good.replace('"team_id": 1', '"team_id": "one"'),
        "[1, 2, 3]",
        good.replace('"event": "$pageview", ', ""),
        good.replace('"visitor-1"', "null"),
        good.replace("0190a1b2", "not-a-uuid"),
        "\x00",
    ][index % 10]


def write_events_file(path: Path, lines: int, bad: list[int]) -> None:
    """``lines`` distinct pageviews (10 per session) over 2024-05-01, with a bad line at each
    0-based index in ``bad``."""
    bad_set = set(bad)
    with path.open("w") as out:
        for index in range(lines):
            if index in bad_set:
                out.write(bad_line(bad.index(index)) + "\n")
                continue
            second = index % 86_400
            event = {
                "uuid": f"0190a1b2-0000-7000-8000-{index:012d}",
                "team_id": 1 + index % 3,
                "event": "$pageview",
                "timestamp": f"2024-05-01T{second // 3600:02d}:{second // 60 % 60:02d}:"
                f"{second % 60:02d}Z",
                "distinct_id": f"visitor-{index // 10}",
                "properties": {
                    "$session_id": f"s-{index // 10}",
                    "$current_url": f"https://example.com/page/{index % 50}",
                },
            }
            out.write(json.dumps(event) + "\n")


def load_twice(path: Path, warehouse: web_analytics.Warehouse, lines: int, bad: list[int]) -> None:
    first = warehouse.insert_events_file(path)
    counts = (warehouse.summary().events, count_events(warehouse))

    assert (first.inserted, first.duplicates) == (lines - len(bad), 0)
    assert [r.position + 1 for r in first.rejected] == [index + 1 for index in bad]
    assert counts == (lines - len(bad), (lines - len(bad), lines - len(bad)))
    second = warehouse.insert_events_file(path)
    assert (second.inserted, second.duplicates) == (0, lines - len(bad))
    assert (warehouse.summary().events, count_events(warehouse)) == counts


def test_a_file_with_ten_bad_lines_loads_every_other_line_once(
    tmp_path: Path, warehouse: web_analytics.Warehouse
) -> None:
    path = tmp_path / "events.jsonl"
    bad = [0, 7, 99, 100, 250, 499, 500, 777, 998, 999]
    write_events_file(path, 1_000, bad)

    load_twice(path, warehouse, 1_000, bad)


@pytest.mark.slow
def test_a_file_of_250_000_events_with_ten_bad_lines_loads_249_990_once(
    tmp_path: Path, warehouse: web_analytics.Warehouse
) -> None:
    path = tmp_path / "events.jsonl"
    bad = [0, 17, 100_000, 100_001, 123_456, 199_999, 200_000, 200_001, 249_998, 249_999]
    write_events_file(path, 250_000, bad)

    load_twice(path, warehouse, 250_000, bad)


def load_with_dagster(path: Path, clickhouse: ClickhouseCluster):
    return load_events_job.execute_in_process(
        run_config={"ops": {"load_events_op": {"config": {"path": str(path)}}}},
        resources={"clickhouse": clickhouse},
    )


def output_metadata(result) -> dict[str, Any]:
    [output] = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"]
    return output.step_output_data.metadata


def rejected_lines(metadata: dict[str, Any]) -> list[tuple[int, str]]:
    """(line number, reason up to its first colon) of each row of the rejected lines table."""
    return [
        (record.data["line"], record.data["reason"].split(":")[0])
        for record in metadata["rejected_lines"].records
    ]


def test_dagster_load_events_job_loads_a_file(
    tmp_path: Path, warehouse: web_analytics.Warehouse, clickhouse: ClickhouseCluster
) -> None:
    path = tmp_path / "events.jsonl"
    lines = [json.dumps(pageview(second, f"/{second}")) for second in (0, 10, 20, 30)]
    lines.insert(2, "not json")
    path.write_text("\n".join(lines) + "\n")

    result = load_with_dagster(path, clickhouse)

    assert result.success
    assert result.output_for_node("load_events_op") == 4
    assert count_events(warehouse) == (4, 4)
    metadata = output_metadata(result)
    assert (metadata["inserted"].value, metadata["rejected"].value) == (4, 1)
    # "not json" is the third line of the file.
    assert rejected_lines(metadata) == [(3, "not valid JSON")]


def test_dagster_load_events_job_reports_the_file_line_after_blank_lines(
    tmp_path: Path, warehouse: web_analytics.Warehouse, clickhouse: ClickhouseCluster
) -> None:
    path = tmp_path / "events.jsonl"
    # Line 1 valid, line 2 blank, line 3 valid, line 4 not JSON, line 5 valid.
    path.write_text(
        f"{json.dumps(pageview(0))}\n\n{json.dumps(pageview(10))}\nnot json\n"
        f"{json.dumps(pageview(20))}\n"
    )

    result = load_with_dagster(path, clickhouse)

    assert result.output_for_node("load_events_op") == 3
    assert rejected_lines(output_metadata(result)) == [(4, "not valid JSON")]


def test_upsert_team_checks_the_timezone_and_the_team_id(
    warehouse: web_analytics.Warehouse,
) -> None:
    with pytest.raises(ConfigurationError, match="unknown timezone 'Mars/Olympus_Mons'"):
        warehouse.upsert_team(1, "Mars/Olympus_Mons")
    for team_id in (0, -3, True, "1"):
        with pytest.raises(ConfigurationError, match="team_id must be a positive integer"):
            warehouse.upsert_team(team_id)  # type: ignore[arg-type]

    assert warehouse.teams() == []


def test_teams_with_events_but_no_registry_row_are_enabled_in_utc(
    warehouse: web_analytics.Warehouse,
) -> None:
    warehouse.insert_events([pageview(team=5), pageview(team=9), pageview(team=9, second=1)])
    warehouse.upsert_team(9, "Asia/Kathmandu", enabled=False)
    warehouse.upsert_team(12, "Europe/London")

    # Each team once: 5 from its events only, 9 from the registry although it has events.
    assert warehouse.teams() == [
        Team(5, "UTC", True),
        Team(9, "Asia/Kathmandu", False),
        Team(12, "Europe/London", True),
    ]
    # One team alone, as every dashboard read looks it up: from its events, or registered
    # with or without events.
    assert warehouse.team(5) == Team(5, "UTC", True)
    assert warehouse.team(9) == Team(9, "Asia/Kathmandu", False)
    assert warehouse.team(12) == Team(12, "Europe/London", True)
    # A later registration replaces the earlier one.
    warehouse.upsert_team(9, "Asia/Kolkata")
    assert warehouse.team(9) == Team(9, "Asia/Kolkata", True)
    assert len(warehouse.teams()) == 3


def test_teams_are_listed_by_team_id(warehouse: web_analytics.Warehouse) -> None:
    warehouse.insert_events([pageview(team=5)])
    warehouse.upsert_team(12, "Europe/London")
    warehouse.upsert_team(3, "Asia/Kolkata")
    with warehouse.session() as session:
        # As a background merge would: registry rows 3 and 12 now come out as one block, so
        # only a sort over the whole list can put team 5 between them.
        session.command("OPTIMIZE TABLE teams FINAL")

    # Registry teams 3 and 12, and team 5 known from its events only.
    assert [team.team_id for team in warehouse.teams()] == [3, 5, 12]
