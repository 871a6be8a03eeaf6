"""Index the pages of the trail readers show: start rows by (created_at, id), newest first.

`AuditQueries.cycles()` and `.tool_calls()` page with a keyset on the start
row's `(created_at, id)`. Without these partial indexes every page sorts all
start rows (all of one agent's, at best), so the cost of page one grows with
the trail; with them a page reads its rows and stops. Completion rows are
found through the unique `*_one_completion` indexes.

They replace two indexes of 0001 that covered every row: `(agent,
created_at)` and `(cycle_id)`. Only start rows have a cycle id, and every
reader that filters by agent reads start rows, so each append keeps the
number of indexes it updates.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_planning_cycles_start_page": "public.planning_cycles (created_at, id)",
    "ix_planning_cycles_agent_start_page": "public.planning_cycles (agent, created_at, id)",
    "ix_tool_calls_start_page": "public.tool_calls (created_at, id)",
    "ix_tool_calls_cycle_start_page": "public.tool_calls (cycle_id, created_at, id)",
}


REPLACED = {
    "ix_planning_cycles_agent_created_at": "public.planning_cycles (agent, created_at)",
    "ix_tool_calls_cycle_id": "public.tool_calls (cycle_id)",
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON {columns} WHERE parent_id IS NULL")
    for name in REPLACED:
        op.execute(f"DROP INDEX public.{name}")


def downgrade() -> None:
    for name, columns in REPLACED.items():
        op.execute(f"CREATE INDEX {name} ON {columns}")
    for name in INDEXES:
        op.execute(f"DROP INDEX public.{name}")
