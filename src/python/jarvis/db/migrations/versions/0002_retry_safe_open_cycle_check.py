"""Make the one-open-cycle check retry-safe.

A retried `open_cycle` (same id, after the connection died around COMMIT) was
refused by the BEFORE INSERT trigger, which saw the first attempt's row as
"another" open cycle before ON CONFLICT (id) DO NOTHING could absorb it.
The check now ignores the row's own id.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CHECK = """
CREATE OR REPLACE FUNCTION jarvis_planning_cycles_check_one_open() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.parent_id IS NULL THEN
    PERFORM pg_advisory_xact_lock(hashtext('jarvis.planning_cycle:' || NEW.agent));
    IF EXISTS (
      SELECT 1 FROM planning_cycles s
      WHERE s.agent = NEW.agent AND s.parent_id IS NULL {own_row}
        AND NOT EXISTS (SELECT 1 FROM planning_cycles c WHERE c.parent_id = s.id)
    ) THEN
      RAISE EXCEPTION 'agent % already has an open planning cycle', NEW.agent
        USING ERRCODE = 'unique_violation', HINT = 'Close it (or mark it abandoned) before opening another.';
    END IF;
  END IF;
  RETURN NEW;
END $$
"""


def upgrade() -> None:
    op.execute(CHECK.format(own_row="AND s.id <> NEW.id"))


def downgrade() -> None:
    op.execute(CHECK.format(own_row=""))
