"""Web analytics pre-aggregated tables in ClickHouse, kept complete and correct by Dagster."""

from web_analytics.warehouse.aggregation import AggregationResult, DayResult
from web_analytics.warehouse.core import StoreSummary, Team, Warehouse, connect
from web_analytics.warehouse.errors import (
    ConfigurationError,
    ConnectionFailed,
    EmbeddedStoreBusy,
    QueryFailed,
    WarehouseError,
)
from web_analytics.warehouse.events import InsertReport, RejectedEvent
from web_analytics.warehouse.queries import BreakdownRow, Overview

__all__ = [
    "AggregationResult",
    "BreakdownRow",
    "ConfigurationError",
    "ConnectionFailed",
    "DayResult",
    "EmbeddedStoreBusy",
    "InsertReport",
    "Overview",
    "QueryFailed",
    "RejectedEvent",
    "StoreSummary",
    "Team",
    "Warehouse",
    "WarehouseError",
    "connect",
]
