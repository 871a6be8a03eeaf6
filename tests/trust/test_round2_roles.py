"""Round 2: what the app role and the SELECT-only auditor role can still do beyond SELECT/INSERT."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql

from jarvis.config import load_settings
from jarvis.db import Database, DatabaseError
from jarvis.db.audit import PlanningLog, verify
from jarvis.db.migrate import upgrade_to_head
from jarvis_testkit import services, tamper
from jarvis_testkit.roles import auditor_role
from jarvis_testkit.tamper import Trail, without_traceback


@contextmanager
def as_auditor_role(url: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """A raw session of the database's SELECT-only auditor role: what any reader of the trail holds."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(auditor_role(url))))
        yield conn


# --- (d) the app role writes the sealer's queue through the SECURITY DEFINER trigger function


def test_app_role_cannot_queue_rows_through_the_sealing_trigger_on_a_table_of_its_own(
    isolated_database: Database, trail: Trail
) -> None:
    """`jarvis_queue_for_sealing()` is SECURITY DEFINER and, like every function, EXECUTE-able by PUBLIC.
    The app role owns its runtime tables in agent_ext, so it may put that trigger on one of them
    named `tool_calls`: TG_TABLE_NAME is then 'tool_calls' and the owner inserts whatever ids the app
    chose into audit_pending, which the app role may not write. verify then accuses the DBA: 'queued
    row was deleted before it was sealed' for rows that never existed."""
    framed = [uuid.uuid4() for _ in range(3)]
    refused = False
    with tamper.as_app_role(trail.url) as app:
        app.execute("CREATE TABLE agent_ext.tool_calls (id uuid)")
        try:
            app.execute(
                "CREATE TRIGGER queue AFTER INSERT ON agent_ext.tool_calls "
                "FOR EACH ROW EXECUTE FUNCTION public.jarvis_queue_for_sealing()"
            )
            app.execute("INSERT INTO agent_ext.tool_calls SELECT unnest(%s::uuid[])", (framed,))
        except psycopg.errors.InsufficientPrivilege:
            refused = True
    with psycopg.connect(trail.url) as conn:
        queued = {row[0] for row in conn.execute("SELECT row_id FROM public.audit_pending")}
    report = verify(isolated_database)
    framed_by_verify = sorted(str(p.row_id) for p in report.problems if p.row_id in framed)

    assert refused and not queued & set(framed), (
        f"the app role queued {len(queued & set(framed))} made-up ids; verify now reports "
        f"{framed_by_verify} as deleted by someone: {report.summary()}"
    )


# --- (c) any login of the database, even the SELECT-only auditor, stalls the agent without bound


def test_an_auditor_holding_the_agents_cycle_lock_does_not_hang_the_agent(
    isolated_database: Database, trail: Trail
) -> None:
    """The one-open-cycle trigger takes `pg_advisory_xact_lock(hashtext('jarvis.planning_cycle:' || agent))`.
    Advisory locks need no privilege, so a session of the auditor role takes that key for itself and
    the agent's next `open_cycle` waits forever (no lock_timeout, no statement_timeout)."""
    with as_auditor_role(trail.url) as auditor:
        auditor.execute("SELECT pg_advisory_lock(hashtext('jarvis.planning_cycle:' || 'victim'))")
        started = time.monotonic()
        try:
            tamper.within(3, lambda: PlanningLog(isolated_database, agent="victim").open_cycle(["pay rent"]))
        except DatabaseError as error:  # a one-line error naming the holder is fine
            assert "lock" in str(error), str(error)
        assert time.monotonic() - started < 3


# --- (d) clusters made before PostgreSQL 15 (or pg_upgrade'd from them) let PUBLIC create in `public`


@pytest.fixture
def pre_15_public_schema(postgres_admin_url: str) -> Iterator[str]:
    """A new database whose `public` schema has the pre-15 default ACL (CREATE for PUBLIC), then migrated."""
    with services.fresh_database(postgres_admin_url, "pre15_public") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")
        upgrade_to_head(load_settings(database_url=url), url=url)
        yield url


def test_the_auditor_role_cannot_create_objects_in_public_on_a_pre_15_schema(pre_15_public_schema: str) -> None:
    """Migration 0003 revokes CONNECT and TEMP from PUBLIC but never CREATE on schema public: on such a
    cluster the SELECT-only auditor (and the app role) may put functions and operators in `public`,
    the schema every reader has on its search_path."""
    with as_auditor_role(pre_15_public_schema) as auditor, pytest.raises(psycopg.errors.InsufficientPrivilege):
        auditor.execute("CREATE FUNCTION public.lower(uuid) RETURNS text LANGUAGE sql AS 'SELECT 1::text'")


def test_verify_names_a_function_someone_put_in_public(pre_15_public_schema: str, postgres_admin_url: str) -> None:
    """Whoever still could (the owner, a superuser) put a function in `public`: verify lists it."""
    with psycopg.connect(pre_15_public_schema, autocommit=True) as owner:
        owner.execute("CREATE FUNCTION public.lower(uuid) RETURNS text LANGUAGE sql AS 'SELECT 1::text'")
    from jarvis.db import open_database

    database = open_database(load_settings(database_url=pre_15_public_schema), url=pre_15_public_schema)
    try:
        report = without_traceback(lambda: verify(database))
    finally:
        database.shutdown()
    assert any("public.lower" in str(p) for p in report.problems), report.summary()
