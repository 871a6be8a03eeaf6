"""Initial schema: five JSONB tables, the hash chain, and append-only enforced by PostgreSQL.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 04:08:39.123285
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from jarvis.db.migrations.guard import refuse_to_destroy_audit_rows

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_state",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("length(key) BETWEEN 1 AND 512", name=op.f("ck_agent_state_key_length")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_state")),
        sa.UniqueConstraint("key", name=op.f("uq_agent_state_key")),
    )
    op.create_table(
        "audit_chain",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("table_name", sa.Text(), nullable=False),
        sa.Column("row_id", sa.Uuid(), nullable=False),
        sa.Column("row_hash", sa.LargeBinary(), nullable=False),
        sa.Column("chain_hash", sa.LargeBinary(), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "table_name IN ('planning_cycles', 'tool_calls', 'decision_log')", name=op.f("ck_audit_chain_table_name")
        ),
        sa.CheckConstraint("seq >= 1", name=op.f("ck_audit_chain_seq_positive")),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_chain")),
        sa.UniqueConstraint("table_name", "row_id", name=op.f("uq_audit_chain_table_name_row_id")),
    )
    op.create_table(
        "audit_pending",
        sa.Column("table_name", sa.Text(), nullable=False),
        sa.Column("row_id", sa.Uuid(), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False),
        sa.CheckConstraint(
            "table_name IN ('planning_cycles', 'tool_calls', 'decision_log')", name=op.f("ck_audit_pending_table_name")
        ),
        sa.PrimaryKeyConstraint("table_name", "row_id", name=op.f("pk_audit_pending")),
    )
    op.create_table(
        "memory_facts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("is_stale", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memory_facts")),
    )
    op.create_index(
        "ix_memory_facts_body",
        "memory_facts",
        ["body"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"body": "jsonb_path_ops"},
    )
    op.create_index(
        "ix_memory_facts_fresh",
        "memory_facts",
        [sa.literal_column("created_at DESC")],
        unique=False,
        postgresql_where=sa.text("NOT is_stale"),
    )
    op.create_index(
        "ix_memory_facts_subject_created_at",
        "memory_facts",
        ["subject", sa.literal_column("created_at DESC")],
        unique=False,
    )
    op.create_table(
        "planning_cycles",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("parent_id", sa.Uuid(), nullable=True),
        sa.Column("agent", sa.Text(), nullable=False),
        sa.Column("goals", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("outcomes", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.CheckConstraint(
            "(parent_id IS NULL) = (status = 'started')", name=op.f("ck_planning_cycles_start_has_no_parent")
        ),
        sa.CheckConstraint(
            "status IN ('started', 'succeeded', 'failed', 'cancelled', 'abandoned')",
            name=op.f("ck_planning_cycles_status"),
        ),
        sa.CheckConstraint("length(agent) BETWEEN 1 AND 200", name=op.f("ck_planning_cycles_agent_length")),
        sa.CheckConstraint(
            "parent_id IS NOT NULL OR (goals IS NOT NULL AND outcomes IS NULL)",
            name=op.f("ck_planning_cycles_start_has_goals"),
        ),
        sa.CheckConstraint(
            "parent_id IS NULL OR goals IS NULL", name=op.f("ck_planning_cycles_completion_has_no_goals")
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["planning_cycles.id"], name=op.f("fk_planning_cycles_parent_id_planning_cycles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_planning_cycles")),
    )
    op.create_index("ix_planning_cycles_agent_created_at", "planning_cycles", ["agent", "created_at"], unique=False)
    op.create_index(
        "ix_planning_cycles_one_completion",
        "planning_cycles",
        ["parent_id"],
        unique=True,
        postgresql_where=sa.text("parent_id IS NOT NULL"),
    )
    op.create_table(
        "schema_changes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("table_name", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("columns", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schema_changes")),
    )
    op.create_table(
        "decision_log",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("cycle_id", sa.Uuid(), nullable=False),
        sa.Column("reasoning", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("decision", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.CheckConstraint("length(decision) BETWEEN 1 AND 10000", name=op.f("ck_decision_log_decision_length")),
        sa.ForeignKeyConstraint(
            ["cycle_id"], ["planning_cycles.id"], name=op.f("fk_decision_log_cycle_id_planning_cycles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decision_log")),
    )
    op.create_index(op.f("ix_decision_log_cycle_id"), "decision_log", ["cycle_id"], unique=False)
    op.create_table(
        "tool_calls",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("parent_id", sa.Uuid(), nullable=True),
        sa.Column("cycle_id", sa.Uuid(), nullable=True),
        sa.Column("tool_name", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("input", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("output", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.CheckConstraint(
            "(parent_id IS NULL) = (status = 'started')", name=op.f("ck_tool_calls_start_has_no_parent")
        ),
        sa.CheckConstraint(
            "status IN ('started', 'succeeded', 'failed', 'cancelled', 'abandoned')", name=op.f("ck_tool_calls_status")
        ),
        sa.CheckConstraint("length(tool_name) BETWEEN 1 AND 200", name=op.f("ck_tool_calls_tool_name_length")),
        sa.CheckConstraint(
            "parent_id IS NOT NULL OR (output IS NULL AND error IS NULL AND duration_ms IS NULL)",
            name=op.f("ck_tool_calls_start_has_no_outcome"),
        ),
        sa.CheckConstraint("parent_id IS NULL OR input IS NULL", name=op.f("ck_tool_calls_completion_has_no_input")),
        sa.CheckConstraint("parent_id IS NULL OR cycle_id IS NULL", name=op.f("ck_tool_calls_completion_has_no_cycle")),
        sa.ForeignKeyConstraint(
            ["cycle_id"], ["planning_cycles.id"], name=op.f("fk_tool_calls_cycle_id_planning_cycles")
        ),
        sa.ForeignKeyConstraint(["parent_id"], ["tool_calls.id"], name=op.f("fk_tool_calls_parent_id_tool_calls")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tool_calls")),
    )
    op.create_index("ix_tool_calls_created_at", "tool_calls", ["created_at"], unique=False)
    op.create_index("ix_tool_calls_cycle_id", "tool_calls", ["cycle_id"], unique=False)
    op.create_index(
        "ix_tool_calls_one_completion",
        "tool_calls",
        ["parent_id"],
        unique=True,
        postgresql_where=sa.text("parent_id IS NOT NULL"),
    )
    install_enforcement()


AUDIT_TABLES_DROPPED = (
    "planning_cycles",
    "tool_calls",
    "decision_log",
    "audit_chain",
    "audit_pending",
    "schema_changes",
)
"""What this downgrade destroys: refused while any of them holds rows (jarvis.db.migrations.guard)."""


def downgrade() -> None:
    refuse_to_destroy_audit_rows(revision, AUDIT_TABLES_DROPPED)
    uninstall_enforcement()
    op.drop_index(
        "ix_tool_calls_one_completion", table_name="tool_calls", postgresql_where=sa.text("parent_id IS NOT NULL")
    )
    op.drop_index("ix_tool_calls_cycle_id", table_name="tool_calls")
    op.drop_index("ix_tool_calls_created_at", table_name="tool_calls")
    op.drop_table("tool_calls")
    op.drop_index(op.f("ix_decision_log_cycle_id"), table_name="decision_log")
    op.drop_table("decision_log")
    op.drop_table("schema_changes")
    op.drop_index(
        "ix_planning_cycles_one_completion",
        table_name="planning_cycles",
        postgresql_where=sa.text("parent_id IS NOT NULL"),
    )
    op.drop_index("ix_planning_cycles_agent_created_at", table_name="planning_cycles")
    op.drop_table("planning_cycles")
    op.drop_index("ix_memory_facts_subject_created_at", table_name="memory_facts")
    op.drop_index("ix_memory_facts_fresh", table_name="memory_facts", postgresql_where=sa.text("NOT is_stale"))
    op.drop_index(
        "ix_memory_facts_body",
        table_name="memory_facts",
        postgresql_using="gin",
        postgresql_ops={"body": "jsonb_path_ops"},
    )
    op.drop_table("memory_facts")
    op.drop_table("audit_pending")
    op.drop_table("audit_chain")
    op.drop_table("agent_state")
    drop_enforcement_functions()


# Everything below is enforced by PostgreSQL itself, so no client (buggy,
# compromised, or a person with psql and the application's credentials) can
# rewrite history. Kept in this file, not imported, so the migration stays a
# snapshot of what it did when it was written.
APP_ROLE = "jarvis_app"
AUDIT_TABLES = ("planning_cycles", "tool_calls", "decision_log")
APPEND_ONLY_TABLES = (*AUDIT_TABLES, "audit_chain", "schema_changes")
TWO_ROW_TABLES = ("planning_cycles", "tool_calls")

REJECT_MUTATION = """
CREATE FUNCTION jarvis_reject_mutation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'restrict_violation',
          HINT = 'History is never changed: append a completion row instead.';
