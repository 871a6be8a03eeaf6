"""The sealer flags what it must not vouch for; value sizes are the database's; no argument moves the sealer.

Issue 22: A (its last item), B5, B6.

- **Flags.** `jarvis_seal()` still links every queued row that exists (the chain stays complete),
  but a row it should not vouch for is also written to `audit_flags` (seq, table, row id, reason),
  a table only the sealer writes (append-only like the chain; SELECT for the auditor role):
  a row dated more than `BACKDATE_SLACK` (60 s, `jarvis.db.audit.chain.BACKDATE_SLACK`) before the
  previous *complete* seal (`audit_seal_head.swept_at`: a seal whose batch was not full read every
  entry committed before it began, so an honest row dated well before it was linked by it),
  a completion whose start row is missing or dated after it, a tool call or decision whose
  cycle is missing, or that is dated before its cycle began or more than the slack after it
  closed, and a row it cannot render (over PostgreSQL's 1 GB, only possible with the size checks
  bypassed): that row is linked by a bounded stand-in (a hash of its table and id, so its content
  is not vouched for) and sealing goes on. `jarvis_seal` returns how many rows this call flagged
  and how many flags the chain holds; the agent signs the latter into its checkpoint, and every
  verify names every flag.
- **Sizes.** The before-insert triggers refuse a value whose JSON text is over `MAX_VALUE_TEXT`
  (256 MiB, the most JARVIS_MAX_VALUE_BYTES may be set to) with a check violation naming the
  column: a row's canonical text (one JSON value and at most two unbounded texts) then always
  fits in PostgreSQL's 1 GB. A value is rendered only when its stored size could expand past the
  limit (`FAST_BYTES`), so the common append pays two O(1) size probes.
- **Batch size.** `jarvis_seal(max_rows)` refuses a `max_rows` outside 1..`MAX_BATCH` (0 made an
  empty batch count as full and moved the starting point past every queued row), and a full batch
  that linked nothing never moves the starting point.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import importlib
from types import ModuleType

from alembic import op
from sqlalchemy import text

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _v0007() -> ModuleType:
    """0007's definitions (frozen): its trigger pieces are reused, and its functions restored on downgrade."""
    return importlib.import_module("jarvis.db.migrations.versions.0007_cheaper_triggers_and_a_set_based_sealer")


SAFE_PATH = "SET search_path = pg_catalog, pg_temp"
MAX_VALUE_TEXT = 256 * 1024 * 1024
"""The largest JSON text of one stored value: the upper bound of JARVIS_MAX_VALUE_BYTES (config/settings.py)."""
FAST_BYTES = 16 * 1024
"""A value stored in at most this many bytes (uncompressed) cannot render to more than MAX_VALUE_TEXT: a JSON
number of ~12 bytes renders to at most ~147,000 digits, a string byte to at most 6 (`\\u0001`)."""
MAX_BATCH = 1_000_000
SLACK = "60 seconds"
"""chain.BACKDATE_SLACK, as an interval (tests/trust/test_round3_sealer_flags.py compares them)."""

SIZED: dict[str, tuple[tuple[str, str], ...]] = {
    "planning_cycles": (("goals", "jsonb"), ("outcomes", "jsonb")),
    "tool_calls": (("input", "jsonb"), ("output", "jsonb"), ("error", "text")),
    "decision_log": (("reasoning", "jsonb"),),
    "schema_changes": (("columns", "jsonb"), ("table_name", "text"), ("action", "text")),
}
"""The columns whose rendering is not bounded by a CHECK constraint (agent, tool_name, decision are)."""


