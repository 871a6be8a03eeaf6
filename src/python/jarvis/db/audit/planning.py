"""Planning cycles and their decisions: open (goals) -> decisions -> close (outcomes).

Like tool calls, a cycle is two rows; the database allows one open cycle per
agent. The timeline of a cycle is everything the agent did inside it, in order;
it is read, like every view of the trail, through `AuditQueries` (queries.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text

from jarvis.db.audit.append import (
    AuditAppendError,
    AuditEvent,
    AuditListener,
    AuditRuleViolation,
    announce,
    append_row,
)
from jarvis.db.audit.ids import uuid7
from jarvis.db.base import COMPLETION_STATUSES, CompletionStatus
from jarvis.db.engine import Database
from jarvis.db.jsonb import check_text, ensure_jsonb
from jarvis.db.models import Decision, PlanningCycle

DEFAULT_AGENT = "jarvis"

ONE_OPEN_CYCLE = "planning_cycles_one_open"
"""The constraint name the open-cycle trigger raises with (migration 0003): switched on, never its message."""

NOT_AN_OPEN_CYCLE = frozenset({"cycle_is_open", "cycle_is_start", "fk_decision_log_cycle_id_planning_cycles"})
"""Why a decision's cycle may refuse it (closed, a completion row, no such row): CycleClosedError."""


class CycleAlreadyOpenError(AuditAppendError):
    """The agent already has an open planning cycle."""


class CycleClosedError(AuditAppendError):
    """The cycle is closed (or not a cycle's start row); nothing more can be recorded in it."""


class PlanningLog:
    def __init__(
        self, database: Database, *, agent: str = DEFAULT_AGENT, listeners: Sequence[AuditListener] = ()
    ) -> None:
        check_text(agent, "agent name")
        self.database = database
        self.agent = agent
        self.listeners = list(listeners)

    def open_cycle(self, goals: Any, *, cycle_id: uuid.UUID | None = None) -> uuid.UUID:
        """Record the start of a cycle with its goals (committed before this returns); the id ties decisions and tool
        calls to it. The database allows one open cycle per agent: a second is CycleAlreadyOpenError.
        """
        ensure_jsonb(goals, what="cycle goals")
        row_id = cycle_id or uuid7()
        try:
            created_at = append_row(
                self.database,
                PlanningCycle.__table__,  # type: ignore[arg-type]
                {"id": row_id, "agent": self.agent, "status": "started", "goals": goals},
            )
        except AuditRuleViolation as error:
            if error.constraint == ONE_OPEN_CYCLE:
                raise CycleAlreadyOpenError(
                    f"agent {self.agent!r} already has an open planning cycle ({self.open_cycle_id()}). "
                    "Fix: close it, or run `jarvis audit dangling --close` if its process died."
                ) from None
            raise
        announce(
            self.listeners,
            AuditEvent(
                table="planning_cycles", kind="cycle.opened", row_id=row_id, created_at=created_at, status="started"
            ),
        )
        return row_id

    def record_decision(
        self, cycle_id: uuid.UUID, decision: str, reasoning: Any, *, decision_id: uuid.UUID | None = None
    ) -> uuid.UUID:
        """Record a decision and why it was taken, inside an open cycle; a closed or unknown cycle refuses it."""
        ensure_jsonb(reasoning, what="decision reasoning")
        check_text(decision, "decision")
        row_id = decision_id or uuid7()
        try:
            created_at = append_row(
                self.database,
                Decision.__table__,  # type: ignore[arg-type]
                {"id": row_id, "cycle_id": cycle_id, "decision": decision, "reasoning": reasoning},
            )
        except AuditRuleViolation as error:
            if error.constraint not in NOT_AN_OPEN_CYCLE:
                raise  # e.g. the decision's length CHECK: the cycle is fine, the decision is not
            raise CycleClosedError(f"cannot record a decision in cycle {cycle_id}: {error}") from None
        announce(
            self.listeners,
            AuditEvent(table="decision_log", kind="decision", row_id=row_id, created_at=created_at, cycle_id=cycle_id),
        )
        return row_id

    def close_cycle(
        self,
        cycle_id: uuid.UUID,
        status: CompletionStatus = "succeeded",
        outcomes: Any = None,
        *,
        completion_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        """Record how the cycle ended (a completion status and its outcomes); a cycle is closed once only."""
        if status not in COMPLETION_STATUSES:
            raise ValueError(f"status {status!r} is not a completion status; use one of {COMPLETION_STATUSES}")
        ensure_jsonb(outcomes, what="cycle outcomes")
        row_id = completion_id or uuid7()
        try:
            created_at = append_row(
                self.database,
                PlanningCycle.__table__,  # type: ignore[arg-type]
                {"id": row_id, "parent_id": cycle_id, "agent": self.agent, "status": status, "outcomes": outcomes},
            )
        except AuditRuleViolation as error:
            raise CycleClosedError(f"cannot close cycle {cycle_id}: {error}") from None
        announce(
            self.listeners,
            AuditEvent(
                table="planning_cycles",
                kind=f"cycle.{status}",
                row_id=row_id,
                created_at=created_at,
                status=status,
                parent_id=cycle_id,
            ),
        )
        return row_id

    def open_cycle_id(self) -> uuid.UUID | None:
        """This agent's cycle that has no completion yet (None if there is none), to name it when a second open is
        refused.
        """
        with self.database.connect() as conn:
            found: uuid.UUID | None = conn.execute(
                text(
                    "SELECT s.id FROM ONLY public.planning_cycles s WHERE s.agent = :agent AND s.parent_id IS NULL "
                    "AND NOT EXISTS (SELECT 1 FROM ONLY public.planning_cycles c WHERE c.parent_id = s.id) "
                    "ORDER BY s.created_at DESC LIMIT 1"
                ),
                {"agent": self.agent},
            ).scalar()
        return found
