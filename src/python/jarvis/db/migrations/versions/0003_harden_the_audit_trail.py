"""Harden the audit trail against its own application role, poolers and superusers.

- Every trigger and helper function gets a fixed `search_path` (pg_catalog
  first, pg_temp last) and schema-qualified names, so a temp table cannot
  shadow an audit table.
- Roles per database (names kept in `trail_info`): `<prefix>_app` (SELECT and
  INSERT; never chooses `created_at`), `<prefix>_auditor` (SELECT only). The
  cluster-wide `jarvis_app` of 0001 loses its rights here. PUBLIC loses
  CONNECT and TEMP on the database.
- `created_at` is stamped by the database (`clock_timestamp()`), and bounded
  to what every client can load.
- The application cannot write `audit_chain` or `audit_pending`: rows are
  queued by a SECURITY DEFINER trigger and linked by `jarvis_seal()`, a
  SECURITY DEFINER function that hashes in the database (encoding 2: the
  row's JSONB text, exact numbers) and takes a row lock the application role
  cannot take directly.
- `schema_changes` joins the chain.

Existing links keep encoding 1 and keep verifying.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import hashlib
import re

from alembic import op
from sqlalchemy import text

from jarvis.db.migrations.guard import refuse_to_destroy_audit_rows

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

CHAINED_TABLES = ("planning_cycles", "tool_calls", "decision_log", "schema_changes")
UUID_TABLES = ("planning_cycles", "tool_calls", "decision_log")
TWO_ROW_TABLES = ("planning_cycles", "tool_calls")
SAFE_PATH = "SET search_path = pg_catalog, pg_temp"
LEGACY_ROLE = "jarvis_app"


def role_prefix(database: str) -> str:
    """`jarvis_<database>`; names that are long or need quoting get a hash suffix instead."""
    slug = re.sub(r"[^a-z0-9_]", "_", database.lower())
    if slug != database or len(slug) > 30:
        slug = slug[:21] + "_" + hashlib.sha256(database.encode()).hexdigest()[:8]
    return f"jarvis_{slug}"


FUNCTIONS = {
    "jarvis_reject_mutation": f"""
CREATE OR REPLACE FUNCTION public.jarvis_reject_mutation() RETURNS trigger LANGUAGE plpgsql {SAFE_PATH} AS $$
BEGIN
  RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'restrict_violation',
          HINT = 'History is never changed: append a completion row instead.';
END $$""",
    "jarvis_stamp_created_at": f"""
CREATE OR REPLACE FUNCTION public.jarvis_stamp_created_at() RETURNS trigger LANGUAGE plpgsql {SAFE_PATH} AS $$
BEGIN
  NEW.created_at := pg_catalog.clock_timestamp();
  RETURN NEW;
END $$""",
    **{
        f"jarvis_{table}_check_parent": f"""
CREATE OR REPLACE FUNCTION public.jarvis_{table}_check_parent() RETURNS trigger LANGUAGE plpgsql {SAFE_PATH} AS $$
DECLARE
  grandparent uuid;
  parent_found boolean;
BEGIN
  IF NEW.parent_id IS NOT NULL THEN
    SELECT true, p.parent_id INTO parent_found, grandparent FROM public.{table} p WHERE p.id = NEW.parent_id;
    IF parent_found AND grandparent IS NOT NULL THEN
      RAISE EXCEPTION '{table}: a completion must point at a start row, and % is a completion', NEW.parent_id
        USING ERRCODE = 'foreign_key_violation', CONSTRAINT = '{table}_parent_is_start';
    END IF;
  END IF;
  RETURN NEW;
END $$"""
        for table in TWO_ROW_TABLES
    },
    "jarvis_planning_cycles_check_one_open": f"""
CREATE OR REPLACE FUNCTION public.jarvis_planning_cycles_check_one_open() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER {SAFE_PATH} AS $$
BEGIN
  IF NEW.parent_id IS NULL THEN
    -- Openers of one agent's cycles queue on a row lock only this function may take (an advisory
    -- lock is open to every role: a SELECT-only session could hold it and hang the agent).
    INSERT INTO public.agent_cycle_guard (agent) VALUES (NEW.agent) ON CONFLICT (agent) DO NOTHING;
    PERFORM 1 FROM public.agent_cycle_guard g WHERE g.agent = NEW.agent FOR UPDATE;
    IF EXISTS (
      SELECT 1 FROM public.planning_cycles s
      WHERE s.agent = NEW.agent AND s.parent_id IS NULL AND s.id <> NEW.id
        AND NOT EXISTS (SELECT 1 FROM public.planning_cycles c WHERE c.parent_id = s.id)
    ) THEN
      RAISE EXCEPTION 'agent % already has an open planning cycle', NEW.agent
        USING ERRCODE = 'unique_violation', CONSTRAINT = 'planning_cycles_one_open',
              HINT = 'Close it (or mark it abandoned) before opening another.';
    END IF;
  END IF;
  RETURN NEW;