def size_check(table: str, column: str, kind: str) -> str:
    """Refuse NEW.<column> when its JSON text is over MAX_VALUE_TEXT, rendering it only when it could be."""
    rendered = (
        f"NEW.{column}::pg_catalog.text" if kind == "jsonb" else f"pg_catalog.to_json(NEW.{column})::pg_catalog.text"
    )
    fast = FAST_BYTES if kind == "jsonb" else MAX_VALUE_TEXT // 6
    return f"""
  IF NEW.{column} IS NOT NULL AND (pg_catalog.pg_column_size(NEW.{column}) > {fast}
                                   OR pg_catalog.pg_column_compression(NEW.{column}) IS NOT NULL) THEN
    BEGIN
      rendered := pg_catalog.octet_length({rendered});
    EXCEPTION WHEN program_limit_exceeded THEN
      rendered := NULL;  -- over PostgreSQL's 1 GB
    END;
    IF rendered IS NULL OR rendered > {MAX_VALUE_TEXT} THEN
      RAISE EXCEPTION '{table}.{column} is % as JSON text, over the database''s limit of {MAX_VALUE_TEXT} bytes',
        coalesce(rendered::text || ' bytes', 'over 1 GB')
        USING ERRCODE = 'check_violation', CONSTRAINT = '{table}_{column}_size',
              HINT = 'Store less (split it up, or store a reference to it): the sealer must be able to hash every row.';
    END IF;
  END IF;"""


def sizes(table: str) -> str:
    return "".join(size_check(table, column, kind) for column, kind in SIZED[table])


def before_insert() -> dict[str, str]:
    """0007's before-insert trigger functions, each refusing oversized values first."""
    v7 = _v0007()
    declare = "\n  rendered bigint;"
    return {
        "planning_cycles": f"""
CREATE OR REPLACE FUNCTION public.jarvis_planning_cycles_before_insert() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER {SAFE_PATH} AS $$
DECLARE
  guarded boolean;
  latest uuid;
  latest_is_start boolean;
  still_open boolean;
  grandparent uuid;
  parent_found boolean;{declare}
BEGIN{sizes("planning_cycles")}{v7.ONE_OPEN_CYCLE}{v7.parent_is_start("planning_cycles")}{v7.STAMP}
END $$""",
        "tool_calls": f"""
CREATE OR REPLACE FUNCTION public.jarvis_tool_calls_before_insert() RETURNS trigger LANGUAGE plpgsql
{SAFE_PATH} AS $$
DECLARE
  cycle_found boolean;
  cycle_parent uuid;
  cycle_closed boolean;
  grandparent uuid;
  parent_found boolean;{declare}
BEGIN{sizes("tool_calls")}{v7.CYCLE_REFERENCE}{v7.parent_is_start("tool_calls")}{v7.STAMP}
END $$""",
        "decision_log": f"""
CREATE OR REPLACE FUNCTION public.jarvis_decision_log_before_insert() RETURNS trigger LANGUAGE plpgsql
{SAFE_PATH} AS $$
DECLARE
  cycle_found boolean;
  cycle_parent uuid;
  cycle_closed boolean;{declare}
BEGIN{sizes("decision_log")}{v7.CYCLE_REFERENCE}{v7.STAMP}
END $$""",
    }


# Attached to schema_changes alone (the catalog check names any other use).
STAMP_SCHEMA_CHANGE = f"""
CREATE OR REPLACE FUNCTION public.jarvis_stamp_created_at() RETURNS trigger LANGUAGE plpgsql {SAFE_PATH} AS $$
DECLARE
  rendered bigint;
BEGIN{sizes("schema_changes")}
  NEW.created_at := pg_catalog.clock_timestamp();
  RETURN NEW;
END $$"""

OLD_STAMP = f"""
CREATE OR REPLACE FUNCTION public.jarvis_stamp_created_at() RETURNS trigger LANGUAGE plpgsql {SAFE_PATH} AS $$
BEGIN
  NEW.created_at := pg_catalog.clock_timestamp();
  RETURN NEW;
END $$"""

BACKDATED = (
    f"CASE WHEN x.created_at < swept - interval '{SLACK}' THEN pg_catalog.format('dated %s, more than {SLACK} "
    "before the previous complete seal at %s: backdated (or held in an open transaction that long)', "
    "x.created_at, swept) END"
)
MISSING_PARENT = (
    "CASE WHEN x.parent_id IS NOT NULL AND par.at IS NULL THEN "
    "pg_catalog.format('its start row %s does not exist', x.parent_id) "
    "WHEN x.created_at < par.at THEN pg_catalog.format('dated before its start row (%s)', par.at) END"
)
OUTSIDE_CYCLE = (
    "CASE WHEN x.cycle_id IS NOT NULL AND cyc.began IS NULL THEN "
    "pg_catalog.format('its planning cycle %s does not exist', x.cycle_id) "
    "WHEN x.created_at < cyc.began THEN pg_catalog.format('dated before its planning cycle began (%s)', cyc.began) "
    f"WHEN x.created_at > cyc.ended + interval '{SLACK}' THEN "
    "pg_catalog.format('dated after its planning cycle closed (%s)', cyc.ended) END"
)


