"""`trail_info`: one row naming this database's audit trail and its roles. Append-only.

The trail id goes into every signed checkpoint, so a witness log cannot be
replayed against another database. The role names are read by every Jarvis
process (`SET LOCAL ROLE`), so a cloned or renamed database keeps working.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, Text, func, true
from sqlalchemy.orm import Mapped, mapped_column

from jarvis.db.base import Base


class TrailInfo(Base):
    __tablename__ = "trail_info"
    __table_args__ = (CheckConstraint("one", name="one"),)

    one: Mapped[bool] = mapped_column(Boolean, primary_key=True, server_default=true())
    trail_id: Mapped[uuid.UUID] = mapped_column(server_default=func.gen_random_uuid())
    app_role: Mapped[str] = mapped_column(Text)
    auditor_role: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.clock_timestamp())
