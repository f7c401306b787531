"""Bad input never costs stored data, and every refusal says what is wrong in one line.

One store per module holds two teams with known events and computed days. Each case feeds
one bad (or odd but valid) input through the Python API, the JSON-lines loader, run config
or the settings, checks the error type and text (or what was accepted), then checks that the
stored events and both teams' overviews are exactly as before. The counts per input class
are printed at the end of the module (the table in docs/RELIABILITY.md)."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pydantic
import pytest
from support import definitions, pageviews

import web_analytics
from web_analytics.orchestration.config import (
    CleanupConfig,
    GapsConfig,
    PreAggregationConfig,
    WindowConfig,
)
from web_analytics.warehouse.connection import lock_timeout_from_env
from web_analytics.warehouse.errors import (
    ConfigurationError,
    ConnectionFailed,
    QueryFailed,
    SchemaMissing,
)
from web_analytics.warehouse.settings import ALLOWED_SETTINGS, resolve_settings

DAY_1, DAY_2 = date(2024, 3, 4), date(2024, 3, 5)
# Accepted events go to this team, so they never touch the stored teams 1 and 2.
OTHER_TEAM = 99
CLASSES = (
    "connect URL and store path",
    "teams",
    "events (Python API)",
    "events (JSON-lines file)",
    "aggregate, gaps, cleanup",
    "dashboard reads",
    "ClickHouse settings",
    "run config",
)
COUNTS: dict[str, Counter[str]] = {name: Counter() for name in CLASSES}

Check = Callable[[Any], None]


@dataclass(frozen=True)
class Case:
    """One input: ``call`` gets the store (and a scratch directory); a refusal must raise
    ``error`` with ``text`` in its message, an acceptance (``error`` None) passes ``check``."""

    kind: str
    name: str
    call: Callable[[web_analytics.Warehouse, Path], Any]
    error: type[BaseException] | None = None
    text: str = ""
    check: Check | None = None
    refused_in_report: bool = False  # an event refused in the InsertReport, not raised
    other_store: bool = False  # opens another embedded store: the shared one is let go first


# --- the shared store ---------------------------------------------------------------------


@dataclass
class Store:
    warehouse: web_analytics.Warehouse
    url: str
    scratch: Path
    held: ExitStack

    def hold(self) -> None:
        """Keep the store open between cases: every call reuses this session (fast)."""
        self.held.enter_context(self.warehouse.session())

    def release(self) -> None:
        self.held.close()

    def invariant(self) -> tuple[object, ...]:
        """What must never change: events per stored team and both teams' overviews."""
        summary = self.warehouse.summary()
        return (
            {team: summary.events_per_team.get(team) for team in (1, 2)},
            *(
                self.warehouse.overview(team, DAY_1, DAY_2, source="preaggregated")
                for team in (1, 2)
            ),
        )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    directory = tmp_path_factory.mktemp("bad_input")
    url = f"chdb://{directory / 'store'}"
    warehouse = web_analytics.connect(url)
    warehouse.ensure_schema()
    warehouse.upsert_team(1, "UTC")
    warehouse.upsert_team(2, "Europe/London")
    events = [
        *pageviews(1, "s1", "2024-03-04T10:00:00Z", "2024-03-04T10:05:00Z", path="/a"),
        *pageviews(1, "s2", "2024-03-05T09:00:00Z", path="/b"),
        *pageviews(2, "s3", "2024-03-04T23:30:00Z", "2024-03-05T00:10:00Z", path="/c"),
    ]
    for number, event in enumerate(events):
        event["uuid"] = str(uuid.UUID(int=number + 1))
    report = warehouse.insert_events(events)
    assert (report.inserted, report.rejected) == (5, [])
    warehouse.aggregate(DAY_1, DAY_2)
    scratch = directory / "scratch"
    scratch.mkdir()
    store = Store(warehouse, url, scratch, ExitStack())
    store.hold()
    yield store
    store.release()


@pytest.fixture(scope="module")
def baseline(store: Store) -> tuple[object, ...]:
    stored = store.invariant()
    assert stored[0] == {1: 3, 2: 2}
    assert stored[1].views == 3 and stored[2].views == 2  # type: ignore[attr-defined]
    return stored


