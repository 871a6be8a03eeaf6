"""`decision_log`: the reasoning behind each decision, tied to the planning cycle's start row. Append-only."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from jarvis.db.base import Base, JsonValue


class Decision(Base):
    __tablename__ = "decision_log"
    __table_args__ = (CheckConstraint("length(decision) BETWEEN 1 AND 10000", name="decision_length"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    cycle_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("planning_cycles.id"), index=True)
    reasoning: Mapped[JsonValue]
    decision: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.clock_timestamp())
