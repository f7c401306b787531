"""Web analytics pre-aggregated tables in ClickHouse, kept complete and correct by Dagster."""

from web_analytics.warehouse.aggregation import AggregationResult, DayResult
from web_analytics.warehouse.api import StoreSummary, Warehouse, connect
from web_analytics.warehouse.dashboard import Breakdown, BreakdownRow, Overview, Point, Timeseries
from web_analytics.warehouse.errors import (
    ConfigurationError,
    ConnectionFailed,
    EmbeddedStoreBusy,
    QueryFailed,
    WarehouseError,
)
from web_analytics.warehouse.events import InsertReport, RejectedEvent
from web_analytics.warehouse.freshness import Freshness, Reason
from web_analytics.warehouse.teams import Team

__all__ = [
    "AggregationResult",
    "Breakdown",
    "BreakdownRow",
    "ConfigurationError",
    "ConnectionFailed",
    "DayResult",
    "EmbeddedStoreBusy",
    "Freshness",
    "InsertReport",
    "Overview",
    "Point",
    "QueryFailed",
    "Reason",
    "RejectedEvent",
    "StoreSummary",
    "Team",
    "Timeseries",
    "Warehouse",
    "WarehouseError",
    "connect",
]
