"""Reaching the warehouse: URL forms and their errors, the embedded store shared by several
processes that take turns, and retries of transient ClickHouse failures."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import ClickHouseError
from support import lock_timeout_of, stdout_of

import web_analytics
from web_analytics import ConfigurationError, ConnectionFailed, EmbeddedStoreBusy, QueryFailed
from web_analytics.orchestration.resources import ClickhouseCluster
from web_analytics.warehouse.connection import (
    LOCK_TIMEOUT_ENV,
    URL_ENV,
    RetryPolicy,
    Session,
    is_transient,
    parse_url,
)

URL_FORMS = "chdb:///absolute/path or http(s)://user:password@host:8123/database"
# ClickHouse code 202 (TOO_MANY_SIMULTANEOUS_QUERIES) raised for real by the engine.
OVERLOADED = "SELECT throwIf(1, 'overloaded', toInt16(202))"
CUSTOM_CODE = {"allow_custom_error_code_in_throwif": 1}


def store_path(store_url: str) -> Path:
    return Path(store_url.removeprefix("chdb://"))


# --- URL forms ---------------------------------------------------------------------------------


def test_no_url_and_no_env_means_the_embedded_store_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(URL_ENV, raising=False)
    monkeypatch.chdir(tmp_path)

    target = parse_url(None)

    assert target.kind == "embedded"
    assert target.path == tmp_path / ".data" / "clickhouse"
    assert target.path.is_absolute()
    # connect() opens nothing until first use: the directory is not even created.
    warehouse = web_analytics.connect()
    assert warehouse.target.path == tmp_path / ".data" / "clickhouse"
    assert not (tmp_path / ".data").exists()


def test_the_url_comes_from_the_environment_unless_one_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(URL_ENV, "http://analyst@ch.internal:8123/web")

    from_env = parse_url(None)
    explicit = parse_url(f"chdb://{tmp_path}/explicit")

    assert (from_env.kind, from_env.host, from_env.database) == ("server", "ch.internal", "web")
    assert web_analytics.connect().target == from_env
    assert (explicit.kind, explicit.path) == ("embedded", tmp_path / "explicit")
    # An empty variable counts as unset.
    monkeypatch.setenv(URL_ENV, "")
    monkeypatch.chdir(tmp_path)
    assert parse_url(None).path == tmp_path / ".data" / "clickhouse"


def test_chdb_url_with_an_absolute_path_is_the_embedded_store() -> None:
    target = parse_url("chdb:///var/lib/web analytics")

    assert target.kind == "embedded"
    assert target.path == Path("/var/lib/web analytics")
    assert target.cluster is None
    assert target.describe() == "embedded store /var/lib/web analytics"


def test_http_url_gives_user_database_and_port_and_never_shows_the_password() -> None:
    target = parse_url("http://user:secret@host:8123/db")

    assert (target.kind, target.host, target.port) == ("server", "host", 8123)
    assert (target.username, target.password, target.database) == ("user", "secret", "db")
    assert target.secure is False
    assert target.describe() == "http://user@host:8123/db"
    assert "secret" not in target.describe()
    assert "secret" not in repr(target)
    assert "secret" not in repr(web_analytics.connect("http://user:secret@host:8123/db"))


def test_https_defaults_to_port_8443_and_plain_http_to_8123() -> None:
    secure = parse_url("https://ch.example.com/analytics")
    plain = parse_url("http://ch.example.com")

    assert (secure.port, secure.secure, secure.database) == (8443, True, "analytics")
    # No path, no user: the "default" database and user.
    assert (plain.port, plain.secure, plain.database, plain.username) == (
        8123,
        False,
        "default",
        "default",
    )


def test_cluster_option_selects_cluster_mode() -> None:
    target = parse_url("https://u:p@ch.example.com:9443/web?cluster=main")

    assert target.cluster == "main"
    assert target.port == 9443
    assert target.describe() == "https://u@ch.example.com:9443/web (cluster main)"
    assert web_analytics.connect("https://u:p@ch.example.com:9443/web?cluster=main").cluster == (
        "main"
    )


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        # Relative paths would depend on the working directory of each Dagster process.
        ("chdb://relative/store", "chdb:///"),
        ("chdb:relative/store", "chdb:///"),
        ("chdb:///tmp/store?cluster=main", "ClickHouse server URL"),
        ("ftp://files.example.com/events", URL_FORMS),
        ("postgres://user:pw@db:5432/app", URL_FORMS),
        ("/var/lib/store", URL_FORMS),
        ("http://host:port/db", URL_FORMS),
        ("http://host:99999/db", URL_FORMS),
        ("http:///db", URL_FORMS),
        ("http://host:8123/db?foo=1", "?cluster=NAME"),
        ("http://host:8123/db?cluster=main;DROP", "letters, digits, _"),
        ("http://host:8123/web-analytics", "letters, digits, _"),
        ("http://host:8123/db`; DROP TABLE events", "letters, digits, _"),
    ],
)
def test_unacceptable_url_is_a_configuration_error_that_says_what_to_use(
    url: str, hint: str
) -> None:
    with pytest.raises(ConfigurationError) as error:
        parse_url(url)

    assert isinstance(error.value, ValueError)
    assert hint in str(error.value)
    with pytest.raises(ConfigurationError):
        web_analytics.connect(url)


def test_dagster_resource_rejects_a_bad_url_when_configured() -> None:
    with pytest.raises(ValueError, match="unsupported warehouse URL scheme 'ftp'"):
        ClickhouseCluster(url="ftp://files.example.com/events")
    with pytest.raises(ValueError, match="lock_timeout_seconds"):
        ClickhouseCluster(lock_timeout_seconds=0)


def test_unreachable_server_fails_fast_with_one_line_and_no_password() -> None:
    started = time.monotonic()
    warehouse = web_analytics.connect("http://user:hunter2@127.0.0.1:1/default")

    with pytest.raises(ConnectionFailed) as error:
        warehouse.teams()

    message = str(error.value)
    assert message.startswith("cannot reach http://user@127.0.0.1:1/default")
    assert "check the host, the port" in message
    assert "\n" not in message
    assert "hunter2" not in message
    assert time.monotonic() - started < 10


def test_a_server_that_drops_connections_is_retried_before_giving_up() -> None:
    # A network fault, not a fake ClickHouse: accept each connection and close it at once.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted = 0

    def drop_connections() -> None:
        nonlocal accepted
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:  # listener closed
                return
            accepted += 1
            connection.close()

    threading.Thread(target=drop_connections, daemon=True).start()
    try:
        with pytest.raises(ConnectionFailed, match="cannot reach"):
            web_analytics.connect(f"http://user:hunter2@127.0.0.1:{port}/default").teams()
    finally:
        listener.close()

    # clickhouse-connect itself makes 2 HTTP attempts per client; RetryPolicy (5 attempts)
    # should open a client more than once.
    assert accepted > 2


# --- the embedded store shared by processes ----------------------------------------------------

WORKER = textwrap.dedent(
    """
    import sys, time, uuid
    from pathlib import Path
    import web_analytics

    url, team, rounds, per_round, go = sys.argv[1], *map(int, sys.argv[2:5]), Path(sys.argv[5])
    warehouse = web_analytics.connect(url)
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.01)
    for done in range(1, rounds + 1):
        report = warehouse.insert_events(
            {
                "uuid": str(uuid.uuid4()),
                "team_id": team,
                "event": "$pageview",
                "timestamp": f"2024-05-01T10:{done:02d}:{i:02d}Z",
                "distinct_id": f"visitor-{i}",
            }
            for i in range(per_round)
        )
        assert report.inserted == per_round and not report.rejected, report
        # Each unit of work sees every earlier one of this process.
        seen = warehouse.summary().events_per_team[team]
        assert seen == done * per_round, (seen, done)
    print("done", flush=True)
    """
)


def test_three_processes_insert_and_read_the_same_store_taking_turns(
    tmp_path: Path, store_url: str, warehouse: web_analytics.Warehouse
) -> None:
    go = tmp_path / "go"
    rounds, per_round = 3, 20
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, store_url, str(team), str(rounds), str(per_round), go],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for team in (1, 2, 3)
    ]
    try:
        # Start all units of work together, so they contend for the store.
        assert [stdout_of(worker).readline() for worker in workers] == ["ready\n"] * 3
        go.touch()
        outcomes = [worker.communicate(timeout=60) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()

    for worker, (out, err) in zip(workers, outcomes, strict=True):
        assert worker.returncode == 0, err
        assert out == "done\n"
        assert "Cannot lock file" not in err
    # 3 processes x 3 rounds x 20 events = 180 events, 60 per team.
    summary = warehouse.summary()
    assert summary.events == 180
    assert summary.events_per_team == {1: 60, 2: 60, 3: 60}
    with warehouse.session() as session:
        assert session.query("SELECT count(), uniqExact(uuid) FROM events") == [(180, 180)]


HOLDER = textwrap.dedent(
    """
    import sys
    import web_analytics

    warehouse = web_analytics.connect(sys.argv[1])
    with warehouse.session():
        print("holding", flush=True)
        sys.stdin.readline()
    """
)


def test_a_process_waiting_too_long_for_the_store_gets_embedded_store_busy(
    store_url: str, warehouse: web_analytics.Warehouse
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, store_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert stdout_of(holder).readline() == "holding\n"
        started = time.monotonic()
        with pytest.raises(EmbeddedStoreBusy) as error:
            web_analytics.connect(store_url, lock_timeout=0.5).teams()
        waited = time.monotonic() - started
        assert holder.stdin is not None and holder.stderr is not None
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0, holder.stderr.read()
    finally:
        holder.kill()

    message = str(error.value)
    # Who holds the store, for how long, and what to do about it.
    assert message.startswith(
        f"waited 0.5 s for the embedded store {store_path(store_url)}: it is held by process "
        f"{holder.pid} ("
    )
    assert re.search(
        r"-c .*\) for \d+\.\d s; stop it or raise WEB_ANALYTICS_LOCK_TIMEOUT$", message
    )
    assert 0.5 <= waited < 5
    # Once the holder is gone, this process gets its turn.
    assert web_analytics.connect(store_url, lock_timeout=0.5).teams() == []


@pytest.mark.parametrize("value", ["abc", "0", "-1", "100000"])
def test_lock_timeout_from_the_environment_must_be_a_sane_number_of_seconds(
    store_url: str, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(LOCK_TIMEOUT_ENV, value)

    with pytest.raises(ConfigurationError, match=LOCK_TIMEOUT_ENV):
        web_analytics.connect(store_url)


def test_lock_timeout_from_the_environment_is_used(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LOCK_TIMEOUT_ENV, "7.5")

    assert lock_timeout_of(web_analytics.connect(store_url)) == 7.5
    # An explicit timeout wins over the environment.
    assert lock_timeout_of(web_analytics.connect(store_url, lock_timeout=2)) == 2


# --- retries ----------------------------------------------------------------------------------


def test_transient_error_is_retried_until_the_operation_succeeds(
    warehouse: web_analytics.Warehouse,
) -> None:
    attempts = 0
    retried: list[tuple[int, str]] = []

    with warehouse.session() as session:

        def overloaded_once() -> Sequence[Sequence[Any]]:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                return session.client.query(OVERLOADED, settings=CUSTOM_CODE).result_rows
            return session.client.query("SELECT 42").result_rows

        result = RetryPolicy(base_delay=0.01).run(
            overloaded_once, on_retry=lambda attempt, error: retried.append((attempt, str(error)))
        )

    assert result == [(42,)]
    assert attempts == 2
    assert len(retried) == 1
    assert retried[0][0] == 1
    assert "Code: 202" in retried[0][1]


def test_a_transient_error_that_persists_is_raised_after_the_last_attempt(
    warehouse: web_analytics.Warehouse,
) -> None:
    attempts = 0

    with warehouse.session() as session:

        def always_overloaded() -> None:
            nonlocal attempts
            attempts += 1
            session.client.query(OVERLOADED, settings=CUSTOM_CODE)

        with pytest.raises(ClickHouseError, match="TOO_MANY_SIMULTANEOUS_QUERIES"):
            RetryPolicy(attempts=3, base_delay=0.01).run(always_overloaded)
        # Through a Session the last failure becomes QueryFailed with the server's words.
        patient = Session(session.client, session.target, RetryPolicy(attempts=2, base_delay=0.01))
        with pytest.raises(QueryFailed, match="Code: 202"):
            patient.query(OVERLOADED, settings=CUSTOM_CODE)

    assert attempts == 3


def test_a_syntax_error_is_attempted_once_and_raised(warehouse: web_analytics.Warehouse) -> None:
    attempts = 0

    with warehouse.session() as session:

        def misspelled() -> None:
            nonlocal attempts
            attempts += 1
            session.client.query("SELEC 1")

        with pytest.raises(ClickHouseError) as error:
            RetryPolicy(base_delay=0.01).run(misspelled)
        with pytest.raises(QueryFailed, match="Syntax error"):
            session.query("SELEC 1")

    assert attempts == 1
    assert not is_transient(error.value)


def test_real_errors_are_classified_transient_or_not(warehouse: web_analytics.Warehouse) -> None:
    errors = {}
    with warehouse.session() as session:
        for name, sql, settings in (
            ("overloaded", OVERLOADED, CUSTOM_CODE),
            ("syntax", "SELEC 1", None),
            ("unknown table", "SELECT * FROM no_such_table", None),
            ("type", "SELECT 1 + 'a'", None),
        ):
            try:
                session.client.query(sql, settings=settings)
            except ClickHouseError as error:
                errors[name] = error

    assert {name: is_transient(error) for name, error in errors.items()} == {
        "overloaded": True,
        "syntax": False,
        "unknown table": False,
        "type": False,
    }
    assert is_transient(EmbeddedStoreBusy("busy"))
    assert is_transient(TimeoutError())
    assert not is_transient(ValueError("bad input"))
