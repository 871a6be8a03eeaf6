"""`audit_checkpoints`: the database's record that checkpoints were signed. Append-only.

The witness log lives outside PostgreSQL, so its absence alone proves nothing: a trail that was
never signed has none either. Each signer appends the checkpoint it just wrote to the log here
(through `jarvis_record_checkpoint`, the only way in: SECURITY DEFINER, executable by the app
role), and verify fails when the log is missing, emptied or older than the newest one recorded.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Identity, Index, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from jarvis.db.base import Base


class AuditCheckpoint(Base):
    __tablename__ = "audit_checkpoints"
    __table_args__ = (
        CheckConstraint("seq >= 0", name="seq_not_negative"),
        CheckConstraint("length(checkpoint) BETWEEN 1 AND 4096", name="checkpoint_length"),
        Index("ix_audit_checkpoints_signed_at", "signed_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    signed_at: Mapped[datetime]
    checkpoint: Mapped[str] = mapped_column(Text)
    """The checkpoint as its witness log line (compact JSON, signature included)."""
    recorded_at: Mapped[datetime] = mapped_column(server_default=func.clock_timestamp())
