"""Automation settings read from environment variables, validated once at load time."""

import os
from dataclasses import dataclass

LOOKBACK_ENV = "WEB_ANALYTICS_BACKFILL_LOOKBACK_DAYS"
MAX_DAYS_PER_TICK_ENV = "WEB_ANALYTICS_BACKFILL_MAX_DAYS_PER_TICK"
SENSOR_INTERVAL_ENV = "WEB_ANALYTICS_BACKFILL_SENSOR_INTERVAL_SECONDS"
RETENTION_ENV = "WEB_ANALYTICS_BACKFILL_RETENTION_DAYS"

SIX_HOURS = 6 * 3600


def _whole_number(name: str, default: int, low: int, high: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    if not raw.strip().isdigit() or not low <= int(raw) <= high:
        raise ValueError(f"{name}={raw!r} must be a whole number from {low} to {high}")
    return int(raw)


@dataclass(frozen=True)
class AutomationSettings:
    lookback_days: int
    max_days_per_tick: int
    sensor_interval_seconds: int
    retention_days: int

    @classmethod
    def from_environment(cls) -> "AutomationSettings":
        return cls(
            lookback_days=_whole_number(LOOKBACK_ENV, 30, 1, 3650),
            max_days_per_tick=_whole_number(MAX_DAYS_PER_TICK_ENV, 14, 1, 3650),
            sensor_interval_seconds=_whole_number(SENSOR_INTERVAL_ENV, SIX_HOURS, 5, 7 * 86400),
            retention_days=_whole_number(RETENTION_ENV, 90, 1, 3650),
        )


automation = AutomationSettings.from_environment()
