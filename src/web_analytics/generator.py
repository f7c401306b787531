"""Deterministic synthetic web traffic in PostHog's event model.

The generator works top-down: a plan fixes how many sessions each team starts on each UTC day
(team weights, weekday and growth factors), every day draws its session start times from a
diurnal curve in each team's local timezone, and fixed-size blocks of sessions are expanded into
events with vectorised numpy code. Every day and every block has its own random stream derived
from the seed, so the output depends only on the options (never on the batch size), and memory
stays bounded by the block and batch sizes rather than by the total number of events.

People are hashed, not stored: a session picks a person number from its team's pool and all of
the person's stable attributes (ids, device, browser, location, viewport) are derived from a
hash of that number, so a returning person looks the same in every block without any lookup.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from web_analytics.warehouse.schema import EVENT_COLUMN_NAMES
from web_analytics.warehouse.teams import Team

ColumnBatch = dict[str, np.ndarray]

EVENT_COLUMNS: tuple[str, ...] = EVENT_COLUMN_NAMES

COLUMN_DTYPES: dict[str, np.dtype] = {name: np.dtype(object) for name in EVENT_COLUMNS} | {
    "team_id": np.dtype(np.uint64),
    "timestamp": np.dtype("datetime64[us]"),
    "viewport_width": np.dtype(np.uint32),
    "viewport_height": np.dtype(np.uint32),
    "inserted_at": np.dtype("datetime64[us]"),
}

TIMEZONES: tuple[str, ...] = (
    "UTC",
    "Europe/London",
    "America/Los_Angeles",
    "Asia/Kolkata",
    "Asia/Tokyo",
    "Asia/Kathmandu",
    "Europe/Berlin",
    "America/New_York",
)

SECOND_US = 1_000_000
MINUTE_US = 60 * SECOND_US
DAY_US = 86_400 * SECOND_US
_EPOCH = dt.date(1970, 1, 1)
_U64_MASK = (1 << 64) - 1

# Independent random streams: (seed, stream, ...) never collide between the plan, days and blocks.
_TEAM_STREAM, _PLAN_STREAM, _DAY_STREAM, _BLOCK_STREAM = 1, 2, 3, 4

# Sessions per generation block: big enough to amortise numpy call overhead, small enough that a
# block (~90k events) stays a few tens of MB.
_BLOCK_SESSIONS = 20_000

_TEAM_ZIPF_EXPONENT = 1.2
_WEEKDAY_FACTOR = (1.0, 1.05, 1.05, 1.0, 0.95, 0.7, 0.75)
_GROWTH_OVER_PERIOD = 0.2


@dataclass(frozen=True)
class TeamProfile(Team):
    """One tenant (a registry ``Team``: its id and the IANA timezone its visitors live in)
    and its share of the generated traffic."""

    weight: float = 1.0


@dataclass(frozen=True)
class GeneratorOptions:
    """What to generate; the same options always produce byte-identical output.

    `events` counts distinct events (±5 %); deliberate duplicates come on top of it. The volume is
    spread over the non-empty days, so `empty_days` do not shrink the total.
    """

    seed: int = 42
    events: int = 1_000_000
    days: int = 30
    last_day: dt.date = dt.date(2024, 1, 31)
    teams: int = 5
    late_event_share: float = 0.0
    duplicate_share: float = 0.0
    empty_days: tuple[dt.date, ...] = ()
    person_share_without_person_id: float = 0.1

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError("seed must be >= 0")
        if self.events < 0 or self.days < 1 or self.teams < 1:
            raise ValueError("events must be >= 0, days and teams >= 1")
        shares = (self.late_event_share, self.duplicate_share, self.person_share_without_person_id)
        if not all(0.0 <= share <= 1.0 for share in shares):
            raise ValueError("shares must lie in [0, 1]")

    @property
    def first_day(self) -> dt.date:
        """The first UTC day with traffic: `last_day - days + 1`."""
        return self.last_day - dt.timedelta(days=self.days - 1)


# --- vocabularies ------------------------------------------------------------------------------

_PAGEVIEW, _SCREEN, _AUTOCAPTURE, _PAGELEAVE = range(4)
_EVENT_NAMES = np.array(["$pageview", "$screen", "$autocapture", "$pageleave"], dtype=object)

# Session shapes. Single-pageview shapes make up 40 %: plain bounces, bounces with a quick
# $pageleave (< 10 s, still a bounce), ones with a click and ones that linger (>= 30 s).
_BOUNCE, _QUICK_LEAVE, _CLICK, _LINGER, _MULTI = range(5)
_SHAPE_P = np.array([0.20, 0.04, 0.08, 0.08, 0.60])
_SHAPE_LENGTH = np.array([1, 2, 2, 2, 0])
_MULTI_LENGTHS = np.arange(2, 31)
_MULTI_P = _MULTI_LENGTHS**-1.6 / np.sum(_MULTI_LENGTHS**-1.6)
_MEAN_EVENTS_PER_SESSION = float(
    _SHAPE_P @ _SHAPE_LENGTH + _SHAPE_P[_MULTI] * (_MULTI_LENGTHS @ _MULTI_P)
)
_MULTI_PAGEVIEW_P = 0.55  # otherwise $autocapture
_MULTI_PAGELEAVE_P = 0.4  # the last event of a long session is a $pageleave
_GAP_MEDIAN_S, _GAP_SIGMA, _MAX_GAP_S = 15.0, 1.4, 1_790.0  # stays under the 30 min timeout

_APP_SESSION_SHARE = 0.25  # of the sessions of mobile-app teams
_UTM_SESSION_SHARE = 0.10
_SESSIONLESS_SHARE = 0.005
_RETURNING_SESSION_SHARE = 0.3
_RETURNING_MEAN_SESSIONS = 8.0
_NEW_MEAN_SESSIONS = 1.2
_HOME_COUNTRY_SHARE = 0.45
_DUPLICATE_SAME_BATCH_P = 0.5

_DEVICES = np.array(["Desktop", "Mobile", "Tablet"], dtype=object)
_DEVICE_P = np.array([0.55, 0.40, 0.05])
_OSES = np.array(["Windows", "Mac OS X", "iOS", "Android", "Linux"], dtype=object)
_OS_GIVEN_DEVICE = [[60, 28, 0, 0, 12], [0, 0, 55, 45, 0], [0, 0, 70, 30, 0]]
_BROWSERS = np.array(["Chrome", "Safari", "Firefox", "Edge", "Samsung Internet"], dtype=object)
_BROWSER_GIVEN_OS = [
    [68, 0, 10, 22, 0],
    [52, 40, 8, 0, 0],
    [15, 85, 0, 0, 0],
    [75, 0, 5, 0, 20],
    [65, 0, 35, 0, 0],
]
# (width, height, weight) per device row; zero-weight padding keeps the table rectangular.
_VIEWPORTS = np.array(
    [
        [
            (1920, 969, 30),
            (1536, 730, 15),
            (1440, 789, 12),
            (1366, 657, 10),
            (1280, 632, 8),
            (2560, 1305, 8),
            (1680, 939, 5),
        ],
        [
            (390, 844, 20),
            (393, 852, 15),
            (414, 896, 10),
            (375, 667, 8),
            (360, 800, 15),
            (412, 915, 15),
            (430, 932, 10),
        ],
        [
            (768, 1024, 30),
            (810, 1080, 25),
            (820, 1180, 25),
            (1024, 1366, 20),
            (0, 0, 0),
            (0, 0, 0),
            (0, 0, 0),
        ],
    ]
)

_LOCATIONS: tuple[tuple[str, str, str, float], ...] = (
    ("US", "US-CA", "San Francisco", 8),
    ("US", "US-CA", "Los Angeles", 4),
    ("US", "US-NY", "New York", 7),
    ("US", "US-TX", "Austin", 4),
    ("US", "US-WA", "Seattle", 3),
    ("US", "US-IL", "Chicago", 2),
    ("US", "", "", 2),
    ("GB", "GB-ENG", "London", 6),
    ("GB", "GB-ENG", "Manchester", 1.5),
    ("GB", "GB-SCT", "Edinburgh", 1),
    ("GB", "", "", 0.5),
    ("DE", "DE-BE", "Berlin", 4),
    ("DE", "DE-BY", "Munich", 2.5),
    ("DE", "DE-HH", "Hamburg", 1.5),
    ("IN", "IN-KA", "Bengaluru", 4),
    ("IN", "IN-MH", "Mumbai", 3),
    ("IN", "IN-DL", "Delhi", 2.5),
    ("IN", "", "", 0.5),
    ("JP", "JP-13", "Tokyo", 4),
    ("JP", "JP-27", "Osaka", 2),
    ("NP", "NP-P3", "Kathmandu", 1.2),
    ("NP", "NP-P4", "Pokhara", 0.3),
    ("FR", "FR-IDF", "Paris", 4.5),
    ("FR", "FR-ARA", "Lyon", 1.5),
    ("BR", "BR-SP", "São Paulo", 3.5),
    ("BR", "BR-RJ", "Rio de Janeiro", 1.5),
    ("CA", "CA-ON", "Toronto", 2.5),
    ("CA", "CA-BC", "Vancouver", 1.5),
    ("AU", "AU-NSW", "Sydney", 2),
    ("AU", "AU-VIC", "Melbourne", 1),
    ("NL", "NL-NH", "Amsterdam", 2.5),
    ("ES", "ES-MD", "Madrid", 2.5),
    ("PL", "PL-14", "Warsaw", 1.5),
    ("SE", "SE-AB", "Stockholm", 1),
    ("SG", "", "Singapore", 1),
)
_COUNTRIES = np.array([loc[0] for loc in _LOCATIONS], dtype=object)
_REGIONS = np.array([loc[1] for loc in _LOCATIONS], dtype=object)
_CITIES = np.array([loc[2] for loc in _LOCATIONS], dtype=object)
_LOCATION_P = np.array([loc[3] for loc in _LOCATIONS], dtype=np.float64)
_HOME_COUNTRY = {
    "Europe/London": "GB",
    "America/Los_Angeles": "US",
    "Asia/Kolkata": "IN",
    "Asia/Tokyo": "JP",
    "Asia/Kathmandu": "NP",
    "Europe/Berlin": "DE",
    "America/New_York": "US",
}

_REFERRERS = np.array(
    [
        "",
        "google.com",
        "t.co",
        "news.ycombinator.com",
        "bing.com",
        "duckduckgo.com",
        "linkedin.com",
        "reddit.com",
        "github.com",
        "facebook.com",
        "chatgpt.com",
    ],
    dtype=object,
)
_ORGANIC_REFERRER_P = np.array([42, 30, 4, 4, 4, 3, 3, 3, 3, 2, 2], dtype=np.float64)
_DIRECT = 0
# (source, medium, campaign, term, content, referring domain, weight); row 0 is "no campaign".
_CAMPAIGNS: tuple[tuple[str, str, str, str, str, str, float], ...] = (
    ("", "", "", "", "", "", 0),
    ("google", "cpc", "brand_search", "product analytics", "ad_1", "google.com", 25),
    ("google", "cpc", "competitor_search", "web analytics tool", "ad_2", "google.com", 12),
    ("twitter", "social", "launch_week", "", "thread", "t.co", 12),
    ("newsletter", "email", "weekly_digest", "", "header_link", "", 15),
    ("newsletter", "email", "product_update", "", "cta_button", "", 8),
    ("linkedin", "paid_social", "b2b_q1", "", "carousel", "linkedin.com", 8),
    ("hackernews", "community", "show_hn", "", "", "news.ycombinator.com", 5),
    ("facebook", "cpc", "retargeting", "", "video", "facebook.com", 7),
    ("partner", "referral", "integration_partner", "", "", "github.com", 4),
    ("reddit", "cpc", "dev_tools", "", "banner", "reddit.com", 4),
)
_UTM_COLUMNS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
_UTM_VALUES = {
    name: np.array([row[i] for row in _CAMPAIGNS], dtype=object)
    for i, name in enumerate(_UTM_COLUMNS)
}
_CAMPAIGN_REFERRER = np.array(
    [_REFERRERS.tolist().index(row[5]) for row in _CAMPAIGNS], dtype=np.int64
)
_CAMPAIGN_P = np.array([row[6] for row in _CAMPAIGNS], dtype=np.float64)
_CAMPAIGN_QUERY = np.array(
    [
        "?"
        + "&".join(
            f"{name}={value.replace(' ', '+')}"
            for name, value in zip(_UTM_COLUMNS, row[:5], strict=True)
            if value
        )
        for row in _CAMPAIGNS
    ],
    dtype=object,
)

_BRANDS = ("example", "hogflix", "acme", "widgetco", "datapipe", "shopfront", "nimbus", "orbit")
_HOST_PREFIXES = ("www", "app", "docs")
_HOST_P = (0.7, 0.2, 0.1)


def _zipf(n: int, exponent: float) -> np.ndarray:
    """Weights proportional to 1 / rank**exponent, summing to 1."""
    raw = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    return raw / raw.sum()


def _path_vocabulary() -> tuple[np.ndarray, np.ndarray]:
    """All pathnames and their weights as [web entry, web next, app entry, app next] rows."""
    site = {
        "/": (30, 8),
        "/pricing": (8, 10),
        "/features": (3, 6),
        "/about": (1, 3),
        "/blog": (2, 5),
        "/docs": (2, 5),
        "/signup": (1, 5),
        "/login": (4, 4),
        "/contact": (0.5, 2),
        "/changelog": (1, 2),
        "/customers": (0.5, 2),
        "/careers": (0.5, 1),
        "/integrations": (0.5, 2),
    }
    docs = (
        "getting-started",
        "installation",
        "api",
        "sdk/javascript",
        "sdk/python",
        "self-hosting",
        "billing",
        "faq",
        "troubleshooting",
        "data-model",
        "sessions",
        "feature-flags",
    )
    screens = {
        "/home": (60, 15),
        "/feed": (10, 25),
        "/search": (5, 15),
        "/settings": (2, 8),
        "/profile": (3, 10),
        "/notifications": (10, 10),
        "/cart": (5, 9),
        "/checkout": (5, 8),
    }
    paths = list(site) + [f"/blog/post-{i}" for i in range(1, 61)] + [f"/docs/{d}" for d in docs]
    web_entry = np.concatenate(
        [[w[0] for w in site.values()], 28 * _zipf(60, 1.1), 10 * _zipf(len(docs), 0.8)]
    )
    web_next = np.concatenate(
        [[w[1] for w in site.values()], 10 * _zipf(60, 1.1), 20 * _zipf(len(docs), 0.8)]
    )
    web_zeros, app_zeros = np.zeros(len(screens)), np.zeros(len(paths))
    weights = np.array(
        [
            np.concatenate([web_entry, web_zeros]),
            np.concatenate([web_next, web_zeros]),
            np.concatenate([app_zeros, [w[0] for w in screens.values()]]),
            np.concatenate([app_zeros, [w[1] for w in screens.values()]]),
        ]
    )
    return np.array(paths + list(screens), dtype=object), weights


def _diurnal_weights() -> np.ndarray:
    """Relative traffic per local minute of the day: a late-morning peak and an evening bump."""
    hours = np.arange(1440) / 60.0

    def bump(centre: float, width: float) -> np.ndarray:
        distance = (hours - centre + 12.0) % 24.0 - 12.0  # circular, so 23:00 is near 01:00
        return np.exp(-0.5 * (distance / width) ** 2)

    return 0.2 + bump(11.0, 3.0) + 0.6 * bump(20.5, 2.0)


# --- vectorised helpers ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    """Categorical distributions, one per row, sampled for many (row, uniform) pairs at once."""

    flat: np.ndarray  # row r holds r + cdf(r), so one sorted search covers every row
    width: int
    last: np.ndarray  # last column with positive weight, per row

    @classmethod
    def of(cls, weights: npt.ArrayLike) -> _Table:
        w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        cumulative = np.cumsum(w, axis=1)
        # Dividing by the row's own final cumsum makes the cdf hit exactly 1.0.
        cdf = cumulative / cumulative[:, -1:]
        last = w.shape[1] - 1 - np.argmax(w[:, ::-1] > 0, axis=1)
        return cls(flat=(cdf + np.arange(len(w))[:, None]).ravel(), width=w.shape[1], last=last)

    def pick(self, rows: np.ndarray | int, u: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.flat, rows + u, side="right") - np.asarray(rows) * self.width
        return np.minimum(idx, self.last[rows])  # guards against r + u rounding up to r + 1


_PATHS, _PATH_WEIGHTS = _path_vocabulary()
_PATH_TABLE = _Table.of(_PATH_WEIGHTS)
_SHAPE_TABLE = _Table.of([_SHAPE_P])
_MULTI_TABLE = _Table.of([_MULTI_P])
_DEVICE_TABLE = _Table.of([_DEVICE_P])
_OS_TABLE = _Table.of(_OS_GIVEN_DEVICE)
_BROWSER_TABLE = _Table.of(_BROWSER_GIVEN_OS)
_VIEWPORT_TABLE = _Table.of(_VIEWPORTS[:, :, 2])
_REFERRER_TABLE = _Table.of([_ORGANIC_REFERRER_P])
_CAMPAIGN_TABLE = _Table.of([_CAMPAIGN_P])
_DIURNAL = _diurnal_weights()

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_HEX_PAIRS = np.array(
    [ord(f"{i:02x}"[0]) | ord(f"{i:02x}"[1]) << 8 for i in range(256)], dtype="<u2"
)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijective, well-spread hash of uint64 values."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def _derive(key: np.ndarray, salt: int) -> np.ndarray:
    """An independent hash of `key` for each salt (one per derived attribute)."""
    return _mix(key ^ np.uint64((salt * 0x9E3779B97F4A7C15) & _U64_MASK))


def _unit(bits: np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1) from the top 53 bits of uint64 values."""
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _uuid_text(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Canonical 8-4-4-4-12 lowercase text of 128-bit values, as an object array of str."""
    n = hi.size
    raw = np.empty((n, 2), dtype=">u8")
    raw[:, 0], raw[:, 1] = hi, lo
    hexed = _HEX_PAIRS[raw.view(np.uint8).reshape(n, 16)].view(np.uint8).reshape(n, 32)
    text = np.empty((n, 36), dtype=np.uint32)  # UCS-4 code points, viewable as numpy str
    text[:, [8, 13, 18, 23]] = ord("-")
    text[:, 0:8], text[:, 9:13], text[:, 14:18] = hexed[:, 0:8], hexed[:, 8:12], hexed[:, 12:16]
    text[:, 19:23], text[:, 24:36] = hexed[:, 16:20], hexed[:, 20:32]
    return text.view("U36").ravel().astype(object)


def _uuid4_text(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Random-looking bits stamped with the UUID version 4 and RFC 4122 variant."""
    hi = (hi & np.uint64(0xFFFF_FFFF_FFFF_0FFF)) | np.uint64(0x4000)
    return _uuid_text(hi, _with_variant(lo))


def _uuid7_text(unix_ms: np.ndarray, rand: np.ndarray) -> np.ndarray:
    """UUIDv7 (time-ordered, as posthog-js generates) from milliseconds and 2 x n random words."""
    hi = (unix_ms.astype(np.uint64) << np.uint64(16)) | np.uint64(0x7000)
    hi |= rand[0] & np.uint64(0x0FFF)
    return _uuid_text(hi, _with_variant(rand[1]))


def _with_variant(lo: np.ndarray) -> np.ndarray:
    return (lo & np.uint64(0x3FFF_FFFF_FFFF_FFFF)) | np.uint64(0x8000_0000_0000_0000)


def _random_words(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 1 << 64, size=(2, n), dtype=np.uint64)


def _take(columns: ColumnBatch, index: np.ndarray | slice) -> ColumnBatch:
    return {name: values[index] for name, values in columns.items()}


def _concat(parts: Sequence[ColumnBatch]) -> ColumnBatch:
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([part[name] for part in parts]) for name in EVENT_COLUMNS}


