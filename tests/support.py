"""Helpers shared by test modules: finalized dumps of the pre-aggregated tables and loading
generated traffic."""

from __future__ import annotations

from datetime import date

import web_analytics
from web_analytics.generator import GeneratorOptions, generate_batches, team_profiles
from web_analytics.warehouse.schema import PRE_AGGREGATED_TABLES, TABLE_METRICS

# Every aggregate state finalized, one row per key: what a reader of the table would see.
_FINALIZED = {
    table: ", ".join(
        f"uniqMerge({metric})" if metric == "visitors" else f"sum({metric})"
        for metric in TABLE_METRICS[table]
    )
    for table in PRE_AGGREGATED_TABLES
}


def finalized(
    warehouse: web_analytics.Warehouse,
    first_day: date = date(1970, 1, 1),
    last_day: date = date(2149, 1, 1),
) -> dict[str, list[tuple[object, ...]]]:
    """Contents of both pre-aggregated tables for UTC days ``[first_day, last_day]``."""
    with warehouse.session() as session:
        return {
            table: session.query(
                f"SELECT team_id, period_bucket, dimension, value, {_FINALIZED[table]} "
                "FROM {table:Identifier} "
                "WHERE toDate(period_bucket) BETWEEN {first_day:Date} AND {last_day:Date} "
                "GROUP BY team_id, period_bucket, dimension, value "
                "ORDER BY team_id, period_bucket, dimension, value",
                {"table": table, "first_day": first_day, "last_day": last_day},
            )
            for table in PRE_AGGREGATED_TABLES
        }


def team_rows(
    dump: dict[str, list[tuple[object, ...]]], team_id: int
) -> dict[str, list[tuple[object, ...]]]:
    return {table: [row for row in rows if row[0] == team_id] for table, rows in dump.items()}


def load_generated(warehouse: web_analytics.Warehouse, options: GeneratorOptions) -> None:
    for profile in team_profiles(options.teams, options.seed):
        warehouse.upsert_team(profile.team_id, profile.timezone)
    warehouse.insert_event_columns(generate_batches(options))


def pageviews(team_id: int, session_id: str, *timestamps: str) -> list[dict[str, object]]:
    """A session of pageviews on ``/`` by a person named after the session."""
    return [
        {
            "event": "$pageview",
            "timestamp": timestamp,
            "team_id": team_id,
            "distinct_id": f"person-{session_id}",
            "properties": {"$session_id": session_id, "$pathname": "/"},
        }
        for timestamp in timestamps
    ]
