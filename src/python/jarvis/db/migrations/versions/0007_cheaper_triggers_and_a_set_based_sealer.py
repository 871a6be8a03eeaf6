"""Cheaper appends and a set-based sealer, with the same rules and the same error messages.

- One `BEFORE INSERT` trigger per audit table (`<table>_before_insert`) instead of two or
  three: the cycle reference, the parent-is-a-start-row check, the one-open-cycle check and
  the `created_at` stamp run in one function call, in the order the separate triggers fired
  (alphabetically: cycle reference / one open, then parent, then the stamp), and raise the
  same messages with the same constraint names. `schema_changes` keeps its one stamp trigger.
- The one-open-cycle check is O(1): the agent's guard row (already locked FOR UPDATE to
  serialise openers) remembers the agent's latest start row, and only that row can be open —
  every earlier one was closed when the latest was opened, and rows never change. It is one
  primary-key probe and one probe of the one-completion index, whatever the agent's history.
  "Latest" is the order openers took the lock, not a clock, so a clock stepping back changes
  nothing. A guard without a latest start (cycles from before this migration), or one naming
  a row that is not this agent's start row, falls back to the full check of 0003.
- The sealing queue is filled by a row-level `AFTER INSERT` trigger (cheaper per append than
  a statement trigger with a transition table). Each entry records the transaction that
  queued it (`queued_by`); the sealer reads entries in the order of one index,
  `(queued_by, table_name, row_id)`, from where the last seal stopped (`audit_seal_head.
  queue_scan_from`: every transaction below it had ended and its entries were sealed), so a
  seal reads its batch and stops, and never visits the dead entries of earlier seals, however
  far autovacuum is behind.
- `jarvis_seal()` hashes a batch in one statement (the row's encoding-2 text rendered per
  table, without a function call per row), links it in a loop over arrays, and writes the
  links and removes the queue entries with one statement each. It still locks
  `audit_seal_head` FOR UPDATE, links only rows that exist, each once.
- `ix_tool_calls_created_at` goes: every reader of tool calls by time reads start rows, which
  `ix_tool_calls_start_page` (0006) covers. `pk_audit_chain` is filled to 100 %: the sealer
  appends sequence numbers in order, so no page ever gets a key in the middle.

Links sealed before keep verifying: the encoding is unchanged.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SAFE_PATH = "SET search_path = pg_catalog, pg_temp"

# --- what 0007 installs

CYCLE_REFERENCE = """
  IF NEW.cycle_id IS NOT NULL THEN
    SELECT true, c.parent_id, EXISTS (SELECT 1 FROM public.planning_cycles d WHERE d.parent_id = c.id)
      INTO cycle_found, cycle_parent, cycle_closed FROM public.planning_cycles c WHERE c.id = NEW.cycle_id;
    IF cycle_found AND cycle_parent IS NOT NULL THEN
      RAISE EXCEPTION '%: cycle_id must point at a planning cycle''s start row, and % is a completion',
        TG_TABLE_NAME, NEW.cycle_id USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'cycle_is_start';
    END IF;
    IF cycle_found AND cycle_closed THEN
      RAISE EXCEPTION '%: planning cycle % is already closed', TG_TABLE_NAME, NEW.cycle_id
        USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'cycle_is_open';
    END IF;
  END IF;"""


def parent_is_start(table: str) -> str:
    return f"""
  IF NEW.parent_id IS NOT NULL THEN
    SELECT true, p.parent_id INTO parent_found, grandparent FROM public.{table} p WHERE p.id = NEW.parent_id;
    IF parent_found AND grandparent IS NOT NULL THEN
      RAISE EXCEPTION '{table}: a completion must point at a start row, and % is a completion', NEW.parent_id
        USING ERRCODE = 'foreign_key_violation', CONSTRAINT = '{table}_parent_is_start';
    END IF;
  END IF;"""


STAMP = """
  NEW.created_at := pg_catalog.clock_timestamp();
  RETURN NEW;"""

ONE_OPEN_CYCLE = """
  IF NEW.parent_id IS NULL THEN
    -- Openers of one agent's cycles queue on a row lock only this function may take (an advisory
    -- lock is open to every role: a SELECT-only session could hold it and hang the agent).
    SELECT true, g.latest_start INTO guarded, latest FROM public.agent_cycle_guard g
     WHERE g.agent = NEW.agent FOR UPDATE;
    IF guarded IS NULL THEN
      INSERT INTO public.agent_cycle_guard (agent) VALUES (NEW.agent) ON CONFLICT (agent) DO NOTHING;
      SELECT true, g.latest_start INTO guarded, latest FROM public.agent_cycle_guard g
       WHERE g.agent = NEW.agent FOR UPDATE;
    END IF;
    -- Only the latest start row can be open: every earlier one was closed when the latest was opened.
    -- Found by its primary key alone (one probe), then one probe of the one-completion index.
    IF latest IS DISTINCT FROM NEW.id THEN
      SELECT s.agent = NEW.agent AND s.parent_id IS NULL,
             NOT EXISTS (SELECT 1 FROM public.planning_cycles c WHERE c.parent_id = s.id)
        INTO latest_is_start, still_open FROM public.planning_cycles s WHERE s.id = latest;
    END IF;
    IF latest_is_start IS NOT TRUE THEN  -- no latest start known (cycles from before 0007), or a retry of it
      still_open := EXISTS (
        SELECT 1 FROM public.planning_cycles s
        WHERE s.agent = NEW.agent AND s.parent_id IS NULL AND s.id <> NEW.id
          AND NOT EXISTS (SELECT 1 FROM public.planning_cycles c WHERE c.parent_id = s.id)
      );
    END IF;
    IF still_open THEN
      RAISE EXCEPTION 'agent % already has an open planning cycle', NEW.agent
        USING ERRCODE = 'unique_violation', CONSTRAINT = 'planning_cycles_one_open',
              HINT = 'Close it (or mark it abandoned) before opening another.';
    END IF;
    IF latest IS DISTINCT FROM NEW.id THEN
      UPDATE public.agent_cycle_guard g SET latest_start = NEW.id WHERE g.agent = NEW.agent;
    END IF;
  END IF;"""

BEFORE_INSERT = {
    # SECURITY DEFINER: the guard table is the owner's alone (see agent_cycle_guard).
    "planning_cycles": f"""
