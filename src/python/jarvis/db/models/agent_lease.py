"""`agent_leases`: which process runs each agent name, and until when (migration 0010).

Mutable state, not part of the audit trail: a row is taken when an agent starts, its expiry
pushed forward by the agent's heartbeat, and deleted at a clean shutdown; a crashed holder's
row simply expires. Only the SECURITY DEFINER functions `jarvis_take_lease`,
`jarvis_renew_lease` and `jarvis_release_lease` write it (EXECUTE: the app role alone), so
no other login can take or block an agent's lease. See jarvis.db.liveness.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Text
from sqlalchemy.orm import Mapped, mapped_column

from jarvis.db.base import Base


class AgentLease(Base):
    __tablename__ = "agent_leases"

    agent: Mapped[str] = mapped_column(Text, primary_key=True)
    holder: Mapped[uuid.UUID]
    """A random id per holding process (an agent, or a sweep closing that agent's dangling work)."""
    taken_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    """By the database's clock: past it, the holder is presumed dead and anyone may take the lease."""
