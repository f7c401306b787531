"""Every table the system needs, each defined once; single-node and cluster DDL both come
from the same definition.

In cluster mode each table is a ``Replicated*`` table named ``<name>_local`` on every node,
plus a ``Distributed`` table named ``<name>`` for reads. Writes and partition swaps use the
local tables, where the data lives.
"""

from __future__ import annotations

from dataclasses import dataclass

EVENTS = "events"
TEAMS = "teams"
SOURCE_DAY_SUMMARY = "events_day_summary"
SOURCE_DAY_SUMMARY_VIEW = "events_day_summary_mv"
STATS = "web_pre_aggregated_stats"
# The stats table's day grain: written by the same pass and swapped with it, part of the
# stats asset (its gap states, status records and accuracy checks are the stats table's).
DAILY_STATS = "web_pre_aggregated_stats_daily"
BOUNCES = "web_pre_aggregated_bounces"
STAGING_SUFFIX = "_staging"
COVERAGE = "web_analytics_data_coverage"
BACKFILL_STATUS = "web_analytics_backfill_status"
ACCURACY_CHECKS = "web_analytics_accuracy_checks"
# Session-local tables of a load (see ``loading``): the keys of a batch, and its events that
# the store holds already.
LOAD_KEYS = "events_load_keys"
LOAD_HELD = "events_load_held"

# The tables gap detection, status records and Dagster's assets know, one per metric set...
PRE_AGGREGATED_TABLES = (STATS, BOUNCES)
# ...and every table one aggregation writes and swaps in per UTC day.
WRITTEN_TABLES = (STATS, DAILY_STATS, BOUNCES)
# The other grains of a table: a day of the owner is written only if theirs is too.
GRAIN_OWNERS = {DAILY_STATS: STATS}
# Session-local table of one aggregation pass's sessions, which both grains group.
PASS_SESSIONS = "aggregation_pass_sessions"

# Events that count as a page view; ``$autocapture`` only affects bounces.
PAGEVIEW_EVENTS = ("$pageview", "$screen")
PAGEVIEW_EVENTS_SQL = "(" + ", ".join(f"'{name}'" for name in PAGEVIEW_EVENTS) + ")"

# Session attributes a breakdown can split by, and the column of `events` each comes from.
SESSION_DIMENSIONS = (
    "entry_pathname",
    "exit_pathname",
    "host",
    "referring_domain",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "device_type",
    "browser",
    "os",
    "country_code",
)
BREAKDOWN_DIMENSIONS = ("pathname", *SESSION_DIMENSIONS)
# The dimension value of the rows that hold totals over all values.
ALL = ""

EVENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("uuid", "UUID"),
    ("team_id", "UInt64"),
    ("event", "LowCardinality(String)"),
    ("timestamp", "DateTime64(6, 'UTC')"),
    ("distinct_id", "String"),
    ("person_id", "String"),
    ("session_id", "String"),
    ("pathname", "String"),
    ("host", "LowCardinality(String)"),
    ("current_url", "String"),
    ("referring_domain", "LowCardinality(String)"),
    ("utm_source", "LowCardinality(String)"),
    ("utm_medium", "LowCardinality(String)"),
    ("utm_campaign", "LowCardinality(String)"),
    ("utm_term", "String"),
    ("utm_content", "String"),
    ("device_type", "LowCardinality(String)"),
    ("browser", "LowCardinality(String)"),
    ("os", "LowCardinality(String)"),
    ("country_code", "LowCardinality(String)"),
    ("region", "LowCardinality(String)"),
    ("city", "String"),
    ("viewport_width", "UInt32"),
    ("viewport_height", "UInt32"),
    ("inserted_at", "DateTime64(6, 'UTC') DEFAULT now64(6)"),
)
EVENT_COLUMN_NAMES = tuple(name for name, _ in EVENT_COLUMNS)
# What makes two rows of `events` one event: its sorting key, by which a redelivered copy
# replaces the stored one.
EVENT_KEY = "team_id, toDate(timestamp), session_id, uuid"

_PRE_AGGREGATED_KEY = (
    ("team_id", "UInt64"),
    ("period_bucket", "DateTime('UTC')"),
    ("dimension", "LowCardinality(String)"),
    ("value", "String"),
)


