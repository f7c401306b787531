"""The project's settings, read from the environment once (by ``definitions.py``) into one
validated object that the definitions are built from and that ops and sensors receive as the
``web_analytics_settings`` resource."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import date
from typing import Any, cast

import dagster as dg
from annotated_types import Ge, Le
from pydantic import Field, field_validator
from pydantic.fields import FieldInfo

from web_analytics.warehouse.errors import ConfigurationError
from web_analytics.warehouse.validation import (
    DEFAULT_LOOKBACK_DAYS,
    DEFAULT_RETENTION_DAYS,
    MAX_WINDOW_DAYS,
)

START_DATE_ENV = "WEB_ANALYTICS_START_DATE"
MAX_DAYS_PER_RUN_ENV = "WEB_ANALYTICS_MAX_DAYS_PER_RUN"
LOOKBACK_ENV = "WEB_ANALYTICS_BACKFILL_LOOKBACK_DAYS"
MAX_DAYS_PER_TICK_ENV = "WEB_ANALYTICS_BACKFILL_MAX_DAYS_PER_TICK"
SENSOR_INTERVAL_ENV = "WEB_ANALYTICS_BACKFILL_SENSOR_INTERVAL_SECONDS"
RETENTION_ENV = "WEB_ANALYTICS_BACKFILL_RETENTION_DAYS"
AUTOMATION_ENV = "WEB_ANALYTICS_AUTOMATION"
MAX_FAILURES_ENV = "WEB_ANALYTICS_BACKFILL_MAX_FAILURES"
MAX_RUNTIME_ENV = "WEB_ANALYTICS_MAX_RUNTIME_SECONDS"

SIX_HOURS = 6 * 3600
WEEK_SECONDS = 7 * 86400


class WebAnalyticsSettings(dg.ConfigurableResource):
    """Where the partitions start, how much one run and one sensor tick cover, which window
    the automation checks and how long status records are kept."""

    start_date: str = Field(default="2024-01-01", description="First daily partition (UTC).")
    max_days_per_run: int = Field(
        default=14,
        ge=0,
        le=MAX_WINDOW_DAYS,
        description="Days per run in a backfill; 0: the whole range in one run.",
    )
    lookback_days: int = Field(
        default=DEFAULT_LOOKBACK_DAYS,
        ge=1,
        le=MAX_WINDOW_DAYS,
        description="UTC days before today that the sensor and the 02:00 schedule check.",
    )
    max_days_per_tick: int = Field(
        default=14, ge=1, le=MAX_WINDOW_DAYS, description="Days the sensor launches per tick."
    )
    sensor_interval_seconds: int = Field(
        default=SIX_HOURS, ge=5, le=WEEK_SECONDS, description="Backfill sensor interval."
    )
    retention_days: int = Field(
        default=DEFAULT_RETENTION_DAYS,
        ge=1,
        le=MAX_WINDOW_DAYS,
        description="Age after which backfill status records are deleted.",
    )
    max_failures: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Consecutive failures after which a day is reported as failing instead "
        "of relaunched.",
    )
    max_runtime_seconds: int = Field(
        default=4 * 3600,
        ge=60,
        le=WEEK_SECONDS,
        description="A pre-aggregation run still going after this long is failed by run "
        "monitoring, and its days count as failed.",
    )
    automation_running: bool = Field(
        default=True, description="Whether schedules and the sensor start running by default."
    )

    @field_validator("start_date")
    @classmethod
    def _valid_start_date(cls, value: str) -> str:
        date.fromisoformat(value)  # raises a ValueError naming the value
        return value

    @property
    def first_day(self) -> date:
        return date.fromisoformat(self.start_date)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> WebAnalyticsSettings:
        """The settings the ``WEB_ANALYTICS_*`` variables give, defaults for the unset ones;
        ``ConfigurationError`` naming the variable for a bad value."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field_name, variable in _VARIABLES.items():
            raw = (environ.get(variable) or "").strip()
            if raw:
                values[field_name] = _parse(variable, raw, cls.model_fields[field_name])
        try:
            return cls(**values)
        except Exception as error:  # pydantic's error lists the field and the bound
            name = _first_invalid_field(error)
            variable = _VARIABLES.get(name, name)
            raise ConfigurationError(
                f"{variable}={environ.get(variable)!r} is not valid: {_reason(error)}"
            ) from None


_VARIABLES = {
    "start_date": START_DATE_ENV,
    "max_days_per_run": MAX_DAYS_PER_RUN_ENV,
    "lookback_days": LOOKBACK_ENV,
    "max_days_per_tick": MAX_DAYS_PER_TICK_ENV,
    "sensor_interval_seconds": SENSOR_INTERVAL_ENV,
    "retention_days": RETENTION_ENV,
    "max_failures": MAX_FAILURES_ENV,
    "max_runtime_seconds": MAX_RUNTIME_ENV,
    "automation_running": AUTOMATION_ENV,
}


def _parse(variable: str, raw: str, field: FieldInfo) -> object:
    if field.annotation is bool:
        if raw.lower() not in ("running", "stopped"):
            raise ConfigurationError(f"{variable}={raw!r} must be 'running' or 'stopped'")
        return raw.lower() == "running"
    if field.annotation is int:
        low, high = _bounds(field)
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise ConfigurationError(
                f"{variable}={raw!r} must be a whole number from {low} to {high}"
            )
        return int(raw)
    return raw


def _bounds(field: FieldInfo) -> tuple[int, int]:
    """The ``ge`` and ``le`` bounds of a whole-number field."""
    low = next(bound.ge for bound in field.metadata if isinstance(bound, Ge))
    high = next(bound.le for bound in field.metadata if isinstance(bound, Le))
    return cast(int, low), cast(int, high)


def _first_invalid_field(error: Exception) -> str:
    errors = getattr(error, "errors", None)
    if callable(errors):
        for detail in errors():
            if detail.get("loc"):
                return str(detail["loc"][0])
    return ""


def _reason(error: Exception) -> str:
    errors = getattr(error, "errors", None)
    if callable(errors):
        return "; ".join(str(detail.get("msg", "")) for detail in errors())
    return str(error)
