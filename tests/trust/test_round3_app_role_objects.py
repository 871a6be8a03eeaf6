"""What the app role may legitimately create in `agent_ext` never reads as tampering (issue 22, B13).

The app role has CREATE on `agent_ext` (runtime tables). It may also create types there, casts
from and to its own types, functions and operators on them. None of these can change what verify's
queries compute (they never hold a value of the app role's types, and `agent_ext` is not on their
search path), so verify must say OK: an auditor who sees TAMPERED blames a superuser, and a false
accusation is as bad as a miss. Each test performs the creation as the app role itself.
"""

from __future__ import annotations

import psycopg
import pytest

from jarvis.db import Database, RuntimeSchema
from jarvis.db.audit import verify
from jarvis_testkit import tamper
from jarvis_testkit.tamper import Trail, without_traceback


def as_app_role(url: str, *statements: str) -> None:
    with tamper.as_app_role(url) as conn:
        for statement in statements:
            conn.execute(statement)


def assert_verifies(database: Database) -> None:
    report = without_traceback(lambda: verify(database))
    assert report.ok, [str(problem) for problem in report.problems]


MOOD = "CREATE TYPE agent_ext.mood AS ENUM ('calm', 'busy')"


def test_app_role_type_with_a_cast_to_text_is_not_tampering(isolated_database: Database, trail: Trail) -> None:
    as_app_role(trail.url, MOOD, "CREATE CAST (agent_ext.mood AS text) WITH INOUT")

    assert_verifies(isolated_database)


def test_app_role_cast_from_text_to_its_own_type_is_not_tampering(isolated_database: Database, trail: Trail) -> None:
    as_app_role(trail.url, MOOD, "CREATE CAST (text AS agent_ext.mood) WITH INOUT AS IMPLICIT")

    assert_verifies(isolated_database)


def test_app_role_cast_with_its_own_function_to_jsonb_is_not_tampering(
    isolated_database: Database, trail: Trail
) -> None:
    as_app_role(
        trail.url,
        MOOD,
        "CREATE FUNCTION agent_ext.mood_json(agent_ext.mood) RETURNS jsonb LANGUAGE sql IMMUTABLE "
        "AS $$ SELECT pg_catalog.to_jsonb($1::text) $$",
        "CREATE CAST (agent_ext.mood AS jsonb) WITH FUNCTION agent_ext.mood_json(agent_ext.mood)",
    )

    assert_verifies(isolated_database)


def test_app_role_operator_on_its_own_type_is_not_tampering(isolated_database: Database, trail: Trail) -> None:
    as_app_role(
        trail.url,
        MOOD,
        "CREATE FUNCTION agent_ext.same(agent_ext.mood, agent_ext.mood) RETURNS boolean LANGUAGE sql IMMUTABLE "
        "AS $$ SELECT $1::text = $2::text $$",
        "CREATE OPERATOR agent_ext.=== (LEFTARG = agent_ext.mood, RIGHTARG = agent_ext.mood, "
        "FUNCTION = agent_ext.same)",
    )

    assert_verifies(isolated_database)


def test_app_role_plpgsql_function_in_agent_ext_is_not_tampering(isolated_database: Database, trail: Trail) -> None:
    as_app_role(
        trail.url,
        "CREATE FUNCTION agent_ext.double(n bigint) RETURNS bigint LANGUAGE plpgsql AS $$ BEGIN RETURN 2 * n; END $$",
    )

    assert_verifies(isolated_database)


def test_app_role_runtime_table_is_not_tampering(isolated_database: Database, trail: Trail) -> None:
    RuntimeSchema(isolated_database).create_table("notes", {"body": "text"})

    assert_verifies(isolated_database)


def test_app_role_still_cannot_create_a_cast_between_builtin_types(trail: Trail) -> None:
    """The casts it may create involve its own types only: one between built-ins stays a superuser's."""
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_app_role(trail.url, "CREATE CAST (bytea AS text) WITH INOUT")