END $$""",
    "jarvis_check_cycle_reference": f"""
CREATE OR REPLACE FUNCTION public.jarvis_check_cycle_reference() RETURNS trigger LANGUAGE plpgsql {SAFE_PATH} AS $$
DECLARE
  cycle_parent uuid;
  cycle_found boolean;
BEGIN
  IF NEW.cycle_id IS NOT NULL THEN
    SELECT true, c.parent_id INTO cycle_found, cycle_parent FROM public.planning_cycles c WHERE c.id = NEW.cycle_id;
    IF cycle_found AND cycle_parent IS NOT NULL THEN
      RAISE EXCEPTION '%: cycle_id must point at a planning cycle''s start row, and % is a completion',
        TG_TABLE_NAME, NEW.cycle_id USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'cycle_is_start';
    END IF;
    IF cycle_found AND EXISTS (SELECT 1 FROM public.planning_cycles c WHERE c.parent_id = NEW.cycle_id) THEN
      RAISE EXCEPTION '%: planning cycle % is already closed', TG_TABLE_NAME, NEW.cycle_id
        USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'cycle_is_open';
    END IF;
  END IF;
  RETURN NEW;
END $$""",
    # SECURITY DEFINER: the application may not write the queue itself, only cause entries.
    "jarvis_queue_for_sealing": f"""
CREATE OR REPLACE FUNCTION public.jarvis_queue_for_sealing() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
{SAFE_PATH} AS $$
BEGIN
  IF TG_TABLE_SCHEMA <> 'public' THEN  -- attached to someone else's table: queue nothing
    RAISE EXCEPTION 'jarvis_queue_for_sealing only serves Jarvis''s own tables, not %.%', TG_TABLE_SCHEMA, TG_TABLE_NAME
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF TG_TABLE_NAME = 'schema_changes' THEN
    INSERT INTO public.audit_pending (table_name, row_id)
      SELECT 'schema_changes', public.jarvis_serial_uuid(n.id) FROM new_rows n;
  ELSE
    INSERT INTO public.audit_pending (table_name, row_id) SELECT TG_TABLE_NAME, n.id FROM new_rows n;
  END IF;
  RETURN NULL;
END $$""",
    "jarvis_serial_uuid": f"""
CREATE OR REPLACE FUNCTION public.jarvis_serial_uuid(n bigint) RETURNS uuid LANGUAGE sql IMMUTABLE STRICT
{SAFE_PATH} AS $$
  SELECT pg_catalog.lpad(pg_catalog.to_hex(n), 32, '0')::uuid
$$""",
    # Encoding 2: the row as JSONB text (sorted keys, exact numbers), top-level nulls dropped, "$table" added.
    "jarvis_canonical": f"""
CREATE OR REPLACE FUNCTION public.jarvis_canonical(tbl text, doc jsonb) RETURNS text LANGUAGE sql IMMUTABLE STRICT
{SAFE_PATH} AS $$
  SELECT (coalesce((SELECT pg_catalog.jsonb_object_agg(e.key, e.value) FROM pg_catalog.jsonb_each(doc) e
                     WHERE pg_catalog.jsonb_typeof(e.value) <> 'null'), '{{}}'::jsonb)
          || pg_catalog.jsonb_build_object('$table', tbl))::text
$$""",
    "jarvis_seal": f"""
