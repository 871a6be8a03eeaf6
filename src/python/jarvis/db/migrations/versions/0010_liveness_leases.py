"""Agent liveness as a lease row renewed by heartbeat, not an advisory lock held in an open transaction (issue 22: B10, B11).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
