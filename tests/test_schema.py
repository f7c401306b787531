"""Every table the system needs: created for real on one node, and cluster DDL that the real
ClickHouse parser accepts."""

from __future__ import annotations

import re

import pytest

import web_analytics
from web_analytics.warehouse.schema import TABLES, schema_statements

# The tables the product promises, whatever else the schema holds.
REQUIRED_TABLES = {
    "events",
    "teams",
    "events_day_summary",
    "web_pre_aggregated_stats",
    "web_pre_aggregated_stats_staging",
    "web_pre_aggregated_bounces",
    "web_pre_aggregated_bounces_staging",
    "web_analytics_data_coverage",
    "web_analytics_backfill_status",
}
CREATED = re.compile(r"^CREATE (TABLE|MATERIALIZED VIEW) IF NOT EXISTS (\w+)")
# A column added after its table was released, for stores created before (formatted or not).
ADDED_COLUMN = re.compile(
    r"^ALTER TABLE (\w+)(?P<cluster> ON CLUSTER main)?\s+\(?ADD COLUMN IF NOT EXISTS `?\w+`? "
)
ENGINE = re.compile(r"^ENGINE = (.*)$", re.MULTILINE)


def objects_in_store(warehouse: web_analytics.Warehouse) -> dict[str, str]:
    """Every table and view of the store's database, with its engine."""
    with warehouse.session() as session:
        rows = session.query(
            "SELECT name, engine FROM system.tables WHERE database = currentDatabase()"
        )
    return dict(rows)


def created(statement: str) -> tuple[str, str]:
    """Kind ("TABLE" or "MATERIALIZED VIEW") and name of a CREATE statement."""
    match = CREATED.match(statement)
    assert match, statement
    return match.group(1), match.group(2)


def created_name(statement: str) -> str:
    return created(statement)[1]


def created_objects(statements: list[str]) -> dict[str, str]:
    """Name -> "TABLE" or "MATERIALIZED VIEW" of each CREATE statement."""
    return {name: kind for kind, name in map(created, statements)}


def test_ensure_schema_creates_every_required_table(warehouse: web_analytics.Warehouse) -> None:
    engines = objects_in_store(warehouse)

    assert set(engines) >= REQUIRED_TABLES
    assert {name: engines[name] for name in sorted(REQUIRED_TABLES)} == {
        # Redelivered events and re-registered teams replace earlier rows.
        "events": "ReplacingMergeTree",
        "events_day_summary": "AggregatingMergeTree",
        "teams": "ReplacingMergeTree",
        "web_analytics_backfill_status": "ReplacingMergeTree",
        "web_analytics_data_coverage": "ReplacingMergeTree",
        "web_pre_aggregated_bounces": "AggregatingMergeTree",
        "web_pre_aggregated_bounces_staging": "AggregatingMergeTree",
        "web_pre_aggregated_stats": "AggregatingMergeTree",
        "web_pre_aggregated_stats_staging": "AggregatingMergeTree",
    }
    # The view that keeps the day summary in step with inserts.
    assert engines["events_day_summary_mv"] == "MaterializedView"


def creates_and_additions(statements: list[str]) -> tuple[list[str], list[str]]:
    """The CREATE statements, then the columns added to their tables (for older stores)."""
    creates = [s for s in statements if s.startswith("CREATE")]
    additions = statements[len(creates) :]
    assert statements[: len(creates)] == creates, "every table is created before it is altered"
    return creates, additions


def assert_added_to(additions: list[str], tables: set[str], on_cluster: bool) -> None:
    for statement in additions:
        added = ADDED_COLUMN.match(statement)
        assert added, statement
        assert added.group(1) in tables, statement
        assert bool(added.group("cluster")) == on_cluster, statement


