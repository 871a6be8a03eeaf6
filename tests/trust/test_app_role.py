"""What a compromised agent can do with its own role (a psycopg session + `SET ROLE <app role>`): not enough."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.types.json import Jsonb

from jarvis_testkit import tamper
from jarvis_testkit.roles import app_role


@pytest.fixture
def app(migrated_database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with tamper.as_app_role(migrated_database_url) as conn:
        yield conn


def open_cycle(conn: psycopg.Connection[tuple[object, ...]], agent: str) -> uuid.UUID:
    cycle = uuid.uuid4()
    conn.execute(
        "INSERT INTO public.planning_cycles (id, agent, status, goals) VALUES (%s, %s, 'started', %s)",
        (cycle, agent, Jsonb(["g"])),
    )
    return cycle


def close_cycle(conn: psycopg.Connection[tuple[object, ...]], cycle: uuid.UUID, agent: str) -> None:
    conn.execute(
        "INSERT INTO public.planning_cycles (id, parent_id, agent, status, outcomes) "
        "VALUES (%s, %s, %s, 'succeeded', %s)",
        (uuid.uuid4(), cycle, agent, Jsonb({})),
    )


# --- 2. shadowing the audit tables with a temporary table


def test_app_role_cannot_create_a_temp_table_to_shadow_planning_cycles(
    app: psycopg.Connection[tuple[object, ...]],
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute("CREATE TEMP TABLE planning_cycles (id uuid, parent_id uuid, agent text)")


@pytest.fixture
def shadowed(migrated_database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A session where a superuser created an empty temp `planning_cycles`, then became the app role."""
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TEMP TABLE planning_cycles (id uuid, parent_id uuid, agent text, goals jsonb, status text, "
            "outcomes jsonb, created_at timestamptz)"
        )
        conn.execute(f"GRANT ALL ON pg_temp.planning_cycles TO {app_role(migrated_database_url)}")
        conn.execute(f"SET ROLE {app_role(migrated_database_url)}")
        assert conn.execute("SELECT count(*) FROM planning_cycles").fetchone() == (0,)  # the shadow is what resolves
        yield conn


def test_temp_table_does_not_let_a_decision_into_a_closed_cycle(
    shadowed: psycopg.Connection[tuple[object, ...]],
) -> None:
    agent = f"agent-{uuid.uuid4()}"
    cycle = open_cycle(shadowed, agent)
    close_cycle(shadowed, cycle, agent)
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="already closed"):
        shadowed.execute(
            "INSERT INTO public.decision_log (id, cycle_id, reasoning, decision) VALUES (%s, %s, %s, 'late')",
            (uuid.uuid4(), cycle, Jsonb({"why": "backfill"})),
        )


def test_temp_table_does_not_allow_a_second_open_cycle_for_one_agent(
    shadowed: psycopg.Connection[tuple[object, ...]],
) -> None:
    agent = f"agent-{uuid.uuid4()}"
    open_cycle(shadowed, agent)
    with pytest.raises(psycopg.errors.UniqueViolation, match="already has an open planning cycle"):
        open_cycle(shadowed, agent)


# --- 5. the chain's own tables


CHAIN_TABLE_WRITES = {
    "audit_chain": "INSERT INTO public.audit_chain (seq, table_name, row_id, row_hash, chain_hash, encoding) "
    "VALUES (999999, 'tool_calls', gen_random_uuid(), '\\x00', '\\x00', 2)",
    "audit_pending": "INSERT INTO public.audit_pending (table_name, row_id) VALUES ('tool_calls', gen_random_uuid())",
    "audit_seal_head": "INSERT INTO public.audit_seal_head (seq, chain_hash) VALUES (0, '\\x00')",
    "trail_info": "INSERT INTO public.trail_info (app_role, auditor_role) VALUES ('jarvis_app', 'jarvis_app')",
}


@pytest.mark.parametrize("table", sorted(CHAIN_TABLE_WRITES))
@pytest.mark.parametrize("operation", ["INSERT", "UPDATE", "DELETE", "TRUNCATE"])
def test_app_role_cannot_write_the_chain_tables(
    app: psycopg.Connection[tuple[object, ...]], table: str, operation: str
) -> None:
    statement = {
        "INSERT": CHAIN_TABLE_WRITES[table],
        "UPDATE": f"UPDATE public.{table} SET table_name = table_name"
        if table in ("audit_chain", "audit_pending")
        else f"UPDATE public.{table} SET one = one",
        "DELETE": f"DELETE FROM public.{table}",
        "TRUNCATE": f"TRUNCATE public.{table}",
    }[operation]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute(statement)


def test_app_role_cannot_turn_the_triggers_off(app: psycopg.Connection[tuple[object, ...]]) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute("SET session_replication_role = replica")


# --- the superuser's tricks, tried by the app role


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE agent_ext.decisions_2026 () INHERITS (public.decision_log)",
        "CREATE RULE drop_transfers AS ON INSERT TO public.tool_calls DO INSTEAD NOTHING",
        "CREATE POLICY hide ON public.decision_log USING (false)",
        "ALTER TABLE public.decision_log ENABLE ROW LEVEL SECURITY",
        "ALTER TABLE public.decision_log DISABLE TRIGGER decision_log_append_only",
        "CREATE TRIGGER sneaky BEFORE INSERT ON public.tool_calls FOR EACH ROW "
        "EXECUTE FUNCTION public.jarvis_stamp_created_at()",
        "CREATE OR REPLACE FUNCTION public.jarvis_reject_mutation() RETURNS trigger LANGUAGE plpgsql "
        "AS $$ BEGIN RETURN NEW; END $$",
        "CREATE FUNCTION public.blind(oid, integer) RETURNS boolean LANGUAGE sql AS 'SELECT false'",
        "CREATE CAST (jsonb AS text) WITH INOUT",
        "DROP INDEX public.ix_tool_calls_one_completion",
    ],
    ids=[
        "inheritance_child",
        "rewrite_rule",
        "policy",
        "row_security",
        "disable_trigger",
        "extra_trigger",
        "replace_function",
        "function_in_public",
        "cast",
        "drop_index",
    ],
)
def test_app_role_cannot_change_what_readers_see(app: psycopg.Connection[tuple[object, ...]], statement: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute(statement)


def test_app_role_cannot_attach_its_own_table_as_an_inheritance_child(
    app: psycopg.Connection[tuple[object, ...]],
) -> None:
    name = f"t_{uuid.uuid4().hex[:12]}"
    app.execute(f"CREATE TABLE agent_ext.{name} (LIKE public.decision_log)")  # its own runtime table: allowed
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute(f"ALTER TABLE agent_ext.{name} INHERIT public.decision_log")
