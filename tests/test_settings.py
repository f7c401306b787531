"""ClickHouse settings: named presets, and extra settings parsed strictly before any query."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydantic import ValidationError
from support import Event, pageviews

import web_analytics
from web_analytics import ConfigurationError, QueryFailed
from web_analytics.orchestration.config import PreAggregationConfig
from web_analytics.warehouse.settings import PRESETS, parse_extra_settings, resolve_settings

DAY = dt.date(2024, 5, 1)
INJECTION = "max_threads=1; DROP TABLE events"
PRESET_SETTINGS = {
    "max_memory_usage",
    "max_bytes_before_external_group_by",
    "max_threads",
    "max_execution_time",
}


def two_pageviews() -> list[Event]:
    """One session of team 1 on ``DAY``: pageviews of /0 and /5, 5 s apart."""
    return [
        event
        for second in (0, 5)
        for event in pageviews(1, "s1", f"{DAY}T10:00:{second:02d}Z", path=f"/{second}")
    ]


def test_both_presets_bound_memory_spilling_threads_and_time() -> None:
    assert set(PRESETS) == {"default", "high_performance"}
    for name, settings in PRESETS.items():
        assert set(settings) == PRESET_SETTINGS, name
        assert all(isinstance(value, int) and value > 0 for value in settings.values()), name
        # GROUP BY spills to disk before the query hits its memory limit.
        assert settings["max_bytes_before_external_group_by"] < settings["max_memory_usage"]
    assert PRESETS["high_performance"]["max_threads"] > PRESETS["default"]["max_threads"]


def test_extra_settings_are_parsed_into_typed_values() -> None:
    parsed = parse_extra_settings("max_threads=2,join_algorithm=hash,max_memory_usage=1000000")

    assert parsed == {"max_threads": 2, "join_algorithm": "hash", "max_memory_usage": 1_000_000}
    assert [type(value) for value in parsed.values()] == [int, str, int]
    assert parse_extra_settings(
        " max_threads = 3 , max_bytes_ratio_before_external_sort=0.5 ,max_rows_to_read=-1"
    ) == {
        "max_threads": 3,
        "max_bytes_ratio_before_external_sort": 0.5,
        "max_rows_to_read": -1,
    }
    assert parse_extra_settings(None) == parse_extra_settings("") == parse_extra_settings(" ") == {}


def test_extra_settings_as_a_mapping_are_checked_and_typed_the_same_way() -> None:
    parsed = parse_extra_settings(
        {
            "max_threads": 2,
            "join_algorithm": "hash",
            "max_bytes_ratio_before_external_sort": "0.5",
            "max_rows_to_read": " -1 ",
        }
    )

    assert parsed == {
        "max_threads": 2,
        "join_algorithm": "hash",
        "max_bytes_ratio_before_external_sort": 0.5,
        "max_rows_to_read": -1,
    }
    assert [type(value) for value in parsed.values()] == [int, str, float, int]
    assert parse_extra_settings({}) == {}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (INJECTION, "must be a number or a simple word"),
        ("max_threads='1'", "must be a number or a simple word"),
        ("1abc=2", "not a valid identifier"),
        ("max_threads", "not of the form name=value"),
        ("join_algorithm=b c", "must be a number or a simple word"),
        ("--x=1", "not a valid identifier"),
        ("max_threads=1,", "not of the form name=value"),
        ("max_threads=1 -- comment", "must be a number or a simple word"),
        ("max_threads=", "must be a number or a simple word"),
    ],
)
def test_extra_settings_other_than_name_equals_number_or_word_are_rejected(
    text: str, reason: str
) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        parse_extra_settings(text)


@pytest.mark.parametrize(
    ("mapping", "reason"),
    [
        ({"max_threads": "1; DROP TABLE events"}, "must be a number or a simple word"),
        ({"max_threads": "'1'"}, "must be a number or a simple word"),
        ({"max_threads": True}, "must be a number or a simple word"),
        ({"max_threads": None}, "must be a number or a simple word"),
        ({"max_threads": [1]}, "must be a number or a simple word"),
        ({"max threads": 1}, "not a valid identifier"),
        ({"max_threads\n": 1}, "not a valid identifier"),
        ({1: 1}, "not a valid identifier"),
    ],
)
def test_extra_settings_mappings_other_than_name_to_number_or_word_are_rejected(
    mapping: dict[Any, Any], reason: str
) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        parse_extra_settings(mapping)


def test_extra_settings_neither_mapping_nor_text_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match="must be a mapping of name to value"):
        parse_extra_settings([("max_threads", 1)])  # type: ignore[arg-type]


def test_extra_settings_override_the_chosen_preset() -> None:
    settings = resolve_settings("high_performance", "max_threads=2,join_algorithm=hash")

    assert settings == {**PRESETS["high_performance"], "max_threads": 2, "join_algorithm": "hash"}
    assert resolve_settings() == PRESETS["default"]


def test_unknown_preset_is_rejected_naming_the_choices() -> None:
    with pytest.raises(ConfigurationError, match="choose one of default, high_performance"):
        resolve_settings("turbo")


def test_injected_settings_are_rejected_before_any_query_and_the_events_stay(
    warehouse: web_analytics.Warehouse,
) -> None:
    assert warehouse.insert_events(two_pageviews()).inserted == 2

    with pytest.raises(ConfigurationError, match="max_threads"):
        warehouse.aggregate(DAY, DAY, extra_settings=INJECTION)
    with pytest.raises(ConfigurationError, match="turbo"):
        warehouse.aggregate(DAY, DAY, settings_preset="turbo")

    with warehouse.session() as session:
        tables = {name for (name,) in session.query("SHOW TABLES")}
        assert "events" in tables
        assert session.query("SELECT count() FROM events") == [(2,)]
        # Nothing was aggregated either.
        assert session.query("SELECT count() FROM web_pre_aggregated_stats") == [(0,)]


def test_presets_and_extra_settings_are_accepted_by_clickhouse(
    warehouse: web_analytics.Warehouse,
) -> None:
    warehouse.insert_events(two_pageviews())

    for preset in PRESETS:
        result = warehouse.aggregate(
            DAY, DAY, settings_preset=preset, extra_settings="max_threads=2,join_algorithm=hash"
        )
        # One session over paths /0 and /5, in one hour: a totals row, 2 path rows and one row
        # per session attribute (11) = 14 rows.
        assert result.rows_for("web_pre_aggregated_stats") == {DAY: 14}, preset
    overview = warehouse.overview(1, DAY, DAY, source="preaggregated")
    # Two pageviews 5 s apart in one session: not a bounce (two pageviews).
    assert (overview.views, overview.sessions, overview.avg_session_duration) == (2, 1, 5.0)
    assert overview.bounce_rate == 0.0


def test_a_setting_outside_the_allowed_ones_is_refused_before_any_query() -> None:
    with pytest.raises(ConfigurationError, match="'not_a_setting' is not one a pre-aggregation"):
        parse_extra_settings("not_a_setting=1")


def test_a_well_formed_setting_that_clickhouse_refuses_fails_and_the_events_stay(
    warehouse: web_analytics.Warehouse,
) -> None:
    warehouse.insert_events(two_pageviews()[:1])

    with pytest.raises(QueryFailed, match="Unexpected value of JoinAlgorithm: 'nonsense'"):
        warehouse.aggregate(DAY, DAY, extra_settings="join_algorithm=nonsense")

    with warehouse.session() as session:
        assert session.query("SELECT count() FROM events") == [(1,)]


def test_dagster_config_rejects_injected_settings_and_unknown_presets() -> None:
    with pytest.raises(ValidationError, match="max_threads"):
        PreAggregationConfig(extra_clickhouse_settings={"max_threads": "1; DROP TABLE events"})
    with pytest.raises(ValidationError, match="clickhouse_settings_preset"):
        PreAggregationConfig(clickhouse_settings_preset="turbo")  # type: ignore[arg-type]

    # Checked once, at the edge: the values come out typed.
    config = PreAggregationConfig(extra_clickhouse_settings={"max_threads": "2"})
    assert config.extra_clickhouse_settings == {"max_threads": 2}