def test_every_single_node_statement_ran(warehouse: web_analytics.Warehouse) -> None:
    statements = schema_statements(None)
    creates, additions = creates_and_additions(statements)
    declared = created_objects(creates)

    # One statement per table and view, and the store holds exactly those.
    assert len(declared) == len(creates)
    assert_added_to(additions, {t.name for t in TABLES}, on_cluster=False)
    assert {name for name, kind in declared.items() if kind == "TABLE"} == {t.name for t in TABLES}
    assert set(declared) == set(objects_in_store(warehouse))
    assert not any("ON CLUSTER" in s or "Replicated" in s or "Distributed" in s for s in statements)


def test_ensure_schema_again_keeps_tables_and_data(warehouse: web_analytics.Warehouse) -> None:
    warehouse.insert_events(
        [
            {
                "team_id": 4,
                "event": "$pageview",
                "timestamp": "2024-05-01T10:00:00Z",
                "distinct_id": "a",
            }
        ]
    )
    warehouse.upsert_team(4, "Asia/Kolkata")
    before = objects_in_store(warehouse)

    warehouse.ensure_schema()
    warehouse.ensure_schema()

    assert objects_in_store(warehouse) == before
    assert warehouse.summary().events_per_team == {4: 1}
    assert warehouse.teams() == [web_analytics.Team(4, "Asia/Kolkata", True)]


@pytest.fixture(scope="module")
def formatted_cluster_statements(
    tmp_path_factory: pytest.TempPathFactory,
) -> list[tuple[str, str]]:
    """Each cluster statement with the text ClickHouse's own parser formats it to."""
    store = web_analytics.connect(f"chdb://{tmp_path_factory.mktemp('parser')}")
    with store.session() as session:
        return [
            (statement, session.query("SELECT formatQuery({q:String})", {"q": statement})[0][0])
            for statement in schema_statements("main")
        ]


def test_every_cluster_statement_is_valid_clickhouse_sql_on_cluster_main(
    formatted_cluster_statements: list[tuple[str, str]],
) -> None:
    creates, additions = creates_and_additions([s for s, _ in formatted_cluster_statements])
    views = [s for s in creates if "MATERIALIZED VIEW" in s.split("\n")[0]]
    # Per table a local replicated table and a Distributed table, plus the views.
    assert len(creates) == 2 * len(TABLES) + len(views)
    assert views
    for statement, formatted in formatted_cluster_statements[: len(creates)]:
        assert CREATED.match(formatted), statement
        assert " ON CLUSTER main" in formatted.splitlines()[0], statement
    # Added columns go to both the local and the Distributed table, on every node.
    tables = {name for t in TABLES for name in (t.name, f"{t.name}_local")}
    assert_added_to([f for _, f in formatted_cluster_statements[len(creates) :]], tables, True)


def test_cluster_tables_are_replicated_where_data_lives_and_distributed_for_reads(
    formatted_cluster_statements: list[tuple[str, str]],
) -> None:
    creates = [f for _, f in formatted_cluster_statements if f.startswith("CREATE")]
    engines: dict[str, str] = {}
    for formatted in creates:
        name = created_name(formatted)
        engine = ENGINE.search(formatted)
        engines[name] = engine.group(1) if engine else "(view)"

    assert {table.name for table in TABLES} >= REQUIRED_TABLES
    for table in TABLES:
        local = f"{table.name}_local"
        assert engines[table.name] == (
            f"Distributed(main, currentDatabase(), {local}, {table.sharding_key})"
        ), table.name
        if table.engine.endswith("MergeTree"):
            assert engines[local].startswith(f"Replicated{table.engine}("), local
            assert (
                f"'/clickhouse/tables/{{shard}}/{{database}}/{local}', '{{replica}}'"
                in (engines[local])
            )
        else:  # stores nothing, so nothing to replicate
            assert not engines[local].startswith("Replicated"), local
    # Events are sharded by team, so one team's events live together.
    assert engines["events"].endswith(", team_id)")
    # Views write into local tables and read local tables, on the node that holds the data.
    for formatted in creates:
        if engines[created_name(formatted)] == "(view)":
            assert re.search(r"\bTO \w+_local\b", formatted), formatted
            assert re.search(r"\bFROM \w+_local\b", formatted), formatted
