"""`agent_state`: the agent's key/value state, versioned for compare-and-set."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Identity, Integer, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from jarvis.db.base import Base, JsonValue


class AgentState(Base):
    __tablename__ = "agent_state"
    __table_args__ = (CheckConstraint("length(key) BETWEEN 1 AND 512", name="key_length"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    key: Mapped[str] = mapped_column(Text, unique=True)
    value: Mapped[JsonValue]
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