CREATE OR REPLACE FUNCTION public.jarvis_seal(max_rows integer)
RETURNS TABLE (linked integer, head_seq bigint, head_hash bytea, sealed_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER {SAFE_PATH} SET "TimeZone" = 'UTC' AS $$
DECLARE
  r record;
  doc jsonb;
  s bigint;
  prev bytea;
  link bytea;
  content bytea;
  n integer := 0;
BEGIN
  -- One sealer at a time. FOR UPDATE needs UPDATE on audit_seal_head, which only this function's owner has.
  SELECT h.seq, h.chain_hash INTO s, prev FROM public.audit_seal_head h FOR UPDATE;
  FOR r IN
    WITH live AS (
      SELECT p.queued_at, p.table_name AS t, 0 AS o, p.row_id AS id, x.created_at AS at
        FROM public.audit_pending p JOIN ONLY public.planning_cycles x ON x.id = p.row_id
       WHERE p.table_name = 'planning_cycles'
      UNION ALL
      SELECT p.queued_at, p.table_name, 1, p.row_id, x.created_at
        FROM public.audit_pending p JOIN ONLY public.tool_calls x ON x.id = p.row_id
       WHERE p.table_name = 'tool_calls'
      UNION ALL
      SELECT p.queued_at, p.table_name, 2, p.row_id, x.created_at
        FROM public.audit_pending p JOIN ONLY public.decision_log x ON x.id = p.row_id
       WHERE p.table_name = 'decision_log'
      UNION ALL
      SELECT p.queued_at, p.table_name, 3, p.row_id, x.created_at
        FROM public.audit_pending p JOIN ONLY public.schema_changes x ON public.jarvis_serial_uuid(x.id) = p.row_id
       WHERE p.table_name = 'schema_changes'
    ), batch AS (
      SELECT DISTINCT ON (l.queued_at, l.t, l.id) l.* FROM live l ORDER BY l.queued_at, l.t, l.id LIMIT max_rows
    )
    SELECT b.t, b.id FROM batch b ORDER BY b.at, b.o, b.id
  LOOP
    IF r.t = 'planning_cycles' THEN
      SELECT pg_catalog.to_jsonb(x) INTO doc FROM ONLY public.planning_cycles x WHERE x.id = r.id LIMIT 1;
    ELSIF r.t = 'tool_calls' THEN
      SELECT pg_catalog.to_jsonb(x) INTO doc FROM ONLY public.tool_calls x WHERE x.id = r.id LIMIT 1;
    ELSIF r.t = 'decision_log' THEN
      SELECT pg_catalog.to_jsonb(x) INTO doc FROM ONLY public.decision_log x WHERE x.id = r.id LIMIT 1;
    ELSE
      SELECT pg_catalog.to_jsonb(x) INTO doc FROM ONLY public.schema_changes x
       WHERE public.jarvis_serial_uuid(x.id) = r.id LIMIT 1;
    END IF;
    content := pg_catalog.sha256(pg_catalog.convert_to(public.jarvis_canonical(r.t, doc), 'UTF8'));
    link := pg_catalog.sha256(prev || pg_catalog.int8send(s + 1) || pg_catalog.convert_to(r.t, 'UTF8')
                              || pg_catalog.decode('00', 'hex') || pg_catalog.uuid_send(r.id) || content);
    INSERT INTO public.audit_chain (seq, table_name, row_id, row_hash, chain_hash, encoding)
      VALUES (s + 1, r.t, r.id, content, link, 2) ON CONFLICT (table_name, row_id) DO NOTHING;
    IF FOUND THEN  -- a row queued twice (by hand) is linked once
      s := s + 1;
      prev := link;
      n := n + 1;
    END IF;
    DELETE FROM public.audit_pending p WHERE p.table_name = r.t AND p.row_id = r.id;
  END LOOP;
  UPDATE public.audit_seal_head SET seq = s, chain_hash = prev;
  RETURN QUERY SELECT n, s, prev, pg_catalog.now();
END $$""",
}

ONE_OPEN_CYCLE_0002 = """
CREATE OR REPLACE FUNCTION public.jarvis_planning_cycles_check_one_open() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.parent_id IS NULL THEN
    PERFORM pg_advisory_xact_lock(hashtext('jarvis.planning_cycle:' || NEW.agent));
    IF EXISTS (
      SELECT 1 FROM planning_cycles s
      WHERE s.agent = NEW.agent AND s.parent_id IS NULL AND s.id <> NEW.id
        AND NOT EXISTS (SELECT 1 FROM planning_cycles c WHERE c.parent_id = s.id)
    ) THEN
      RAISE EXCEPTION 'agent % already has an open planning cycle', NEW.agent
        USING ERRCODE = 'unique_violation', HINT = 'Close it (or mark it abandoned) before opening another.';
    END IF;
  END IF;
  RETURN NEW;
END $$
"""
"""What 0002 installed, restored on downgrade (the guard table it no longer needs goes away)."""

LEGACY_FUNCTIONS = (
    "jarvis_reject_mutation",
    "jarvis_planning_cycles_check_parent",
    "jarvis_tool_calls_check_parent",
    "jarvis_planning_cycles_check_one_open",
    "jarvis_check_cycle_reference",
    "jarvis_queue_for_sealing",
)


def _fail_loudly_grant(statement: str, why: str) -> str:
    """A DO block that turns a refused GRANT into an error that says what to do."""
    escaped = statement.replace("'", "''")
    return f"""
DO $$
BEGIN
  EXECUTE '{escaped}';
EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
  RAISE EXCEPTION 'migration 0003 could not run: %: %', '{escaped}', SQLERRM
    USING HINT = '{why}';
END $$"""


def upgrade() -> None:
    bind = op.get_bind()
    database = bind.execute(text("SELECT current_database()")).scalar_one()
    prefix = role_prefix(str(database))
    app, auditor = f"{prefix}_app", f"{prefix}_auditor"

    # --- tables and columns
    op.execute("ALTER TABLE public.audit_chain ADD COLUMN encoding smallint NOT NULL DEFAULT 1")
    op.execute("ALTER TABLE public.audit_chain ALTER COLUMN encoding DROP DEFAULT")
    op.execute("ALTER TABLE public.audit_chain ADD CONSTRAINT ck_audit_chain_encoding CHECK (encoding IN (1, 2))")
    tables_check = "table_name IN ('planning_cycles', 'tool_calls', 'decision_log', 'schema_changes')"
    for table in ("audit_chain", "audit_pending"):
        op.execute(f"ALTER TABLE public.{table} DROP CONSTRAINT ck_{table}_table_name")
        op.execute(f"ALTER TABLE public.{table} ADD CONSTRAINT ck_{table}_table_name CHECK ({tables_check})")
    op.execute("CREATE INDEX ix_audit_pending_queued_at ON public.audit_pending (queued_at, row_id)")
    op.execute(
        "CREATE TABLE public.audit_seal_head (one boolean PRIMARY KEY DEFAULT true CHECK (one), "
        "seq bigint NOT NULL CHECK (seq >= 0), chain_hash bytea NOT NULL)"
    )
    op.execute(
        "INSERT INTO public.audit_seal_head (seq, chain_hash) SELECT coalesce(max(seq), 0), coalesce("
        "(SELECT chain_hash FROM public.audit_chain ORDER BY seq DESC LIMIT 1), decode(repeat('00', 32), 'hex')) "
        "FROM public.audit_chain"
    )
    op.execute("CREATE TABLE public.agent_cycle_guard (agent text PRIMARY KEY)")
    op.execute(
        "CREATE TABLE public.trail_info (one boolean PRIMARY KEY DEFAULT true CHECK (one), "
        "trail_id uuid NOT NULL DEFAULT gen_random_uuid(), app_role text NOT NULL, auditor_role text NOT NULL, "
        "created_at timestamptz NOT NULL DEFAULT clock_timestamp())"
    )
    op.execute(
        text("INSERT INTO public.trail_info (app_role, auditor_role) VALUES (:app, :auditor)").bindparams(
            app=app, auditor=auditor
        )
    )
    op.execute("ALTER TABLE public.schema_changes ALTER COLUMN created_at SET DEFAULT clock_timestamp()")
    for table in CHAINED_TABLES:
        op.execute(
            f"ALTER TABLE public.{table} ADD CONSTRAINT ck_{table}_created_at_loadable "
            "CHECK (created_at >= '2000-01-01' AND created_at < '9999-01-01')"
        )

    # --- functions and triggers
    for sql in FUNCTIONS.values():
        op.execute(sql)
    for table in CHAINED_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_stamp_created_at BEFORE INSERT ON public.{table} "
            "FOR EACH ROW EXECUTE FUNCTION public.jarvis_stamp_created_at()"
        )
    op.execute(
        "CREATE TRIGGER schema_changes_queue_for_sealing AFTER INSERT ON public.schema_changes "
        "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.jarvis_queue_for_sealing()"
    )
    for table in ("trail_info",):
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON public.{table} "
            "FOR EACH ROW EXECUTE FUNCTION public.jarvis_reject_mutation()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON public.{table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION public.jarvis_reject_mutation()"
        )
    # The runtime-DDL history enters the chain: what was there before is queued now.
    op.execute(
        "INSERT INTO public.audit_pending (table_name, row_id, queued_at) "
        "SELECT 'schema_changes', public.jarvis_serial_uuid(id), created_at FROM public.schema_changes ORDER BY id"
    )

    # --- roles: one pair per database
    for role in (auditor, app):
        op.execute(
            f"""
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = '{role}') THEN
    BEGIN
      CREATE ROLE {role} NOLOGIN;
    EXCEPTION
      WHEN duplicate_object OR unique_violation THEN
        NULL;  -- created concurrently by another migration of this database
      WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'migration 0003 could not create role {role}: %', SQLERRM
          USING HINT = 'Give the migrating login CREATEROLE (ALTER ROLE <login> CREATEROLE), or as a superuser '
            'create the roles first: CREATE ROLE {app} NOLOGIN; CREATE ROLE {auditor} NOLOGIN; '
            'GRANT {app}, {auditor} TO <login> WITH ADMIN OPTION';
    END;
  END IF;