CREATE OR REPLACE FUNCTION public.jarvis_planning_cycles_before_insert() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER {SAFE_PATH} AS $$
DECLARE
  guarded boolean;
  latest uuid;
  latest_is_start boolean;
  still_open boolean;
  grandparent uuid;
  parent_found boolean;
BEGIN{ONE_OPEN_CYCLE}{parent_is_start("planning_cycles")}{STAMP}
END $$""",
    "tool_calls": f"""
CREATE OR REPLACE FUNCTION public.jarvis_tool_calls_before_insert() RETURNS trigger LANGUAGE plpgsql
{SAFE_PATH} AS $$
DECLARE
  cycle_found boolean;
  cycle_parent uuid;
  cycle_closed boolean;
  grandparent uuid;
  parent_found boolean;
BEGIN{CYCLE_REFERENCE}{parent_is_start("tool_calls")}{STAMP}
END $$""",
    "decision_log": f"""
CREATE OR REPLACE FUNCTION public.jarvis_decision_log_before_insert() RETURNS trigger LANGUAGE plpgsql
{SAFE_PATH} AS $$
DECLARE
  cycle_found boolean;
  cycle_parent uuid;
  cycle_closed boolean;
BEGIN{CYCLE_REFERENCE}{STAMP}
END $$""",
}

# SECURITY DEFINER: the application may not write the queue itself, only cause entries.
QUEUE_ROW = f"""
CREATE OR REPLACE FUNCTION public.jarvis_queue_for_sealing() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
{SAFE_PATH} AS $$
BEGIN
  IF TG_TABLE_SCHEMA <> 'public' THEN  -- attached to someone else's table: queue nothing
    RAISE EXCEPTION 'jarvis_queue_for_sealing only serves Jarvis''s own tables, not %.%', TG_TABLE_SCHEMA, TG_TABLE_NAME
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF TG_TABLE_NAME = 'schema_changes' THEN
    INSERT INTO public.audit_pending (table_name, row_id) VALUES ('schema_changes', public.jarvis_serial_uuid(NEW.id));
  ELSE
    INSERT INTO public.audit_pending (table_name, row_id) VALUES (TG_TABLE_NAME, NEW.id);
  END IF;
  RETURN NULL;
