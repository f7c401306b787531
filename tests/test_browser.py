"""The Dagster UI in a real browser, on the demo's store.

The demo runs on a fresh store with a Dagster instance of its own; then the webserver and the
daemon serve them, and the daemon's first tick of the backfill sensor finds nothing to do.
Late events arrive for one team's day, and an operator runs ``show_data_gaps_job`` as the
README types it. Headless Chromium (Debian's ``chromium`` package, driven by Playwright; no
browser download) then reads the UI as an operator would:

- each pre-aggregated table's partitions page: every demo day materialized, none missing;
- the accuracy check's execution history: a passed evaluation for every demo day, no failure;
- the accuracy check's partitions: every demo day passed, none missing (each day's result is
  linked to the materialization it checked);
- the backfill sensor's page: running, with its latest tick and the tick's reason for skipping;
- the ``show_data_gaps_job`` run's page: its gap table, with the day the late events made stale.

Assertions are on page text, not pixels. Screenshots of each page go to
``.data/screenshots/browser/`` (git-ignored). Run with ``python3 tasks.py test -m browser``
(about two minutes; needs Debian's ``chromium``, which ``.ci/run`` installs).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from support import (
    DEFINITIONS_MODULE,
    free_port,
    pageviews_on,
    start_daemon,
    start_webserver,
    stop_groups,
    wait_until_serving,
)

import web_analytics
from web_analytics.demo import DEMO_ENVIRONMENT, DEMO_STORE
from web_analytics.orchestration.assets import ACCURACY_CHECK
from web_analytics.orchestration.sensors import SENSOR_NAME
from web_analytics.warehouse.schema import PRE_AGGREGATED_TABLES

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "tasks.py"
SCREENSHOTS = ROOT / ".data" / "screenshots" / "browser"
GAPS_JOB = "show_data_gaps_job"
GAPS_CONFIG = "config/show_data_gaps_14_days.yaml"  # the README's command, as typed

DEMO_EVENTS = 40_000  # enough traffic for every team on every demo day but the quiet one
DEMO_DAYS = 30  # the demo's default: the 30 UTC days that end yesterday
LATE_TEAM = 1
LATE_DAY_AGO = 4  # days before yesterday: inside the 14 days of the gap report's config

DEMO_TIMEOUT = 300  # seconds; about 40 s on an idle 2-core machine
START_TIMEOUT = 150  # seconds for the webserver to answer on a busy 2-core machine
TICK_TIMEOUT = 120  # seconds for the daemon's first sensor tick
JOB_TIMEOUT = 180  # seconds for show_data_gaps_job from the CLI
UI_TIMEOUT_MS = 60_000  # the UI's first GraphQL answers can be slow on 2 busy cores

# As root in a sandbox with no network: no sandboxing, no GPU, nothing that calls home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass(frozen=True)
class DemoUI:
    url: str
    days: list[date]  # the demo's UTC days, oldest first
    sensor_tick_at: datetime  # when the daemon's first tick of the backfill sensor ran
    stale_day: date  # the day late events arrived for, after that tick
    gaps_run_id: str


# --- the world: the demo, its instance, the webserver and the daemon -----------------------


def chromium() -> str:
    """Debian's chromium binary."""
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("Chromium is not installed: apt-get install -y chromium (.ci/run does)")
    return found


def clean_environment(home: Path) -> dict[str, str]:
    """This environment on the Dagster instance in ``home``, without the caller's Dagster and
    project settings (`tasks.py test` sets some)."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DAGSTER_", "WEB_ANALYTICS_"))
    }
    return {**kept, "DAGSTER_HOME": str(home)}


def demo_settings(folder: Path) -> dict[str, str]:
    """What the demo recorded for the commands that serve its store: the store's URL and the
    first day of its partitions."""
    lines = (folder / DEMO_ENVIRONMENT).read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def run_demo(folder: Path, env: dict[str, str]) -> None:
    """The demo as `tasks.py demo` runs it, with ``folder`` as its working directory: its
    store, its settings and its Dagster log go there."""
    demo = subprocess.run(
        [sys.executable, "-m", "web_analytics.demo", "--events", str(DEMO_EVENTS)]
        + ["--days", str(DEMO_DAYS)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT,
    )
    (folder / "demo.log").write_text(demo.stdout + demo.stderr)
    assert demo.returncode == 0, f"the demo failed:\n{demo.stdout}\n{demo.stderr[-3000:]}"


def wait_for_first_tick(instance: dg.DagsterInstance, daemon_log: Path) -> datetime:
    """When the daemon's first finished tick of the backfill sensor ran."""
    deadline = time.monotonic() + TICK_TIMEOUT
    while time.monotonic() < deadline:
        for state in instance.all_instigator_state():
            if state.instigator_name != SENSOR_NAME:
                continue
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1)
            if ticks and ticks[0].status.value != "STARTED":
                return datetime.fromtimestamp(ticks[0].timestamp, UTC)
        time.sleep(1)
    raise AssertionError(
        f"no tick of {SENSOR_NAME} within {TICK_TIMEOUT} s:\n{daemon_log.read_text()[-3000:]}"
    )


