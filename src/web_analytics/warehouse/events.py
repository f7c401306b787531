"""Turning PostHog-shaped event dicts into rows of the canonical ``events`` table."""

from __future__ import annotations

import json
import uuid as uuid_module
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
    """What ``insert_events`` did: rows stored, and each rejected event with its reason."""

    inserted: int
    rejected: list[RejectedEvent] = field(default_factory=list)


def _text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidEvent(f"{name} must be a string, got {type(value).__name__}")


def _timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidEvent(f"timestamp {value!r} is not ISO-8601") from None
    else:
        raise InvalidEvent(f"timestamp must be an ISO-8601 string or a datetime, got {value!r}")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _team_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEvent(f"team_id must be a positive integer, got {value!r}")
    if value <= 0:
        raise InvalidEvent(f"team_id must be a positive integer, got {value}")
    return value


@dataclass(frozen=True)
class UnparsableLine:
    """A line of a JSON-lines file that is not JSON; rejected like any invalid event."""

    error: str


# Stands for a blank line of a JSON-lines file: skipped, but it keeps positions equal to
# line indexes.
BLANK_LINE = object()


def read_json_lines(path: Path) -> Iterator[Any]:
    """Each line of ``path`` parsed as JSON, in order (``BLANK_LINE`` for blank lines)."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                yield BLANK_LINE
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as error:
                yield UnparsableLine(f"not valid JSON: {error.msg} at column {error.colno}")


def normalize_event(raw: Any) -> tuple[Any, ...]:
    """One row of the ``events`` table (columns as in ``EVENT_COLUMN_NAMES`` minus inserted_at)."""
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
    timestamp = _timestamp(raw["timestamp"])
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
            raise InvalidEvent(f"{prop} must be a non-negative integer, got {value!r}")
        else:
            row[column] = value
    if row["current_url"] and not (row["pathname"] and row["host"]):
        url = urlsplit(row["current_url"])
        row["pathname"] = row["pathname"] or url.path or "/"
        row["host"] = row["host"] or (url.hostname or "")
    if not row["referring_domain"] and properties.get("$referrer"):
        referrer = _text(properties.get("$referrer"), "$referrer")
        row["referring_domain"] = urlsplit(referrer).hostname or ""

    raw_uuid = raw.get("uuid")
    if raw_uuid is None:
        seed = f"{team_id}|{event}|{timestamp.isoformat()}|{distinct_id}|{row['session_id']}"
        event_uuid = uuid_module.uuid5(_UUID_NAMESPACE, seed)
    else:
        try:
            event_uuid = uuid_module.UUID(str(raw_uuid))
        except ValueError:
            raise InvalidEvent(f"uuid {raw_uuid!r} is not a UUID") from None
    row.update(
        uuid=event_uuid,
        team_id=team_id,
        event=event,
        timestamp=timestamp,
        distinct_id=distinct_id,
        person_id=person_id,
    )
    return tuple(row[column] for column in _COLUMNS)


def normalize_events(events: Iterable[Any]) -> tuple[list[tuple[Any, ...]], list[RejectedEvent]]:
    """Valid rows, and a ``RejectedEvent`` (position, reason) for each invalid event."""
    rows: list[tuple[Any, ...]] = []
    rejected: list[RejectedEvent] = []
    for position, raw in enumerate(events):
        if raw is BLANK_LINE:
            continue
        try:
            rows.append(normalize_event(raw))
        except InvalidEvent as error:
            rejected.append(RejectedEvent(position, str(error)))
    return rows, rejected


def rows_to_columns(rows: list[tuple[Any, ...]]) -> dict[str, list[Any]]:
    """Column-oriented form of normalized rows, ready for ``Session.insert_columns``."""
    return {name: [row[i] for row in rows] for i, name in enumerate(_COLUMNS)}
