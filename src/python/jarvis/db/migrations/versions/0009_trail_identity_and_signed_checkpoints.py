"""The trail's identity comes from the database, which records that checkpoints were signed (issue 22: B8).

The witness log is named by `trail_info.trail_id` (a uuid made when the trail was created and signed
into every checkpoint), no longer by the database name in DATABASE_URL, which a pooler may alias:
nothing here changes for that. What is new is `audit_checkpoints`: every signer appends the
checkpoint it just wrote to the witness log, through `jarvis_record_checkpoint()` (SECURITY DEFINER,
executable by the app role only; nobody but the owner may write the table). A verify that finds no
log, an emptied one or an older copy, for a trail whose database records a signed checkpoint, fails.

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
CREATE OR REPLACE FUNCTION public.jarvis_record_checkpoint(p_seq bigint, p_signed_at timestamptz, p_checkpoint text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  INSERT INTO public.audit_checkpoints (seq, signed_at, checkpoint) VALUES (p_seq, p_signed_at, p_checkpoint);
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
    op.execute("REVOKE EXECUTE ON FUNCTION public.jarvis_record_checkpoint(bigint, timestamptz, text) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION public.jarvis_record_checkpoint(bigint, timestamptz, text) TO {app}")


def downgrade() -> None:
    op.execute("DROP FUNCTION public.jarvis_record_checkpoint(bigint, timestamptz, text)")
    op.execute("DROP TABLE public.audit_checkpoints")
