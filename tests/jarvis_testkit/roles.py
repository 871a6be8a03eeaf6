"""The per-database roles a migrated test database has (kept in its `trail_info`)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import psycopg


def database_roles(url: str) -> tuple[str, str]:
    """(app role, auditor role) of the database at `url`."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT app_role, auditor_role FROM public.trail_info").fetchone()
    assert row is not None
    return str(row[0]), str(row[1])


def app_role(url: str) -> str:
    return database_roles(url)[0]


def auditor_role(url: str) -> str:
    return database_roles(url)[1]


def as_login(url: str, login: str) -> str:
    """`url` with `login` as its user and no password (the test servers trust their clients).

    Works for every form the tests' URLs take: `user@host` and the embedded server's
    `postgres:@/db?host=/socket/dir`, where a text replace of "postgres@" finds nothing.
    """
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{login}@{host}"))
