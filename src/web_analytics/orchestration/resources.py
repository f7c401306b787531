"""The ClickHouse resource every asset, op and sensor receives."""

import dagster as dg
from pydantic import Field, field_validator

from web_analytics.warehouse.api import Warehouse, connect
from web_analytics.warehouse.connection import (
    DEFAULT_LOCK_TIMEOUT_SECONDS,
    LOCK_TIMEOUT_ENV,
    URL_ENV,
    parse_url,
)


class ClickhouseCluster(dg.ConfigurableResource):
    """Where the warehouse lives: the embedded store by default, a server or cluster by URL.

    Bind ``url`` with ``dg.EnvVar("WEB_ANALYTICS_URL")`` so the UI shows the variable, never
    the password it may hold.
    """

    url: str | None = Field(
        default=None,
        description=(
            f"chdb:///absolute/path, or http(s)://user:password@host:8123/database[?cluster=NAME]. "
            f"Unset: ${URL_ENV}, else the embedded store in ./.data/clickhouse."
        ),
    )
    lock_timeout_seconds: float | None = Field(
        default=None,
        description=(
            "How long to wait for another process using the embedded store. Unset: "
            f"${LOCK_TIMEOUT_ENV}, else {DEFAULT_LOCK_TIMEOUT_SECONDS:g} s."
        ),
    )

    @field_validator("url", mode="before")
    @classmethod
    def _valid_url(cls, url: str | None) -> str | None:
        if url and not isinstance(url, dg.EnvVar):  # a variable is checked when it is read
            parse_url(url)  # raises a ValueError that says which form to use
        return url or None

    @field_validator("lock_timeout_seconds")
    @classmethod
    def _valid_timeout(cls, seconds: float | None) -> float | None:
        if seconds is not None and not 0 < seconds <= 86_400:
            raise ValueError("lock_timeout_seconds must be between 0 and 86400")
        return seconds

    def warehouse(self) -> Warehouse:
        return connect(self.url, lock_timeout=self.lock_timeout_seconds)
