"""Where the warehouse lives and how to reach it: URL parsing, the embedded store's
cross-process lock, and retries of transient failures.

Every deployment goes through clickhouse-connect: ``chdb://`` opens the embedded engine
in this process, ``http(s)://`` talks to a server or cluster.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import parse_qs, unquote, urlsplit

import clickhouse_connect
import pyarrow
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import (
    ClickHouseError,
    DatabaseError,
    OperationalError,
    ProgrammingError,
)

from web_analytics.warehouse import validation
from web_analytics.warehouse.errors import (
    ConfigurationError,
    ConnectionFailed,
    EmbeddedStoreBusy,
    QueryFailed,
    SchemaMissing,
    WriteInterrupted,
)

DEFAULT_EMBEDDED_PATH = Path(".data/clickhouse")
URL_ENV = "WEB_ANALYTICS_URL"
LOCK_TIMEOUT_ENV = "WEB_ANALYTICS_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT_SECONDS = 120.0
_URL_FORMS = (
    "use chdb:///absolute/path or http(s)://user:password@host:8123/database[?cluster=NAME]"
)

T = TypeVar("T")

# A missing table (code 60, UNKNOWN_TABLE): the store was never given its schema.
_UNKNOWN_TABLE = re.compile(r"Code: 60\b|Unknown table expression identifier")


@dataclass(frozen=True)
class ConnectionTarget:
    """A parsed warehouse URL. ``describe()`` never shows the password."""

    kind: str  # "embedded" or "server"
    path: Path | None = None
    host: str = ""
    port: int = 8123
    username: str = "default"
    password: str = field(default="", repr=False)
    database: str = "default"
    secure: bool = False
    cluster: str | None = None

    def describe(self) -> str:
        if self.kind == "embedded":
            return f"embedded store {self.path}"
        scheme = "https" if self.secure else "http"
        cluster = f" (cluster {self.cluster})" if self.cluster else ""
        return f"{scheme}://{self.username}@{self.host}:{self.port}/{self.database}{cluster}"


def parse_url(url: str | None) -> ConnectionTarget:
    """Turn a warehouse URL (or ``WEB_ANALYTICS_URL``, or the default store) into a target."""
    if url is None:
        url = os.environ.get(URL_ENV) or None
    if url is None:
        return ConnectionTarget(kind="embedded", path=DEFAULT_EMBEDDED_PATH.absolute())
    if not isinstance(url, str):
        raise ConfigurationError(f"the warehouse URL must be a string, got {url!r}: {_URL_FORMS}")
    parts = urlsplit(url.strip())
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    unknown = set(query) - {"cluster"}
    if unknown:
        raise ConfigurationError(
            f"unknown URL option(s) {', '.join(sorted(unknown))}: only ?cluster=NAME is supported"
        )
    cluster = query.get("cluster")
    if cluster is not None:
        validation.identifier(cluster, "cluster name")
    if parts.scheme == "chdb":
        if parts.netloc or not parts.path.startswith("/"):
            raise ConfigurationError(
                f"embedded store URL needs an absolute path, like chdb:///var/lib/web_analytics "
                f"(got chdb://{parts.netloc}{parts.path})"
            )
        if cluster:
            raise ConfigurationError("cluster mode needs a ClickHouse server URL, not chdb://")
        return ConnectionTarget(kind="embedded", path=Path(unquote(parts.path)))
    if parts.scheme in ("http", "https"):
        if not parts.hostname:
            raise ConfigurationError(f"server URL has no host name: {_URL_FORMS}")
        try:
            port = parts.port or (8443 if parts.scheme == "https" else 8123)
        except ValueError:
            raise ConfigurationError(f"server URL has an invalid port: {_URL_FORMS}") from None
        database = parts.path.strip("/") or "default"
        validation.identifier(database, "database name")
        return ConnectionTarget(
            kind="server",
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else "default",
            password=unquote(parts.password) if parts.password else "",
            database=database,
            secure=parts.scheme == "https",
            cluster=cluster,
        )
    scheme = parts.scheme or "(none)"
    raise ConfigurationError(f"unsupported warehouse URL scheme {scheme!r}: {_URL_FORMS}")


# --- retries -------------------------------------------------------------------------------

# ClickHouse error codes worth another try: timeouts, overload, network, replica hiccups.
_TRANSIENT_CODES = {
    3,  # UNEXPECTED_END_OF_FILE
    159,  # TIMEOUT_EXCEEDED
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    209,  # SOCKET_TIMEOUT
    210,  # NETWORK_ERROR
    242,  # TABLE_IS_READ_ONLY (replica lost its keeper session)
    319,  # UNKNOWN_STATUS_OF_INSERT
    425,  # SYSTEM_ERROR
    999,  # KEEPER_EXCEPTION
}
_CODE = re.compile(r"Code: (\d+)")
_TRANSIENT_TEXT = (
    "Cannot lock file",
    "Connection reset",
    "Connection refused",
    "timed out",
    "Merges are processing significantly slower than inserts",
)


def is_transient(error: BaseException) -> bool:
    """True for failures that another attempt may cure; syntax, type and logic errors are not."""
    if isinstance(error, EmbeddedStoreBusy | OperationalError | ConnectionError | TimeoutError):
        return True
    if isinstance(error, ClickHouseError):
        text = str(error)
        match = _CODE.search(text)
        if match and int(match.group(1)) in _TRANSIENT_CODES:
            return True
        return any(fragment in text for fragment in _TRANSIENT_TEXT)
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter."""

    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 10.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))

    def run(
        self, operation: Callable[[], T], on_retry: Callable[[int, Exception], None] | None = None
    ) -> T:
        """Run ``operation``, retrying transient failures; others propagate at once."""
        for attempt in range(self.attempts):
            try:
                return operation()
            except Exception as error:
                if not is_transient(error) or attempt == self.attempts - 1:
                    raise
                if on_retry is not None:
                    on_retry(attempt + 1, error)
                time.sleep(self.delay(attempt))
        raise AssertionError("unreachable")


