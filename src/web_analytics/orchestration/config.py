"""Run configuration of the assets and ops, as typed Dagster ``Config`` classes."""

from typing import Any, Literal

import dagster as dg
from pydantic import Field, field_validator

from web_analytics.warehouse import validation
from web_analytics.warehouse.settings import parse_extra_settings
from web_analytics.warehouse.validation import DEFAULT_REPORT_DAYS, MAX_WINDOW_DAYS


class PreAggregationConfig(dg.Config):
    team_ids: list[int] | None = Field(
        default=None, description="Only these teams; other teams' rows are kept as they were."
    )
    clickhouse_settings_preset: Literal["default", "high_performance"] = "default"
    extra_clickhouse_settings: dict[str, Any] = Field(
        default={},
        description="Extra ClickHouse settings, setting name to a number or a simple word.",
    )

    @field_validator("extra_clickhouse_settings")
    @classmethod
    def _valid_settings(cls, settings: dict[str, Any]) -> dict[str, Any]:
        return parse_extra_settings(settings)

    @field_validator("team_ids")
    @classmethod
    def _valid_teams(cls, team_ids: list[int] | None) -> list[int] | None:
        return validation.team_ids(team_ids)


class WindowConfig(dg.Config):
    days_back: int | None = Field(
        default=None,
        ge=1,
        le=MAX_WINDOW_DAYS,
        description="UTC days before today; unset: the automation's lookback window.",
    )


class GapsConfig(dg.Config):
    days_back: int = Field(
        default=DEFAULT_REPORT_DAYS, ge=1, le=MAX_WINDOW_DAYS, description="UTC days before today"
    )
    team_ids: list[int] | None = Field(default=None, description="Only these teams")

    @field_validator("team_ids")
    @classmethod
    def _valid_teams(cls, team_ids: list[int] | None) -> list[int] | None:
        return validation.team_ids(team_ids)


class CleanupConfig(dg.Config):
    retention_days: int | None = Field(
        default=None,
        ge=1,
        le=MAX_WINDOW_DAYS,
        description="Delete records older than this; unset: the configured retention.",
    )


class LoadEventsConfig(dg.Config):
    path: str = Field(description="A JSON-lines file of PostHog-shaped events.")
