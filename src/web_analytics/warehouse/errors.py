"""Errors raised by the warehouse layer; each message says what to do next."""


class WarehouseError(Exception):
    """Base class for every error the warehouse layer raises on purpose."""


class ConfigurationError(WarehouseError, ValueError):
    """A URL, setting or identifier given by the user is not acceptable."""


class SchemaMissing(ConfigurationError):
    """The store has no web analytics tables (a new store, or a typo in its path)."""


class ConnectionFailed(WarehouseError):
    """The ClickHouse server could not be reached or refused the credentials."""


class EmbeddedStoreBusy(WarehouseError):
    """Another process held the embedded store for longer than the lock timeout."""


class QueryFailed(WarehouseError):
    """ClickHouse rejected a statement, or it kept failing after the allowed retries."""


class WriteInterrupted(QueryFailed):
    """A write failed in a way another try may cure, but was not retried (it may have landed
    in part): the whole operation must be redone from its start."""
