"""Shared fixtures: every test gets its own embedded store in a temporary directory, its own
Dagster instance, and today's UTC date read when the test starts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import pytest

import web_analytics
from web_analytics.orchestration.resources import ClickhouseCluster


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """URL of a fresh embedded store."""
    return f"chdb://{tmp_path / 'store'}"


@pytest.fixture
def warehouse(store_url: str) -> Iterator[web_analytics.Warehouse]:
    """A fresh embedded store with the schema in place."""
    warehouse = web_analytics.connect(store_url)
    warehouse.ensure_schema()
    yield warehouse


@pytest.fixture
def clickhouse(store_url: str, warehouse: web_analytics.Warehouse) -> ClickhouseCluster:
    """The Dagster resource pointing at the test's store (schema already created)."""
    return ClickhouseCluster(url=store_url)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """An ephemeral Dagster instance."""
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def today() -> date:
    """Today's UTC date, for the tests of code that reads the real clock (the sensor, the
    schedules, the ops' default windows)."""
    return datetime.now(UTC).date()