END $$"""
        )
    superuser = bind.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar_one()
    if not superuser:
        op.execute(
            _fail_loudly_grant(
                f"GRANT {app} TO CURRENT_USER",
                f"The migrating login needs CREATEROLE (or ADMIN OPTION on {app}). "
                f"As a superuser: GRANT {app} TO <this login> WITH ADMIN OPTION, then upgrade again.",
            )
        )
    grant_hint = "Run migrations as the owner of the database and its tables (or a superuser)."
    quoted_db = '"' + str(database).replace('"', '""') + '"'
    for statement in (
        f"REVOKE ALL ON DATABASE {quoted_db} FROM PUBLIC",
        f"GRANT CONNECT ON DATABASE {quoted_db} TO {auditor}",
        f"GRANT CONNECT ON DATABASE {quoted_db} TO {app}",
        f"GRANT {auditor} TO {app}",
        f"GRANT USAGE ON SCHEMA public TO {auditor}",
        "GRANT SELECT ON public.trail_info TO PUBLIC",
        f"GRANT SELECT ON public.agent_state, public.memory_facts, public.planning_cycles, public.tool_calls, "
        f"public.decision_log, public.schema_changes, public.audit_chain, public.audit_pending, "
        f"public.audit_seal_head, public.alembic_version TO {auditor}",
        f"GRANT INSERT, UPDATE, DELETE ON public.agent_state, public.memory_facts TO {app}",
        f"GRANT USAGE, CREATE ON SCHEMA agent_ext TO {app}",
        "REVOKE EXECUTE ON FUNCTION public.jarvis_seal(integer) FROM PUBLIC",
        f"GRANT EXECUTE ON FUNCTION public.jarvis_seal(integer) TO {app}",
        # Trigger functions need EXECUTE only to be attached: nobody else may attach them to a table.
        *(
            f"REVOKE EXECUTE ON FUNCTION public.{name}() FROM PUBLIC"
            for name in (
                "jarvis_reject_mutation",
                "jarvis_stamp_created_at",
                "jarvis_planning_cycles_check_parent",
                "jarvis_tool_calls_check_parent",
                "jarvis_planning_cycles_check_one_open",
                "jarvis_check_cycle_reference",
                "jarvis_queue_for_sealing",
            )
        ),
        # Clusters made before PostgreSQL 15 still let everyone create objects in public.
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
    ):
        op.execute(_fail_loudly_grant(statement, grant_hint))
    for table in CHAINED_TABLES:
        columns = [
            row[0]
            for row in bind.execute(
                text(
                    "SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) AND attnum > 0 "
                    "AND NOT attisdropped AND attname <> 'created_at' AND attidentity = '' ORDER BY attnum"
                ),
                {"t": f"public.{table}"},
            )
        ]
        op.execute(_fail_loudly_grant(f"GRANT INSERT ({', '.join(columns)}) ON public.{table} TO {app}", grant_hint))

    # --- the cluster-wide role of 0001 loses everything here; its runtime tables move to the new role
    legacy = bind.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": LEGACY_ROLE}).first()
    if legacy:
        op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {LEGACY_ROLE}")
        op.execute(f"REVOKE ALL ON SCHEMA public FROM {LEGACY_ROLE}")
        op.execute(f"REVOKE ALL ON SCHEMA agent_ext FROM {LEGACY_ROLE}")
        op.execute(
            f"""
