"""`agent_cycle_guard`: one row per agent name, locked while one of its cycles is being opened.

Openers of one agent's cycles queue on this row (taken FOR UPDATE by the SECURITY DEFINER
`BEFORE INSERT` trigger of planning_cycles). No Jarvis role may lock it directly, unlike an
advisory lock, which any session (even a SELECT-only auditor) could hold to hang the agent.

`latest_start` is the agent's newest start row, in the order openers took the lock: the only
one that can still be open, so the one-open-cycle check looks at it alone (migration 0007).
"""

from __future__ import annotations

import uuid

from sqlalchemy import Text
from sqlalchemy.orm import Mapped, mapped_column

from jarvis.db.base import Base


class AgentCycleGuard(Base):
    __tablename__ = "agent_cycle_guard"

    agent: Mapped[str] = mapped_column(Text, primary_key=True)
    latest_start: Mapped[uuid.UUID | None]
