"""Turning PostHog-shaped event dicts into rows of the canonical ``events`` table."""

from __future__ import annotations

import json
import uuid as uuid_module
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from web_analytics.warehouse.errors import ConfigurationError
from web_analytics.warehouse.schema import EVENT_COLUMN_NAMES

INSERT_BATCH_ROWS = 200_000
_COLUMNS = tuple(name for name in EVENT_COLUMN_NAMES if name != "inserted_at")
# Which column each string property lands in.
_STRING_PROPERTIES = {
    "$session_id": "session_id",
    "$current_url": "current_url",
    "$pathname": "pathname",
    "$host": "host",
    "$referring_domain": "referring_domain",
    "utm_source": "utm_source",
    "utm_medium": "utm_medium",
    "utm_campaign": "utm_campaign",
    "utm_term": "utm_term",
    "utm_content": "utm_content",
    "$browser": "browser",
    "$os": "os",
    "$device_type": "device_type",
    "$geoip_country_code": "country_code",
    "$geoip_subdivision_1_code": "region",
    "$geoip_city_name": "city",
}
_INTEGER_PROPERTIES = {"$viewport_width": "viewport_width", "$viewport_height": "viewport_height"}
# Deterministic ids for events sent without one, so a redelivery still counts once.
_UUID_NAMESPACE = uuid_module.UUID("1b4e28ba-2fa1-11d2-883f-0016d3cca427")


class InvalidEvent(ValueError):
    """An event that cannot be stored; the message says which field and why."""


@dataclass(frozen=True)
class RejectedEvent:
    position: int
    reason: str


@dataclass(frozen=True)
class InsertReport:
    """What ``insert_events`` did: new or corrected events stored, valid events already stored
    (redeliveries, skipped), and each rejected event with its position and reason."""

    inserted: int
    rejected: list[RejectedEvent] = field(default_factory=list)
    duplicates: int = 0


# The days the store can hold: the per-day summary's Date type ends on 2149-06-06, and an
# event of a day's first hour is also counted on the day before.
_STORABLE = (datetime(1970, 1, 2, tzinfo=UTC), datetime(2149, 6, 5, tzinfo=UTC))
_MAX_UINT64 = 2**64 - 1
EARLIEST_TIMESTAMP = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_AHEAD = timedelta(days=1)


@dataclass(frozen=True)
class TimestampBounds:
    """Which event timestamps are stored: from ``earliest`` to ``latest_ahead`` after the
    time of the load. Others are rejected, never wrapped to another day."""

    earliest: datetime = EARLIEST_TIMESTAMP
    latest_ahead: timedelta = LATEST_AHEAD

    def __post_init__(self) -> None:
        if not isinstance(self.earliest, datetime) or self.earliest.tzinfo is None:
            raise ConfigurationError(
                f"earliest must be a timezone-aware datetime, got {self.earliest!r}"
            )
        if not _STORABLE[0] <= self.earliest <= _STORABLE[1]:
            raise ConfigurationError(
                f"earliest must lie from {_STORABLE[0]:%Y-%m-%d} to {_STORABLE[1]:%Y-%m-%d}, "
                f"got {self.earliest.isoformat()}"
            )
        if not isinstance(self.latest_ahead, timedelta) or self.latest_ahead < timedelta(0):
            raise ConfigurationError(
                f"latest_ahead must be a timedelta of at least 0, got {self.latest_ahead!r}"
            )

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        """The first and last timestamps stored by a load that starts at ``now``."""
        if self.latest_ahead >= _STORABLE[1] - now:
            return self.earliest, _STORABLE[1]
        return self.earliest, now + self.latest_ahead


def _shown(value: Any) -> str:
    """``repr(value)``, cut short: a reason quotes what was sent, not megabytes of it."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def repaired(value: str) -> str:
    """``value`` as valid UTF-8: lone surrogates (a JSON escape such as "\\ud800", or a byte
    of a file that is not UTF-8) become U+FFFD; surrogate pairs become their character."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return repaired(value)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return str(value)
        except ValueError:  # more digits than Python converts
            pass
    raise InvalidEvent(f"{name} must be a string, got {_shown(value)}")


def _timestamp(value: Any, window: tuple[datetime, datetime]) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidEvent(f"timestamp {_shown(value)} is not ISO-8601") from None
    else:
        raise InvalidEvent(
            f"timestamp must be an ISO-8601 string or a datetime, got {_shown(value)}"
        )
    earliest, latest = window
    try:
        utc = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 with an offset
        utc = None
    if utc is None or not earliest <= utc <= latest:
        raise InvalidEvent(
            f"timestamp {parsed.isoformat()} is outside the supported range "
            f"{earliest:%Y-%m-%d %H:%M:%S} to {latest:%Y-%m-%d %H:%M:%S} UTC"
        )
    return utc


def _team_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidEvent(f"team_id must be a positive integer, got {_shown(value)}")
    if value > _MAX_UINT64:
        raise InvalidEvent(f"team_id {_shown(value)} does not fit UInt64 (at most 2**64 - 1)")
    return value


def _url_parts(url: str) -> tuple[str, str] | None:
    """Path (``/`` if empty) and host name of ``url``; ``None`` if it cannot be parsed."""
    try:
        parts = urlsplit(url)
        return parts.path or "/", parts.hostname or ""
    except ValueError:  # "http://[::1": Invalid IPv6 URL
        return None


