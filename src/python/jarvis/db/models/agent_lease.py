"""`agent_leases`: which process runs each agent name, and until when (migration 0010).

Mutable state, not part of the audit trail: a row is taken when an agent starts, its expiry
pushed forward by the agent's heartbeat, and deleted at a clean shutdown; a crashed holder's
row simply expires. The holder's id is kept only as a hash. Only the SECURITY DEFINER functions
`jarvis_take_lease`, `jarvis_renew_lease` and `jarvis_release_lease` write it (EXECUTE: the app role alone), so
no other login can take or block an agent's lease. See jarvis.db.liveness.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Double, LargeBinary, Text
from sqlalchemy.orm import Mapped, mapped_column

from jarvis.db.base import Base


class AgentLease(Base):
    __tablename__ = "agent_leases"

    agent: Mapped[str] = mapped_column(Text, primary_key=True)
    holder_hash: Mapped[bytes] = mapped_column(LargeBinary)
    """SHA-256 of a random id per holding process (an agent, or a sweep closing that agent's dangling work).

    Only the hash: whoever knows the id can renew the lease with a tiny time to live, so the id stays in
    its process, and no role but the owner may read even this column (the auditor reads the others)."""
    taken_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    """By the database's clock: past it, anyone may take the lease; one more `ttl` later a sweep calls it dead."""
    ttl: Mapped[float] = mapped_column(Double)
    """The time to live the holder asked for at its last take or renewal, in seconds."""
