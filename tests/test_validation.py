"""The one way every entry point checks what it is given: identifiers (database, cluster and
setting names) are whole plain words, and a bad one is refused before anything is opened."""

from __future__ import annotations

import pytest

import web_analytics
from web_analytics import ConfigurationError
from web_analytics.warehouse import validation


@pytest.mark.parametrize("name", ["abc", "_x", "max_threads", "Cluster_2"])
def test_a_plain_identifier_is_accepted_as_it_is(name: str) -> None:
    assert validation.identifier(name, "cluster name") == name


@pytest.mark.parametrize(
    "name",
    [
        "abc\n",  # a trailing newline: what a `re.match(...$)` check lets through
        "\nabc",
        "1abc",
        "a-b",
        "a b",
        "",
        "main;DROP TABLE events",
    ],
)
def test_anything_but_a_whole_plain_identifier_is_refused_naming_it(name: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        validation.identifier(name, "cluster name")

    assert str(refused.value) == (
        f"cluster name {name!r} is not a valid identifier (letters, digits, _)"
    )


@pytest.mark.parametrize("value", [None, 1, b"abc"])
def test_an_identifier_that_is_not_text_is_refused(value: object) -> None:
    with pytest.raises(ConfigurationError, match="is not a valid identifier"):
        validation.identifier(value, "database name")  # type: ignore[arg-type]


def test_a_cluster_name_with_a_trailing_newline_is_refused_before_connecting() -> None:
    # The host does not exist: refusing happens before any connection is tried.
    with pytest.raises(ConfigurationError, match=r"cluster name 'main\\n' is not a valid"):
        web_analytics.connect("http://clickhouse.invalid:8123/web?cluster=main%0A")