END $$"""

CHAINED_TABLES = ("planning_cycles", "tool_calls", "decision_log", "schema_changes")

QUEUED_BY = "(pg_catalog.pg_current_xact_id())::text::bigint"
"""The queueing transaction's id (64 bits, never wraps): the sealer reads entries in this order, from where the last
seal left off, so the dead entries of earlier seals are never visited, whether or not autovacuum has removed them."""

COLUMNS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "planning_cycles": (
        ("id", "uuid", True),
        ("parent_id", "uuid", False),
        ("agent", "text", True),
        ("goals", "jsonb", False),
        ("status", "text", True),
        ("outcomes", "jsonb", False),
        ("created_at", "timestamp with time zone", True),
    ),
    "tool_calls": (
        ("id", "uuid", True),
        ("parent_id", "uuid", False),
        ("cycle_id", "uuid", False),
        ("tool_name", "text", True),
        ("status", "text", True),
        ("input", "jsonb", False),
        ("output", "jsonb", False),
        ("error", "text", False),
        ("duration_ms", "integer", False),
        ("created_at", "timestamp with time zone", True),
    ),
    "decision_log": (
        ("id", "uuid", True),
        ("cycle_id", "uuid", True),
        ("reasoning", "jsonb", True),
        ("decision", "text", True),
        ("created_at", "timestamp with time zone", True),
    ),
    "schema_changes": (
        ("id", "bigint", True),
        ("table_name", "text", True),
        ("action", "text", True),
        ("columns", "jsonb", True),
        ("created_at", "timestamp with time zone", True),
    ),
}
"""The chained tables' columns (name, type, NOT NULL) as 0001-0006 made them: a snapshot of this migration."""

AS_MIGRATED = sorted(
    f"{table}.{name} {kind}{' not null' if not_null else ''}"
    for table, columns in COLUMNS.items()
    for name, kind, not_null in columns
)

COLUMNS_AS_MIGRATED = f"""
  SELECT pg_catalog.array_agg(d.col ORDER BY d.col COLLATE "C")
         = ARRAY[{', '.join(f"'{column}'" for column in AS_MIGRATED)}]::text[]
    INTO as_migrated
    FROM (SELECT c.relname || '.' || a.attname || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod)
                 || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END AS col
            FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
           WHERE c.oid IN ({', '.join(f"'public.{table}'::regclass" for table in CHAINED_TABLES)})
             AND a.attnum > 0 AND NOT a.attisdropped) d;"""
"""Whether the chained tables still have exactly those columns (none added, dropped, retyped or made nullable)."""


def canonical_text(table: str) -> str:
    """Encoding 2 of a row `x` of `table`, as `public.jarvis_canonical(table, to_jsonb(x))` renders it.

    `jarvis_canonical` drops every top-level key whose value is JSON null; here the keys that can be
    null are known per table, so they are removed with one `jsonb - text[]` instead of a subquery and
    a function call per row (a quarter of the cost). That holds while the table has the columns of
    `COLUMNS`; the sealer checks, and renders with `jarvis_canonical` itself when a column was added,
    dropped, retyped or made nullable. tests/trust/test_seal_encoding.py compares the two.
    """
    conditions = [
        f"CASE WHEN x.{column} IS NULL"
        + (f" OR pg_catalog.jsonb_typeof(x.{column}) = 'null'" if is_json else "")
        + f" THEN '{column}' END"
        for column, kind, not_null in COLUMNS[table]
        for is_json in (kind == "jsonb",)
        if is_json or not not_null  # a JSONB value can be a JSON null even where SQL NULL is not allowed
    ]
    null_keys = f"pg_catalog.array_remove(ARRAY[{', '.join(conditions)}]::text[], NULL)"
    return f"((pg_catalog.to_jsonb(x) - {null_keys}) || pg_catalog.jsonb_build_object('$table', '{table}'::text))::text"


def _hashed(table: str, order: int) -> str:
    """The queue entry's row of `table`, if the entry is for `table` and the row exists: when, where, its row hash."""
    match = "public.jarvis_serial_uuid(x.id) = p.row_id" if table == "schema_changes" else "x.id = p.row_id"
    return (
        f"SELECT x.created_at AS at, {order} AS o, pg_catalog.sha256(pg_catalog.convert_to(CASE WHEN as_migrated "
        f"THEN {canonical_text(table)} ELSE public.jarvis_canonical('{table}', pg_catalog.to_jsonb(x)) END, 'UTF8')) "
        "AS content "
        f"FROM ONLY public.{table} x WHERE p.table_name = '{table}' AND {match}"
    )


