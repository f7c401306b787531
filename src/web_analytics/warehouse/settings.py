"""ClickHouse query settings: named presets plus strictly parsed extra settings."""

from __future__ import annotations

import re

from web_analytics.warehouse.errors import ConfigurationError

GIB = 1024**3

PRESETS: dict[str, dict[str, int]] = {
    # Fits a 2-core laptop: spills large GROUP BY states to disk well before the memory limit.
    "default": {
        "max_memory_usage": 4 * GIB,
        "max_bytes_before_external_group_by": 1 * GIB,
        "max_threads": 4,
        "max_execution_time": 3600,
    },
    # For a dedicated server: more memory before spilling, more threads.
    "high_performance": {
        "max_memory_usage": 32 * GIB,
        "max_bytes_before_external_group_by": 16 * GIB,
        "max_threads": 16,
        "max_execution_time": 7200,
    },
}

_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_extra_settings(text: str | None) -> dict[str, int | float | str]:
    """Parse ``"name=value,name=value"``; names are identifiers, values numbers or simple words.

    Anything else (quotes, spaces inside values, semicolons, comments) raises
    ``ConfigurationError`` before any query runs.
    """
    if text is None or not text.strip():
        return {}
    parsed: dict[str, int | float | str] = {}
    for item in text.split(","):
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep:
            raise ConfigurationError(
                f"extra ClickHouse setting {item.strip()!r} is not of the form name=value"
            )
        if not _SETTING_NAME.match(name):
            raise ConfigurationError(
                f"extra ClickHouse setting name {name!r} is not a valid identifier"
            )
        if _NUMBER.match(value):
            parsed[name] = float(value) if "." in value else int(value)
        elif _WORD.match(value):
            parsed[name] = value
        else:
            raise ConfigurationError(
                f"value {value!r} of ClickHouse setting {name!r} must be a number or a simple word"
            )
    return parsed


def resolve_settings(
    preset: str = "default", extra: str | None = None
) -> dict[str, int | float | str]:
    """Settings of a preset, overridden by the parsed ``extra`` settings text."""
    if preset not in PRESETS:
        raise ConfigurationError(
            f"unknown ClickHouse settings preset {preset!r}: choose one of {', '.join(PRESETS)}"
        )
    return {**PRESETS[preset], **parse_extra_settings(extra)}