def run_gaps_job(env: dict[str, str]) -> None:
    """``dagster job execute -j show_data_gaps_job -c ...`` as an operator types it."""
    command = [sys.executable, str(TASKS), "dagster", "job", "execute", "-j", GAPS_JOB]
    result = subprocess.run(
        [*command, "-c", GAPS_CONFIG],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT,
    )
    assert result.returncode == 0, f"{GAPS_JOB} failed:\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def demo_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoUI]:
    folder = tmp_path_factory.mktemp("demo-ui")
    home = folder / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")  # the demo's instance
    # The operator dismissed Dagster's community dialog once, as the UI remembers in the home.
    (home / ".nux").mkdir()
    (home / ".nux" / "nux.yaml").write_text("seen: 1\n")
    last_day = datetime.now(UTC).date() - timedelta(days=1)  # the demo's last day
    days = [last_day - timedelta(days=n) for n in reversed(range(DEMO_DAYS))]

    run_demo(folder, clean_environment(home))
    # The webserver, the daemon and the CLI serve the demo's store with the demo's own start
    # of the partitions, as `tasks.py dev` and the activated `dagster` commands do.
    env = {**clean_environment(home), **demo_settings(folder)}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    services: list[subprocess.Popen[bytes]] = []
    with ExitStack() as stack, dg.DagsterInstance.from_config(str(home)) as instance:
        web_log = stack.enter_context(open(folder / "webserver.log", "w"))
        daemon_log = stack.enter_context(open(folder / "daemon.log", "w"))
        stack.callback(stop_groups, services)  # whatever happens from here on
        webserver = start_webserver(env, port, web_log)
        services.append(webserver)
        services.append(start_daemon(env, daemon_log))
        wait_until_serving(f"{url}/server_info", webserver, START_TIMEOUT)
        sensor_tick_at = wait_for_first_tick(instance, folder / "daemon.log")

        # After the tick (the next is hours away), so the day stays stale for the gap report.
        stale_day = last_day - timedelta(days=LATE_DAY_AGO)
        web_analytics.connect(f"chdb://{folder / DEMO_STORE}").insert_events(
            pageviews_on(LATE_TEAM, stale_day, "late-visit")
        )
        run_gaps_job(env)
        gaps_runs = instance.get_runs(filters=dg.RunsFilter(job_name=GAPS_JOB), limit=1)
        assert gaps_runs, f"no run of {GAPS_JOB} in {home}"
        yield DemoUI(
            url=url,
            days=days,
            sensor_tick_at=sensor_tick_at,
            stale_day=stale_day,
            gaps_run_id=gaps_runs[0].run_id,
        )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)  # the folder shows the last run only
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium(), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    # UTC and US English: the UI then shows times as the assertions spell them.
    context = browser.new_context(
        viewport={"width": 1600, "height": 1000}, locale="en-US", timezone_id="UTC"
    )
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def expect_partition_counts(page: Page, total: int, counts: dict[str, int]) -> None:
    """A partitions view selects ``total`` partitions and counts ``counts`` per status label.
    Each count is located by its label, so a failure shows the count the page has instead."""
    expect(page.get_by_text(re.compile(r"^[\d,]+ Partitions Selected$"))).to_have_text(
        f"{total} Partitions Selected", timeout=UI_TIMEOUT_MS
    )
    for status, count in counts.items():
        label = page.get_by_text(re.compile(rf"^{status} \([\d,]+\)$"))
        expect(label).to_have_text(f"{status} ({count})")


def cells(rows: Locator) -> list[list[str]]:
    """The text of each cell of each row."""
    return [[cell.strip() for cell in row.locator("td").all_inner_texts()] for row in rows.all()]


# --- what the operator sees --------------------------------------------------------------


@pytest.mark.parametrize("table", PRE_AGGREGATED_TABLES)
def test_partitions_page_shows_every_demo_day_materialized(
    demo_ui: DemoUI, page: Page, table: str
) -> None:
    page.goto(f"{demo_ui.url}/assets/{table}?view=partitions")

    total = len(demo_ui.days)
    expect_partition_counts(page, total, {"Materialized": total, "Missing": 0, "Failed": 0})
    for day in (demo_ui.days[0], demo_ui.days[-1]):  # the ends of the partitions bar
        expect(page.get_by_text(str(day), exact=True).first).to_be_visible()
    screenshot(page, f"partitions-{table}")