DO $$
DECLARE t record;
BEGIN
  FOR t IN SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'agent_ext' AND c.relkind = 'r' AND c.relowner = '{LEGACY_ROLE}'::regrole LOOP
    EXECUTE format('ALTER TABLE agent_ext.%I OWNER TO {app}', t.relname);
  END LOOP;
END $$"""
        )


AUDIT_TABLES_DROPPED = ("audit_chain", "audit_pending", "audit_seal_head", "trail_info")
"""What this downgrade drops (the seal head, the trail id) or rewrites (the chain loses its encodings)."""
GUARDED = ("audit_chain", "audit_pending")
"""Refused while these hold rows; the other two always hold their one bookkeeping row."""


def downgrade() -> None:
    refuse_to_destroy_audit_rows(revision, GUARDED)
    bind = op.get_bind()
    app, auditor = bind.execute(text("SELECT app_role, auditor_role FROM public.trail_info")).one()
    database = bind.execute(text("SELECT current_database()")).scalar_one()
    quoted_db = '"' + str(database).replace('"', '""') + '"'
    op.execute(f"GRANT CONNECT, TEMPORARY ON DATABASE {quoted_db} TO PUBLIC")
    op.execute(
        f"""
DO $$
DECLARE t record;
BEGIN
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = '{LEGACY_ROLE}') THEN
    GRANT USAGE, CREATE ON SCHEMA agent_ext TO {LEGACY_ROLE};
    FOR t IN SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'agent_ext' AND c.relkind = 'r' AND c.relowner = '{app}'::regrole LOOP
      IF pg_catalog.pg_has_role('{LEGACY_ROLE}', 'MEMBER') THEN
        EXECUTE format('ALTER TABLE agent_ext.%I OWNER TO {LEGACY_ROLE}', t.relname);
      ELSE  -- an owner who is not a superuser cannot give tables to a role it is not in: share them instead
        EXECUTE format('GRANT ALL ON agent_ext.%I TO {LEGACY_ROLE}', t.relname);
      END IF;
    END LOOP;
    GRANT USAGE ON SCHEMA public TO {LEGACY_ROLE};
    GRANT SELECT, INSERT, UPDATE, DELETE ON public.agent_state, public.memory_facts TO {LEGACY_ROLE};
    GRANT SELECT, INSERT ON public.planning_cycles, public.tool_calls, public.decision_log, public.audit_chain,
      public.schema_changes TO {LEGACY_ROLE};
    GRANT SELECT, INSERT, DELETE ON public.audit_pending TO {LEGACY_ROLE};
    GRANT USAGE, CREATE ON SCHEMA agent_ext TO {LEGACY_ROLE};
  END IF;
