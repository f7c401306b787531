"""Every timezone the engine knows buckets correctly, however many share one pass; a name the
engine does not know is refused when the team is registered, before it can fail anyone's
aggregation."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo, available_timezones

import pytest
from support import pageviews

import web_analytics
from web_analytics import ConfigurationError

DAY = date(2024, 6, 14)
# A mid-June instant: no zone changes its offset within an hour of it.
INSTANT = datetime(2024, 6, 14, 10, 37, tzinfo=UTC)


def expected_bucket(timezone: str) -> datetime:
    """The start of the local hour of INSTANT in ``timezone``, as a UTC instant."""
    local = INSTANT.astimezone(ZoneInfo(timezone))
    return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)


def test_one_team_in_each_of_the_engines_timezones_gets_its_own_local_hour(
    warehouse: web_analytics.Warehouse,
) -> None:
    # Before: timezone indexes were bound as UInt8, so the 257th timezone of a pass took
    # the first one's buckets.
    with warehouse.session() as session:
        engine = {name for (name,) in session.query("SELECT time_zone FROM system.time_zones")}
    zones = sorted(engine & available_timezones())
    assert len(zones) > 256
    events = []
    with warehouse.session():  # one unit of work for all the registrations
        for team, zone in enumerate(zones, start=1):
            warehouse.upsert_team(team, zone)
            events += pageviews(team, f"s{team}", INSTANT.isoformat(), person=f"p{team}")
    assert warehouse.insert_events(events).inserted == len(zones)

    warehouse.aggregate(DAY, DAY)

    with warehouse.session() as session:
        rows = session.query(
            "SELECT team_id, period_bucket FROM web_pre_aggregated_stats "
            "WHERE dimension = '' ORDER BY team_id"
        )
    buckets = {int(team): bucket.replace(tzinfo=UTC) for team, bucket in rows}
    wrong = {
        zone: (buckets.get(team), expected_bucket(zone))
        for team, zone in enumerate(zones, start=1)
        if buckets.get(team) != expected_bucket(zone)
    }
    assert wrong == {}


@pytest.mark.parametrize("timezone", ["right/UTC", "right/Europe/Paris", "posixrules"])
def test_a_timezone_python_knows_but_the_engine_does_not_is_refused(
    warehouse: web_analytics.Warehouse, timezone: str
) -> None:
    ZoneInfo(timezone)  # Python accepts it
    with pytest.raises(ConfigurationError, match="is not known to ClickHouse"):
        warehouse.upsert_team(1, timezone)
    assert warehouse.teams() == []
