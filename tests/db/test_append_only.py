"""Append-only and the two-row lifecycle are enforced by PostgreSQL, even against direct SQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.types.json import Jsonb

from jarvis_testkit.roles import app_role

AUDIT_TABLES = ["planning_cycles", "tool_calls", "decision_log"]


@pytest.fixture
def app_sql(migrated_database_url: str) -> Iterator[psycopg.Connection]:
    """A raw psql-like session as the application role: no ORM, no Jarvis code in the way."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute(f"SET ROLE {app_role(migrated_database_url)}")
        yield conn


def new_cycle(conn: psycopg.Connection, agent: str | None = None) -> uuid.UUID:
    cycle = uuid.uuid4()
    conn.execute(
        "INSERT INTO planning_cycles (id, agent, status, goals) VALUES (%s, %s, 'started', %s)",
        (cycle, agent or f"agent-{cycle}", Jsonb(["g"])),
    )
    return cycle


def new_tool_start(conn: psycopg.Connection) -> uuid.UUID:
    start = uuid.uuid4()
    conn.execute(
        "INSERT INTO tool_calls (id, tool_name, status, input) VALUES (%s, 'probe', 'started', %s)",
        (start, Jsonb({"q": 1})),
    )
    return start


def complete_tool(conn: psycopg.Connection, start: uuid.UUID) -> uuid.UUID:
    done = uuid.uuid4()
    conn.execute(
        "INSERT INTO tool_calls (id, parent_id, tool_name, status, output) VALUES (%s, %s, 'probe', 'succeeded', %s)",
        (done, start, Jsonb({"ok": True})),
    )
    return done


@pytest.fixture
def one_row_each(app_sql: psycopg.Connection) -> None:
    cycle = new_cycle(app_sql)
    app_sql.execute(
        "INSERT INTO decision_log (id, cycle_id, reasoning, decision) VALUES (%s, %s, %s, 'go')",
        (uuid.uuid4(), cycle, Jsonb({"why": "test"})),
    )
    complete_tool(app_sql, new_tool_start(app_sql))


