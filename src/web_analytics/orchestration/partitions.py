"""The daily UTC partitions of the pre-aggregated tables and how many days one run covers."""

import os
from datetime import date, datetime, timedelta

import dagster as dg

START_DATE_ENV = "WEB_ANALYTICS_START_DATE"
MAX_DAYS_PER_RUN_ENV = "WEB_ANALYTICS_MAX_DAYS_PER_RUN"
DEFAULT_START_DATE = "2024-01-01"
DEFAULT_MAX_DAYS_PER_RUN = 14


def _start_date() -> str:
    raw = os.environ.get(START_DATE_ENV) or DEFAULT_START_DATE
    try:
        date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{START_DATE_ENV}={raw!r} is not a date like 2024-01-01") from None
    return raw


def _backfill_policy() -> dg.BackfillPolicy:
    """Up to N days per run (default 14); 0 means the whole range in one run, which
    ``dg launch --partition-range`` requires."""
    raw = os.environ.get(MAX_DAYS_PER_RUN_ENV) or str(DEFAULT_MAX_DAYS_PER_RUN)
    if not raw.isdigit() or not 0 <= int(raw) <= 3650:
        raise ValueError(f"{MAX_DAYS_PER_RUN_ENV}={raw!r} must be a whole number from 0 to 3650")
    if int(raw) == 0:
        return dg.BackfillPolicy.single_run()
    return dg.BackfillPolicy.multi_run(max_partitions_per_run=int(raw))


daily_partitions = dg.DailyPartitionsDefinition(start_date=_start_date(), timezone="UTC")
backfill_policy = _backfill_policy()


def partition_key(day: date) -> str:
    return day.isoformat()


def window_days(start: datetime, end: datetime) -> tuple[date, date]:
    """First and last UTC day of a partition time window (end exclusive)."""
    return start.date(), (end - timedelta(days=1)).date()