END $$"""
    )
    for role in (app, auditor):
        op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
        op.execute(f"REVOKE ALL ON SCHEMA public FROM {role}")
        op.execute(f"REVOKE ALL ON SCHEMA agent_ext FROM {role}")
        op.execute(f"REVOKE ALL ON DATABASE {quoted_db} FROM {role}")
    op.execute("DELETE FROM public.audit_pending WHERE table_name = 'schema_changes'")
    for table in CHAINED_TABLES:
        op.execute(f"DROP TRIGGER {table}_stamp_created_at ON public.{table}")
        op.execute(f"ALTER TABLE public.{table} DROP CONSTRAINT ck_{table}_created_at_loadable")
    op.execute("DROP TRIGGER schema_changes_queue_for_sealing ON public.schema_changes")
    op.execute("ALTER TABLE public.schema_changes ALTER COLUMN created_at SET DEFAULT now()")
    op.execute("DROP TABLE public.trail_info")
    op.execute(ONE_OPEN_CYCLE_0002)
    op.execute("DROP TABLE public.agent_cycle_guard")
    op.execute("DROP TABLE public.audit_seal_head")
    op.execute("DROP INDEX public.ix_audit_pending_queued_at")
    for name in (
        "jarvis_seal(integer)",
        "jarvis_canonical(text, jsonb)",
        "jarvis_stamp_created_at()",
        "jarvis_serial_uuid(bigint)",
    ):
        op.execute(f"DROP FUNCTION public.{name}")
    tables_check = "table_name IN ('planning_cycles', 'tool_calls', 'decision_log')"
    for table in ("audit_chain", "audit_pending"):
        op.execute(f"ALTER TABLE public.{table} DROP CONSTRAINT ck_{table}_table_name")
        op.execute(f"ALTER TABLE public.{table} ADD CONSTRAINT ck_{table}_table_name CHECK ({tables_check}) NOT VALID")
    op.execute("ALTER TABLE public.audit_chain DROP CONSTRAINT ck_audit_chain_encoding")
    op.execute("ALTER TABLE public.audit_chain DROP COLUMN encoding")
    # 0002's function bodies read the same; their hardening (search_path) stays, which is harmless.
    for name in LEGACY_FUNCTIONS:
        op.execute(f"ALTER FUNCTION public.{name}() SECURITY INVOKER")
