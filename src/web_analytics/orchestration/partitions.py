"""The daily UTC partitions of the pre-aggregated tables, how many days one run covers, and
the run tags that name a range of them."""

from collections.abc import Mapping
from datetime import date, datetime, timedelta

import dagster as dg

from web_analytics.orchestration.settings import WebAnalyticsSettings

PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def daily_partitions(settings: WebAnalyticsSettings) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=settings.start_date, timezone="UTC")


def backfill_policy(settings: WebAnalyticsSettings) -> dg.BackfillPolicy:
    """Up to ``max_days_per_run`` days per run; 0 means the whole range in one run, which
    ``dg launch --partition-range`` requires."""
    if settings.max_days_per_run == 0:
        return dg.BackfillPolicy.single_run()
    return dg.BackfillPolicy.multi_run(max_partitions_per_run=settings.max_days_per_run)


def partition_key(day: date) -> str:
    return day.isoformat()


def range_tags(first_day: date, last_day: date) -> dict[str, str]:
    """Tags of a run over the UTC days ``[first_day, last_day]``."""
    return {RANGE_START_TAG: partition_key(first_day), RANGE_END_TAG: partition_key(last_day)}


def tagged_days(tags: Mapping[str, str]) -> list[date]:
    """The UTC days a run's partition tags name (none for an unpartitioned run)."""
    if PARTITION_TAG in tags:
        return [date.fromisoformat(tags[PARTITION_TAG])]
    if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
        first = date.fromisoformat(tags[RANGE_START_TAG])
        last = date.fromisoformat(tags[RANGE_END_TAG])
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return []


def window_days(start: datetime, end: datetime) -> tuple[date, date]:
    """First and last UTC day of a partition time window (end exclusive)."""
    return start.date(), (end - timedelta(days=1)).date()