def _parent(table: str) -> str:
    return (
        f" LEFT JOIN LATERAL (SELECT s.created_at AS at FROM ONLY public.{table} s WHERE s.id = x.parent_id LIMIT 1) "
        "par ON true"
    )


CYCLE = (
    " LEFT JOIN LATERAL (SELECT c.created_at AS began, (SELECT d.created_at FROM ONLY public.planning_cycles d "
    "WHERE d.parent_id = c.id LIMIT 1) AS ended FROM ONLY public.planning_cycles c WHERE c.id = x.cycle_id "
    "LIMIT 1) cyc ON true"
)

CHECKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "planning_cycles": (_parent("planning_cycles"), (BACKDATED, MISSING_PARENT)),
    "tool_calls": (_parent("tool_calls") + CYCLE, (BACKDATED, MISSING_PARENT, OUTSIDE_CYCLE)),
    "decision_log": (CYCLE, (BACKDATED, OUTSIDE_CYCLE)),
    "schema_changes": ("", (BACKDATED,)),
}
"""Per table: the joins the checks need, and the checks (each NULL, or why the row is not vouched for)."""


def _checked(table: str, order: int, *, hashed: bool) -> str:
    """0007's `_hashed` plus `reason` (NULL: nothing to flag); with `hashed` False, content is left NULL."""
    v7 = _v0007()
    joins, checks = CHECKS[table]
    match = "public.jarvis_serial_uuid(x.id) = p.row_id" if table == "schema_changes" else "x.id = p.row_id"
    content = (
        f"pg_catalog.sha256(pg_catalog.convert_to(CASE WHEN as_migrated THEN {v7.canonical_text(table)} "
        f"ELSE public.jarvis_canonical('{table}', pg_catalog.to_jsonb(x)) END, 'UTF8'))"
        if hashed
        else "NULL::bytea"
    )
    return (
        f"SELECT x.created_at AS at, {order} AS o, {content} AS content, "
        f"NULLIF(pg_catalog.concat_ws('; ', {', '.join(checks)}), '') AS reason "
        f"FROM ONLY public.{table} x{joins} WHERE p.table_name = '{table}' AND {match}"
    )


def _batch(*, hashed: bool) -> str:
    v7 = _v0007()
    rows = " UNION ALL ".join(_checked(table, order, hashed=hashed) for order, table in enumerate(v7.CHAINED_TABLES))
    return f"""
    WITH batch AS MATERIALIZED (
      -- The oldest queue entries whose rows exist, read in the queue index's order: entries whose row is
      -- gone yield nothing here, so they never fill a batch (they stay queued and verify names them).
      SELECT p.ctid AS entry, p.queued_by, p.table_name AS t, p.row_id AS id, h.at, h.o, h.content, h.reason
        FROM public.audit_pending p
       CROSS JOIN LATERAL ({rows}) h
       WHERE p.queued_by >= scan_from
       ORDER BY p.queued_by, p.table_name, p.row_id LIMIT max_rows
    ), one_each AS (  -- two rows sharing an id (only a superuser can make them) are linked once
      SELECT DISTINCT ON (b.t, b.id) b.* FROM batch b ORDER BY b.t, b.id
    )
    SELECT o.entry, o.queued_by, o.t, o.id, o.content, o.reason, (SELECT pg_catalog.count(*) FROM batch) AS batch_size,
           EXISTS (SELECT 1 FROM public.audit_chain c WHERE c.table_name = o.t AND c.row_id = o.id) AS linked_before
      FROM one_each o ORDER BY o.at, o.o, o.id"""


def _one_row() -> str:
    """The content of the one row `r` names, rendered as in the batch (0007's per-table hash)."""
    v7 = _v0007()
    rows = " UNION ALL ".join(v7._hashed(table, order) for order, table in enumerate(v7.CHAINED_TABLES))
    return f"SELECT h.content FROM (SELECT r.t AS table_name, r.id AS row_id) p CROSS JOIN LATERAL ({rows}) h LIMIT 1"