SEAL = f"""
CREATE OR REPLACE FUNCTION public.jarvis_seal(max_rows integer)
RETURNS TABLE (linked integer, head_seq bigint, head_hash bytea, sealed_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER {SAFE_PATH} SET "TimeZone" = 'UTC'
-- The queue is read and emptied through its index and row positions, never scanned (its dead rows wait for
-- autovacuum); the plans' costs that this inflates must not switch on JIT compilation for a small batch.
SET enable_seqscan = off SET jit = off
AS $$
DECLARE
  r record;
  s bigint;
  prev bytea;
  n integer := 0;
  tables text[] := '{{}}';
  ids uuid[] := '{{}}';
  contents bytea[] := '{{}}';
  links bytea[] := '{{}}';
  entries tid[] := '{{}}';
  as_migrated boolean;
  scan_from bigint;
  finished_below bigint;
  last_queued_by bigint;
  batch_size bigint := 0;
BEGIN
  -- One sealer at a time. FOR UPDATE needs UPDATE on audit_seal_head, which only this function's owner has.
  SELECT h.seq, h.chain_hash, h.queue_scan_from INTO s, prev, scan_from FROM public.audit_seal_head h FOR UPDATE;
  -- Every transaction below this one had ended when the batch below was read: their entries were all visible.
  finished_below := pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text::bigint;{COLUMNS_AS_MIGRATED}
  FOR r IN
    WITH batch AS MATERIALIZED (
      -- The oldest queue entries whose rows exist, read in the queue index's order: entries whose row is
      -- gone yield nothing here, so they never fill a batch (they stay queued and verify names them).
      SELECT p.ctid AS entry, p.queued_by, p.table_name AS t, p.row_id AS id, h.at, h.o, h.content
        FROM public.audit_pending p
       CROSS JOIN LATERAL ({' UNION ALL '.join(_hashed(table, order) for order, table in enumerate(CHAINED_TABLES))}) h
       WHERE p.queued_by >= scan_from
       ORDER BY p.queued_by, p.table_name, p.row_id LIMIT max_rows
    ), one_each AS (  -- two rows sharing an id (only a superuser can make them) are linked once
      SELECT DISTINCT ON (b.t, b.id) b.* FROM batch b ORDER BY b.t, b.id
    )
    SELECT o.entry, o.queued_by, o.t, o.id, o.content, (SELECT pg_catalog.count(*) FROM batch) AS batch_size,
           EXISTS (SELECT 1 FROM public.audit_chain c WHERE c.table_name = o.t AND c.row_id = o.id) AS linked_before
      FROM one_each o ORDER BY o.at, o.o, o.id
  LOOP
    entries := pg_catalog.array_append(entries, r.entry);
    last_queued_by := GREATEST(last_queued_by, r.queued_by);
    batch_size := r.batch_size;
    CONTINUE WHEN r.linked_before;  -- a row queued twice (by hand) is linked once
    n := n + 1;
    prev := pg_catalog.sha256(prev || pg_catalog.int8send(s + n) || pg_catalog.convert_to(r.t, 'UTF8')
                              || '\\x00'::bytea || pg_catalog.uuid_send(r.id) || r.content);
    tables[n] := r.t;
    ids[n] := r.id;
    contents[n] := r.content;
    links[n] := prev;
  END LOOP;
  INSERT INTO public.audit_chain (seq, table_name, row_id, row_hash, chain_hash, encoding)
    SELECT s + u.pos, u.t, u.id, u.content, u.link, 2
      FROM ROWS FROM (pg_catalog.unnest(tables), pg_catalog.unnest(ids), pg_catalog.unnest(contents),
                      pg_catalog.unnest(links)) WITH ORDINALITY AS u(t, id, content, link, pos);
  -- The queue entries just read, found by their position (a TID scan, never a scan of the queue's dead
  -- rows). A position cannot be reused meanwhile: this statement's snapshot keeps the entries from vacuum.
  DELETE FROM public.audit_pending p WHERE p.ctid = ANY (entries);
  s := s + n;
  -- Where the next seal starts reading: every entry below is sealed, or its row is gone (verify names those).
  -- Transactions below finished_below had all ended, so their entries were all visible to the batch: a batch
  -- that was not full read them all. A full one read the lowest transaction ids first, so it may have left
  -- entries of the last transaction it read, never of an earlier one.
  IF batch_size >= max_rows THEN
    finished_below := LEAST(finished_below, last_queued_by);
  END IF;
  UPDATE public.audit_seal_head
     SET seq = s, chain_hash = prev, queue_scan_from = GREATEST(scan_from, finished_below);
  RETURN QUERY SELECT n, s, prev, pg_catalog.now();
END $$"""

# --- what 0003 installed, restored on downgrade (a snapshot: never imported from 0003)