def _rows(columns: ColumnBatch) -> int:
    return len(columns["uuid"])


def empty_batch() -> ColumnBatch:
    """A batch with every column present, correctly typed and empty."""
    return {name: np.empty(0, dtype=COLUMN_DTYPES[name]) for name in EVENT_COLUMNS}


# --- planning ----------------------------------------------------------------------------------


def team_profiles(teams: int, seed: int) -> list[TeamProfile]:
    """Teams 1..`teams` with Zipf-like weights summing to 1 (team 1 is the largest, with a
    little seeded jitter) and timezones cycling through `TIMEZONES`, so the +05:30 and +05:45
    offsets appear as soon as there are 6 teams."""
    jitter = np.random.default_rng([seed, _TEAM_STREAM]).lognormal(0.0, 0.1, teams)
    raw = _zipf(teams, _TEAM_ZIPF_EXPONENT) * jitter
    weights = raw / raw.sum()
    return [
        TeamProfile(team_id=i + 1, timezone=TIMEZONES[i % len(TIMEZONES)], weight=float(w))
        for i, w in enumerate(weights)
    ]


def _has_app(team_id: int) -> bool:
    """Every third team also ships a mobile app that sends `$screen` events."""
    return team_id % 3 == 0


def _team_hosts(team_id: int) -> list[str]:
    """1-3 hosts per team on a brand domain that is unique to the team."""
    cycle, brand = divmod(team_id - 1, len(_BRANDS))
    domain = f"{_BRANDS[brand]}{cycle or ''}.com"
    return [f"{prefix}.{domain}" for prefix in _HOST_PREFIXES[: 1 + (team_id - 1) % 3]]