@pytest.fixture(scope="module", autouse=True)
def counts_table(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print the counts per input class once the module has run."""
    yield
    lines = [
        "| Input class | Tried | Rejected cleanly | Accepted cleanly | Lost |",
        "|---|---:|---:|---:|---:|",
    ]
    total: Counter[str] = Counter()
    for name, counts in COUNTS.items():
        total.update(counts)
        lines.append(
            f"| {name} | {counts['tried']} | {counts['rejected']} | {counts['accepted']} "
            f"| {counts['lost']} |"
        )
    lines.append(
        f"| **all** | {total['tried']} | {total['rejected']} | {total['accepted']} "
        f"| {total['lost']} |"
    )
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            for row in lines:
                reporter.write_line(row)


# --- building cases -------------------------------------------------------------------------


def good_event(**changes: Any) -> dict[str, Any]:
    """A valid pageview of the other team with a fresh uuid; ``changes`` replace fields."""
    event: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "event": "$pageview",
        "timestamp": "2024-03-04T12:00:00Z",
        "team_id": OTHER_TEAM,
        "distinct_id": "someone",
        "properties": {"$pathname": "/x", "$session_id": "other"},
    }
    event.update(changes)
    return event


def with_property(name: str, value: Any) -> dict[str, Any]:
    event = good_event()
    event["properties"] = {**event["properties"], name: value}
    return event


def inserting(event: Any) -> Callable[[web_analytics.Warehouse, Path], Any]:
    return lambda warehouse, _: warehouse.insert_events([event])


def rejects_event(text: str) -> Check:
    """The one event was rejected at position 0 with ``text`` in its reason, nothing stored."""

    def check(report: web_analytics.InsertReport) -> None:
        assert report.inserted == 0
        assert [r.position for r in report.rejected] == [0]
        assert text in report.rejected[0].reason
        assert "\n" not in report.rejected[0].reason

    return check


def stores_event() -> Check:
    def check(report: web_analytics.InsertReport) -> None:
        assert (report.inserted, report.rejected) == (1, [])

    return check


def event_case(name: str, event: Any, text: str) -> Case:
    """An event that must be refused with ``text`` (the call itself succeeds)."""
    return Case(
        "events (Python API)",
        name,
        inserting(event),
        check=rejects_event(text),
        refused_in_report=True,
    )


def accepted_event(name: str, event: Any) -> Case:
    return Case("events (Python API)", name, inserting(event), None, "", stores_event())


EVENT_CASES = [
    Case(
        "events (Python API)",
        "events not an iterable: None",
        lambda warehouse, scratch: warehouse.insert_events(None),  # type: ignore[arg-type]
        ConfigurationError,
        "events must be an iterable of event mappings, got NoneType",
    ),
    Case(
        "events (Python API)",
        "events one mapping, not a list of them",
        lambda warehouse, scratch: warehouse.insert_events({"team_id": 1}),  # type: ignore[dict-item]
        ConfigurationError,
        "events must be an iterable of event mappings, got dict",
    ),
    event_case("not a mapping: list", [1, 2], "an event must be an object, got list"),
    event_case("not a mapping: string", "event", "an event must be an object, got str"),
    event_case("not a mapping: None", None, "an event must be an object, got NoneType"),
    event_case("not a mapping: number", 7, "an event must be an object, got int"),
    event_case(
        "no team_id",
        {k: v for k, v in good_event().items() if k != "team_id"},
        "team_id is missing",
    ),
    event_case("team_id None", good_event(team_id=None), "team_id is missing"),
    event_case("team_id 0", good_event(team_id=0), "team_id must be a positive integer"),
    event_case("team_id negative", good_event(team_id=-5), "team_id must be a positive integer"),
    event_case("team_id 2**64", good_event(team_id=2**64), "does not fit UInt64"),
    event_case("team_id 10**30", good_event(team_id=10**30), "does not fit UInt64"),
    event_case("team_id text", good_event(team_id="1"), "team_id must be a positive integer"),
    event_case("team_id float", good_event(team_id=1.0), "team_id must be a positive integer"),
    event_case("team_id bool", good_event(team_id=True), "team_id must be a positive integer"),
    event_case("no event name", good_event(event=None), "event name is missing"),
    event_case("empty event name", good_event(event=""), "event name is missing"),
    event_case("event name a list", good_event(event=["a"]), "event must be a string"),
    event_case("event name a dict", good_event(event={"a": 1}), "event must be a string"),
    event_case(
        "no timestamp",
        {k: v for k, v in good_event().items() if k != "timestamp"},
        "timestamp is missing",
    ),
    event_case("timestamp None", good_event(timestamp=None), "timestamp must be an ISO-8601"),
    event_case("timestamp garbage", good_event(timestamp="yesterday"), "is not ISO-8601"),
    event_case(
        "timestamp epoch number", good_event(timestamp=1709546400), "timestamp must be an ISO-8601"
    ),
    event_case(
        "timestamp year 0001",
        good_event(timestamp="0001-01-01T00:00:00Z"),
        "outside the supported range",
    ),
    event_case(
        "timestamp year 1899",
        good_event(timestamp="1899-12-31T23:00:00Z"),
        "outside the supported range",
    ),
    event_case(
        "timestamp year 1969",
        good_event(timestamp="1969-12-31T23:59:59Z"),
        "outside the supported range",
    ),
    event_case(
        "timestamp 1999",
        good_event(timestamp="1999-12-31T23:59:59Z"),
        "outside the supported range",
    ),
    event_case(
        "timestamp year 2206",
        good_event(timestamp="2206-05-02T00:00:00Z"),
        "outside the supported range",
    ),
    event_case(
        "timestamp year 2300",
        good_event(timestamp="2300-01-01T00:00:00Z"),
        "outside the supported range",
    ),
    event_case(
        "timestamp year 9999 with offset",
        good_event(timestamp="9999-12-31T23:00:00-05:00"),
        "outside the supported range",
    ),
    event_case(
        "timestamp month 13", good_event(timestamp="2024-13-01T00:00:00Z"), "is not ISO-8601"
    ),
    event_case(
        "timestamp 30 February", good_event(timestamp="2024-02-30T00:00:00Z"), "is not ISO-8601"
    ),
    event_case(
        "timestamp a year from now",
        good_event(timestamp=f"{date.today().year + 1}-12-31T00:00:00Z"),
        "outside the supported range",
    ),
    event_case("no distinct_id", good_event(distinct_id=None), "distinct_id is missing"),
    event_case("empty distinct_id", good_event(distinct_id=""), "distinct_id is missing"),
    event_case("distinct_id a float", good_event(distinct_id=1.5), "distinct_id must be a string"),
    event_case("person_id a list", good_event(person_id=["p"]), "person_id must be a string"),
    event_case("properties a list", good_event(properties=[1]), "properties must be an object"),
    event_case("properties a string", good_event(properties="x"), "properties must be an object"),
    event_case(
        "pathname a number list", with_property("$pathname", [1]), "$pathname must be a string"
    ),
    event_case(
        "session id a dict", with_property("$session_id", {"a": 1}), "$session_id must be a string"
    ),
    event_case("browser a float", with_property("$browser", 1.5), "$browser must be a string"),
    event_case(
        "viewport negative",
        with_property("$viewport_width", -1),
        "$viewport_width must be a non-negative integer",
    ),
    event_case(
        "viewport 2**32",
        with_property("$viewport_height", 2**32),
        "$viewport_height must be a non-negative integer",
    ),
    event_case(
        "viewport text",
        with_property("$viewport_width", "800"),
        "$viewport_width must be a non-negative integer",
    ),
    event_case("uuid garbage", good_event(uuid="not-a-uuid"), "is not a UUID"),
    event_case("uuid a number", good_event(uuid=12), "is not a UUID"),
    event_case("referrer a list", with_property("$referrer", ["x"]), "$referrer must be a string"),
    accepted_event("lone surrogate in pathname", with_property("$pathname", "/a\ud800b")),
    accepted_event("lone surrogate in distinct_id", good_event(distinct_id="x\udfff")),
    accepted_event("unparsable current url", with_property("$current_url", "http://[::1")),
    accepted_event("unparsable referrer", with_property("$referrer", "http://[bad")),
    accepted_event("emoji and RTL text", with_property("$pathname", "/\U0001f600/\u05d0")),
    accepted_event("SQL in a property", with_property("$pathname", "'); DROP TABLE events; --")),
    accepted_event("10 kB pathname", with_property("$pathname", "/" + "a" * 10_000)),
    accepted_event("integer distinct_id", good_event(distinct_id=12345)),
    accepted_event("team_id 2**64 - 1", good_event(team_id=2**64 - 1)),
    accepted_event("timestamp with offset", good_event(timestamp="2024-03-04T12:00:00+05:45")),
    accepted_event("timestamp without zone", good_event(timestamp="2024-03-04T12:00:00")),
    accepted_event("timestamp 2000-01-01", good_event(timestamp="2000-01-01T00:00:00Z")),
    accepted_event("unknown extra fields", good_event(extra={"nested": [1, 2]})),
    Case(
        "events (Python API)",
        "redelivery of a stored event",
        lambda warehouse, _: warehouse.insert_events(
            [
                {
                    **pageviews(1, "s2", "2024-03-05T09:00:00Z", path="/b")[0],
                    "uuid": str(uuid.UUID(int=3)),
                }
            ]
        ),
        check=lambda report: (  # type: ignore[arg-type]
            (report.inserted, report.duplicates, report.rejected) == (0, 1, [])
            or pytest.fail(f"redelivery stored again: {report}")
        ),
    ),
    Case(
        "events (Python API)",
        "one bad among good",
        lambda warehouse, _: warehouse.insert_events(
            [good_event(), good_event(team_id=-1), good_event()]
        ),
        check=lambda report: (  # type: ignore[arg-type]
            (report.inserted, [r.position for r in report.rejected]) == (2, [1])
            or pytest.fail(f"{report}")
        ),
    ),
]


# --- the JSON-lines loader ---------------------------------------------------------------


def loading_lines(*lines: bytes) -> Callable[[web_analytics.Warehouse, Path], Any]:
    """Write a file of one good line, then ``lines``, then another good line, and load it."""

    def call(warehouse: web_analytics.Warehouse, scratch: Path) -> Any:
        path = scratch / f"{uuid.uuid4()}.jsonl"
        good = [json.dumps(good_event()).encode() for _ in range(2)]
        path.write_bytes(b"\n".join([good[0], *lines, good[1]]) + b"\n")
        return warehouse.insert_events_file(path)

    return call


def file_rejects(lines: bytes, text: str, name: str) -> Case:
    def check(report: web_analytics.InsertReport) -> None:
        assert report.inserted == 2, report
        assert [r.position for r in report.rejected] == [1], report
        assert text in report.rejected[0].reason, report.rejected[0].reason
        assert "\n" not in report.rejected[0].reason

    return Case(
        "events (JSON-lines file)", name, loading_lines(lines), check=check, refused_in_report=True
    )


def file_accepts(lines: bytes, stored: int, name: str) -> Case:
    def check(report: web_analytics.InsertReport) -> None:
        assert (report.inserted, report.rejected) == (2 + stored, []), report

    return Case("events (JSON-lines file)", name, loading_lines(lines), check=check)


def line(event: Any) -> bytes:
    return json.dumps(event).encode()


FILE_CASES = [
    file_rejects(b"not json", "not valid JSON", "plain text"),
    file_rejects(b"{", "not valid JSON", "cut-off object"),
    file_rejects(b'{"team_id": 1,}', "not valid JSON", "trailing comma"),
    file_rejects(b"{'team_id': 1}", "not valid JSON", "single quotes"),
    file_rejects(b"[]", "an event must be an object, got list", "an array"),
    file_rejects(b"null", "an event must be an object, got NoneType", "null"),
    file_rejects(b"42", "an event must be an object, got int", "a number"),
    file_rejects(b'"event"', "an event must be an object, got str", "a string"),
    file_rejects(b"true", "an event must be an object, got bool", "a boolean"),
    file_rejects(b"NaN", "an event must be an object, got float", "NaN"),
    file_rejects(b"\xff\xfe{", "not valid JSON", "bytes that are not UTF-8 outside a string"),
    file_rejects(b"[" * 100_000 + b"]" * 100_000, "not valid JSON", "100,000 nested arrays"),
    file_rejects(b'{"team_id": ' + b"9" * 5000 + b"}", "not valid JSON", "a 5,000-digit number"),
    file_rejects(line(good_event(team_id=2**64)), "does not fit UInt64", "team_id 2**64"),
    file_rejects(
        line(good_event(team_id="abc")), "team_id must be a positive integer", "team_id text"
    ),
    file_rejects(
        line(good_event(timestamp="1969-12-31T00:00:00Z")),
        "outside the supported range",
        "timestamp 1969",
    ),
    file_rejects(
        line(good_event(timestamp="2300-01-01T00:00:00Z")),
        "outside the supported range",
        "timestamp 2300",
    ),
    file_rejects(line(good_event(timestamp="soon")), "is not ISO-8601", "timestamp text"),
    file_rejects(line(good_event(uuid="xyz")), "is not a UUID", "bad uuid"),
    file_rejects(line(good_event(event="")), "event name is missing", "empty event"),
    file_rejects(line(good_event(distinct_id=None)), "distinct_id is missing", "no distinct_id"),
    file_rejects(
        line(good_event(properties=[1])), "properties must be an object", "properties a list"
    ),
    file_rejects(
        line(with_property("$viewport_width", 1.5)),
        "must be a non-negative integer",
        "viewport float",
    ),
    file_rejects(b"\x00", "not valid JSON", "a NUL byte"),
    file_accepts(b"", 0, "a blank line"),
    file_accepts(b"   \t", 0, "a line of spaces"),
    file_accepts(
        line(good_event()).replace(b'"/x"', b'"/\xff\xfe"'),
        1,
        "bytes that are not UTF-8 in a string",
    ),
    file_accepts(
        line(good_event()).replace(b'"/x"', b'"/\\ud800"'), 1, "an escaped lone surrogate"
    ),
    file_accepts(line(with_property("$current_url", "http://[::1")), 1, "unparsable current url"),
    file_accepts(line(good_event()) + b"\r", 1, "a Windows line ending"),
    Case(
        "events (JSON-lines file)",
        "a file that does not exist",
        lambda warehouse, scratch: warehouse.insert_events_file(scratch / "nope.jsonl"),
        ConfigurationError,
        "does not exist",
    ),
    Case(
        "events (JSON-lines file)",
        "a directory instead of a file",
        lambda warehouse, scratch: warehouse.insert_events_file(scratch),
        ConfigurationError,
        "does not exist",
    ),
    Case(
        "events (JSON-lines file)",
        "an empty file",
        lambda warehouse, scratch: (
            (scratch / "empty.jsonl").write_bytes(b"")
            or warehouse.insert_events_file(scratch / "empty.jsonl")
        ),
        check=lambda report: (  # type: ignore[arg-type]
            (report.inserted, report.rejected) == (0, []) or pytest.fail(f"{report}")
        ),
    ),
]


# --- URLs, store paths and the lock timeout --------------------------------------------------


def connecting(url: str) -> Callable[[web_analytics.Warehouse, Path], Any]:
    return lambda warehouse, scratch: web_analytics.connect(url.format(scratch=scratch)).find_gaps()


def url_case(
    name: str, url: str, text: str, error: type[BaseException] = ConfigurationError
) -> Case:
    other_store = url.startswith(("chdb://{scratch}", "chdb:///proc"))
    return Case(
        "connect URL and store path", name, connecting(url), error, text, other_store=other_store
    )


def lock_timeout(value: str) -> Callable[[web_analytics.Warehouse, Path], Any]:
    def call(warehouse: web_analytics.Warehouse, scratch: Path) -> Any:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("WEB_ANALYTICS_LOCK_TIMEOUT", value)
            return lock_timeout_from_env()

    return call


def file_in(scratch: Path) -> Path:
    path = scratch / "a_file"
    path.write_text("")
    return path


URL_CASES = [
    Case(
        "connect URL and store path",
        "URL not a string",
        lambda warehouse, scratch: web_analytics.connect(123),  # type: ignore[arg-type]
        ConfigurationError,
        "the warehouse URL must be a string, got 123",
    ),
    url_case("empty URL", "", "unsupported warehouse URL scheme"),
    url_case("no scheme", "/var/lib/store", "unsupported warehouse URL scheme"),
    url_case("ftp scheme", "ftp://host/db", "unsupported warehouse URL scheme 'ftp'"),
    url_case("postgres scheme", "postgresql://u:p@host/db", "unsupported warehouse URL scheme"),
    url_case("chdb relative path", "chdb://relative/path", "needs an absolute path"),
    url_case("chdb without slashes", "chdb:store", "needs an absolute path"),
    url_case(
        "chdb with cluster",
        "chdb:///tmp/x?cluster=main",
        "cluster mode needs a ClickHouse server URL",
    ),
    url_case("unknown option", "http://host/db?secure=1", "unknown URL option(s) secure"),
    url_case("two unknown options", "http://host/db?a=1&b=2", "unknown URL option(s) a, b"),
    url_case("server without host", "http:///db", "server URL has no host name"),
    url_case("port out of range", "http://host:99999/db", "server URL has an invalid port"),
    url_case("port not a number", "http://host:http/db", "server URL has an invalid port"),
    url_case(
        "database with semicolon",
        "http://host/db;drop",
        "database name 'db;drop' is not a valid identifier",
    ),
    url_case("database with space", "http://host/my%20db", "is not a valid identifier"),
    url_case(
        "database path nested", "http://host/a/b", "database name 'a/b' is not a valid identifier"
    ),
    url_case("database starting with digit", "http://host/1db", "is not a valid identifier"),
    url_case("cluster with quote", "http://host/db?cluster=a'b", "cluster name"),
    url_case("cluster with newline", "http://host/db?cluster=main%0A", "cluster name"),
    url_case("store path is a file", "chdb://{scratch}/a_file", "is a file, not a directory"),
    url_case(
        "store path under a file",
        "chdb://{scratch}/a_file/store",
        "cannot create the embedded store directory",
    ),
    url_case(
        "store path in /proc",
        "chdb:///proc/web_analytics_store",
        "cannot create the embedded store directory",
    ),
    url_case(
        "store path with a typo",
        "chdb://{scratch}/stroe",
        "has no web analytics tables: run `ensure_schema()`",
        SchemaMissing,
    ),
    url_case(
        "unreachable server",
        "http://127.0.0.1:9/db",
        "cannot reach http://default@127.0.0.1:9/db",
        ConnectionFailed,
    ),
    Case(
        "connect URL and store path",
        "lock timeout text",
        lock_timeout("soon"),
        ConfigurationError,
        "is not a number of seconds",
    ),
    Case(
        "connect URL and store path",
        "lock timeout 0",
        lock_timeout("0"),
        ConfigurationError,
        "must be between 0 and 86400",
    ),
    Case(
        "connect URL and store path",
        "lock timeout negative",
        lock_timeout("-5"),
        ConfigurationError,
        "must be between 0 and 86400",
    ),
    Case(
        "connect URL and store path",
        "lock timeout a year",
        lock_timeout("31536000"),
        ConfigurationError,
        "must be between 0 and 86400",
    ),
    Case(
        "connect URL and store path",
        "lock timeout nan",
        lock_timeout("nan"),
        ConfigurationError,
        "must be between 0 and 86400",
    ),
    Case(
        "connect URL and store path",
        "password kept out of the description",
        lambda warehouse, _: repr(web_analytics.connect("http://u:secret@host/db")),
        check=lambda text: "secret" not in text or pytest.fail(text),  # type: ignore[arg-type]
    ),
]


# --- teams -----------------------------------------------------------------------------------


def upserting(
    team_id: Any, timezone: Any = "UTC"
) -> Callable[[web_analytics.Warehouse, Path], Any]:
    return lambda warehouse, _: warehouse.upsert_team(team_id, timezone)


def team_case(name: str, team_id: Any, timezone: Any, text: str) -> Case:
    return Case("teams", name, upserting(team_id, timezone), ConfigurationError, text)


TEAM_CASES = [
    team_case("team 0", 0, "UTC", "team_id must be a positive integer, got 0"),
    team_case("team negative", -1, "UTC", "team_id must be a positive integer"),
    team_case("team 2**64", 2**64, "UTC", "team_id must be a positive integer"),
    team_case("team text", "1", "UTC", "team_id must be a positive integer, got '1'"),
    team_case("team float", 1.0, "UTC", "team_id must be a positive integer"),
    team_case("team bool", True, "UTC", "team_id must be a positive integer"),
    team_case("team None", None, "UTC", "team_id must be a positive integer"),
    team_case("timezone None", OTHER_TEAM, None, "unknown timezone None"),
    team_case("timezone empty", OTHER_TEAM, "", "unknown timezone ''"),
    team_case(
        "timezone made up", OTHER_TEAM, "Mars/Olympus_Mons", "unknown timezone 'Mars/Olympus_Mons'"
    ),
    team_case("timezone with newline", OTHER_TEAM, "UTC\n", "unknown timezone"),
    team_case("timezone path traversal", OTHER_TEAM, "../../etc/passwd", "unknown timezone"),
    team_case("timezone a number", OTHER_TEAM, 5, "unknown timezone 5"),
    team_case("timezone an offset", OTHER_TEAM, "+05:00", "unknown timezone"),
    team_case("timezone right/UTC", OTHER_TEAM, "right/UTC", "is not known to ClickHouse"),
    team_case(
        "timezone right/Europe/Paris",
        OTHER_TEAM,
        "right/Europe/Paris",
        "is not known to ClickHouse",
    ),
    Case(
        "teams",
        "unknown team read",
        lambda w, _: w.team(123456),
        ConfigurationError,
        "unknown team 123456",
    ),
    Case(
        "teams",
        "team() with text id",
        lambda w, _: w.team("1"),  # type: ignore[arg-type]
        ConfigurationError,
        "team_id must be a positive integer",
    ),
    Case(
        "teams",
        "enabled timezones of text ids",
        lambda w, _: w.enabled_team_timezones("12"),  # type: ignore[arg-type]
        ConfigurationError,
        "team_ids must be a list",
    ),
    Case(
        "teams",
        "enabled timezones of an unknown team",
        lambda w, _: w.enabled_team_timezones([123456]),
        ConfigurationError,
        "unknown team(s)",
    ),
    Case(
        "teams",
        "other team in Kathmandu",
        upserting(OTHER_TEAM, "Asia/Kathmandu"),
        check=lambda team: team.timezone == "Asia/Kathmandu" or pytest.fail(str(team)),
    ),
    Case(
        "teams",
        "other team back to UTC",
        upserting(OTHER_TEAM, "UTC"),
        check=lambda team: team.timezone == "UTC" or pytest.fail(str(team)),
    ),
]


# --- aggregation, gaps, cleanup --------------------------------------------------------------

AGG = "aggregate, gaps, cleanup"


def agg_case(name: str, call: Callable[[web_analytics.Warehouse], Any], text: str) -> Case:
    return Case(AGG, name, lambda warehouse, _: call(warehouse), ConfigurationError, text)


AGGREGATE_CASES = [
    agg_case(
        "aggregate days reversed",
        lambda w: w.aggregate(DAY_2, DAY_1),
        "first_day 2024-03-05 is after last_day 2024-03-04",
    ),
    agg_case(
        "aggregate text day",
        lambda w: w.aggregate("2024-03-04", DAY_2),  # type: ignore[arg-type]
        "first_day must be a datetime.date, got '2024-03-04'",
    ),
    agg_case(
        "aggregate datetime",
        lambda w: w.aggregate(datetime(2024, 3, 4), DAY_2),
        "first_day must be a datetime.date",
    ),
    agg_case(
        "aggregate None day",
        lambda w: w.aggregate(None, DAY_2),  # type: ignore[arg-type]
        "first_day must be a datetime.date",
    ),
    agg_case(
        "aggregate year 9999",
        lambda w: w.aggregate(date(9999, 12, 30), date(9999, 12, 31)),
        "outside the days ClickHouse can store",
    ),
    agg_case(
        "aggregate year 1900",
        lambda w: w.aggregate(date(1900, 1, 1), date(1900, 1, 2)),
        "outside the days ClickHouse can store",
    ),
    agg_case(
        "aggregate team_ids text",
        lambda w: w.aggregate(DAY_1, DAY_2, team_ids="1"),  # type: ignore[arg-type]
        "team_ids must be a list",
    ),
    agg_case(
        "aggregate team_ids with 0",
        lambda w: w.aggregate(DAY_1, DAY_2, team_ids=[0]),
        "each of team_ids must be a positive integer",
    ),
    agg_case(
        "aggregate team_ids 2**64",
        lambda w: w.aggregate(DAY_1, DAY_2, team_ids=[2**64]),
        "each of team_ids must be a positive integer",
    ),
    agg_case(
        "aggregate unknown team",
        lambda w: w.aggregate(DAY_1, DAY_2, team_ids=[123456]),
        "unknown team(s) [123456]",
    ),
    agg_case(
        "aggregate unknown preset",
        lambda w: w.aggregate(DAY_1, DAY_2, settings_preset="turbo"),
        "unknown ClickHouse settings preset 'turbo'",
    ),
    agg_case(
        "find_gaps today as text",
        lambda w: w.find_gaps(today="2024-03-06"),  # type: ignore[arg-type]
        "today must be a datetime.date, got '2024-03-06'",
    ),
    agg_case(
        "find_gaps today a datetime",
        lambda w: w.find_gaps(today=datetime(2024, 3, 6)),
        "today must be a datetime.date",
    ),
    agg_case(
        "find_gaps days_back 0",
        lambda w: w.find_gaps(days_back=0),
        "days_back must be a whole number from 1 to 3650, got 0",
    ),
    agg_case(
        "find_gaps days_back negative",
        lambda w: w.find_gaps(days_back=-3),
        "days_back must be a whole number",
    ),
    agg_case(
        "find_gaps days_back 3651",
        lambda w: w.find_gaps(days_back=3651),
        "days_back must be a whole number",
    ),
    agg_case(
        "find_gaps days_back text",
        lambda w: w.find_gaps(days_back="7"),  # type: ignore[arg-type]
        "days_back must be a whole number",
    ),
    agg_case(
        "find_gaps days_back float",
        lambda w: w.find_gaps(days_back=7.0),  # type: ignore[arg-type]
        "days_back must be a whole number",
    ),
    agg_case(
        "find_gaps days_back bool",
        lambda w: w.find_gaps(days_back=True),
        "days_back must be a whole number",
    ),
    agg_case(
        "find_gaps team_ids with -1",
        lambda w: w.find_gaps(team_ids=[-1]),
        "each of team_ids must be a positive integer",
    ),
    agg_case(
        "find_gaps team_ids an int",
        lambda w: w.find_gaps(team_ids=1),  # type: ignore[arg-type]
        "team_ids must be a list",
    ),
    agg_case(
        "update_coverage days_back 0",
        lambda w: w.update_coverage(days_back=0),
        "days_back must be a whole number",
    ),
    agg_case(
        "update_coverage today text",
        lambda w: w.update_coverage(today="2024-03-06"),  # type: ignore[arg-type]
        "today must be a datetime.date",
    ),
    agg_case(
        "cleanup retention 0",
        lambda w: w.cleanup_backfill_records(retention_days=0),
        "retention_days must be a whole number from 1 to 3650, got 0",
    ),
    agg_case(
        "cleanup retention 3651",
        lambda w: w.cleanup_backfill_records(retention_days=3651),
        "retention_days must be a whole number",
    ),
    agg_case(
        "cleanup retention text",
        lambda w: w.cleanup_backfill_records(retention_days="90"),  # type: ignore[arg-type]
        "retention_days must be a whole number",
    ),
    agg_case("backfill records reversed", lambda w: w.backfill_records(DAY_2, DAY_1), "is after"),
    agg_case(
        "backfill records year 9999",
        lambda w: w.backfill_records(date(9999, 1, 1), date(9999, 1, 2)),
        "outside the days ClickHouse can store",
    ),
    agg_case(
        "compare unknown table",
        lambda w: w.compare_with_raw("events", DAY_1, DAY_2),
        "table must be one of",
    ),
    agg_case(
        "compare reversed",
        lambda w: w.compare_with_raw("web_pre_aggregated_stats", DAY_2, DAY_1),
        "is after",
    ),
    agg_case(
        "check_accuracy text days",
        lambda w: w.check_accuracy("a", "b"),  # type: ignore[arg-type]
        "first_day must be a datetime.date",
    ),
    Case(
        AGG,
        "find_gaps of an old window",
        lambda w, _: w.find_gaps(days_back=2, today=date(2024, 3, 6)),
        check=lambda report: None,
    ),
    Case(
        AGG,
        "aggregate a day without events",
        lambda w, _: w.aggregate(date(2024, 3, 1), date(2024, 3, 1)),
        check=lambda result: None,
    ),
    Case(
        AGG,
        "aggregate the stored days again",
        lambda w, _: w.aggregate(DAY_1, DAY_2),
        check=lambda result: None,
    ),
]


# --- dashboard reads ---------------------------------------------------------------------------

DASH = "dashboard reads"


def dash_case(name: str, call: Callable[[web_analytics.Warehouse], Any], text: str) -> Case:
    return Case(DASH, name, lambda warehouse, _: call(warehouse), ConfigurationError, text)


def zeros(overview: Any) -> None:
    assert (overview.views, overview.visitors, overview.sessions) == (0, 0, 0), overview


DASHBOARD_CASES = [
    dash_case(
        "overview far future",
        lambda w: w.overview(1, date(9999, 12, 30), date(9999, 12, 31)),
        "date_from 9999-12-30 is outside the days ClickHouse can store",
    ),
    dash_case(
        "overview far future, raw",
        lambda w: w.overview(1, date(9999, 12, 30), date(9999, 12, 31), source="raw"),
        "outside the days ClickHouse can store",
    ),
    dash_case(
        "overview far future, pre-aggregated",
        lambda w: w.overview(1, date(9999, 12, 30), date(9999, 12, 31), source="preaggregated"),
        "outside the days ClickHouse can store",
    ),
    dash_case(
        "overview from year 1",
        lambda w: w.overview(1, date(1, 1, 1), DAY_2),
        "date_from 0001-01-01 is outside",
    ),
    dash_case(
        "overview to year 2149",
        lambda w: w.overview(1, DAY_1, date(2149, 6, 6)),
        "date_to 2149-06-06 is outside",
    ),
    dash_case(
        "overview before 1970",
        lambda w: w.overview(1, date(1969, 12, 31), DAY_2),
        "is outside the days ClickHouse can store",
    ),
    dash_case(
        "overview reversed",
        lambda w: w.overview(1, DAY_2, DAY_1),
        "date_from 2024-03-05 is after date_to 2024-03-04",
    ),
    dash_case(
        "overview text dates",
        lambda w: w.overview(1, "2024-03-04", "2024-03-05"),  # type: ignore[arg-type]
        "date_from must be a datetime.date",
    ),
    dash_case(
        "overview datetimes",
        lambda w: w.overview(1, datetime(2024, 3, 4), datetime(2024, 3, 5)),
        "date_from must be a datetime.date",
    ),
    dash_case(
        "overview team 0",
        lambda w: w.overview(0, DAY_1, DAY_2),
        "team_id must be a positive integer",
    ),
    dash_case(
        "overview team text",
        lambda w: w.overview("1", DAY_1, DAY_2),  # type: ignore[arg-type]
        "team_id must be a positive integer",
    ),
    dash_case(
        "overview unknown team", lambda w: w.overview(123456, DAY_1, DAY_2), "unknown team 123456"
    ),
    dash_case(
        "overview unknown source",
        lambda w: w.overview(1, DAY_1, DAY_2, source="cache"),
        "source must be one of",
    ),
    dash_case(
        "overview source None",
        lambda w: w.overview(1, DAY_1, DAY_2, source=None),  # type: ignore[arg-type]
        "source must be one of",
    ),
    dash_case(
        "breakdown unknown dimension",
        lambda w: w.breakdown(1, "password", DAY_1, DAY_2),
        "password",
    ),
    dash_case(
        "breakdown dimension with SQL",
        lambda w: w.breakdown(1, "pathname; DROP TABLE events", DAY_1, DAY_2),
        "DROP TABLE",
    ),
    dash_case("breakdown dimension None", lambda w: w.breakdown(1, None, DAY_1, DAY_2), "None"),  # type: ignore[arg-type]
    dash_case(
        "breakdown limit 0",
        lambda w: w.breakdown(1, "pathname", DAY_1, DAY_2, limit=0),
        "limit must be a whole number",
    ),
    dash_case(
        "breakdown limit 2**32",
        lambda w: w.breakdown(1, "pathname", DAY_1, DAY_2, limit=2**32),
        "limit must be a whole number",
    ),
    dash_case(
        "breakdown limit text",
        lambda w: w.breakdown(1, "pathname", DAY_1, DAY_2, limit="10"),  # type: ignore[arg-type]
        "limit must be a whole number",
    ),
    dash_case(
        "breakdown limit negative",
        lambda w: w.breakdown(1, "pathname", DAY_1, DAY_2, limit=-1),
        "limit must be a whole number",
    ),
    dash_case(
        "breakdown far future",
        lambda w: w.breakdown(1, "pathname", date(9999, 1, 1), date(9999, 1, 2)),
        "outside the days ClickHouse can store",
    ),
    dash_case("breakdown reversed", lambda w: w.breakdown(1, "pathname", DAY_2, DAY_1), "is after"),
    dash_case(
        "breakdown unknown source",
        lambda w: w.breakdown(1, "pathname", DAY_1, DAY_2, source="x"),
        "source must be one of",
    ),
    Case(
        DASH,
        "overview of the last supported days",
        lambda w, _: w.overview(1, date(2105, 12, 31), date(2106, 1, 1)),
        check=zeros,
    ),
    Case(
        DASH,
        "overview of a future year",
        lambda w, _: w.overview(1, date(2100, 1, 1), date(2100, 12, 31)),
        check=zeros,
    ),
    Case(
        DASH,
        "overview of the first supported day",
        lambda w, _: w.overview(1, date(1970, 1, 2), date(1970, 1, 2)),
        check=zeros,
    ),
    Case(
        DASH,
        "overview of a ten-year range",
        lambda w, _: w.overview(1, date(2020, 1, 1), date(2029, 12, 31)),
        check=lambda o: o.views == 3 or pytest.fail(str(o)),
    ),
    Case(
        DASH,
        "breakdown with limit 1",
        lambda w, _: w.breakdown(1, "pathname", DAY_1, DAY_2, limit=1),
        check=lambda rows: len(list(rows)) == 1 or pytest.fail(str(rows)),  # type: ignore[arg-type]
    ),
]


# --- ClickHouse settings --------------------------------------------------------------------

SETTINGS = "ClickHouse settings"


def settings_case(name: str, extra: Any, text: str) -> Case:
    return Case(
        SETTINGS,
        name,
        lambda warehouse, _: warehouse.aggregate(DAY_1, DAY_1, extra_settings=extra),
        ConfigurationError,
        text,
    )


def settings_accepted(name: str, extra: Any, expected: dict[str, Any]) -> Case:
    def check(resolved: dict[str, Any]) -> None:
        assert {key: resolved[key] for key in expected} == expected, resolved

    return Case(
        SETTINGS, name, lambda warehouse, _: resolve_settings("default", extra), check=check
    )


NOT_ALLOWED = "is not one a pre-aggregation may change; allowed: "
SETTINGS_CASES = [
    settings_case("readonly=1 as a mapping", {"readonly": 1}, f"'readonly' {NOT_ALLOWED}"),
    settings_case("readonly=1 as text", "readonly=1", f"'readonly' {NOT_ALLOWED}"),
    settings_case("readonly=2", {"readonly": 2}, "'readonly' is not one"),
    settings_case("profile", {"profile": "default"}, "'profile' is not one"),
    settings_case("allow_ddl", {"allow_ddl": 0}, "'allow_ddl' is not one"),
    settings_case("max_result_rows", {"max_result_rows": 1}, "'max_result_rows' is not one"),
    settings_case(
        "result_overflow_mode", "result_overflow_mode=break", "'result_overflow_mode' is not one"
    ),
    settings_case(
        "insert_deduplicate", {"insert_deduplicate": 0}, "'insert_deduplicate' is not one"
    ),
    settings_case("log_comment", {"log_comment": "x"}, "'log_comment' is not one"),
    settings_case("unknown setting", {"max_threadz": 4}, "'max_threadz' is not one"),
    settings_case("upper case name", {"MAX_THREADS": 4}, "'MAX_THREADS' is not one"),
    settings_case(
        "name with space", {"max threads": 4}, "name 'max threads' is not a valid identifier"
    ),
    settings_case("name with newline", {"max_threads\n": 4}, "is not a valid identifier"),
    settings_case("name a number", {1: 4}, "name 1 is not a valid identifier"),
    settings_case(
        "value with semicolon",
        {"max_threads": "4; DROP TABLE events"},
        "must be a number or a simple word",
    ),
    settings_case(
        "value with quote", {"join_algorithm": "hash'"}, "must be a number or a simple word"
    ),
    settings_case("value None", {"max_threads": None}, "must be a number or a simple word"),
    settings_case("value a list", {"max_threads": [4]}, "must be a number or a simple word"),
    settings_case("value bool", {"max_threads": True}, "must be a number or a simple word"),
    settings_case("value with space", "max_threads=4 4", "must be a number or a simple word"),
    settings_case("text without =", "max_threads", "is not of the form name=value"),
    settings_case("text with an empty item", "max_threads=4,,", "is not of the form name=value"),
    settings_case("text with a comment", "max_threads=4 -- x", "must be a number or a simple word"),
    settings_case("settings a list", ["max_threads=4"], "must be a mapping of name to value"),
    settings_case("settings a number", 4, "must be a mapping of name to value"),
    Case(
        SETTINGS,
        "a word where ClickHouse wants a number",
        lambda w, _: w.aggregate(DAY_1, DAY_1, extra_settings={"max_rows_to_read": "many"}),
        QueryFailed,
        "Cannot parse input",
    ),
    settings_accepted("max_threads as text", "max_threads=2", {"max_threads": 2}),
    settings_accepted(
        "float ratio",
        {"max_bytes_ratio_before_external_group_by": "0.5"},
        {"max_bytes_ratio_before_external_group_by": 0.5},
    ),
    settings_accepted("word value", {"join_algorithm": "hash"}, {"join_algorithm": "hash"}),
    settings_accepted(
        "spaces around text items",
        " max_threads = 2 , max_block_size=8192 ",
        {"max_threads": 2, "max_block_size": 8192},
    ),
    settings_accepted("empty text", "", {"max_threads": 4}),
    settings_accepted(
        "every allowed setting", {name: 1 for name in ALLOWED_SETTINGS}, {"max_threads": 1}
    ),
    Case(
        SETTINGS,
        "aggregation with an allowed extra setting",
        lambda w, _: w.aggregate(DAY_1, DAY_2, extra_settings={"max_threads": 1}),
        check=lambda result: None,
    ),
]


# --- run config -------------------------------------------------------------------------------

RUN_CONFIG = "run config"


def config_case(name: str, build: Callable[[], Any], text: str) -> Case:
    return Case(RUN_CONFIG, name, lambda warehouse, _: build(), pydantic.ValidationError, text)


def executing(
    job: str, run_config: dict[str, Any]
) -> Callable[[web_analytics.Warehouse, Path], Any]:
    """Run ``job`` of the project's definitions over the shared store with ``run_config``."""

    def call(warehouse: web_analytics.Warehouse, _: Path) -> Any:
        url = f"chdb://{warehouse.target.path}"
        return definitions(url).resolve_job_def(job).execute_in_process(run_config=run_config)

    return call


CONFIG_CASES = [
    config_case(
        "team_ids with 0",
        lambda: PreAggregationConfig(team_ids=[0]),
        "each of team_ids must be a positive integer",
    ),
    config_case(
        "team_ids with 2**64",
        lambda: PreAggregationConfig(team_ids=[2**64]),
        "each of team_ids must be a positive integer",
    ),
    config_case("team_ids text", lambda: PreAggregationConfig(team_ids="abc"), "team_ids"),  # type: ignore[arg-type]
    config_case(
        "unknown preset",
        lambda: PreAggregationConfig(clickhouse_settings_preset="turbo"),  # type: ignore[arg-type]
        "'default' or 'high_performance'",
    ),
    config_case(
        "readonly in extra settings",
        lambda: PreAggregationConfig(extra_clickhouse_settings={"readonly": 1}),
        "'readonly' is not one a pre-aggregation may change",
    ),
    config_case(
        "profile in extra settings",
        lambda: PreAggregationConfig(extra_clickhouse_settings={"profile": "x"}),
        "'profile' is not one",
    ),
    config_case(
        "injection in a setting value",
        lambda: PreAggregationConfig(extra_clickhouse_settings={"max_threads": "1; DROP"}),
        "must be a number or a simple word",
    ),
    config_case("gaps days_back 0", lambda: GapsConfig(days_back=0), "greater than or equal to 1"),
    config_case(
        "gaps days_back 3651", lambda: GapsConfig(days_back=3651), "less than or equal to 3650"
    ),
    config_case("gaps days_back text", lambda: GapsConfig(days_back="week"), "valid integer"),  # type: ignore[arg-type]
    config_case(
        "gaps team_ids negative",
        lambda: GapsConfig(team_ids=[-1]),
        "each of team_ids must be a positive integer",
    ),
    config_case(
        "window days_back 0", lambda: WindowConfig(days_back=0), "greater than or equal to 1"
    ),
    config_case(
        "window days_back 10000",
        lambda: WindowConfig(days_back=10_000),
        "less than or equal to 3650",
    ),
    config_case("window days_back float", lambda: WindowConfig(days_back=1.5), "valid integer"),  # type: ignore[arg-type]
    config_case(
        "cleanup retention 0", lambda: CleanupConfig(retention_days=0), "greater than or equal to 1"
    ),
    config_case(
        "cleanup retention negative",
        lambda: CleanupConfig(retention_days=-30),
        "greater than or equal to 1",
    ),
    Case(
        RUN_CONFIG,
        "gaps job days_back text",
        executing("show_data_gaps_job", {"days_back": "x"}),
        dg.DagsterInvalidConfigError,
        'Value "x"',
    ),
    Case(
        RUN_CONFIG,
        "gaps job unknown field",
        executing("show_data_gaps_job", {"day_back": 3}),
        dg.DagsterInvalidConfigError,
        "day_back",
    ),
    Case(
        RUN_CONFIG,
        "cleanup job retention text",
        executing(
            "cleanup_backfill_records_job",
            {"ops": {"cleanup_old_backfill_records_op": {"config": {"retention_days": "90"}}}},
        ),
        dg.DagsterInvalidConfigError,
        "retention_days",
    ),
    Case(
        RUN_CONFIG,
        "cleanup job unknown op",
        executing("cleanup_backfill_records_job", {"ops": {"no_such_op": {}}}),
        dg.DagsterInvalidConfigError,
        "no_such_op",
    ),
    Case(
        RUN_CONFIG,
        "valid gaps config",
        lambda w, _: GapsConfig(days_back=3, team_ids=[1]),
        check=lambda config: config.team_ids == [1] or pytest.fail(str(config)),
    ),
    Case(
        RUN_CONFIG,
        "valid extra settings",
        lambda w, _: PreAggregationConfig(extra_clickhouse_settings={"max_threads": "2"}),
        check=lambda config: (
            config.extra_clickhouse_settings == {"max_threads": 2} or pytest.fail(str(config))
        ),
    ),
]

CASES = [
    *URL_CASES,
    *TEAM_CASES,
    *EVENT_CASES,
    *FILE_CASES,
    *AGGREGATE_CASES,
    *DASHBOARD_CASES,
    *SETTINGS_CASES,
    *CONFIG_CASES,
]


def test_at_least_150_cases_in_every_class() -> None:
    assert len(CASES) >= 150
    assert {case.kind for case in CASES} == set(CLASSES)
    assert len({(case.kind, case.name) for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.kind}: {c.name}" for c in CASES])
def test_bad_input(
    case: Case,
    store: Store,
    baseline: tuple[object, ...],
    capfd: pytest.CaptureFixture[str],
) -> None:
    counts = COUNTS[case.kind]
    counts["tried"] += 1
    file_in(store.scratch)
    if case.other_store:
        store.release()
    try:
        outcome = run_case(case, store)
    finally:
        if case.other_store:
            store.hold()
    if case.kind != RUN_CONFIG:  # Dagster's own run logs go to stderr by design
        stderr = capfd.readouterr().err
        assert "Traceback" not in stderr and "Unexpected Http" not in stderr, stderr
    if store.invariant() != baseline:
        counts["lost"] += 1
        pytest.fail(f"stored rows changed after {case.name!r}")
    counts[outcome] += 1


def run_case(case: Case, store: Store) -> str:
    """Run one case and check its answer: "rejected" or "accepted"."""
    if case.error is None:
        result = case.call(store.warehouse, store.scratch)
        if case.check is not None:
            case.check(result)
        return "rejected" if case.refused_in_report else "accepted"
    with pytest.raises(case.error) as raised:
        case.call(store.warehouse, store.scratch)
    message = str(raised.value)
    assert case.text in message
    if isinstance(raised.value, web_analytics.WarehouseError):
        assert "\n" not in message.strip(), message  # one line
    return "rejected"


def test_readonly_is_refused_before_any_query_and_later_aggregations_work(
    store: Store, baseline: tuple[object, ...]
) -> None:
    before = store.warehouse.backfill_records(DAY_1, DAY_2)
    with pytest.raises(ConfigurationError, match="'readonly' is not one"):
        store.warehouse.aggregate(DAY_1, DAY_2, extra_settings={"readonly": 1})
    assert store.warehouse.backfill_records(DAY_1, DAY_2) == before  # no attempt recorded
    result = store.warehouse.aggregate(DAY_1, DAY_2)
    assert result.failed_teams == {} and [d.day for d in result.days] == [DAY_1, DAY_2]
    assert store.invariant() == baseline
    assert len(store.warehouse.backfill_records(DAY_1, DAY_2)) > len(before)


def test_a_far_future_range_read_through_auto_is_refused_in_one_line(store: Store) -> None:
    with pytest.raises(ConfigurationError) as raised:
        store.warehouse.overview(1, date(9999, 12, 30), date(9999, 12, 31))
    assert str(raised.value) == (
        "date_from 9999-12-30 is outside the days ClickHouse can store: use a date from "
        "1970-01-02 to 2106-01-01"
    )
    assert not isinstance(raised.value, OverflowError)


def test_a_store_path_that_cannot_be_a_store_fails_once_without_retries(tmp_path: Path) -> None:
    """A path no retry can fix is a ConfigurationError (Dagster does not retry it), raised
    at the first try rather than after the retry policy's backoff."""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for url in (f"chdb://{blocker}", f"chdb://{blocker}/store", "chdb:///proc/web_analytics"):
        started = datetime.now()
        with pytest.raises(ConfigurationError):
            web_analytics.connect(url).summary()
        assert datetime.now() - started < timedelta(seconds=2)


def test_load_events_op_reports_duplicates(store: Store) -> None:
    from web_analytics.orchestration.jobs import load_events_job
    from web_analytics.orchestration.resources import ClickhouseCluster

    path = store.scratch / "redelivered.jsonl"
    events = [good_event(), good_event()]
    store.warehouse.insert_events(events)
    path.write_text("\n".join(json.dumps(e) for e in [*events, good_event(), {"team_id": 0}]))
    result = load_events_job.execute_in_process(
        run_config={"ops": {"load_events_op": {"config": {"path": str(path)}}}},
        resources={"clickhouse": ClickhouseCluster(url=store.url)},
    )
    assert result.output_for_node("load_events_op") == 1
    [materialization] = [
        event.event_specific_data.metadata  # type: ignore[union-attr]
        for event in result.all_node_events
        if event.event_type_value == "STEP_OUTPUT"
    ]
    assert materialization["duplicates"].value == 2
    assert materialization["rejected"].value == 1


def test_an_unreachable_server_fails_in_one_line_without_driver_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING"), pytest.raises(ConnectionFailed) as raised:
        web_analytics.connect("http://127.0.0.1:9/db").summary()
    assert "\n" not in str(raised.value)
    assert "check the host, the port and that the server is running" in str(raised.value)
    noisy = [r for r in caplog.records if r.name.startswith(("clickhouse_connect", "urllib3"))]
    assert noisy == [], [r.getMessage() for r in noisy]