END $$
"""

# A completion must point at a start row (never at another completion).
# Start rows never change, so checking at insert time is enough.
CHECK_PARENT_IS_START = """
CREATE FUNCTION jarvis_{table}_check_parent() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  grandparent uuid;
  parent_found boolean;
BEGIN
  IF NEW.parent_id IS NOT NULL THEN
    SELECT true, parent_id INTO parent_found, grandparent FROM {table} WHERE id = NEW.parent_id;
    IF parent_found AND grandparent IS NOT NULL THEN
      RAISE EXCEPTION '{table}: a completion must point at a start row, and % is a completion', NEW.parent_id
        USING ERRCODE = 'foreign_key_violation';
    END IF;
  END IF;
  RETURN NEW;
END $$
"""

# At most one open planning cycle per agent. The advisory lock serialises
# concurrent openers; the second one then sees the first one's committed row.
CHECK_ONE_OPEN_CYCLE = """
CREATE FUNCTION jarvis_planning_cycles_check_one_open() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.parent_id IS NULL THEN
    PERFORM pg_advisory_xact_lock(hashtext('jarvis.planning_cycle:' || NEW.agent));
    IF EXISTS (
      SELECT 1 FROM planning_cycles s
      WHERE s.agent = NEW.agent AND s.parent_id IS NULL
        AND NOT EXISTS (SELECT 1 FROM planning_cycles c WHERE c.parent_id = s.id)
    ) THEN
      RAISE EXCEPTION 'agent % already has an open planning cycle', NEW.agent
        USING ERRCODE = 'unique_violation', HINT = 'Close it (or mark it abandoned) before opening another.';
    END IF;
  END IF;
  RETURN NEW;
