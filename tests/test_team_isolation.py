"""One team whose aggregation fails costs that team alone: the other teams' days complete,
and its days are failed with the error in their status records."""

from __future__ import annotations

from datetime import date

from support import traffic

import web_analytics
from web_analytics.warehouse.gaps import DayState
from web_analytics.warehouse.schema import STATS, TEAMS

DAY = date(2024, 5, 2)


def test_a_team_whose_pass_fails_leaves_the_others_complete_and_its_days_failed(
    warehouse: web_analytics.Warehouse,
) -> None:
    warehouse.insert_events(traffic([1, 2, 3], [DAY]))
    warehouse.aggregate(DAY, DAY)
    # A registry row written before timezones were checked against the engine.
    with warehouse.session() as session:
        session.insert_columns(
            TEAMS, {"team_id": [2], "timezone": ["right/UTC"], "enabled": [True]}
        )

    result = warehouse.aggregate(DAY, DAY)

    assert list(result.failed_teams) == [2]
    assert "right/UTC" in result.failed_teams[2]
    report = warehouse.find_gaps(days_back=1, today=date(2024, 5, 3))
    states = {s.team_id: s.state for s in report.days if s.table == STATS}
    assert states == {1: DayState.COMPLETE, 2: DayState.FAILED, 3: DayState.COMPLETE}
    assert report.teams_needing_backfill(DAY) == {2}
    latest = [r for r in warehouse.backfill_records(DAY, DAY) if r.table == STATS][-1]
    assert latest.status.value == "succeeded"
    assert latest.error.startswith("team 2: ")
    # Team 2 keeps the rows of its last good computation; the others are written anew.
    for team in (1, 2, 3):
        assert warehouse.overview(team, DAY, DAY, source="preaggregated").views == 2


def test_when_every_team_fails_the_attempt_fails(warehouse: web_analytics.Warehouse) -> None:
    warehouse.insert_events(traffic([5], [DAY]))
    with warehouse.session() as session:
        session.insert_columns(
            TEAMS, {"team_id": [5], "timezone": ["right/UTC"], "enabled": [True]}
        )
    try:
        warehouse.aggregate(DAY, DAY)
    except web_analytics.QueryFailed as error:
        assert "right/UTC" in str(error)
    else:
        raise AssertionError("the aggregation of a store whose only team fails must fail")
    report = warehouse.find_gaps(days_back=1, today=date(2024, 5, 3))
    assert {s.state for s in report.days} == {DayState.FAILED}