@dataclass(frozen=True)
class _Plan:
    """Everything fixed before the first event is drawn; blocks only read it."""

    options: GeneratorOptions
    profiles: tuple[TeamProfile, ...]
    team_ids: np.ndarray  # uint64, per team index
    sessions: np.ndarray  # [day, team] number of sessions starting that day
    allowed_days: np.ndarray  # [day + 1] whether a timestamp may fall on that day (last: beyond)
    new_pool: np.ndarray  # [team] one-off visitors
    returning_pool: np.ndarray  # [team] visitors who come back ~8 times
    has_app: np.ndarray  # [team]
    hosts: np.ndarray  # [team * 3] object; unused slots repeat the first host
    host_table: _Table
    url_prefix: np.ndarray  # [team * 3, path] "https://host/path"
    location_table: _Table
    seed_key: np.ndarray  # uint64[1]

    @property
    def first_day_us(self) -> int:
        return (self.options.first_day - _EPOCH).days * DAY_US


def _make_plan(options: GeneratorOptions) -> _Plan:
    profiles = tuple(team_profiles(options.teams, options.seed))
    rng = np.random.default_rng([options.seed, _PLAN_STREAM])
    days = [options.first_day + dt.timedelta(days=i) for i in range(options.days)]
    empty = set(options.empty_days)
    allowed = np.array([day not in empty for day in days] + [False])

    weekday = np.array([_WEEKDAY_FACTOR[day.weekday()] for day in days])
    growth = 1.0 + _GROWTH_OVER_PERIOD * np.arange(options.days) / max(options.days - 1, 1)
    volume = weekday * growth * rng.lognormal(0.0, 0.05, options.days) * allowed[:-1]
    weights = np.array([profile.weight for profile in profiles])
    total_sessions = options.events / _MEAN_EVENTS_PER_SESSION
    day_share = volume / volume.sum() if volume.sum() > 0 else volume
    sessions = rng.poisson(total_sessions * np.outer(day_share, weights))

    team_sessions = total_sessions * weights
    returning = _RETURNING_SESSION_SHARE * team_sessions / _RETURNING_MEAN_SESSIONS
    new = (1.0 - _RETURNING_SESSION_SHARE) * team_sessions / _NEW_MEAN_SESSIONS

    hosts, host_weights = [], []
    for profile in profiles:
        team_hosts = _team_hosts(profile.team_id)
        hosts += team_hosts + [team_hosts[0]] * (len(_HOST_PREFIXES) - len(team_hosts))
        host_weights.append(list(_HOST_P[: len(team_hosts)]) + [0.0] * (3 - len(team_hosts)))
    host_array = np.array(hosts, dtype=object)
    url_prefix = np.array(
        [[f"https://{host}{path}" for path in _PATHS] for host in hosts], dtype=object
    )

    location_weights = []
    global_share = _LOCATION_P / _LOCATION_P.sum()
    for profile in profiles:
        home = np.equal(_COUNTRIES, _HOME_COUNTRY.get(profile.timezone, ""))
        if home.any():
            home_share = np.where(home, _LOCATION_P, 0.0) / _LOCATION_P[home].sum()
            location_weights.append(
                (1 - _HOME_COUNTRY_SHARE) * global_share + _HOME_COUNTRY_SHARE * home_share
            )
        else:
            location_weights.append(global_share)

    return _Plan(
        options=options,
        profiles=profiles,
        team_ids=np.array([profile.team_id for profile in profiles], dtype=np.uint64),
        sessions=sessions,
        allowed_days=allowed,
        new_pool=np.maximum(1, np.round(new)).astype(np.int64),
        returning_pool=np.maximum(1, np.round(returning)).astype(np.int64),
        has_app=np.array([_has_app(profile.team_id) for profile in profiles]),
        hosts=host_array,
        host_table=_Table.of(host_weights),
        url_prefix=url_prefix,
        location_table=_Table.of(location_weights),
        seed_key=_mix(np.array([options.seed & _U64_MASK], dtype=np.uint64)),
    )


