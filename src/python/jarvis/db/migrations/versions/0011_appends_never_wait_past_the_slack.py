"""An honest append never commits long after its `created_at`: the append functions wait for a lock 5 s at most.

Issue 22 (A's last item, B13's principle). The before-insert trigger stamps `created_at`, and the
row's INSERT may then wait on a lock: the one-completion index while another transaction holds an
uncommitted completion for the same start row or cycle, a row lock, anything. The app role can
cause that wait on purpose (insert its own completion for an honest start row and keep the
transaction open): the honest row then commits more than the sealer's slack (60 s) after its
stamp, a seal meanwhile moved `audit_seal_head.swept_at`, and the next seal flagged the honest
row as backdated, for good. What the app role can cause must never read as tampering.

Each `jarvis_append_<table>` function now carries `SET lock_timeout = '5s'` (`LOCK_TIMEOUT`): every
lock wait inside it, before or after the stamp, ends after 5 s with `lock_not_available` (55P03),
the statement's row is rolled back, and the client (`jarvis.db.audit.append.append_steps`) sends it
again as a new statement, which is stamped afresh. The setting is the function's own, so neither a
pooled neighbour's `lock_timeout` nor the role statement's `lock_timeout = 0` changes it. A row
therefore commits at most a few lock waits of 5 s after its stamp, well inside the slack.
The bodies are unchanged (0004's); the catalog check compares the functions' settings whole.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

import importlib
from types import ModuleType

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

LOCK_TIMEOUT = "5s"
"""Longest wait for one lock inside an append function: well under the sealer's 60 s slack
(jarvis.db.audit.chain.BACKDATE_SLACK), long enough for any honest transaction to end."""


def _v0004() -> ModuleType:
    """0004's definitions (frozen): the append functions' signatures."""
    return importlib.import_module("jarvis.db.migrations.versions.0004_append_functions")


def upgrade() -> None:
    v4 = _v0004()
    for table in v4.APPENDED_COLUMNS:
        op.execute(f"ALTER FUNCTION {v4.signature(table)} SET lock_timeout = '{LOCK_TIMEOUT}'")


def downgrade() -> None:
    v4 = _v0004()
    for table in v4.APPENDED_COLUMNS:
        op.execute(f"ALTER FUNCTION {v4.signature(table)} RESET lock_timeout")