@dataclass(frozen=True)
class Table:
    """One table: columns, engine family and layout. ``engine_args`` apply to both modes."""

    name: str
    columns: tuple[tuple[str, str], ...]
    engine: str
    order_by: str | None = None
    engine_args: str = ""
    partition_by: str | None = None
    sharding_key: str = "rand()"
    comment: str = ""
    settings: str = ""

    def statements(self, cluster: str | None) -> list[str]:
        """CREATE statements for single-node (``cluster=None``) or cluster mode."""
        columns = ",\n    ".join(f"`{name}` {type_}" for name, type_ in self.columns)
        layout = ""
        if self.partition_by:
            layout += f"\nPARTITION BY {self.partition_by}"
        if self.order_by:
            layout += f"\nORDER BY {self.order_by}"
        if self.settings:
            layout += f"\nSETTINGS {self.settings}"
        if cluster is None:
            engine = f"{self.engine}({self.engine_args})"
            return [
                f"CREATE TABLE IF NOT EXISTS {self.name}\n(\n    {columns}\n)\n"
                f"ENGINE = {engine}{layout}\nCOMMENT '{self.comment}'"
            ]
        local = local_name(self.name, cluster)
        if self.engine.endswith("MergeTree"):
            zk_path = f"'/clickhouse/tables/{{shard}}/{{database}}/{local}', '{{replica}}'"
            args = f"{zk_path}, {self.engine_args}" if self.engine_args else zk_path
            engine = f"Replicated{self.engine}({args})"
        else:  # nothing stored, nothing to replicate
            engine = f"{self.engine}({self.engine_args})"
        return [
            f"CREATE TABLE IF NOT EXISTS {local} ON CLUSTER {cluster}\n(\n    {columns}\n)\n"
            f"ENGINE = {engine}{layout}\nCOMMENT '{self.comment}'",
            f"CREATE TABLE IF NOT EXISTS {self.name} ON CLUSTER {cluster} AS {local}\n"
            f"ENGINE = Distributed({cluster}, currentDatabase(), {local}, {self.sharding_key})",
        ]


def local_name(name: str, cluster: str | None) -> str:
    """The table that holds the data on each node: itself on a single node."""
    return f"{name}_local" if cluster else name


def _pre_aggregated(
    name: str,
    metrics: tuple[tuple[str, str], ...],
    comment: str,
    key: tuple[tuple[str, str], ...] = _PRE_AGGREGATED_KEY,
    order_by: str = "(team_id, dimension, period_bucket, value)",
    granularity: int = 1024,
) -> Table:
    """A pre-aggregated table, partitioned by the UTC day of ``period_bucket``. A dashboard
    reads a few hundred rows per day of it: small granules, less to decode."""
    return Table(
        name=name,
        columns=key + metrics,
        engine="AggregatingMergeTree",
        partition_by="toDate(period_bucket)",
        order_by=order_by,
        sharding_key="team_id",
        comment=comment,
        settings=f"index_granularity = {granularity}",
    )


# Visitor states of the hourly tables and of the day grain, of cityHash64(person). A day
# grain row merges at most a few dozen states whatever a day's traffic: HyperLogLog-style
# sketches of 2^17 cells, exact up to a few thousand visitors and within 1 % beyond.
HOURLY_VISITORS = "uniq"
DAILY_VISITORS = "uniqCombined(17)"


def with_combinator(function: str, combinator: str) -> str:
    """``function`` with ``combinator`` before its parameters: ``uniqCombinedState(17)``."""
    name, parenthesis, parameters = function.partition("(")
    return f"{name}{combinator}{parenthesis}{parameters}"


_METRIC_TYPES = {
    "visitors": f"AggregateFunction({HOURLY_VISITORS}, UInt64)",
    "views": "SimpleAggregateFunction(sum, UInt64)",
    "sessions": "SimpleAggregateFunction(sum, UInt64)",
    "bounces": "SimpleAggregateFunction(sum, UInt64)",
    "total_duration_us": "SimpleAggregateFunction(sum, UInt64)",
}
# The stats table holds every metric: one aggregation pass writes it, and the bounces table
# (no visitor states, so a fraction of the size) is a cheap projection of it.
TABLE_METRICS = {
    STATS: ("visitors", "views", "sessions", "bounces", "total_duration_us"),
    DAILY_STATS: ("visitors", "views", "sessions", "bounces", "total_duration_us"),
    BOUNCES: ("views", "sessions", "bounces", "total_duration_us"),
}
_STATS_METRICS = tuple((name, _METRIC_TYPES[name]) for name in TABLE_METRICS[STATS])
_BOUNCES_METRICS = tuple((name, _METRIC_TYPES[name]) for name in TABLE_METRICS[BOUNCES])
_STATS_COMMENT = (
    "Visitors, views, sessions, bounces and duration per team, team-local hour (as UTC "
    "instant) and dimension value"
)
_BOUNCES_COMMENT = "Views, sessions, bounces and total duration per team, hour and dimension value"
_DAILY_METRICS = (
    ("visitors", f"AggregateFunction({DAILY_VISITORS}, UInt64)"),
    *_STATS_METRICS[1:],
)
_DAILY_COMMENT = (
    "Visitors, views, sessions, bounces and duration per team, team-local day, dimension value "
    "and segment (the part of the local day whose hours start in one UTC day)"
)


