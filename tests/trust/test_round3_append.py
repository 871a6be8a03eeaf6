"""Round 3: a superuser changes who may call an append function, or who owns it, without touching its body.

Each attack is performed for real as a superuser, its effect is shown (another
role may now append, or may now change the function), and verify must name the
function. The body, SECURITY DEFINER and search_path of every function stay as
the migrations installed them, so only a check of the function's owner, its
EXECUTE grants and its overloads can notice.
"""

from __future__ import annotations

import uuid

import psycopg
from psycopg import sql

from jarvis.db import Database
from jarvis.db.audit import VerifyReport, verify
from jarvis_testkit.roles import app_role, auditor_role
from jarvis_testkit.tamper import Trail

SIGNATURE = "public.jarvis_append_tool_calls(uuid, uuid, uuid, text, text, jsonb, jsonb, text, integer)"
START = "SELECT public.jarvis_append_tool_calls(p_id => %s, p_tool_name => 'probe', p_status => 'started')"


def assert_named(report: VerifyReport, *words: str) -> None:
    assert not report.ok, report.summary()
    texts = [str(problem) for problem in report.problems]
    assert any(all(word in text for word in words) for text in texts), texts


def appends_as(url: str, role: str, statement: str, *params: object) -> bool:
    """Whether `role` may run the append `statement` (in a transaction rolled back: nothing is stored)."""
    with psycopg.connect(url) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        try:
            conn.execute(statement, params)
        except psycopg.errors.InsufficientPrivilege:
            return False
        finally:
            conn.rollback()
    return True


def test_execute_on_an_append_function_granted_to_public_is_named_by_verify(
    isolated_database: Database, trail: Trail
) -> None:
    """After `GRANT EXECUTE ... TO PUBLIC` the read-only auditor can write audit rows."""
    auditor = auditor_role(trail.url)
    assert not appends_as(trail.url, auditor, START, uuid.uuid4())
    with psycopg.connect(trail.url, autocommit=True) as superuser:
        superuser.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO PUBLIC")
    assert appends_as(trail.url, auditor, START, uuid.uuid4())

    assert_named(verify(isolated_database), "jarvis_append_tool_calls", "PUBLIC")


def test_execute_on_an_append_function_granted_to_another_role_is_named_by_verify(
    isolated_database: Database, trail: Trail
) -> None:
    auditor = auditor_role(trail.url)
    with psycopg.connect(trail.url, autocommit=True) as superuser:
        superuser.execute(sql.SQL(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO {{}}").format(sql.Identifier(auditor)))
    assert appends_as(trail.url, auditor, START, uuid.uuid4())

    assert_named(verify(isolated_database), "jarvis_append_tool_calls", auditor)


def test_an_append_function_given_to_the_app_role_is_named_by_verify(isolated_database: Database, trail: Trail) -> None:
    """Owned by the app role, the function is the compromised agent's to change: it may grant it to anyone."""
    app, auditor = app_role(trail.url), auditor_role(trail.url)
    with psycopg.connect(trail.url, autocommit=True) as superuser:
        superuser.execute(sql.SQL(f"ALTER FUNCTION {SIGNATURE} OWNER TO {{}}").format(sql.Identifier(app)))
    with psycopg.connect(trail.url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(app)))
        conn.execute(sql.SQL(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO {{}}").format(sql.Identifier(auditor)))

    assert_named(verify(isolated_database), "jarvis_append_tool_calls", "owned by", app)


def test_an_overload_of_an_append_function_with_the_same_body_is_named_by_verify(
    isolated_database: Database, trail: Trail
) -> None:
    """Same body, SECURITY DEFINER and search path, one parameter type changed: a second way in, for PUBLIC."""
    with psycopg.connect(trail.url, autocommit=True) as superuser:
        row = superuser.execute(f"SELECT pg_get_functiondef('{SIGNATURE}'::regprocedure)").fetchone()
        assert row is not None
        overload = str(row[0]).replace("p_duration_ms integer", "p_duration_ms bigint", 1)
        assert overload != row[0]
        superuser.execute(overload)  # a new function: EXECUTE for PUBLIC by default
    auditor = auditor_role(trail.url)
    overload_call = (
        "SELECT public.jarvis_append_tool_calls(p_id => %s, p_tool_name => 'probe', p_status => 'started', "
        "p_duration_ms => NULL::bigint)"
    )
    assert appends_as(trail.url, auditor, overload_call, uuid.uuid4())

    assert_named(verify(isolated_database), "jarvis_append_tool_calls", "bigint", "overload")


def test_an_append_commits_durably_after_a_neighbour_left_synchronous_commit_off(isolated_database_url: str) -> None:
    """A pooled neighbour (same login) leaves `synchronous_commit = off`: the append's commit is synchronous anyway.

    With it off, the write-ahead row of a tool that then runs could vanish in a crash; the setting that
    decides is the one in force when the transaction commits.
    """
    with as_app_after_a_neighbour(isolated_database_url, "SET synchronous_commit = off") as conn:
        with conn.transaction():
            conn.execute(START, (uuid.uuid4(),))
            in_force = conn.execute("SELECT current_setting('synchronous_commit')").fetchone()
        assert in_force == ("on",)
        # Only for the append's transaction: the session's own setting is the neighbour's again.
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)


def as_app_after_a_neighbour(url: str, leftover: str) -> psycopg.Connection[tuple[object, ...]]:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute(leftover)
    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(app_role(url))))
    return conn