LINK = """
    entries := pg_catalog.array_append(entries, r.entry);
    last_queued_by := GREATEST(last_queued_by, r.queued_by);
    batch_size := r.batch_size;
    CONTINUE WHEN r.linked_before;  -- a row queued twice (by hand) is linked once
    n := n + 1;
    prev := pg_catalog.sha256(prev || pg_catalog.int8send(s + n) || pg_catalog.convert_to(r.t, 'UTF8')
                              || '\\x00'::bytea || pg_catalog.uuid_send(r.id) || content);
    tables[n] := r.t;
    ids[n] := r.id;
    contents[n] := content;
    links[n] := prev;
    reasons[n] := reason;"""


def seal() -> str:
    v7 = _v0007()
    return f"""
CREATE FUNCTION public.jarvis_seal(max_rows integer)
RETURNS TABLE (linked integer, head_seq bigint, head_hash bytea, sealed_at timestamptz, flagged integer,
               flagged_total bigint)
LANGUAGE plpgsql SECURITY DEFINER {SAFE_PATH} SET "TimeZone" = 'UTC'
-- The queue is read and emptied through its index and row positions, never scanned (its dead rows wait for
-- autovacuum); the plans' costs that this inflates must not switch on JIT compilation for a small batch.
SET enable_seqscan = off SET jit = off
AS $$
DECLARE
  r record;
  s bigint;
  prev bytea;
  first bytea;
  content bytea;
  reason text;
  n integer := 0;
  tables text[] := '{{}}';
  ids uuid[] := '{{}}';
  contents bytea[] := '{{}}';
  links bytea[] := '{{}}';
  reasons text[] := '{{}}';
  entries tid[] := '{{}}';
  as_migrated boolean;
  scan_from bigint;
  swept timestamptz;
  finished_below bigint;
  last_queued_by bigint;
  batch_size bigint := 0;
  n_flagged integer := 0;
BEGIN
  -- The caller may choose how many rows, never where the sealer starts: 0 made an empty batch look full.
  IF max_rows IS NULL OR max_rows < 1 OR max_rows > {MAX_BATCH} THEN
    RAISE EXCEPTION 'jarvis_seal: max_rows must be between 1 and {MAX_BATCH}, not %', max_rows
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- One sealer at a time. FOR UPDATE needs UPDATE on audit_seal_head, which only this function's owner has.
  SELECT h.seq, h.chain_hash, h.queue_scan_from, h.swept_at INTO s, first, scan_from, swept
    FROM public.audit_seal_head h FOR UPDATE;
  prev := first;
  -- Every transaction below this one had ended when the batch below was read: their entries were all visible.
  finished_below := pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text::bigint;{v7.COLUMNS_AS_MIGRATED}
  BEGIN  -- every row rendered and hashed in one statement
    FOR r IN {_batch(hashed=True)}
    LOOP
      content := r.content;
      reason := r.reason;{LINK}
    END LOOP;
  EXCEPTION WHEN program_limit_exceeded THEN
    -- A row over PostgreSQL's 1 GB as JSON text (the size checks bypassed): hash row by row, link that one by
    -- a bounded stand-in (its table and id: its content is not vouched for) and flag it. Sealing goes on.
    n := 0; prev := first; last_queued_by := NULL; batch_size := 0;
    tables := '{{}}'; ids := '{{}}'; contents := '{{}}'; links := '{{}}'; reasons := '{{}}'; entries := '{{}}';
    FOR r IN {_batch(hashed=False)}
    LOOP
      reason := r.reason;
      BEGIN
        {_one_row()} INTO content;
      EXCEPTION WHEN program_limit_exceeded THEN
        content := pg_catalog.sha256(pg_catalog.convert_to('jarvis: not rendered: ' || r.t || ' ' || r.id::text,
                                                           'UTF8'));
        reason := pg_catalog.concat_ws('; ', 'larger than PostgreSQL can render as JSON text (over 1 GB): linked by '
                                       || 'its table and id only, its content not vouched for', reason);
      END;{LINK}
    END LOOP;
  END;
  INSERT INTO public.audit_chain (seq, table_name, row_id, row_hash, chain_hash, encoding)
    SELECT s + u.pos, u.t, u.id, u.content, u.link, 2
      FROM ROWS FROM (pg_catalog.unnest(tables), pg_catalog.unnest(ids), pg_catalog.unnest(contents),
                      pg_catalog.unnest(links)) WITH ORDINALITY AS u(t, id, content, link, pos);
  INSERT INTO public.audit_flags (seq, table_name, row_id, reason)
    SELECT s + u.pos, u.t, u.id, u.reason
      FROM ROWS FROM (pg_catalog.unnest(tables), pg_catalog.unnest(ids), pg_catalog.unnest(reasons))
           WITH ORDINALITY AS u(t, id, reason, pos)
     WHERE u.reason IS NOT NULL;
  GET DIAGNOSTICS n_flagged = ROW_COUNT;
  -- The queue entries just read, found by their position (a TID scan, never a scan of the queue's dead
  -- rows). A position cannot be reused meanwhile: this statement's snapshot keeps the entries from vacuum.
  DELETE FROM public.audit_pending p WHERE p.ctid = ANY (entries);
  s := s + n;
  -- Where the next seal starts reading: every entry below is sealed, or its row is gone (verify names those).
  -- Transactions below finished_below had all ended, so their entries were all visible to the batch: a batch
  -- that was not full read them all, and every row committed before this seal began is linked now (swept).
  -- A full one read the lowest transaction ids first, so it may have left entries of the last transaction
  -- it read, never of an earlier one.
  IF batch_size >= max_rows THEN
    finished_below := LEAST(finished_below, coalesce(last_queued_by, scan_from));
  ELSE
    swept := GREATEST(swept, pg_catalog.now());
  END IF;
  UPDATE public.audit_seal_head
     SET seq = s, chain_hash = prev, queue_scan_from = GREATEST(scan_from, finished_below), swept_at = swept;
  RETURN QUERY SELECT n, s, prev, pg_catalog.now(), n_flagged,
                      (SELECT pg_catalog.count(*) FROM public.audit_flags f);
END $$"""