OLD_TRIGGERS = {
    "planning_cycles": (
        ("planning_cycles_one_open", "jarvis_planning_cycles_check_one_open"),
        ("planning_cycles_parent_is_start", "jarvis_planning_cycles_check_parent"),
        ("planning_cycles_stamp_created_at", "jarvis_stamp_created_at"),
    ),
    "tool_calls": (
        ("tool_calls_cycle_reference", "jarvis_check_cycle_reference"),
        ("tool_calls_parent_is_start", "jarvis_tool_calls_check_parent"),
        ("tool_calls_stamp_created_at", "jarvis_stamp_created_at"),
    ),
    "decision_log": (
        ("decision_log_cycle_reference", "jarvis_check_cycle_reference"),
        ("decision_log_stamp_created_at", "jarvis_stamp_created_at"),
    ),
}

OLD_FUNCTIONS = {
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
        for table in ("planning_cycles", "tool_calls")
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
}

OLD_QUEUE = f"""
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
END $$"""

OLD_SEAL = f"""
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
END $$"""


def upgrade() -> None:
    op.execute("ALTER TABLE public.agent_cycle_guard ADD COLUMN latest_start uuid")
    for table, sql in BEFORE_INSERT.items():
        op.execute(sql)
        op.execute(f"REVOKE EXECUTE ON FUNCTION public.jarvis_{table}_before_insert() FROM PUBLIC")
        for trigger, _ in OLD_TRIGGERS[table]:
            op.execute(f"DROP TRIGGER {trigger} ON public.{table}")
        op.execute(
            f"CREATE TRIGGER {table}_before_insert BEFORE INSERT ON public.{table} "
            f"FOR EACH ROW EXECUTE FUNCTION public.jarvis_{table}_before_insert()"
        )
    for name in OLD_FUNCTIONS:
        op.execute(f"DROP FUNCTION public.{name}()")
    for table in CHAINED_TABLES:
        op.execute(f"DROP TRIGGER {table}_queue_for_sealing ON public.{table}")
    op.execute(QUEUE_ROW)
    for table in CHAINED_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_queue_for_sealing AFTER INSERT ON public.{table} "
            "FOR EACH ROW EXECUTE FUNCTION public.jarvis_queue_for_sealing()"
        )
    op.execute("DROP INDEX public.ix_audit_pending_queued_at")
    op.execute("ALTER TABLE public.audit_pending ADD COLUMN queued_by bigint NOT NULL " f"DEFAULT {QUEUED_BY}")
    op.execute("CREATE INDEX ix_audit_pending_queued_by ON public.audit_pending (queued_by, table_name, row_id)")
    op.execute("ALTER TABLE public.audit_seal_head ADD COLUMN queue_scan_from bigint NOT NULL DEFAULT 0")
    op.execute(SEAL)
    op.execute("DROP INDEX public.ix_tool_calls_created_at")
    op.execute("ALTER INDEX public.pk_audit_chain SET (fillfactor = 100)")


def downgrade() -> None:
    op.execute("ALTER INDEX public.pk_audit_chain RESET (fillfactor)")
    op.execute("CREATE INDEX ix_tool_calls_created_at ON public.tool_calls (created_at)")
    op.execute(OLD_SEAL)
    op.execute("ALTER TABLE public.audit_seal_head DROP COLUMN queue_scan_from")
    op.execute("ALTER TABLE public.audit_pending DROP COLUMN queued_by")  # its index goes with it
    op.execute("CREATE INDEX ix_audit_pending_queued_at ON public.audit_pending (queued_at, row_id)")
    for table in CHAINED_TABLES:
        op.execute(f"DROP TRIGGER {table}_queue_for_sealing ON public.{table}")
    op.execute(OLD_QUEUE)
    for table in CHAINED_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_queue_for_sealing AFTER INSERT ON public.{table} "
            "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.jarvis_queue_for_sealing()"
        )
    for name, sql in OLD_FUNCTIONS.items():
        op.execute(sql)
        op.execute(f"REVOKE EXECUTE ON FUNCTION public.{name}() FROM PUBLIC")
    for table, triggers in OLD_TRIGGERS.items():
        op.execute(f"DROP TRIGGER {table}_before_insert ON public.{table}")
        op.execute(f"DROP FUNCTION public.jarvis_{table}_before_insert()")
        for trigger, function in triggers:
            op.execute(
                f"CREATE TRIGGER {trigger} BEFORE INSERT ON public.{table} "
                f"FOR EACH ROW EXECUTE FUNCTION public.{function}()"
            )
    op.execute("ALTER TABLE public.agent_cycle_guard DROP COLUMN latest_start")
