"""URL spellings: each library gets a URL it reads the way the person meant it."""

from __future__ import annotations

import pytest
from psycopg import conninfo
from sqlalchemy.engine import make_url

from jarvis.db.urls import database_name, libpq_url, sqlalchemy_url, with_database

SOCKET_URL = "postgresql:///jarvis?host=/var/run/postgresql"
"""A Unix-socket URL with an empty authority, which the settings accept (host= in the query)."""


def test_libpq_url_of_a_socket_url_is_still_a_url_libpq_reads() -> None:
    # Bug: urlunsplit dropped the empty authority and wrote 'postgresql:/jarvis?...', which libpq refuses.
    assert libpq_url(SOCKET_URL) == SOCKET_URL
    assert conninfo.conninfo_to_dict(libpq_url(SOCKET_URL)) == {"dbname": "jarvis", "host": "/var/run/postgresql"}


def test_sqlalchemy_url_of_a_socket_url_keeps_the_socket() -> None:
    url = make_url(sqlalchemy_url(SOCKET_URL))
    assert (url.drivername, url.database, url.query["host"]) == ("postgresql+psycopg", "jarvis", "/var/run/postgresql")


def test_with_database_of_a_socket_url_keeps_the_socket() -> None:
    assert conninfo.conninfo_to_dict(with_database(SOCKET_URL, "other")) == {
        "dbname": "other",
        "host": "/var/run/postgresql",
    }


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://app:p%40ss@db:5432/j?sslmode=require",
        "postgres://app@db/j",
        "postgresql://u@db/j?options=-c%20statement_timeout%3D5s&application_name=a+b",
        "postgresql://u:s3cret@h1:5432,h2:5433/j",
        "postgresql://u:p@[::1]:5432/j",
    ],
)
def test_libpq_url_changes_only_the_scheme(url: str) -> None:
    # SQLAlchemy's renderer would write the space as '+' (libpq keeps '+') and cannot read multi-host URLs.
    rewritten = libpq_url(url)
    assert rewritten.startswith("postgresql://") and rewritten.partition("://")[2] == url.partition("://")[2]
    assert "dbname" in conninfo.conninfo_to_dict(rewritten)


def test_sqlalchemy_url_names_psycopg_and_keeps_credentials_and_query() -> None:
    url = make_url(sqlalchemy_url("postgresql://app:p%40ss@db:5432/j?options=-c%20x%3Dy"))
    assert (url.drivername, url.username, url.password, url.host, url.port, url.database) == (
        "postgresql+psycopg",
        "app",
        "p@ss",
        "db",
        5432,
        "j",
    )
    assert url.query == {"options": "-c x=y"}


def test_with_database_keeps_server_credentials_and_query() -> None:
    assert with_database("postgresql://u:pw@db:5432/j?sslmode=require", "other") == (
        "postgresql://u:pw@db:5432/other?sslmode=require"
    )
    assert with_database("postgresql://u@db:5432", "other") == "postgresql://u@db:5432/other"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@db:5432/jarvis", "jarvis"),
        ("postgresql+psycopg://u@db/j?sslmode=require", "j"),
        (SOCKET_URL, "jarvis"),
        ("postgresql://u@h1:5432,h2:5433/j", "j"),
        ("postgresql://u@db/my%20db", "my db"),
        ("postgresql://u@db:5432", ""),
    ],
)
def test_database_name_is_what_libpq_connects_to(url: str, expected: str) -> None:
    assert database_name(url) == expected