FLAGS_TABLE = """
CREATE TABLE public.audit_flags (
  seq bigint NOT NULL CONSTRAINT pk_audit_flags PRIMARY KEY,
  table_name text NOT NULL,
  row_id uuid NOT NULL,
  reason text NOT NULL
)"""


def upgrade() -> None:
    bind = op.get_bind()
    app, auditor = bind.execute(text("SELECT app_role, auditor_role FROM public.trail_info")).one()
    op.execute(FLAGS_TABLE)
    for trigger, when in (("append_only", "BEFORE UPDATE OR DELETE"), ("no_truncate", "BEFORE TRUNCATE")):
        each = "STATEMENT" if trigger == "no_truncate" else "ROW"
        op.execute(
            f"CREATE TRIGGER audit_flags_{trigger} {when} ON public.audit_flags "
            f"FOR EACH {each} EXECUTE FUNCTION public.jarvis_reject_mutation()"
        )
    op.execute(f"GRANT SELECT ON public.audit_flags TO {auditor}")
    op.execute("ALTER TABLE public.audit_seal_head ADD COLUMN swept_at timestamptz")
    for sql in before_insert().values():
        op.execute(sql)
    op.execute(STAMP_SCHEMA_CHANGE)
    op.execute("DROP FUNCTION public.jarvis_seal(integer)")  # its result gains columns
    op.execute(seal())
    op.execute("REVOKE EXECUTE ON FUNCTION public.jarvis_seal(integer) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION public.jarvis_seal(integer) TO {app}")


def downgrade() -> None:
    v7 = _v0007()
    app = op.get_bind().execute(text("SELECT app_role FROM public.trail_info")).scalar_one()
    op.execute("DROP FUNCTION public.jarvis_seal(integer)")
    op.execute(v7.SEAL)
    op.execute("REVOKE EXECUTE ON FUNCTION public.jarvis_seal(integer) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION public.jarvis_seal(integer) TO {app}")
    op.execute(OLD_STAMP)
    for sql in v7.BEFORE_INSERT.values():
        op.execute(sql)
    op.execute("ALTER TABLE public.audit_seal_head DROP COLUMN swept_at")
    op.execute("DROP TABLE public.audit_flags")  # the flags go; their rows stay linked
