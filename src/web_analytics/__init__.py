"""Web analytics pre-aggregated tables in ClickHouse, kept complete and correct by Dagster."""

from web_analytics.warehouse.aggregation import AggregationResult, DayResult
from web_analytics.warehouse.api import StoreSummary, Warehouse, connect
from web_analytics.warehouse.dashboard import BreakdownRow, Overview
from web_analytics.warehouse.errors import (
    ConfigurationError,
    ConnectionFailed,
    EmbeddedStoreBusy,
    QueryFailed,
    WarehouseError,
)
from web_analytics.warehouse.events import InsertReport, RejectedEvent
from web_analytics.warehouse.teams import Team

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
