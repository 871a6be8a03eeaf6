"""The trail's identity comes from the database, which records that checkpoints were signed (issue 22: B8).

The witness log is named by `trail_info.trail_id` (a uuid made when the trail was created and signed
into every checkpoint), no longer by the database name in DATABASE_URL, which a pooler may alias:
nothing here changes for that. What is new is `audit_checkpoints`: every signer appends the
checkpoint it just wrote to the witness log, through `jarvis_record_checkpoint()` (SECURITY DEFINER,
executable by the app role only; nobody but the owner may write the table). A verify that finds no
log, an emptied one or an older copy, for a trail whose database records a signed checkpoint, fails.

The app role can call the function with any text, so the function trusts nothing it is told: seq,
signed_at and trail are read from the checkpoint itself, and a checkpoint of another trail, beyond
the chain head, or not signed just now (15 s either way of the database's clock: the signer records
right after it signs) is refused, so an old genuine checkpoint cannot be re-recorded as the newest.
What the function cannot check is the signature (no key in the database): verify reads only records
whose signature the trusted key verifies and reports any other as a note.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

RECORD_CHECKPOINT = """
CREATE OR REPLACE FUNCTION public.jarvis_record_checkpoint(p_checkpoint text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v_fields jsonb;
  v_seq bigint;
  v_signed_at timestamptz;
  v_trail uuid;
  v_head bigint;
  v_now timestamptz := clock_timestamp();
BEGIN
  IF p_checkpoint IS NULL OR length(p_checkpoint) NOT BETWEEN 1 AND 4096 THEN
    RAISE EXCEPTION 'jarvis_record_checkpoint: not a checkpoint (empty or longer than 4096 characters)'
      USING ERRCODE = '22023';
  END IF;
  BEGIN
    v_fields := p_checkpoint::jsonb;
    v_seq := (v_fields->>'seq')::bigint;
    v_signed_at := (v_fields->>'signed_at')::timestamptz;
    v_trail := (v_fields->>'trail')::uuid;
  EXCEPTION WHEN others THEN
    RAISE EXCEPTION 'jarvis_record_checkpoint: not a checkpoint (%)', SQLERRM USING ERRCODE = '22023';
  END;
  IF v_seq IS NULL OR v_signed_at IS NULL OR v_trail IS NULL THEN
    RAISE EXCEPTION 'jarvis_record_checkpoint: not a checkpoint (seq, signed_at or trail missing)'
      USING ERRCODE = '22023';
  END IF;
  IF v_trail IS DISTINCT FROM (SELECT t.trail_id FROM public.trail_info t) THEN
    RAISE EXCEPTION 'jarvis_record_checkpoint: checkpoint of trail %, not this database''s', v_trail
      USING ERRCODE = '22023';
  END IF;
  SELECT h.seq INTO v_head FROM public.audit_seal_head h;
  IF v_seq < 0 OR v_seq > coalesce(v_head, 0) THEN
    RAISE EXCEPTION 'jarvis_record_checkpoint: seq % is beyond the chain head %', v_seq, coalesce(v_head, 0)
      USING ERRCODE = '22023';
  END IF;
  IF v_signed_at < v_now - interval '15 seconds' OR v_signed_at > v_now + interval '15 seconds' THEN
    RAISE EXCEPTION 'jarvis_record_checkpoint: signed_at % is not now (%): only a checkpoint just signed is recorded',
      v_signed_at, v_now USING ERRCODE = '22023';
  END IF;
  INSERT INTO public.audit_checkpoints (seq, signed_at, checkpoint) VALUES (v_seq, v_signed_at, p_checkpoint);
END $$"""


def upgrade() -> None:
    bind = op.get_bind()
    app, auditor = bind.execute(text("SELECT app_role, auditor_role FROM public.trail_info")).one()
    op.execute(
        "CREATE TABLE public.audit_checkpoints ("
        "id bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT pk_audit_checkpoints PRIMARY KEY, "
        "seq bigint NOT NULL CONSTRAINT ck_audit_checkpoints_seq_not_negative CHECK (seq >= 0), "
        "signed_at timestamptz NOT NULL, "
        "checkpoint text NOT NULL "
        "CONSTRAINT ck_audit_checkpoints_checkpoint_length CHECK (length(checkpoint) BETWEEN 1 AND 4096), "
        "recorded_at timestamptz NOT NULL DEFAULT clock_timestamp())"
    )
    op.execute("CREATE INDEX ix_audit_checkpoints_signed_at ON public.audit_checkpoints (signed_at, id)")
    op.execute("REVOKE ALL ON public.audit_checkpoints FROM PUBLIC")
    op.execute(f"GRANT SELECT ON public.audit_checkpoints TO {auditor}")
    op.execute(RECORD_CHECKPOINT)
    op.execute("REVOKE EXECUTE ON FUNCTION public.jarvis_record_checkpoint(text) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION public.jarvis_record_checkpoint(text) TO {app}")


def downgrade() -> None:
    op.execute("DROP FUNCTION public.jarvis_record_checkpoint(text)")
    op.execute("DROP TABLE public.audit_checkpoints")
