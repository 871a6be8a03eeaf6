"""`planning_cycles`: append-only, two rows per cycle, like `tool_calls`.

A start row carries the goals, the completion row the outcomes. PostgreSQL
allows at most one open cycle (a start without a completion) per agent.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from jarvis.db.base import STATUSES, Base, JsonValue


class PlanningCycle(Base):
    __tablename__ = "planning_cycles"
    __table_args__ = (
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in STATUSES)})", name="status"),
        CheckConstraint("(parent_id IS NULL) = (status = 'started')", name="start_has_no_parent"),
        CheckConstraint("parent_id IS NOT NULL OR (goals IS NOT NULL AND outcomes IS NULL)", name="start_has_goals"),
        CheckConstraint("parent_id IS NULL OR goals IS NULL", name="completion_has_no_goals"),
        CheckConstraint("length(agent) BETWEEN 1 AND 200", name="agent_length"),
        Index(
            "ix_planning_cycles_one_completion",
            "parent_id",
            unique=True,
            postgresql_where=text("parent_id IS NOT NULL"),
        ),
        # Pages of cycles, newest first (AuditQueries.cycles): all agents, or one.
        Index("ix_planning_cycles_start_page", "created_at", "id", postgresql_where=text("parent_id IS NULL")),
        Index(
            "ix_planning_cycles_agent_start_page",
            "agent",
            "created_at",
            "id",
            postgresql_where=text("parent_id IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("planning_cycles.id"))
    agent: Mapped[str] = mapped_column(Text)
    goals: Mapped[JsonValue | None]
    status: Mapped[str] = mapped_column(Text)
    outcomes: Mapped[JsonValue | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.clock_timestamp())
