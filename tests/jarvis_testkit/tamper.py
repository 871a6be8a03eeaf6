"""What a database superuser can do to the audit trail behind Jarvis' back.

Every function connects as the owner (a superuser in tests) and sets
`session_replication_role = replica`, which silences the append-only triggers
exactly as an attacker with superuser rights would.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row


@contextmanager
def superuser_without_triggers(url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("SET session_replication_role = replica")
        yield conn


def rows(url: str, table: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY created_at, id").fetchall()


def edit(url: str, table: str, row_id: uuid.UUID, column: str, sql_value: str) -> None:
    with superuser_without_triggers(url) as conn:
        changed = conn.execute(f"UPDATE {table} SET {column} = {sql_value} WHERE id = %s", (row_id,)).rowcount
    assert changed == 1


def delete(url: str, table: str, row_id: uuid.UUID) -> None:
    with superuser_without_triggers(url) as conn:
        assert conn.execute(f"DELETE FROM {table} WHERE id = %s", (row_id,)).rowcount == 1


def forge_tool_call(url: str, *, created_at_sql: str = "now()") -> uuid.UUID:
    """Insert a plausible start row that never went through the triggers (so it is never queued or sealed)."""
    forged = uuid.uuid4()
    with superuser_without_triggers(url) as conn:
        conn.execute(
            "INSERT INTO tool_calls (id, tool_name, status, input, created_at) "
            f"VALUES (%s, 'transfer', 'started', '{{\"to\": \"attacker\"}}', {created_at_sql})",
            (forged,),
        )
    return forged


def swap_contents(url: str, table: str, first: uuid.UUID, second: uuid.UUID, column: str) -> None:
    with superuser_without_triggers(url) as conn:
        conn.execute(
            f"UPDATE {table} t SET {column} = o.{column} FROM {table} o " "WHERE (t.id, o.id) IN ((%s, %s), (%s, %s))",
            (first, second, second, first),
        )


def delete_chain_links(url: str, where_sql: str) -> int:
    with superuser_without_triggers(url) as conn:
        return conn.execute(f"DELETE FROM audit_chain WHERE {where_sql}").rowcount