@pytest.mark.parametrize("table", AUDIT_TABLES)
def test_update_is_rejected_for_the_application_role(
    app_sql: psycopg.Connection, one_row_each: None, table: str
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app_sql.execute(f"UPDATE {table} SET created_at = now()")


@pytest.mark.parametrize("table", AUDIT_TABLES)
def test_delete_is_rejected_for_the_application_role(
    app_sql: psycopg.Connection, one_row_each: None, table: str
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app_sql.execute(f"DELETE FROM {table}")


@pytest.mark.parametrize("table", AUDIT_TABLES)
def test_truncate_is_rejected_for_the_application_role(app_sql: psycopg.Connection, table: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app_sql.execute(f"TRUNCATE {table} CASCADE")


@pytest.mark.parametrize("table", AUDIT_TABLES)
def test_alter_is_rejected_for_the_application_role(app_sql: psycopg.Connection, table: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app_sql.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")


@pytest.mark.parametrize("table", AUDIT_TABLES)
@pytest.mark.parametrize("statement", ["UPDATE {table} SET created_at = now()", "DELETE FROM {table}"])
def test_even_the_owner_cannot_change_rows_while_triggers_are_on(
    migrated_database_url: str, one_row_each: None, table: str, statement: str
) -> None:
    with psycopg.connect(migrated_database_url, autocommit=True) as owner:
        with pytest.raises(psycopg.errors.RestrictViolation, match=f"{table} is append-only"):
            owner.execute(statement.format(table=table))


@pytest.mark.parametrize("table", AUDIT_TABLES)
def test_even_the_owner_cannot_truncate(migrated_database_url: str, one_row_each: None, table: str) -> None:
    with psycopg.connect(migrated_database_url, autocommit=True) as owner:
        with pytest.raises(psycopg.errors.RestrictViolation, match="append-only: TRUNCATE"):
            owner.execute(f"TRUNCATE {table} CASCADE")
        count = owner.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert count is not None and count[0] > 0


def test_completion_row_cannot_be_updated(migrated_database_url: str, app_sql: psycopg.Connection) -> None:
    done = complete_tool(app_sql, new_tool_start(app_sql))
    with psycopg.connect(migrated_database_url, autocommit=True) as owner:
        with pytest.raises(psycopg.errors.RestrictViolation):
            owner.execute("UPDATE tool_calls SET status = 'failed' WHERE id = %s", (done,))


def test_second_completion_for_one_start_is_rejected(app_sql: psycopg.Connection) -> None:
    start = new_tool_start(app_sql)
    complete_tool(app_sql, start)
    with pytest.raises(psycopg.errors.UniqueViolation):
        complete_tool(app_sql, start)


def test_completion_pointing_at_a_completion_is_rejected(app_sql: psycopg.Connection) -> None:
    done = complete_tool(app_sql, new_tool_start(app_sql))
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="must point at a start row"):
        complete_tool(app_sql, done)


def test_cycle_completion_pointing_at_a_completion_is_rejected(app_sql: psycopg.Connection) -> None:
    cycle = new_cycle(app_sql)
    closed = uuid.uuid4()
    app_sql.execute(
        "INSERT INTO planning_cycles (id, parent_id, agent, status, outcomes) VALUES (%s, %s, 'x', 'succeeded', '{}')",
        (closed, cycle),
    )
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="must point at a start row"):
        app_sql.execute(
            "INSERT INTO planning_cycles (id, parent_id, agent, status) VALUES (%s, %s, 'x', 'failed')",
            (uuid.uuid4(), closed),
        )


def test_completion_pointing_at_a_missing_row_is_rejected(app_sql: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        complete_tool(app_sql, uuid.uuid4())


def test_unknown_status_is_rejected(app_sql: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        app_sql.execute(
            "INSERT INTO tool_calls (id, tool_name, status) VALUES (%s, 'probe', 'exploded')", (uuid.uuid4(),)
        )


def test_start_row_with_output_is_rejected(app_sql: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        app_sql.execute(
            "INSERT INTO tool_calls (id, tool_name, status, output) VALUES (%s, 'probe', 'started', '{}')",
            (uuid.uuid4(),),
        )


def test_completion_with_input_is_rejected(app_sql: psycopg.Connection) -> None:
    start = new_tool_start(app_sql)
    with pytest.raises(psycopg.errors.CheckViolation):
        app_sql.execute(
            "INSERT INTO tool_calls (id, parent_id, tool_name, status, input) VALUES (%s, %s, 'probe', 'failed', '{}')",
            (uuid.uuid4(), start),
        )


def test_started_status_with_a_parent_is_rejected(app_sql: psycopg.Connection) -> None:
    start = new_tool_start(app_sql)
    with pytest.raises(psycopg.errors.CheckViolation):
        app_sql.execute(
            "INSERT INTO tool_calls (id, parent_id, tool_name, status) VALUES (%s, %s, 'probe', 'started')",
            (uuid.uuid4(), start),
        )


def test_second_open_cycle_for_one_agent_is_rejected(app_sql: psycopg.Connection) -> None:
    new_cycle(app_sql, agent="solo")
    with pytest.raises(psycopg.errors.UniqueViolation, match="already has an open planning cycle"):
        new_cycle(app_sql, agent="solo")


def test_decision_for_a_closed_cycle_is_rejected(app_sql: psycopg.Connection) -> None:
    cycle = new_cycle(app_sql)
    app_sql.execute(
        "INSERT INTO planning_cycles (id, parent_id, agent, status, outcomes) VALUES (%s, %s, 'x', 'succeeded', '{}')",
        (uuid.uuid4(), cycle),
    )
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="already closed"):
        app_sql.execute(
            "INSERT INTO decision_log (id, cycle_id, reasoning, decision) VALUES (%s, %s, '{}', 'late')",
            (uuid.uuid4(), cycle),
        )


def test_every_audit_row_is_queued_for_sealing(app_sql: psycopg.Connection) -> None:
    start = new_tool_start(app_sql)
    row = app_sql.execute(
        "SELECT count(*) FROM audit_pending WHERE table_name = 'tool_calls' AND row_id = %s", (start,)
    ).fetchone()
    assert row == (1,)