def _daily(name: str, comment: str) -> Table:
    """The day grain: one row per team, local ``day``, dimension, value and segment, where
    ``period_bucket`` is the UTC midnight of the day that holds the segment's hour buckets,
    so each row belongs to the same UTC partition as the hourly rows it sums."""
    key = (*_PRE_AGGREGATED_KEY[:2], ("day", "Date"), *_PRE_AGGREGATED_KEY[2:])
    order_by = "(team_id, dimension, day, period_bucket, value)"
    # A read decodes every visitor state of each granule it touches; an overview needs one
    # or two rows per partition, so granules of 8 rows decode a few spare states, not 255.
    return _pre_aggregated(name, _DAILY_METRICS, comment, key, order_by, granularity=8)


TABLES: tuple[Table, ...] = (
    Table(
        name=EVENTS,
        columns=EVENT_COLUMNS,
        # A redelivered event (same uuid) replaces the earlier copy; reads use FINAL.
        engine="ReplacingMergeTree",
        engine_args="inserted_at",
        partition_by="toYYYYMM(timestamp)",
        order_by=f"({EVENT_KEY})",
        sharding_key="team_id",
        comment="Raw events in canonical columns",
    ),
    Table(
        name=TEAMS,
        columns=(
            ("team_id", "UInt64"),
            ("timezone", "String"),
            ("enabled", "Bool"),
            ("updated_at", "DateTime64(6, 'UTC') DEFAULT now64(6)"),
        ),
        engine="ReplacingMergeTree",
        engine_args="updated_at",
        order_by="team_id",
        comment="Team registry: timezone and whether pre-aggregation is enabled",
    ),
    Table(
        name=SOURCE_DAY_SUMMARY,
        columns=(
            ("team_id", "UInt64"),
            ("day", "Date"),
            ("events", "SimpleAggregateFunction(sum, UInt64)"),
            ("pageviews", "SimpleAggregateFunction(sum, UInt64)"),
            ("content_hash", "SimpleAggregateFunction(sum, UInt64)"),
            ("next_first_hour_hash", "SimpleAggregateFunction(sum, UInt64)"),
        ),
        engine="AggregatingMergeTree",
        order_by="(team_id, day)",
        sharding_key="team_id",
        comment="Per team and UTC day: what was inserted into events, for stale detection",
    ),
    _pre_aggregated(STATS, _STATS_METRICS, _STATS_COMMENT),
    _pre_aggregated(STATS + STAGING_SUFFIX, _STATS_METRICS, "Staging for " + STATS),
    _daily(DAILY_STATS, _DAILY_COMMENT),
    _daily(DAILY_STATS + STAGING_SUFFIX, "Staging for " + DAILY_STATS),
    _pre_aggregated(BOUNCES, _BOUNCES_METRICS, _BOUNCES_COMMENT),
    _pre_aggregated(BOUNCES + STAGING_SUFFIX, _BOUNCES_METRICS, "Staging for " + BOUNCES),
    Table(
        name=COVERAGE,
        columns=(
            ("table", "LowCardinality(String)"),
            ("team_id", "UInt64"),
            ("day", "Date"),
            ("source_pageviews", "UInt64"),
            ("aggregated_pageviews", "UInt64"),
            ("state", "LowCardinality(String)"),
            ("computed_at", "DateTime64(6, 'UTC')"),
        ),
        engine="ReplacingMergeTree",
        engine_args="computed_at",
        order_by="(table, team_id, day)",
        comment="Coverage of the pre-aggregated tables per team and UTC day",
    ),
    Table(
        name=BACKFILL_STATUS,
        columns=(
            ("table", "LowCardinality(String)"),
            ("day", "Date"),
            ("run_id", "String"),
            ("trigger", "LowCardinality(String)"),
            ("status", "LowCardinality(String)"),
            ("started_at", "DateTime64(6, 'UTC')"),
            ("finished_at", "Nullable(DateTime64(6, 'UTC'))"),
            ("rows_written", "UInt64"),
            ("source_fingerprints", "Map(UInt64, UInt64)"),
            ("source_fingerprint_total", "UInt64"),
            ("error", "String"),
            ("updated_at", "DateTime64(6, 'UTC') DEFAULT now64(6)"),
            ("failed_teams", "Map(UInt64, String)"),
        ),
        engine="ReplacingMergeTree",
        engine_args="updated_at",
        order_by="(table, day, run_id)",
        comment="One row per partition write attempt: run, trigger, status and source fingerprints",
        # Detection reads the fingerprints of a few days: small granules, less to decode.
        settings="index_granularity = 64",
    ),
    Table(
        name=ACCURACY_CHECKS,
        columns=(
            ("table", "LowCardinality(String)"),
            ("day", "Date"),
            ("checked_at", "DateTime64(6, 'UTC')"),
            ("teams_checked", "UInt32"),
            ("inaccurate_teams", "Array(UInt64)"),
        ),
        # The latest check of a table and day is the one that counts.
        engine="ReplacingMergeTree",
        engine_args="checked_at",
        order_by="(table, day)",
        comment="Latest accuracy check per table and UTC day: teams that differ from raw events",
    ),
)