@pytest.mark.parametrize("table", PRE_AGGREGATED_TABLES)
def test_check_history_shows_a_passed_evaluation_per_day(
    demo_ui: DemoUI, page: Page, table: str
) -> None:
    page.goto(f"{demo_ui.url}/assets/{table}?view=checks")
    expect(page.get_by_text(ACCURACY_CHECK).first).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.get_by_role("tab", name="Execution history").click()

    # Columns: evaluation result, timestamp, target materialization, partition, description.
    history = page.locator("table").filter(has_text="Evaluation result")
    evaluations: list[tuple[str, str]] = []
    for number in range(1, 10):
        rows = history.locator("tbody tr")
        expect(rows.first).to_be_visible()
        evaluations += [(row[0], row[3]) for row in cells(rows)]
        screenshot(page, f"check-history-{table}-{number}")
        older = page.get_by_role("button", name="Older")
        if older.is_disabled():
            break
        first_row = rows.first.text_content() or ""
        older.click()
        expect(rows.first).not_to_have_text(first_row)

    assert {partition for _, partition in evaluations} == {str(day) for day in demo_ui.days}
    assert {result for result, _ in evaluations} == {"Passed"}, evaluations


@pytest.mark.parametrize("table", PRE_AGGREGATED_TABLES)
def test_check_partitions_show_every_demo_day_passed(
    demo_ui: DemoUI, page: Page, table: str
) -> None:
    page.goto(f"{demo_ui.url}/assets/{table}?view=checks")
    expect(page.get_by_text(ACCURACY_CHECK).first).to_be_visible(timeout=UI_TIMEOUT_MS)
    # The check's own tabs, not the asset's (which has a Partitions tab too).
    check_tabs = page.get_by_role("tablist").filter(
        has=page.get_by_role("tab", name="Execution history")
    )
    check_tabs.get_by_role("tab", name="Partitions", exact=True).click()

    # A day whose result is not linked to the day's materialization would count as missing.
    total = len(demo_ui.days)
    expect_partition_counts(page, total, {"Passed": total, "Missing": 0, "Failed": 0})
    screenshot(page, f"check-partitions-{table}")


def test_sensor_page_shows_it_running_with_its_last_tick(demo_ui: DemoUI, page: Page) -> None:
    page.goto(f"{demo_ui.url}/automation")
    page.get_by_role("link", name=SENSOR_NAME).click()

    sensor_path = f"/locations/{DEFINITIONS_MODULE}/sensors/{SENSOR_NAME}"
    expect(page).to_have_url(re.compile(re.escape(sensor_path)))
    running = page.locator("tr").filter(has=page.get_by_text("Running", exact=True))
    expect(running.get_by_role("checkbox")).to_be_checked(timeout=UI_TIMEOUT_MS)
    latest_tick = page.locator("tr").filter(has=page.get_by_text("Latest tick", exact=True))
    # On the completed demo the tick found nothing to launch, and says why when hovered.
    tick_at = demo_ui.sensor_tick_at
    expect(latest_tick).to_contain_text(
        f"{tick_at:%b} {tick_at.day}, {tick_at.hour % 12 or 12}:{tick_at:%M:%S %p}"
    )
    expect(latest_tick).to_contain_text("0 runs requested")
    latest_tick.get_by_text("0 runs requested").hover()
    expect(page.get_by_role("tooltip")).to_contain_text(
        "No missing, stale, failed or inaccurate days"
    )
    screenshot(page, "sensor")


def test_gaps_run_page_shows_its_gap_table(demo_ui: DemoUI, page: Page) -> None:
    page.goto(f"{demo_ui.url}/runs/{demo_ui.gaps_run_id}")

    # The op's output event in the run's log holds the gap table; the log cuts it short, and
    # "View full message" shows the whole event.
    gap_ranges = page.locator("td:text-is('gap_ranges')")
    expect(gap_ranges).to_be_visible(timeout=UI_TIMEOUT_MS)
    output_event = page.locator("div").filter(has=gap_ranges)
    output_event = output_event.filter(has=page.get_by_text("View full message")).last
    output_event.get_by_text("View full message").click()
    event = page.get_by_role("dialog")
    expect(event.locator("td:text-is('days_needing_backfill') + td")).to_have_text("1")
    gap_table = event.locator("td:text-is('gap_ranges') + td table")
    header = gap_table.locator("thead th").all_inner_texts()
    assert header == ["team", "table", "first_day", "last_day", "days", "state"]
    rows = gap_table.locator("tbody tr")
    expect(rows).to_have_count(len(PRE_AGGREGATED_TABLES))
    day = str(demo_ui.stale_day)
    assert sorted(cells(rows)) == sorted(
        [str(LATE_TEAM), table, day, day, "1", "stale"] for table in PRE_AGGREGATED_TABLES
    )
    screenshot(page, "show-data-gaps-run")
