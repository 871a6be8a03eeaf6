"""`tool_calls`: append-only, two rows per call.

The start row (status 'started', no parent) is written and committed before
the tool runs, so a crash inside the tool still leaves evidence of the intent.
The outcome is a second row whose parent_id points at the start row; nothing
is ever updated. PostgreSQL enforces all of it (see the initial migration).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from jarvis.db.base import STATUSES, Base, JsonValue


class ToolCall(Base):
    __tablename__ = "tool_calls"
    __table_args__ = (
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in STATUSES)})", name="status"),
        CheckConstraint("(parent_id IS NULL) = (status = 'started')", name="start_has_no_parent"),
        CheckConstraint(
            "parent_id IS NOT NULL OR (output IS NULL AND error IS NULL AND duration_ms IS NULL)",
            name="start_has_no_outcome",
        ),
        CheckConstraint("parent_id IS NULL OR input IS NULL", name="completion_has_no_input"),
        CheckConstraint("parent_id IS NULL OR cycle_id IS NULL", name="completion_has_no_cycle"),
        CheckConstraint("length(tool_name) BETWEEN 1 AND 200", name="tool_name_length"),
        # At most one completion per start row.
        Index("ix_tool_calls_one_completion", "parent_id", unique=True, postgresql_where=text("parent_id IS NOT NULL")),
        # Pages of tool calls, newest first (AuditQueries.tool_calls): all, or one cycle's.
        Index("ix_tool_calls_start_page", "created_at", "id", postgresql_where=text("parent_id IS NULL")),
        Index(
            "ix_tool_calls_cycle_start_page", "cycle_id", "created_at", "id", postgresql_where=text("parent_id IS NULL")
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tool_calls.id"))
    cycle_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("planning_cycles.id"))
    tool_name: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    input: Mapped[JsonValue | None]
    output: Mapped[JsonValue | None]
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(server_default=func.clock_timestamp())
