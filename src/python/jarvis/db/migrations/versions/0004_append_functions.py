"""Append audit rows through one function per table: one statement, a plan cached by the server.

Each audited row used to cost the client two statements (the role and search
path for the transaction, then the INSERT) and the server a fresh parse and
plan of the INSERT with its triggers: named prepared statements are session
state, which a transaction pooler shares between clients. A PL/pgSQL
function keeps its plan in the server session without any client-visible
state, so `SELECT public.jarvis_append_<table>(...)` is one short statement
that is safe behind PgBouncer.

The functions are SECURITY DEFINER with a fixed search_path, executable only
by the database's app role: they run with the tables' owner's rights, but
they can do nothing but INSERT the given values into their own table, with
every trigger firing (`created_at` is still stamped by the database). They
refuse to run when `session_replication_role` is not `origin` (a pooled
superuser neighbour may leave it at `replica`, which would silence the
triggers): the client then sets it back for its transaction and calls again.
A `synchronous_commit = off` left in the session is turned back on for the
function's transaction: an audit row is on disk before its caller hears of it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SAFE_PATH = "SET search_path = pg_catalog, pg_temp"

APPENDED_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "tool_calls": (
        ("id", "uuid"),
        ("parent_id", "uuid"),
        ("cycle_id", "uuid"),
        ("tool_name", "text"),
        ("status", "text"),
        ("input", "jsonb"),
        ("output", "jsonb"),
        ("error", "text"),
        ("duration_ms", "integer"),
    ),
    "planning_cycles": (
        ("id", "uuid"),
        ("parent_id", "uuid"),
        ("agent", "text"),
        ("status", "text"),
        ("goals", "jsonb"),
        ("outcomes", "jsonb"),
    ),
    "decision_log": (
        ("id", "uuid"),
        ("cycle_id", "uuid"),
        ("decision", "text"),
        ("reasoning", "jsonb"),
    ),
}
"""Every column a client may set (`created_at` is the database's). Clients pass them by name; an
omitted one is NULL, as an omitted column was."""


def signature(table: str) -> str:
    return f"public.jarvis_append_{table}({', '.join(kind for _, kind in APPENDED_COLUMNS[table])})"


def append_function(table: str) -> str:
    columns = APPENDED_COLUMNS[table]
    parameters = ", ".join(f"p_{name} {kind}" + (" DEFAULT NULL" if name != "id" else "") for name, kind in columns)
    return f"""
CREATE OR REPLACE FUNCTION public.jarvis_append_{table}({parameters})
RETURNS timestamptz LANGUAGE plpgsql SECURITY DEFINER {SAFE_PATH} AS $$
DECLARE
  stamped timestamptz;
BEGIN
  IF pg_catalog.current_setting('session_replication_role') OPERATOR(pg_catalog.<>) 'origin' THEN
    RAISE EXCEPTION 'jarvis: triggers are off in this session (session_replication_role = %)',
        pg_catalog.current_setting('session_replication_role')
      USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Set it back to origin for the transaction: audit rows are only written with every trigger on.';
  END IF;
  IF pg_catalog.current_setting('synchronous_commit') OPERATOR(pg_catalog.=) 'off' THEN
    -- A pooled neighbour's leftover: the row must be durable before the caller runs the tool (until commit).
    PERFORM pg_catalog.set_config('synchronous_commit', 'on', true);
  END IF;
  INSERT INTO public.{table} ({', '.join(name for name, _ in columns)})
  VALUES ({', '.join(f"p_{name}" for name, _ in columns)})
  ON CONFLICT (id) DO NOTHING
  RETURNING created_at INTO stamped;
  RETURN stamped;  -- NULL: the id exists (a retry of a row that landed, or a reused id)
END $$"""


def upgrade() -> None:
    bind = op.get_bind()
    app = bind.execute(text("SELECT app_role FROM public.trail_info")).scalar_one()
    for table in APPENDED_COLUMNS:
        op.execute(append_function(table))
        op.execute(f"REVOKE EXECUTE ON FUNCTION {signature(table)} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature(table)} TO {app}")


def downgrade() -> None:
    for table in APPENDED_COLUMNS:
        op.execute(f"DROP FUNCTION {signature(table)}")
