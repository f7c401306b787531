"""Shared fixtures: every test gets its own embedded store in a temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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
