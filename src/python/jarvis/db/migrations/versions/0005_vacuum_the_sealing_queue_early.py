"""Vacuum the sealing queue after every thousand dead rows, not after a fifth of the table.

`audit_pending` only ever gets inserts and deletes: each row waits for the
sealer and is deleted when linked. With PostgreSQL's default autovacuum
scale factor (20 % of the table) a queue that is usually empty is almost
never vacuumed, and its dead rows pile up (118 MB with zero live rows after
a million appends in one measurement), which makes every seal and every
append slower as history grows. A fixed threshold keeps it small; no
delay, because a vacuum of a queue this size takes milliseconds.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

QUEUE_SETTINGS = (
    "autovacuum_vacuum_scale_factor = 0",
    "autovacuum_vacuum_threshold = 1000",
    "autovacuum_vacuum_insert_scale_factor = 0",
    "autovacuum_vacuum_insert_threshold = 1000",
    "autovacuum_vacuum_cost_delay = 0",
)


def upgrade() -> None:
    op.execute(f"ALTER TABLE public.audit_pending SET ({', '.join(QUEUE_SETTINGS)})")


def downgrade() -> None:
    names = ", ".join(setting.split(" = ")[0] for setting in QUEUE_SETTINGS)
    op.execute(f"ALTER TABLE public.audit_pending RESET ({names})")
