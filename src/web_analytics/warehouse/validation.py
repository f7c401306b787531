"""Checks of what callers pass in, shared by every public entry point, so that each kind of
bad input is refused in one way with one message that says what to use instead."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from web_analytics.warehouse.errors import ConfigurationError

# A plain ClickHouse identifier: database, cluster and setting names (fullmatch: no newline).
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_UINT64 = 2**64 - 1

# Default windows, in days: what gap checks look back over, how long status records live,
# and what a diagnostic gap report shows.
DEFAULT_LOOKBACK_DAYS = 30
DEFAULT_RETENTION_DAYS = 90
DEFAULT_REPORT_DAYS = 7
MAX_WINDOW_DAYS = 3650
# Days ClickHouse can hold as a Date and, at any timezone, as a DateTime (1970 to 2106-02-07).
FIRST_SUPPORTED_DAY = date(1970, 1, 2)
LAST_SUPPORTED_DAY = date(2106, 1, 1)


def identifier(value: str, what: str) -> str:
    """``value`` if it is a plain ClickHouse identifier, else ``ConfigurationError``."""
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise ConfigurationError(f"{what} {value!r} is not a valid identifier (letters, digits, _)")
    return value


def whole_number(value: Any, name: str, low: int, high: int) -> int:
    """``value`` if it is an int (not a bool) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigurationError(
            f"{name} must be a whole number from {low} to {high}, got {value!r}"
        )
    return value


def team_id(value: Any, name: str = "team_id") -> int:
    """A positive team id that fits ClickHouse's UInt64."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_UINT64:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
    return value


def team_ids(values: Sequence[int] | None) -> list[int] | None:
    """``None`` (every team) or a list of valid team ids."""
    if values is None:
        return None
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise ConfigurationError(f"team_ids must be a list of team ids, got {values!r}")
    return [team_id(value, "each of team_ids") for value in values]


def day(value: Any, name: str) -> date:
    """A ``datetime.date`` (a ``datetime`` is refused: its time would be silently dropped)."""
    if isinstance(value, datetime) or not isinstance(value, date):
        raise ConfigurationError(f"{name} must be a datetime.date, got {value!r}")
    return value


def date_range(
    first: Any, last: Any, names: tuple[str, str] = ("date_from", "date_to")
) -> tuple[date, date]:
    """Both ends as dates ClickHouse can hold, the first not after the last; messages use the
    caller's ``names``."""
    first, last = day(first, names[0]), day(last, names[1])
    for name, value in zip(names, (first, last), strict=True):
        if not FIRST_SUPPORTED_DAY <= value <= LAST_SUPPORTED_DAY:
            raise ConfigurationError(
                f"{name} {value} is outside the days ClickHouse can store: use a date from "
                f"{FIRST_SUPPORTED_DAY} to {LAST_SUPPORTED_DAY}"
            )
    if first > last:
        raise ConfigurationError(f"{names[0]} {first} is after {names[1]} {last}")
    return first, last


def one_of(value: Any, choices: Sequence[str], name: str) -> str:
    if value not in choices:
        raise ConfigurationError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def timezone(name: Any) -> str:
    """An IANA timezone name that Python knows."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigurationError(
            f"unknown timezone {name!r}: use an IANA name such as 'Europe/London'"
        ) from None
    return str(name)
