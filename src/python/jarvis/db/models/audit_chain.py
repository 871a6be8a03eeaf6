"""The hash chain that makes the audit tables tamper-evident.

Triggers stop the application from rewriting history; they do not stop a
superuser. So every audit row is also bound into a SHA-256 chain (immudb's
linear hash, sealed in batches like Certificate Transparency's sequencer):
`chain_hash[n] = sha256(chain_hash[n-1] || seq || table || row_id || row_hash)`.

Writers never touch the chain on their commit path (a chain read in a plain
transaction forks under concurrency, and a global lock at insert time caps
throughput). Instead an AFTER INSERT trigger queues each new row in
`audit_pending`, and one sealer at a time links the queued rows. A row that
is in neither table was written with triggers disabled: `verify` reports it.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Index,
    LargeBinary,
    SmallInteger,
    Text,
    UniqueConstraint,
    func,
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from jarvis.db.base import CHAINED_TABLES, Base

_TABLE_CHECK = f"table_name IN ({', '.join(repr(t) for t in CHAINED_TABLES)})"


class AuditChainLink(Base):
    __tablename__ = "audit_chain"
    __table_args__ = (
        CheckConstraint(_TABLE_CHECK, name="table_name"),
        CheckConstraint("seq >= 1", name="seq_positive"),
        CheckConstraint("encoding IN (1, 2)", name="encoding"),
        UniqueConstraint("table_name", "row_id"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    table_name: Mapped[str] = mapped_column(Text)
    row_id: Mapped[uuid.UUID]
    row_hash: Mapped[bytes] = mapped_column(LargeBinary)
    chain_hash: Mapped[bytes] = mapped_column(LargeBinary)
    sealed_at: Mapped[datetime] = mapped_column(server_default=func.now())
    encoding: Mapped[int] = mapped_column(SmallInteger)
    """1: Python's canonical JSON (links sealed before migration 0003); 2: the row's JSONB text."""


class AuditPending(Base):
    __tablename__ = "audit_pending"
    __table_args__ = (
        CheckConstraint(_TABLE_CHECK, name="table_name"),
        # The sealer's order: a seal reads its batch from this index, from where the last one stopped (0007).
        Index("ix_audit_pending_queued_by", "queued_by", "table_name", "row_id"),
    )

    table_name: Mapped[str] = mapped_column(Text, primary_key=True)
    row_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    queued_at: Mapped[datetime] = mapped_column(server_default=func.clock_timestamp())
    queued_by: Mapped[int] = mapped_column(BigInteger, server_default=text("(pg_current_xact_id())::text::bigint"))
    """The queueing transaction's id, in 64 bits."""


class AuditSealHead(Base):
    """The chain's head, one row: `jarvis_seal()` locks it FOR UPDATE, which the app role may not do itself."""

    __tablename__ = "audit_seal_head"
    __table_args__ = (CheckConstraint("one", name="one"), CheckConstraint("seq >= 0", name="seq"))

    one: Mapped[bool] = mapped_column(Boolean, primary_key=True, server_default=true())
    seq: Mapped[int] = mapped_column(BigInteger)
    chain_hash: Mapped[bytes] = mapped_column(LargeBinary)
    queue_scan_from: Mapped[int] = mapped_column(BigInteger, server_default="0")
    """The sealer reads queue entries of this transaction id and later: everything below is sealed (0007)."""
    swept_at: Mapped[datetime | None]
    """When the last seal whose batch was not full began: every row committed before it is linked (0008)."""


class AuditFlag(Base):
    """A linked row the sealer does not vouch for, and why (0008): written by `jarvis_seal()` alone, append-only."""

    __tablename__ = "audit_flags"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    table_name: Mapped[str] = mapped_column(Text)
    row_id: Mapped[uuid.UUID]
    reason: Mapped[str] = mapped_column(Text)
