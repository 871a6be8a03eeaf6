"""`agent_cycle_guard`: one row per agent name, locked while one of its cycles is being opened.

Openers of one agent's cycles queue on this row (taken FOR UPDATE by the SECURITY DEFINER
one-open-cycle trigger). No Jarvis role may lock it directly, unlike an advisory lock, which
any session (even a SELECT-only auditor) could hold to hang the agent.
"""

from __future__ import annotations

from sqlalchemy import Text
from sqlalchemy.orm import Mapped, mapped_column

from jarvis.db.base import Base


class AgentCycleGuard(Base):
    __tablename__ = "agent_cycle_guard"

    agent: Mapped[str] = mapped_column(Text, primary_key=True)