@dataclass(frozen=True)
class UnparsableLine:
    """A line of a JSON-lines file that is not JSON; rejected like any invalid event."""

    error: str


# Stands for a blank line of a JSON-lines file: skipped, but it keeps positions equal to
# line indexes.
BLANK_LINE = object()


def read_json_lines(path: Path) -> Iterator[Any]:
    """Each line of ``path`` parsed as JSON, in order (``BLANK_LINE`` for blank lines).

    Lines are split on ``\\n`` only and decoded one at a time, so a byte that is not UTF-8
    costs nothing but itself: inside a string it becomes U+FFFD (see ``repaired``)."""
    with open(path, "rb") as handle:
        for index, line in enumerate(handle):
            text = line.decode("utf-8", "surrogateescape")
            if index == 0:
                text = text.removeprefix("\ufeff")  # the byte order mark some editors write
            if not text.strip():
                yield BLANK_LINE
                continue
            try:
                yield json.loads(text)
            except json.JSONDecodeError as error:
                yield UnparsableLine(f"not valid JSON: {error.msg} at column {error.colno}")
            except (ValueError, RecursionError) as error:  # huge numbers, deep nesting
                yield UnparsableLine(f"not valid JSON: {error}")


def normalize_event(raw: Any, window: tuple[datetime, datetime] | None = None) -> tuple[Any, ...]:
    """One row of the ``events`` table (columns as in ``EVENT_COLUMN_NAMES`` minus inserted_at).

    ``window`` is the first and last timestamp accepted (``TimestampBounds().window(now)`` if
    not given)."""
    if window is None:
        window = TimestampBounds().window(datetime.now(UTC))
    if isinstance(raw, UnparsableLine):
        raise InvalidEvent(raw.error)
    if not isinstance(raw, Mapping):
        raise InvalidEvent(f"an event must be an object, got {type(raw).__name__}")
    if "team_id" not in raw or raw["team_id"] is None:
        raise InvalidEvent("team_id is missing")
    team_id = _team_id(raw["team_id"])
    event = _text(raw.get("event"), "event")
    if not event:
        raise InvalidEvent("event name is missing")
    if "timestamp" not in raw:
        raise InvalidEvent("timestamp is missing")
    timestamp = _timestamp(raw["timestamp"], window)
    distinct_id = _text(raw.get("distinct_id"), "distinct_id")
    if not distinct_id:
        raise InvalidEvent("distinct_id is missing")
    person_id = _text(raw.get("person_id"), "person_id")
    properties = raw.get("properties") or {}
    if not isinstance(properties, Mapping):
        raise InvalidEvent("properties must be an object")

    row: dict[str, Any] = {column: "" for column in _STRING_PROPERTIES.values()}
    for prop, column in _STRING_PROPERTIES.items():
        row[column] = _text(properties.get(prop), prop)
    for prop, column in _INTEGER_PROPERTIES.items():
        value = properties.get(prop)
        if value is None:
            row[column] = 0
        elif isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
            raise InvalidEvent(f"{prop} must be a non-negative integer, got {_shown(value)}")
        else:
            row[column] = value
    # A URL that cannot be parsed is kept as sent; what would come from it stays empty.
    if row["current_url"] and not (row["pathname"] and row["host"]):
        path, host = _url_parts(row["current_url"]) or ("", "")
        row["pathname"] = row["pathname"] or path
        row["host"] = row["host"] or host
    if not row["referring_domain"] and properties.get("$referrer"):
        referrer = _text(properties.get("$referrer"), "$referrer")
        row["referring_domain"] = (_url_parts(referrer) or ("", ""))[1]

    raw_uuid = raw.get("uuid")
    if raw_uuid is None:
        seed = f"{team_id}|{event}|{timestamp.isoformat()}|{distinct_id}|{row['session_id']}"
        event_uuid = uuid_module.uuid5(_UUID_NAMESPACE, seed)
    elif isinstance(raw_uuid, uuid_module.UUID):
        event_uuid = raw_uuid
    else:
        try:
            event_uuid = uuid_module.UUID(_text(raw_uuid, "uuid"))
        except ValueError:
            raise InvalidEvent(f"uuid {_shown(raw_uuid)} is not a UUID") from None
    row.update(
        uuid=event_uuid,
        team_id=team_id,
        event=event,
        timestamp=timestamp,
        distinct_id=distinct_id,
        person_id=person_id,
    )
    return tuple(row[column] for column in _COLUMNS)


def normalize_events(
    events: Iterable[Any], window: tuple[datetime, datetime], first_position: int = 0
) -> tuple[list[tuple[Any, ...]], list[RejectedEvent]]:
    """Valid rows, and a ``RejectedEvent`` (position, reason) for each invalid event; positions
    count from ``first_position``."""
    rows: list[tuple[Any, ...]] = []
    rejected: list[RejectedEvent] = []
    for position, raw in enumerate(events, first_position):
        if raw is BLANK_LINE:
            continue
        try:
            rows.append(normalize_event(raw, window))
        except InvalidEvent as error:
            rejected.append(RejectedEvent(position, str(error)))
    return rows, rejected


def rows_to_columns(rows: list[tuple[Any, ...]]) -> dict[str, list[Any]]:
    """Column-oriented form of normalized rows (uuids as text), ready for ``loading``."""
    columns = {name: [row[i] for row in rows] for i, name in enumerate(_COLUMNS)}
    columns["uuid"] = [str(value) for value in columns["uuid"]]
    return columns