END $$
"""

# Decisions and tool calls belong to an open cycle's start row.
CHECK_CYCLE_IS_OPEN_START = """
CREATE FUNCTION jarvis_check_cycle_reference() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  cycle_parent uuid;
  cycle_found boolean;
BEGIN
  IF NEW.cycle_id IS NOT NULL THEN
    SELECT true, parent_id INTO cycle_found, cycle_parent FROM planning_cycles WHERE id = NEW.cycle_id;
    IF cycle_found AND cycle_parent IS NOT NULL THEN
      RAISE EXCEPTION '%: cycle_id must point at a planning cycle''s start row, and % is a completion',
        TG_TABLE_NAME, NEW.cycle_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF cycle_found AND EXISTS (SELECT 1 FROM planning_cycles WHERE parent_id = NEW.cycle_id) THEN
      RAISE EXCEPTION '%: planning cycle % is already closed', TG_TABLE_NAME, NEW.cycle_id
        USING ERRCODE = 'foreign_key_violation';
    END IF;
  END IF;
  RETURN NEW;
END $$
"""

# Every new audit row is queued for the hash-chain sealer. A row written with
# triggers disabled is never queued, never sealed, and so caught by verify.
QUEUE_FOR_SEALING = """
CREATE FUNCTION jarvis_queue_for_sealing() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO audit_pending (table_name, row_id) SELECT TG_TABLE_NAME, id FROM new_rows;
  RETURN NULL;
END $$
"""

CREATE_APP_ROLE = f"""
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
    BEGIN
      CREATE ROLE {APP_ROLE} NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
      NULL;  -- created concurrently by a migration of another database
    END;
  END IF;
  BEGIN
    EXECUTE format('GRANT {APP_ROLE} TO %I', current_user);
  EXCEPTION WHEN OTHERS THEN
    NULL;  -- already a member, or a superuser (who may SET ROLE anyway)
  END;
END $$
"""


def install_enforcement() -> None:
    op.execute(REJECT_MUTATION)
    for table in APPEND_ONLY_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION jarvis_reject_mutation()"
        )
        # TRUNCATE fires no row triggers: it needs its own statement-level one.
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION jarvis_reject_mutation()"
        )
    for table in TWO_ROW_TABLES:
        op.execute(CHECK_PARENT_IS_START.format(table=table))
        op.execute(
            f"CREATE TRIGGER {table}_parent_is_start BEFORE INSERT ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION jarvis_{table}_check_parent()"
        )
    op.execute(CHECK_ONE_OPEN_CYCLE)
    op.execute(
        "CREATE TRIGGER planning_cycles_one_open BEFORE INSERT ON planning_cycles "
        "FOR EACH ROW EXECUTE FUNCTION jarvis_planning_cycles_check_one_open()"
    )
    op.execute(CHECK_CYCLE_IS_OPEN_START)
    for table in ("tool_calls", "decision_log"):
        op.execute(
            f"CREATE TRIGGER {table}_cycle_reference BEFORE INSERT ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION jarvis_check_cycle_reference()"
        )
    op.execute(QUEUE_FOR_SEALING)
    for table in AUDIT_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_queue_for_sealing AFTER INSERT ON {table} "
            "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION jarvis_queue_for_sealing()"
        )

    op.execute(CREATE_APP_ROLE)
    op.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON agent_state, memory_facts TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT ON {', '.join(APPEND_ONLY_TABLES)} TO {APP_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, DELETE ON audit_pending TO {APP_ROLE}")
    op.execute("CREATE SCHEMA agent_ext")
    op.execute(f"GRANT USAGE, CREATE ON SCHEMA agent_ext TO {APP_ROLE}")


def uninstall_enforcement() -> None:
    # The role is cluster-wide and may serve other databases: only its rights here go.
    op.execute("DROP SCHEMA agent_ext CASCADE")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {APP_ROLE}")
    op.execute(f"REVOKE ALL ON SCHEMA public FROM {APP_ROLE}")


def drop_enforcement_functions() -> None:
    for function in (
        "jarvis_reject_mutation",
        *(f"jarvis_{table}_check_parent" for table in TWO_ROW_TABLES),
        "jarvis_planning_cycles_check_one_open",
        "jarvis_check_cycle_reference",
        "jarvis_queue_for_sealing",
    ):
        op.execute(f"DROP FUNCTION {function}()")