# --- sessions --------------------------------------------------------------------------------


def _scrub(text: str, target: ConnectionTarget) -> str:
    return text.replace(target.password, "***") if target.password else text


class Session:
    """One open connection for a unit of work.

    Reads and idempotent statements retry transient failures; writes (any INSERT) never do:
    a write cut short may have landed in part, and a blind second try could count rows
    twice. A transient failure of a write raises ``WriteInterrupted`` for the caller to
    redo its whole unit of work from a clean start.
    """

    def __init__(self, client: Client, target: ConnectionTarget, retry: RetryPolicy):
        self.client = client
        self.target = target
        self.retry = retry

    @property
    def local_state_dir(self) -> Path | None:
        """Where state that must survive this process lives: the embedded store's directory
        (the engine dies with the process); ``None`` on a server, which outlives us."""
        return self.target.path if self.target.kind == "embedded" else None

    def _call(self, operation: Callable[[], T], idempotent: bool = True) -> T:
        try:
            if idempotent:
                return self.retry.run(operation)
            return operation()
        except ClickHouseError as error:
            message = _scrub(str(error).strip(), self.target)
            if not idempotent and is_transient(error):
                raise WriteInterrupted(
                    f"a write was interrupted and not retried, so that no row can count "
                    f"twice; rerun the whole operation: {message}"
                ) from None
            if _UNKNOWN_TABLE.search(message):
                raise SchemaMissing(
                    f"{self.target.describe()} has no web analytics tables: run "
                    "`ensure_schema()` (or materialize web_analytics_tables) first, or check "
                    "the store's URL for a typo"
                ) from None
            raise QueryFailed(message) from None

    def query(
        self,
        sql: str,
        parameters: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> list[tuple[Any, ...]]:
        """Rows of a SELECT; values only through ``parameters`` (``{name:Type}`` placeholders)."""
        rows = self._call(
            lambda: self.client.query(sql, parameters=parameters, settings=settings).result_rows
        )
        return cast(list[tuple[Any, ...]], rows)

    def command(
        self,
        sql: str,
        parameters: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        """Run a statement that returns no rows; an INSERT is never retried."""
        self._call(
            lambda: self.client.command(sql, parameters=parameters, settings=settings),
            idempotent=not sql.lstrip().upper().startswith("INSERT"),
        )

    def insert_arrow(self, table: str, columns: Mapping[str, Any]) -> None:
        """Insert column arrays (numpy or lists) through Arrow: the fast path for bulk data."""
        data = pyarrow.table({name: pyarrow.array(values) for name, values in columns.items()})
        self._call(lambda: self.client.insert_arrow(table, data), idempotent=False)

    def insert_columns(self, table: str, columns: dict[str, Sequence[Any]]) -> None:
        """Insert column-oriented data: ``{column name: values}``."""
        names = list(columns)
        data = [columns[name] for name in names]
        self._call(
            lambda: self.client.insert(table, data, column_names=names, column_oriented=True),
            idempotent=False,
        )


# chDB runs one engine per process: every embedded store of this process shares one turn.
_ENGINE_TURN = threading.RLock()
_open_embedded: dict[Path, Session] = {}


class EmbeddedStore:
    """An on-disk chDB engine shared by processes that take turns.

    chDB allows one process per data directory, so each unit of work waits for its turn (first
    come, first served: ``_StoreQueue``), takes an exclusive file lock, opens the engine, and
    closes it before releasing the lock. Threads of one process take turns too; a nested
    session in the same thread reuses the open connection.
    """

    def __init__(self, target: ConnectionTarget, lock_timeout: float, retry: RetryPolicy):
        assert target.path is not None
        self.target = target
        self.path = target.path.absolute()
        self.lock_timeout = lock_timeout
        self.retry = retry

    @contextmanager
    def session(self) -> Iterator[Session]:
        with _ENGINE_TURN:
            if self.path in _open_embedded:
                yield _open_embedded[self.path]
                return
            if _open_embedded:
                raise ConfigurationError(
                    f"this process already has the embedded store {next(iter(_open_embedded))} "
                    f"open; one process uses one data directory at a time ({self.path})"
                )
            self._make_directory()
            with self._file_lock():
                client = self.retry.run(self._open)
                _open_embedded[self.path] = Session(client, self.target, self.retry)
                try:
                    yield _open_embedded[self.path]
                finally:
                    del _open_embedded[self.path]
                    client.close()

    def _make_directory(self) -> None:
        """Create the store's directory, or say in one line why this path cannot hold a store
        (no retry can fix a path)."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise ConfigurationError(
                f"embedded store path {self.path} is a file, not a directory: "
                "point chdb:/// at a directory"
            ) from None
        except OSError as error:
            raise ConfigurationError(
                f"cannot create the embedded store directory {self.path} ({error.strerror}): "
                "point chdb:/// at a directory this user can write"
            ) from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise ConfigurationError(
                f"embedded store directory {self.path} is not writable by this user: "
                "change its permissions or point chdb:/// elsewhere"
            )

    def _open(self) -> Client:
        try:
            return clickhouse_connect.get_client(dsn=f"chdb://{self.path}")
        except ProgrammingError as error:
            # chDB reports a directory locked by a process outside our lock as a programming error.
            if "Cannot lock file" in str(error):
                raise EmbeddedStoreBusy(
                    f"{self.path} is open in a process that does not take turns; stop it"
                ) from None
            raise ConfigurationError(
                f"chDB cannot open the embedded store {self.path}: "
                f"{_first_line(str(error))}; check the path and its permissions"
            ) from None

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Wait for this process's turn in the store's queue (first come, first served), then
        hold the store's lock until the unit of work ends."""
        queue = _StoreQueue(self.path)
        deadline = time.monotonic() + self.lock_timeout
        with queue.ticket() as ticket, open(self.path / ".web_analytics.lock", "a+") as store:
            while True:
                ahead = queue.live_tickets_before(ticket.number)
                if not ahead:
                    try:  # a process of an older version may hold it without a ticket
                        fcntl.flock(store, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        pass
                if time.monotonic() >= deadline:
                    raise EmbeddedStoreBusy(self._busy_message(queue, ahead))
                time.sleep(_QUEUE_POLL_SECONDS)
            ticket.mark_holding()
            try:
                yield
            finally:
                fcntl.flock(store, fcntl.LOCK_UN)

    def _busy_message(self, queue: _StoreQueue, ahead: list[int]) -> str:
        holder = queue.holder(ahead)
        if holder is None:
            who = "a process that does not queue for it (an older version?)"
        elif holder.held_since is None:
            who = f"process {holder.pid} ({holder.command}), about to take it"
        else:
            held = time.time() - holder.held_since
            who = f"process {holder.pid} ({holder.command}) for {held:.1f} s"
        queued = f", with {len(ahead) - 1} more queued before this one" if len(ahead) > 1 else ""
        return (
            f"waited {self.lock_timeout:g} s for the embedded store {self.path}: it is held by "
            f"{who}{queued}; stop it or raise {LOCK_TIMEOUT_ENV}"
        )


# How often a waiter looks whether the tickets before its own are gone.
_QUEUE_POLL_SECONDS = 0.01


def _own_command_line() -> str:
    """This process's command line, on one line and cut short: for the busy error."""
    try:
        words = Path("/proc/self/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        words = [sys.executable, *sys.argv]
    text = " ".join(" ".join(words).split())
    return text if len(text) <= 160 else text[:157] + "..."


@dataclass(frozen=True)
class _Holder:
    pid: int
    command: str
    held_since: float | None  # wall-clock seconds; None while the owner still waits


class _Ticket:
    """A place in the queue: a file named by its number, locked by its owner as long as it
    waits or holds the store, so the ticket of a process that died shows no lock. It says
    who owns it and since when they hold the store."""

    def __init__(self, number: int, handle: Any):
        self.number = number
        self.handle = handle
        self.write(None)

    def write(self, held_since: float | None) -> None:
        since = "" if held_since is None else repr(held_since)
        self.handle.seek(0)  # each write is longer than the one before: nothing is left over
        self.handle.write(f"{os.getpid()}\n{since}\n{_own_command_line()}\n")
        self.handle.flush()

    def mark_holding(self) -> None:
        self.write(time.time())


class _StoreQueue:
    """First come, first served turns on an embedded store: numbered ticket files in
    ``.web_analytics.queue``; the lowest live ticket's owner takes the store next.

    Numbers are handed out, and tickets of dead processes removed, under one short lock, so
    two live tickets never share a number and no process removes another's live ticket.
    """

    def __init__(self, store: Path):
        self.directory = store / ".web_analytics.queue"

    def _numbers(self) -> list[int]:
        return sorted(int(name) for name in os.listdir(self.directory) if name.isdigit())

    def _is_live(self, number: int) -> bool:
        try:
            with open(self.directory / str(number), "rb") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    return True
                return False  # its owner is gone
        except FileNotFoundError:
            return False

    @contextmanager
    def ticket(self) -> Iterator[_Ticket]:
        """A new ticket, the last in line; given up when the block ends."""
        self.directory.mkdir(exist_ok=True)
        with open(self.directory / "numbering.lock", "a") as numbering:
            fcntl.flock(numbering, fcntl.LOCK_EX)
            numbers = self._numbers()
            for number in numbers:
                if not self._is_live(number):
                    (self.directory / str(number)).unlink(missing_ok=True)
            number = max(numbers, default=0) + 1
            path = self.directory / str(number)
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR)
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        with open(descriptor, "r+") as handle:
            try:
                yield _Ticket(number, handle)
            finally:
                path.unlink(missing_ok=True)  # while still locked: nobody else removes it

    def live_tickets_before(self, number: int) -> list[int]:
        return [n for n in self._numbers() if n < number and self._is_live(n)]

    def holder(self, live: list[int]) -> _Holder | None:
        """Who holds the store, from the lowest of the ``live`` tickets, if it says so."""
        for number in live[:1]:
            try:
                pid, since, command = (self.directory / str(number)).read_text().split("\n", 2)
                return _Holder(int(pid), command.strip(), float(since) if since else None)
            except (OSError, ValueError):
                return None
        return None


class ServerStore:
    """A ClickHouse server or cluster reached over HTTP(S)."""

    def __init__(self, target: ConnectionTarget, retry: RetryPolicy):
        self.target = target
        self.retry = retry

    @contextmanager
    def session(self) -> Iterator[Session]:
        client = self._open()
        try:
            yield Session(client, self.target, self.retry)
        finally:
            client.close()

    def _open(self) -> Client:
        target = self.target
        _quiet_driver_warnings()
        try:
            return self.retry.run(
                lambda: clickhouse_connect.get_client(
                    host=target.host,
                    port=target.port,
                    username=target.username,
                    password=target.password,
                    database=target.database,
                    secure=target.secure,
                    connect_timeout=10,
                )
            )
        except OperationalError as error:
            raise ConnectionFailed(
                f"cannot reach {target.describe()}: {_first_line(_scrub(str(error), target))}; "
                "check the host, the port and that the server is running"
            ) from None
        except DatabaseError as error:
            text = str(error)
            if "Code: 516" in text or "Authentication failed" in text:
                raise ConnectionFailed(
                    f"{target.describe()} refused the credentials; check the user name and "
                    "password in WEB_ANALYTICS_URL"
                ) from None
            if "Code: 81" in text:
                raise ConnectionFailed(
                    f"database {target.database!r} does not exist on {target.describe()}; "
                    "create it or change the URL path"
                ) from None
            raise ConnectionFailed(
                f"{target.describe()}: {_first_line(_scrub(text, target))}"
            ) from None


def _quiet_driver_warnings() -> None:
    """The driver and urllib3 log every failed try of an unreachable server ("Unexpected Http
    Driver Exception", "Retrying"); ``ConnectionFailed`` says it once, in one line."""
    for name in ("clickhouse_connect", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def lock_timeout_from_env() -> float:
    """The embedded store's lock timeout in seconds (``WEB_ANALYTICS_LOCK_TIMEOUT``)."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV)
    if raw is None or raw == "":
        return DEFAULT_LOCK_TIMEOUT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{LOCK_TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if not 0 < value <= 86_400:
        raise ConfigurationError(f"{LOCK_TIMEOUT_ENV} must be between 0 and 86400 seconds")
    return value


def open_store(
    target: ConnectionTarget, lock_timeout: float | None = None
) -> EmbeddedStore | ServerStore:
    retry = RetryPolicy()
    if target.kind == "embedded":
        timeout = lock_timeout if lock_timeout is not None else lock_timeout_from_env()
        return EmbeddedStore(target, timeout, retry)
    return ServerStore(target, retry)
