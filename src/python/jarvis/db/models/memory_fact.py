"""`memory_facts`: what the agent learned about a subject, and whether it still holds."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Identity, Index, Text, false, func, text
from sqlalchemy.orm import Mapped, mapped_column

from jarvis.db.base import Base, JsonValue


class MemoryFact(Base):
    __tablename__ = "memory_facts"
    __table_args__ = (
        # jsonb_path_ops: smaller and faster than the default opclass for the @> queries we run.
        Index("ix_memory_facts_body", "body", postgresql_using="gin", postgresql_ops={"body": "jsonb_path_ops"}),
        Index("ix_memory_facts_subject_created_at", "subject", text("created_at DESC")),
        Index("ix_memory_facts_fresh", text("created_at DESC"), postgresql_where=text("NOT is_stale")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    subject: Mapped[str] = mapped_column(Text)
    body: Mapped[JsonValue]
    is_stale: Mapped[bool] = mapped_column(server_default=false())
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
