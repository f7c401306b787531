"""ClickHouse query settings: named presets plus strictly parsed extra settings."""

from __future__ import annotations

import re
from collections.abc import Mapping

from web_analytics.warehouse.errors import ConfigurationError
from web_analytics.warehouse.validation import IDENTIFIER

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

# Settings a pre-aggregation may tune: threads, memory, spilling to disk, block sizes, join
# and aggregation strategies, and limits that stop a query. Nothing that changes what a
# session may do (readonly, profiles, users), what a query returns (overflow modes that
# truncate results) or where data goes.
ALLOWED_SETTINGS = frozenset(
    {
        "aggregation_memory_efficient_merge_threads",
        "distributed_aggregation_memory_efficient",
        "group_by_two_level_threshold",
        "group_by_two_level_threshold_bytes",
        "join_algorithm",
        "max_block_size",
        "max_bytes_before_external_group_by",
        "max_bytes_before_external_sort",
        "max_bytes_in_join",
        "max_bytes_ratio_before_external_group_by",
        "max_bytes_ratio_before_external_sort",
        "max_bytes_to_read",
        "max_execution_time",
        "max_insert_block_size",
        "max_insert_threads",
        "max_memory_usage",
        "max_rows_to_read",
        "max_threads",
        "min_insert_block_size_bytes",
        "min_insert_block_size_rows",
        "optimize_aggregation_in_order",
        "preferred_block_size_bytes",
    }
)
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
SettingValue = int | float | str
ExtraSettings = Mapping[str, SettingValue] | str | None


def _setting(name: object, value: object) -> tuple[str, SettingValue]:
    """One extra setting checked: an identifier name, a number or a simple word as value."""
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
        raise ConfigurationError(
            f"extra ClickHouse setting name {name!r} is not a valid identifier"
        )
    if name not in ALLOWED_SETTINGS:
        raise ConfigurationError(
            f"ClickHouse setting {name!r} is not one a pre-aggregation may change; "
            f"allowed: {', '.join(sorted(ALLOWED_SETTINGS))}"
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        return name, value
    text = value.strip() if isinstance(value, str) else ""
    if _NUMBER.fullmatch(text):
        return name, float(text) if "." in text else int(text)
    if IDENTIFIER.fullmatch(text):
        return name, text
    raise ConfigurationError(
        f"value {value!r} of ClickHouse setting {name!r} must be a number or a simple word"
    )


def parse_extra_settings(extra: ExtraSettings) -> dict[str, SettingValue]:
    """Extra settings as a mapping, or as the text ``"name=value,name=value"``: names are
    identifiers, values numbers or simple words.

    Anything else (quotes, spaces inside values, semicolons, comments) raises
    ``ConfigurationError`` before any query runs.
    """
    if extra is None:
        return {}
    if isinstance(extra, Mapping):
        return dict(_setting(name, value) for name, value in extra.items())
    if not isinstance(extra, str):
        raise ConfigurationError(
            f"extra ClickHouse settings must be a mapping of name to value, got {extra!r}"
        )
    if not extra.strip():
        return {}
    parsed: dict[str, SettingValue] = {}
    for item in extra.split(","):
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep:
            raise ConfigurationError(
                f"extra ClickHouse setting {item.strip()!r} is not of the form name=value"
            )
        parsed.update([_setting(name, value)])
    return parsed


def resolve_settings(
    preset: str = "default", extra: ExtraSettings = None
) -> dict[str, SettingValue]:
    """Settings of a preset, overridden by the checked ``extra`` settings."""
    if preset not in PRESETS:
        raise ConfigurationError(
            f"unknown ClickHouse settings preset {preset!r}: choose one of {', '.join(PRESETS)}"
        )
    return {**PRESETS[preset], **parse_extra_settings(extra)}
