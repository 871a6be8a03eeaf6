"""The per-database roles a migrated test database has (kept in its `trail_info`)."""

from __future__ import annotations

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
