"""The append functions (migration 0004) are the hot path's way in: each is attacked as the actor it faces.

`public.jarvis_append_<table>(...)` runs with the tables' owner's rights, so it
must give nobody more than the app role's INSERT: only the app role may call
it, it cannot choose `created_at` or skip a lifecycle rule, it refuses to run
with triggers off, and a superuser who replaces it is named by verify.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from jarvis.db import Database
from jarvis.db.audit import ToolCallLog, verify
from jarvis.db.audit.append import AuditAppendError, _append_sql
from jarvis.db.models import ToolCall
from jarvis_testkit.roles import app_role, auditor_role
from jarvis_testkit.tamper import Trail

START = "SELECT public.jarvis_append_tool_calls(p_id => %s, p_tool_name => 'probe', p_status => 'started')"


def as_role(url: str, role: str) -> psycopg.Connection[tuple[object, ...]]:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
    return conn


def stored(url: str, row_id: uuid.UUID) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM ONLY public.tool_calls WHERE id = %s", (row_id,)).fetchone()
    return int(row[0]) if row else 0


def test_the_app_role_appends_through_the_function(isolated_database_url: str) -> None:
    row_id = uuid.uuid4()
    with as_role(isolated_database_url, app_role(isolated_database_url)) as conn:
        created_at = conn.execute(START, (row_id,)).fetchone()
    assert created_at is not None and created_at[0] is not None
    assert stored(isolated_database_url, row_id) == 1


def test_the_auditor_role_may_not_call_an_append_function(isolated_database_url: str) -> None:
    row_id = uuid.uuid4()
    with as_role(isolated_database_url, auditor_role(isolated_database_url)) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(START, (row_id,))
    assert stored(isolated_database_url, row_id) == 0


def test_a_role_outside_jarvis_may_not_call_an_append_function(isolated_database_url: str) -> None:
    stranger = f"stranger_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(isolated_database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(stranger)))
        admin.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(stranger)))
    row_id = uuid.uuid4()
    try:
        with as_role(isolated_database_url, stranger) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(START, (row_id,))
    finally:
        with psycopg.connect(isolated_database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(stranger)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(stranger)))
    assert stored(isolated_database_url, row_id) == 0


def test_an_append_function_cannot_be_given_a_created_at(isolated_database_url: str) -> None:
    with as_role(isolated_database_url, app_role(isolated_database_url)) as conn:
        with pytest.raises(psycopg.errors.UndefinedFunction):
            conn.execute(
                "SELECT public.jarvis_append_tool_calls(p_id => %s, p_tool_name => 'probe', p_status => 'started', "
                "p_created_at => now() - interval '30 days')",
                (uuid.uuid4(),),
            )


def test_an_append_function_refuses_to_run_with_triggers_off(isolated_database_url: str) -> None:
    row_id = uuid.uuid4()
    with psycopg.connect(isolated_database_url, autocommit=True) as superuser:
        superuser.execute("SET session_replication_role = replica")
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="triggers are off"):
            superuser.execute(START, (row_id,))
    assert stored(isolated_database_url, row_id) == 0


def test_an_append_function_keeps_every_lifecycle_rule(trail: Trail) -> None:
    """A completion of a completion is refused inside the function as it is for a plain INSERT."""
    with as_role(trail.url, app_role(trail.url)) as conn:
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="completion"):
            conn.execute(
                "SELECT public.jarvis_append_tool_calls(p_id => %s, p_parent_id => %s, p_tool_name => 'probe', "
                "p_status => 'succeeded', p_output => %s)",
                (uuid.uuid4(), trail.completions[0], Jsonb({"forged": True})),
            )


def test_the_append_statement_means_the_same_under_a_hostile_search_path(
    isolated_database_url: str, isolated_database: Database
) -> None:
    """Temp tables named like the casts' types, first in the path: the statement still reaches public."""
    row_id = uuid.uuid4()
    statement = _append_sql(ToolCall.__table__, ("id", "tool_name", "status", "input"))
    with psycopg.connect(isolated_database_url, autocommit=True) as superuser:
        for name in ("uuid", "text", "jsonb", "tool_calls"):
            superuser.execute(sql.SQL("CREATE TEMP TABLE {} (x int)").format(sql.Identifier(name)))
        superuser.execute("SET search_path = pg_temp, public")
        superuser.execute(statement, (row_id, "probe", "started", Jsonb({"n": 1})))
    assert stored(isolated_database_url, row_id) == 1


def test_a_replaced_append_function_is_named_by_verify(isolated_database: Database, trail: Trail) -> None:
    """A superuser swaps the function for one that stores nothing: verify names it."""
    with psycopg.connect(trail.url, autocommit=True) as superuser:
        definition = superuser.execute(
            "SELECT pg_get_functiondef('public.jarvis_append_tool_calls'::regproc)"
        ).fetchone()
        assert definition is not None
        head, _body, tail = str(definition[0]).split("$function$")
        superuser.execute(f"{head}$function$ BEGIN RETURN pg_catalog.clock_timestamp(); END $function${tail}")
    report = verify(isolated_database)
    assert not report.ok
    assert any("jarvis_append_tool_calls" in str(problem) for problem in report.problems), report.summary()


def test_a_direct_connection_prepares_the_append_call_and_nothing_else(isolated_database: Database) -> None:
    log = ToolCallLog(isolated_database)
    for n in range(3):
        with log.record("probe", {"n": n}) as call:
            call.succeed({"n": n})
    with isolated_database.autocommit_cursor() as cursor:  # the most recently used connection (LIFO)
        cursor.execute("SELECT statement FROM pg_catalog.pg_prepared_statements")
        prepared = [str(row[0]) for row in cursor.fetchall()]
    assert prepared and all(statement.startswith("SELECT public.jarvis_append_tool_calls(") for statement in prepared)


def test_an_append_function_that_stores_nothing_is_an_error_not_a_crash(
    isolated_database: Database, isolated_database_url: str
) -> None:
    """A superuser makes the function STRICT: a NULL argument then returns NULL without storing the row."""
    with psycopg.connect(isolated_database_url, autocommit=True) as superuser:
        superuser.execute(
            "ALTER FUNCTION public.jarvis_append_tool_calls(uuid, uuid, uuid, text, text, jsonb, jsonb, text, integer) "
            "STRICT"
        )
    with pytest.raises(AuditAppendError, match="the function was changed"):
        ToolCallLog(isolated_database).start("probe", {"n": 1})