# Multiplying by this is negating in UInt64's wrapping arithmetic: summary rows made with it
# cancel the rows of the same events, since every summary column is a wrapping sum.
RETRACTED = "18446744073709551615"


def summary_rows(source: str, factor: str = "") -> str:
    """SELECT of the per-day summary rows of the events in ``source`` (a table or a
    parenthesised subquery); ``factor`` (``" * " + RETRACTED``) makes rows that take them out.

    Hash sums change with any added or corrected event, whatever the order of inserts and
    merges. An event of a day's first hour is also counted on the day before
    (``next_first_hour_hash``): that day's sessions can end in it.
    """
    event_hash = "cityHash64(uuid, timestamp, event, session_id, pathname, person_id)"
    return (
        "SELECT\n"
        "    team_id,\n"
        "    toDate(timestamp) - spill AS day,\n"
        f"    countIf(spill = 0){factor} AS events,\n"
        f"    countIf(spill = 0 AND event IN {PAGEVIEW_EVENTS_SQL} AND session_id != '')"
        f"{factor} AS pageviews,\n"
        f"    sumIf({event_hash}, spill = 0){factor} AS content_hash,\n"
        f"    sumIf({event_hash}, spill = 1){factor} AS next_first_hour_hash\n"
        f"FROM {source}\n"
        "ARRAY JOIN if(toHour(timestamp) = 0, [0, 1], [0]) AS spill\n"
        "GROUP BY team_id, day"
    )


def summary_view_statement(cluster: str | None) -> str:
    """The materialized view that keeps ``events_day_summary`` in step with inserts.

    Loads insert only events the store does not hold yet (``loading``), so each event is
    counted once however often it is delivered.
    """
    on_cluster = f" ON CLUSTER {cluster}" if cluster else ""
    return (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {SOURCE_DAY_SUMMARY_VIEW}{on_cluster}\n"
        f"TO {local_name(SOURCE_DAY_SUMMARY, cluster)}\nAS "
        + summary_rows(local_name(EVENTS, cluster))
    )


def load_staging_statements() -> list[str]:
    """The session-local tables of a load: the key, version and position of each event of the
    batch, and the whole rows of those the store holds already (to compare contents)."""
    columns = ",\n    ".join(f"`{name}` {type_}" for name, type_ in EVENT_COLUMNS)
    return [
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {LOAD_KEYS}\n(\n"
        "    `team_id` UInt64,\n    `timestamp` DateTime64(6, 'UTC'),\n"
        "    `session_id` String,\n    `uuid` UUID,\n    `inserted_at` DateTime64(6, 'UTC'),\n"
        "    `position` UInt32\n)\nENGINE = Memory",
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {LOAD_HELD}\n(\n    {columns},\n"
        "    `position` UInt32\n)\nENGINE = Memory",
    ]


def schema_statements(cluster: str | None) -> list[str]:
    """Every statement ``ensure_schema`` runs, in order."""
    statements = [statement for table in TABLES for statement in table.statements(cluster)]
    statements.append(summary_view_statement(cluster))
    statements.extend(added_column_statements(cluster))
    return statements


# Columns added after a table was first released: stores created before get them on their
# next ``ensure_schema``.
ADDED_COLUMNS = ((BACKFILL_STATUS, "failed_teams", "Map(UInt64, String)"),)


def added_column_statements(cluster: str | None) -> list[str]:
    on_cluster = f" ON CLUSTER {cluster}" if cluster else ""
    return [
        f"ALTER TABLE {name}{on_cluster} ADD COLUMN IF NOT EXISTS {column} {type_}"
        for table, column, type_ in ADDED_COLUMNS
        for name in ([local_name(table, cluster), table] if cluster else [table])
    ]
