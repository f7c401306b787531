"""Properties of the synthetic traffic generator: determinism, shape, realism and speed."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import uuid
from collections import Counter

import numpy as np
import pytest

import web_analytics.generator as gen

EMPTY_DAY = dt.date(2024, 3, 26)
# Ten days spanning the European DST switch (2024-03-31), six teams so +05:30 and +05:45 appear.
OPTIONS = gen.GeneratorOptions(
    seed=7,
    events=60_000,
    days=10,
    last_day=dt.date(2024, 3, 31),
    teams=6,
    late_event_share=0.02,
    duplicate_share=0.03,
    empty_days=(EMPTY_DAY,),
)
SESSION_COLUMNS = (
    "team_id",
    "distinct_id",
    "person_id",
    "host",
    "referring_domain",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "device_type",
    "browser",
    "os",
    "country_code",
    "region",
    "city",
    "viewport_width",
    "viewport_height",
)
HOUR_US = 3_600_000_000


@pytest.fixture(scope="module")
def batch() -> gen.ColumnBatch:
    return gen.generate(OPTIONS)


@pytest.fixture(scope="module")
def unique(batch: gen.ColumnBatch) -> gen.ColumnBatch:
    """The batch without deliberate duplicate rows (first occurrence of every uuid)."""
    _, first = np.unique(batch["uuid"].astype(str), return_index=True)
    keep = np.sort(first)
    return {name: values[keep] for name, values in batch.items()}


@pytest.fixture(scope="module")
def sessions(unique: gen.ColumnBatch) -> dict[str, np.ndarray]:
    """Per-session aggregates of the events that carry a session id."""
    has_session = unique["session_id"] != ""
    ids, index = np.unique(unique["session_id"][has_session].astype(str), return_inverse=True)
    event = unique["event"][has_session]
    ts = unique["timestamp"][has_session].astype(np.int64)
    first, last = np.full(ids.size, np.iinfo(np.int64).max), np.zeros(ids.size, np.int64)
    np.minimum.at(first, index, ts)
    np.maximum.at(last, index, ts)
    return {
        "events": np.bincount(index, minlength=ids.size),
        "views": np.bincount(index, np.isin(event, ["$pageview", "$screen"]), ids.size),
        "clicks": np.bincount(index, event == "$autocapture", ids.size),
        "leaves": np.bincount(index, event == "$pageleave", ids.size),
        "first": first,
        "last": last,
    }


def assert_same(left: gen.ColumnBatch, right: gen.ColumnBatch) -> None:
    assert list(left) == list(right) == list(gen.EVENT_COLUMNS)
    for name in gen.EVENT_COLUMNS:
        assert left[name].dtype == right[name].dtype, name
        if left[name].dtype == object:
            assert left[name].tolist() == right[name].tolist(), name
        else:
            assert left[name].tobytes() == right[name].tobytes(), name


def utc_days(values: np.ndarray) -> set[dt.date]:
    return set(values.astype("datetime64[D]").tolist())


def test_columns_are_complete_and_typed(batch: gen.ColumnBatch) -> None:
    assert tuple(batch) == gen.EVENT_COLUMNS
    rows = len(batch["uuid"])
    for name, values in batch.items():
        assert values.dtype == gen.COLUMN_DTYPES[name], name
        assert len(values) == rows, name
    assert set(batch["event"]) <= {"$pageview", "$screen", "$autocapture", "$pageleave"}
    assert set(batch["device_type"]) == {"Desktop", "Mobile", "Tablet"}
    assert set(batch["browser"]) <= {"Chrome", "Safari", "Firefox", "Edge", "Samsung Internet"}
    assert set(batch["os"]) <= {"Windows", "Mac OS X", "iOS", "Android", "Linux"}
    assert all(len(code) == 2 and code.isupper() for code in set(batch["country_code"]))


def test_same_options_give_identical_output_and_seeds_differ(batch: gen.ColumnBatch) -> None:
    assert_same(gen.generate(OPTIONS), batch)
    other = gen.generate(dataclasses.replace(OPTIONS, seed=8))
    assert not set(other["uuid"]) & set(batch["uuid"])
    assert not np.array_equal(other["timestamp"][:100], batch["timestamp"][:100])


def test_batches_hold_whole_sessions_and_do_not_change_the_data(batch: gen.ColumnBatch) -> None:
    batches = list(gen.generate_batches(OPTIONS, batch_events=4_000))
    assert len(batches) > 10
    assert all(len(b["uuid"]) <= 4_000 for b in batches)
    assert_same({n: np.concatenate([b[n] for b in batches]) for n in gen.EVENT_COLUMNS}, batch)

    seen: set[str] = set()
    batch_of_session: dict[str, int] = {}
    for number, part in enumerate(batches):
        for event_uuid, session_id in zip(part["uuid"], part["session_id"], strict=True):
            if event_uuid in seen or not session_id:
                continue  # a re-delivered duplicate may arrive in a later batch
            seen.add(event_uuid)
            assert batch_of_session.setdefault(session_id, number) == number


def test_event_count_is_within_five_percent(unique: gen.ColumnBatch) -> None:
    assert abs(len(unique["uuid"]) / OPTIONS.events - 1) < 0.05


def test_timestamps_span_exactly_the_requested_days(batch: gen.ColumnBatch) -> None:
    first_day = OPTIONS.last_day - dt.timedelta(days=OPTIONS.days - 1)
    expected = {first_day + dt.timedelta(days=i) for i in range(OPTIONS.days)} - {EMPTY_DAY}
    assert utc_days(batch["timestamp"]) == expected


def test_empty_days_stay_empty_even_for_sessions_started_the_day_before() -> None:
    empty = (dt.date(2024, 1, 15), dt.date(2024, 1, 16), dt.date(2024, 1, 25))
    options = gen.GeneratorOptions(seed=3, events=40_000, days=20, teams=8, empty_days=empty)
    days = utc_days(gen.generate(options)["timestamp"])
    assert not days & set(empty)
    assert {dt.date(2024, 1, 14), dt.date(2024, 1, 17), dt.date(2024, 1, 24)} <= days


def test_duplicates_are_identical_rows_in_the_requested_share(
    batch: gen.ColumnBatch, unique: gen.ColumnBatch
) -> None:
    counts = Counter(batch["uuid"].tolist())
    duplicated = {key for key, count in counts.items() if count > 1}
    assert max(counts.values()) == 2
    share = len(duplicated) / len(unique["uuid"])
    assert abs(share - OPTIONS.duplicate_share) < 0.2 * OPTIONS.duplicate_share

    rows: dict[str, tuple[object, ...]] = {}
    columns = [batch[name].tolist() for name in gen.EVENT_COLUMNS]
    for row in zip(*columns, strict=True):
        if row[0] in duplicated:
            assert rows.setdefault(row[0], row) == row


def test_late_events_arrive_days_later(unique: gen.ColumnBatch) -> None:
    delay = (unique["inserted_at"] - unique["timestamp"]).astype(np.int64) / HOUR_US
    late = delay > 24
    assert abs(late.mean() - OPTIONS.late_event_share) < 0.25 * OPTIONS.late_event_share
    assert delay[late].min() >= 48 and delay[late].max() <= 120
    assert delay.min() > 0 and delay[~late].max() < 5 / 60


def test_sessions_last_under_a_day_and_some_cross_midnight(
    sessions: dict[str, np.ndarray],
) -> None:
    day_us = 24 * HOUR_US
    assert (sessions["last"] - sessions["first"]).max() < day_us
    assert np.any(sessions["first"] // day_us != sessions["last"] // day_us)
    assert sessions["events"].max() <= 30


def test_session_attributes_are_constant_within_a_session(unique: gen.ColumnBatch) -> None:
    has_session = unique["session_id"] != ""
    session_ids = unique["session_id"][has_session].tolist()
    for name in SESSION_COLUMNS:
        values = unique[name][has_session].tolist()
        assert len(set(zip(session_ids, values, strict=True))) == len(set(session_ids)), name


def test_pathnames_change_along_sessions_and_entries_favour_the_home_page(
    unique: gen.ColumnBatch,
) -> None:
    sid = unique["session_id"]
    starts = np.flatnonzero((sid != "") & np.r_[True, sid[1:] != sid[:-1]])
    entries = Counter(unique["pathname"][starts].tolist())
    assert entries.most_common(1)[0][0] == "/"
    paths_per_session: dict[str, set[str]] = {}
    for session_id, path in zip(sid.tolist(), unique["pathname"].tolist(), strict=True):
        paths_per_session.setdefault(session_id, set()).add(path)
    assert sum(len(paths) > 1 for paths in paths_per_session.values()) > 0.3 * len(starts)


def test_session_shapes_include_bounces_clicks_and_long_reads(
    sessions: dict[str, np.ndarray],
) -> None:
    single = sessions["views"] == 1
    duration_s = (sessions["last"] - sessions["first"]) / 1e6
    assert 0.3 < single.mean() < 0.5
    bounce = single & (sessions["clicks"] == 0) & (duration_s < 10)
    assert 0.4 < bounce.sum() / single.sum() < 0.8
    assert np.any(single & (sessions["clicks"] > 0))
    lingering = (sessions["clicks"] == 0) & (sessions["leaves"] > 0) & (duration_s >= 30)
    assert np.any(single & lingering)
    assert np.any(sessions["events"] >= 15)


def test_team_traffic_is_skewed() -> None:
    options = gen.GeneratorOptions(seed=11, events=20_000, days=7, teams=5)
    per_team = Counter(gen.generate(options)["team_id"].tolist())
    assert sorted(per_team) == [1, 2, 3, 4, 5]
    assert max(per_team.values()) > 2 * min(per_team.values())


def test_team_profiles_cycle_timezones_with_skewed_weights() -> None:
    profiles = gen.team_profiles(8, seed=1)
    assert [p.team_id for p in profiles] == list(range(1, 9))
    assert {"Asia/Kolkata", "Asia/Kathmandu"} <= {p.timezone for p in profiles}
    assert "Asia/Kathmandu" not in {p.timezone for p in gen.team_profiles(5, seed=1)}
    weights = [p.weight for p in profiles]
    assert sum(weights) == pytest.approx(1.0)
    assert weights[0] == max(weights) and weights[0] > 5 * min(weights)


def test_traffic_follows_local_daytime(unique: gen.ColumnBatch) -> None:
    offsets = {"Asia/Tokyo": 9 * 60, "Asia/Kathmandu": 5 * 60 + 45}
    for profile in gen.team_profiles(OPTIONS.teams, OPTIONS.seed):
        if profile.timezone not in offsets:
            continue
        ts = unique["timestamp"][unique["team_id"] == profile.team_id]
        minute = (ts.astype("datetime64[m]").astype(np.int64) + offsets[profile.timezone]) % 1440
        hour = minute // 60
        day_rate = np.mean((hour >= 9) & (hour < 18)) / 9
        night_rate = np.mean(hour < 6) / 6
        assert day_rate > 2.5 * night_rate, profile.timezone


def test_urls_hosts_referrers_and_utm_are_consistent(unique: gen.ColumnBatch) -> None:
    hosts_per_team: dict[int, set[str]] = {}
    rows = zip(
        unique["team_id"].tolist(),
        unique["host"].tolist(),
        unique["pathname"].tolist(),
        unique["current_url"].tolist(),
        unique["utm_source"].tolist(),
        strict=True,
    )
    for team_id, host, pathname, url, utm_source in rows:
        hosts_per_team.setdefault(team_id, set()).add(host)
        prefix = f"https://{host}{pathname}"
        assert url == prefix or url.startswith(f"{prefix}?utm_source={utm_source}&"), url
    assert {len(hosts) for hosts in hosts_per_team.values()} == {1, 2, 3}
    assert any("?utm_source=" in url for url in unique["current_url"])

    web = (unique["session_id"] != "") & (unique["event"] != "$screen")
    session_utm = dict(zip(unique["session_id"][web], unique["utm_source"][web] != "", strict=True))
    assert 0.06 < np.mean(list(session_utm.values())) < 0.14
    referrers = Counter(unique["referring_domain"].tolist())
    assert {"", "google.com", "t.co", "news.ycombinator.com"} <= set(referrers)
    assert referrers.most_common(1)[0][0] == ""


def test_viewports_match_device_types(unique: gen.ColumnBatch) -> None:
    width, device = unique["viewport_width"], unique["device_type"]
    assert width[device == "Desktop"].min() >= 1280
    assert width[device == "Mobile"].max() <= 430
    assert width[device == "Tablet"].min() >= 768 and width[device == "Tablet"].max() <= 1024
    assert np.all(unique["viewport_height"] > 0)


def test_screen_events_are_a_little_mobile_app_traffic(unique: gen.ColumnBatch) -> None:
    screen = unique["event"] == "$screen"
    assert 0 < screen.mean() < 0.1
    assert {int(team) % 3 for team in set(unique["team_id"][screen].tolist())} == {0}
    assert set(unique["device_type"][screen]) <= {"Mobile", "Tablet"}


def test_people_sessions_and_ids(unique: gen.ColumnBatch) -> None:
    assert 0.001 < np.mean(unique["session_id"] == "") < 0.015
    assert 0.05 < np.mean(unique["person_id"] == "") < 0.15
    for value in unique["uuid"][:200].tolist() + unique["session_id"][:200].tolist():
        if value:
            assert str(uuid.UUID(value)) == value and uuid.UUID(value).version == 7
    assert len(set(unique["uuid"])) == len(unique["uuid"])

    days_per_person: dict[str, set[object]] = {}
    days = unique["timestamp"].astype("datetime64[D]").tolist()
    for distinct_id, day in zip(unique["distinct_id"].tolist(), days, strict=True):
        days_per_person.setdefault(distinct_id, set()).add(day)
    assert any(len(seen) >= 3 for seen in days_per_person.values())  # returning visitors


def test_to_posthog_events_round_trips_core_fields(batch: gen.ColumnBatch) -> None:
    events = gen.to_posthog_events(batch, limit=500)
    assert len(events) == 500
    for i, event in enumerate(events):
        props = event["properties"]
        assert isinstance(props, dict)
        assert event["uuid"] == batch["uuid"][i] and event["event"] == batch["event"][i]
        assert event["team_id"] == int(batch["team_id"][i])
        assert event["distinct_id"] == batch["distinct_id"][i]
        assert event.get("person_id", "") == batch["person_id"][i]
        stamp = dt.datetime.fromisoformat(str(event["timestamp"]))
        assert stamp.utcoffset() == dt.timedelta(0)
        assert np.datetime64(stamp.replace(tzinfo=None), "us") == batch["timestamp"][i]
        assert props.get("$session_id", "") == batch["session_id"][i]
        assert props["$current_url"] == batch["current_url"][i]
        assert props["$pathname"] == batch["pathname"][i]
        assert props["$host"] == batch["host"][i]
        assert props.get("$referring_domain", "") == batch["referring_domain"][i]
        assert props.get("utm_campaign", "") == batch["utm_campaign"][i]
        assert props["$device_type"] == batch["device_type"][i]
        assert props["$geoip_country_code"] == batch["country_code"][i]
        assert props.get("$geoip_city_name", "") == batch["city"][i]
        assert props["$viewport_width"] == int(batch["viewport_width"][i])
        assert "" not in props.values()
    assert len(gen.to_posthog_events(batch)) == len(batch["uuid"])


def test_nothing_to_generate_gives_typed_empty_columns() -> None:
    for options in (
        gen.GeneratorOptions(events=0),
        gen.GeneratorOptions(
            events=1_000, days=2, empty_days=(dt.date(2024, 1, 30), dt.date(2024, 1, 31))
        ),
    ):
        empty = gen.generate(options)
        assert tuple(empty) == gen.EVENT_COLUMNS
        assert all(len(values) == 0 for values in empty.values())
        assert empty["timestamp"].dtype == np.dtype("datetime64[us]")


@pytest.mark.parametrize(
    "changes", [{"seed": -1}, {"days": 0}, {"teams": 0}, {"duplicate_share": 1.5}]
)
def test_invalid_options_are_rejected(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        gen.GeneratorOptions(**changes)  # type: ignore[arg-type]


def test_one_million_events_generate_quickly() -> None:
    options = gen.GeneratorOptions(events=1_000_000, teams=8)
    started = time.perf_counter()
    rows = sum(len(part["uuid"]) for part in gen.generate_batches(options))
    elapsed = time.perf_counter() - started
    print(f"generated {rows:,} events in {elapsed:.2f} s")
    assert abs(rows / options.events - 1) < 0.05
    assert elapsed < 30