def _start_minute_table(plan: _Plan, day: dt.date) -> _Table:
    """Per team, the distribution of session starts over the UTC minutes of `day`."""
    noon = dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)
    rows = []
    for profile in plan.profiles:
        offset = noon.astimezone(ZoneInfo(profile.timezone)).utcoffset() or dt.timedelta()
        local_minute = (np.arange(1440) + int(offset.total_seconds()) // 60) % 1440
        rows.append(_DIURNAL[local_minute])
    return _Table.of(rows)


# --- session and event expansion ---------------------------------------------------------------


@dataclass(frozen=True)
class _Block:
    """One block of whole sessions plus the rows it chose to deliver twice."""

    columns: ColumnBatch
    session_ends: np.ndarray  # row offset just past each session, ascending
    duplicate_now: np.ndarray  # rows re-sent right after the block
    duplicate_later: np.ndarray  # rows re-sent after the next block


def _day_blocks(plan: _Plan, day_index: int) -> Iterator[_Block]:
    counts = plan.sessions[day_index]
    n = int(counts.sum())
    if n == 0:
        return
    seed = plan.options.seed
    rng = np.random.default_rng([seed, _DAY_STREAM, day_index])
    day = plan.options.first_day + dt.timedelta(days=day_index)
    team = np.repeat(np.arange(len(counts)), counts)
    minute = _start_minute_table(plan, day).pick(team, rng.random(n))
    start = (
        plan.first_day_us + day_index * DAY_US + minute * MINUTE_US + rng.integers(0, MINUTE_US, n)
    )
    order = np.argsort(start, kind="stable")
    for block, first in enumerate(range(0, n, _BLOCK_SESSIONS)):
        chosen = order[first : first + _BLOCK_SESSIONS]
        block_rng = np.random.default_rng([seed, _BLOCK_STREAM, day_index, block])
        yield _expand_block(plan, block_rng, team[chosen], start[chosen])


def _session_shapes(
    rng: np.random.Generator, n: int, is_app: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per session its length; per event its type and offset (µs) from the session start."""
    shape = _SHAPE_TABLE.pick(0, rng.random(n))
    length = _SHAPE_LENGTH[shape]
    multi = shape == _MULTI
    length[multi] = _MULTI_LENGTHS[_MULTI_TABLE.pick(0, rng.random(int(multi.sum())))]

    total = int(length.sum())
    first = np.cumsum(length) - length
    session = np.repeat(np.arange(n), length)
    position = np.arange(total) - first[session]
    event_shape = shape[session]
    second = position == 1

    kind = np.where(rng.random(total) < _MULTI_PAGEVIEW_P, _PAGEVIEW, _AUTOCAPTURE)
    kind[position == 0] = _PAGEVIEW
    kind[second & (event_shape == _MULTI)] = _PAGEVIEW  # multi-page sessions view >= 2 pages
    kind[second & ((event_shape == _QUICK_LEAVE) | (event_shape == _LINGER))] = _PAGELEAVE
    kind[second & (event_shape == _CLICK)] = _AUTOCAPTURE
    is_last = position == length[session] - 1
    leaves = is_last & (position >= 2) & (rng.random(total) < _MULTI_PAGELEAVE_P)
    kind[leaves] = _PAGELEAVE
    app_event = is_app[session]
    kind[app_event & (kind == _PAGEVIEW)] = _SCREEN
    kind[app_event & (kind == _PAGELEAVE)] = _AUTOCAPTURE  # apps send no $pageleave

    gap = np.clip(rng.lognormal(np.log(_GAP_MEDIAN_S), _GAP_SIGMA, total), 1.0, _MAX_GAP_S)
    u = rng.random(total)
    gap = np.where(second & (event_shape == _QUICK_LEAVE), 2.0 + 7.9 * u, gap)
    gap = np.where(second & (event_shape == _CLICK), 1.0 + 19.0 * u, gap)
    linger = np.minimum(30.0 - 120.0 * np.log1p(-u), _MAX_GAP_S)
    gap = np.where(second & (event_shape == _LINGER), linger, gap)
    gap[position == 0] = 0.0
    elapsed = np.cumsum((gap * SECOND_US).astype(np.int64))
    offset = elapsed - elapsed[first][session]
    return length, kind, offset


def _expand_block(
    plan: _Plan, rng: np.random.Generator, team: np.ndarray, start: np.ndarray
) -> _Block:
    options = plan.options
    is_app = plan.has_app[team] & (rng.random(team.size) < _APP_SESSION_SHARE)
    length, kind, offset = _session_shapes(rng, team.size, is_app)

    # Drop sessions that would spill into an empty day or past last_day (sessions last < 24 h).
    ends = np.cumsum(length)
    end_day = (start + offset[ends - 1] - plan.first_day_us) // DAY_US
    keep = plan.allowed_days[np.minimum(end_day, options.days)]
    if not keep.all():
        keep_event = np.repeat(keep, length)
        team, start, is_app, length = team[keep], start[keep], is_app[keep], length[keep]
        kind, offset = kind[keep_event], offset[keep_event]
        ends = np.cumsum(length)

    n, total = team.size, int(length.sum())
    session = np.repeat(np.arange(n), length)
    position = np.arange(total) - (ends - length)[session]
    timestamp = start[session] + offset

    # People: a session picks a one-off or a returning visitor; the person hash is stable.
    returning = rng.random(n) < _RETURNING_SESSION_SHARE
    pool = np.where(returning, plan.returning_pool[team], plan.new_pool[team])
    number = (rng.random(n) * pool).astype(np.int64) + np.where(returning, plan.new_pool[team], 0)
    key = (team.astype(np.uint64) << np.uint64(40)) | number.astype(np.uint64)
    person = _mix(_mix(key) ^ plan.seed_key)
    distinct_id = _uuid4_text(_derive(person, 1), _derive(person, 2))
    person_id = _uuid4_text(_derive(person, 3), _derive(person, 4))
    person_id[_unit(_derive(person, 5)) < options.person_share_without_person_id] = ""

    # App sessions happen on the person's phone or tablet: map the draw into that range.
    device_u = _unit(_derive(person, 6))
    device_u = np.where(is_app, _DEVICE_P[0] + device_u * (1.0 - _DEVICE_P[0]), device_u)
    device = _DEVICE_TABLE.pick(0, device_u)
    os_index = _OS_TABLE.pick(device, _unit(_derive(person, 7)))
    browser = _BROWSER_TABLE.pick(os_index, _unit(_derive(person, 8)))
    viewport = _VIEWPORTS[device, _VIEWPORT_TABLE.pick(device, _unit(_derive(person, 9)))]
    location = plan.location_table.pick(team, _unit(_derive(person, 10)))

    utm = (rng.random(n) < _UTM_SESSION_SHARE) & ~is_app
    campaign = np.where(utm, _CAMPAIGN_TABLE.pick(0, rng.random(n)), 0)
    referrer = np.where(utm, _CAMPAIGN_REFERRER[campaign], _REFERRER_TABLE.pick(0, rng.random(n)))
    referrer[is_app] = _DIRECT
    host = team * len(_HOST_PREFIXES) + plan.host_table.pick(team, rng.random(n))

    # Entry pages and later pages come from different distributions; other events stay on the
    # page of the latest (page)view, which always exists because every session opens with one.
    path_row = 2 * is_app[session] + (position > 0)
    path = _PATH_TABLE.pick(path_row, rng.random(total))
    is_view = (kind == _PAGEVIEW) | (kind == _SCREEN)
    path = path[np.maximum.accumulate(np.where(is_view, np.arange(total), 0))]
    url = plan.url_prefix[host[session], path]
    landing = (position == 0) & utm[session]
    url[landing] = url[landing] + _CAMPAIGN_QUERY[campaign[session[landing]]]

    session_id = _uuid7_text(start // 1000, _random_words(rng, n))
    session_id[rng.random(n) < _SESSIONLESS_SHARE] = ""
    uuid = _uuid7_text(timestamp // 1000, _random_words(rng, total))

    delay = (rng.lognormal(np.log(2.0), 0.8, total) * SECOND_US).astype(np.int64) + 100_000
    late = rng.random(total) < options.late_event_share
    delay[late] = rng.integers(2 * DAY_US, 5 * DAY_US, int(late.sum()))

    columns: ColumnBatch = {
        "uuid": uuid,
        "team_id": plan.team_ids[team][session],
        "event": _EVENT_NAMES[kind],
        "timestamp": timestamp.view("datetime64[us]"),
        "distinct_id": distinct_id[session],
        "person_id": person_id[session],
        "session_id": session_id[session],
        "pathname": _PATHS[path],
        "host": plan.hosts[host][session],
        "current_url": url,
        "referring_domain": _REFERRERS[referrer][session],
        **{name: _UTM_VALUES[name][campaign][session] for name in _UTM_COLUMNS},
        "device_type": _DEVICES[device][session],
        "browser": _BROWSERS[browser][session],
        "os": _OSES[os_index][session],
        "country_code": _COUNTRIES[location][session],
        "region": _REGIONS[location][session],
        "city": _CITIES[location][session],
        "viewport_width": viewport[:, 0].astype(np.uint32)[session],
        "viewport_height": viewport[:, 1].astype(np.uint32)[session],
        "inserted_at": (timestamp + delay).view("datetime64[us]"),
    }
    duplicates = np.flatnonzero(rng.random(total) < options.duplicate_share)
    now = rng.random(duplicates.size) < _DUPLICATE_SAME_BATCH_P
    return _Block(
        columns={name: columns[name] for name in EVENT_COLUMNS},
        session_ends=ends,
        duplicate_now=duplicates[now],
        duplicate_later=duplicates[~now],
    )


# --- batching ----------------------------------------------------------------------------------


def _pieces(plan: _Plan) -> Iterator[tuple[ColumnBatch, np.ndarray]]:
    """Blocks with their duplicates appended, and the row offsets where a batch may be cut:
    after any session, or after any single duplicate row."""
    carried = empty_batch()
    for day_index in range(plan.options.days):
        for block in _day_blocks(plan, day_index):
            extra = _concat([carried, _take(block.columns, block.duplicate_now)])
            rows, extra_rows = _rows(block.columns), _rows(extra)
            cuts = np.concatenate([block.session_ends, rows + np.arange(1, extra_rows + 1)])
            yield (_concat([block.columns, extra]) if extra_rows else block.columns), cuts
            carried = _take(block.columns, block.duplicate_later)
    if _rows(carried):
        yield carried, np.arange(1, _rows(carried) + 1)


def _rebatch(
    pieces: Iterator[tuple[ColumnBatch, np.ndarray]], batch_events: int
) -> Iterator[ColumnBatch]:
    """Regroups pieces into batches of at most `batch_events` rows, cutting only at allowed
    offsets (a single session larger than the batch size goes out alone)."""
    pending: list[ColumnBatch] = []
    pending_rows = 0
    for piece, cuts in pieces:
        start, size = 0, _rows(piece)
        while start < size:
            fit = int(np.searchsorted(cuts, start + batch_events - pending_rows, side="right"))
            stop = int(cuts[fit - 1]) if fit else start
            if stop <= start:
                if pending_rows:
                    yield _concat(pending)
                    pending, pending_rows = [], 0
                    continue
                stop = int(cuts[np.searchsorted(cuts, start, side="right")])
            pending.append(_take(piece, slice(start, stop)))
            pending_rows += stop - start
            start = stop
            if pending_rows >= batch_events:
                yield _concat(pending)
                pending, pending_rows = [], 0
    if pending_rows:
        yield _concat(pending)


def generate_batches(
    options: GeneratorOptions, batch_events: int = 500_000
) -> Iterator[ColumnBatch]:
    """Column batches keyed by `EVENT_COLUMNS` (in that order) covering the whole data set.

    Each batch holds at most `batch_events` rows and only whole sessions; a deliberate duplicate
    row comes in the same batch as its original or a later one. The concatenation of all
    batches does not depend on `batch_events`, and memory stays bounded by it.
    """
    if batch_events < 1:
        raise ValueError("batch_events must be >= 1")
    return _rebatch(_pieces(_make_plan(options)), batch_events)


def generate(options: GeneratorOptions) -> ColumnBatch:
    """The whole data set as one column batch (meant for small sizes and tests)."""
    batches = list(generate_batches(options, batch_events=1_000_000))
    return _concat(batches) if batches else empty_batch()


def to_posthog_events(batch: ColumnBatch, limit: int | None = None) -> list[dict[str, object]]:
    """The first `limit` rows (all by default) as PostHog capture payloads.

    Timestamps become ISO-8601 UTC strings ending in "Z"; empty optional values (person_id,
    session id, referrer, UTM, region, city) are omitted rather than sent as "".
    """
    rows = _rows(batch) if limit is None else min(limit, _rows(batch))
    stamps = np.datetime_as_string(batch["timestamp"][:rows], unit="us")
    values = {name: batch[name][:rows].tolist() for name in EVENT_COLUMNS if name != "timestamp"}
    optional_properties = {
        "$session_id": "session_id",
        "$referring_domain": "referring_domain",
        **{name: name for name in _UTM_COLUMNS},
        "$geoip_subdivision_1_code": "region",
        "$geoip_city_name": "city",
    }
    events: list[dict[str, object]] = []
    for i in range(rows):
        properties: dict[str, object] = {
            "$current_url": values["current_url"][i],
            "$pathname": values["pathname"][i],
            "$host": values["host"][i],
            "$browser": values["browser"][i],
            "$os": values["os"][i],
            "$device_type": values["device_type"][i],
            "$geoip_country_code": values["country_code"][i],
            "$viewport_width": values["viewport_width"][i],
            "$viewport_height": values["viewport_height"][i],
        }
        properties |= {
            key: values[column][i]
            for key, column in optional_properties.items()
            if values[column][i]
        }
        if values["event"][i] == "$screen":
            properties["$screen_name"] = values["pathname"][i]
        event: dict[str, object] = {
            "uuid": values["uuid"][i],
            "event": values["event"][i],
            "timestamp": f"{stamps[i]}Z",
            "team_id": values["team_id"][i],
            "distinct_id": values["distinct_id"][i],
            "properties": properties,
        }
        if values["person_id"][i]:
            event["person_id"] = values["person_id"][i]
        events.append(event)
    return events
