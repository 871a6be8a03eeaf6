"""`schema_changes`: every table the agent created at run time, and when. Append-only."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Identity, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from jarvis.db.base import Base, JsonValue


class SchemaChange(Base):
    __tablename__ = "schema_changes"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    table_name: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    columns: Mapped[JsonValue]
    created_at: Mapped[datetime] = mapped_column(server_default=func.clock_timestamp())
