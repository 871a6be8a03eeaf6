"""Planning cycles and their decisions: open (goals) -> decisions -> close (outcomes).

Like tool calls, a cycle is two rows; the database allows one open cycle per
agent. The timeline of a cycle is everything the agent did inside it, in order;
it is read, like every view of the trail, through `AuditQueries` (queries.py).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Generic, TypeVar

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


OPEN_CYCLE_SQL = (
    "SELECT s.id FROM ONLY public.planning_cycles s WHERE s.agent = %s AND s.parent_id IS NULL "
    "AND NOT EXISTS (SELECT 1 FROM ONLY public.planning_cycles c WHERE c.parent_id = s.id) "
    "ORDER BY s.created_at DESC LIMIT 1"
)
"""The agent's cycle that has no completion yet, to name it when a second open is refused."""

PLANNING_CYCLES = PlanningCycle.__table__
DECISION_LOG = Decision.__table__


# The rules of cycles and decisions, without I/O: PlanningLog and AsyncPlanningLog (jarvis.db.aio) both use them.


def open_row(agent: str, goals: Any, cycle_id: uuid.UUID | None) -> dict[str, Any]:
    ensure_jsonb(goals, what="cycle goals")
    return {"id": cycle_id or uuid7(), "agent": agent, "status": "started", "goals": goals}


def is_second_open(error: AuditRuleViolation) -> bool:
    """Whether an open was refused because the agent already has an open cycle (then `already_open`)."""
    return error.constraint == ONE_OPEN_CYCLE


def already_open(agent: str, open_cycle: uuid.UUID | None) -> CycleAlreadyOpenError:
    return CycleAlreadyOpenError(
        f"agent {agent!r} already has an open planning cycle ({open_cycle}). "
        "Fix: close it, or run `jarvis audit dangling --close` if its process died."
    )


def opened_event(values: dict[str, Any], created_at: datetime) -> AuditEvent:
    return AuditEvent(
        table="planning_cycles", kind="cycle.opened", row_id=values["id"], created_at=created_at, status="started"
    )


def decision_row(cycle_id: uuid.UUID, decision: str, reasoning: Any, decision_id: uuid.UUID | None) -> dict[str, Any]:
    ensure_jsonb(reasoning, what="decision reasoning")
    check_text(decision, "decision")
    return {"id": decision_id or uuid7(), "cycle_id": cycle_id, "decision": decision, "reasoning": reasoning}


def decision_refused(cycle_id: uuid.UUID, error: AuditRuleViolation) -> AuditAppendError:
    if error.constraint not in NOT_AN_OPEN_CYCLE:
        return error  # e.g. the decision's length CHECK: the cycle is fine, the decision is not
    return CycleClosedError(f"cannot record a decision in cycle {cycle_id}: {error}")


def decided_event(values: dict[str, Any], created_at: datetime) -> AuditEvent:
    return AuditEvent(
        table="decision_log", kind="decision", row_id=values["id"], created_at=created_at, cycle_id=values["cycle_id"]
    )


def close_row(
    agent: str, cycle_id: uuid.UUID, status: CompletionStatus, outcomes: Any, completion_id: uuid.UUID | None
) -> dict[str, Any]:
    if status not in COMPLETION_STATUSES:
        raise ValueError(f"status {status!r} is not a completion status; use one of {COMPLETION_STATUSES}")
    ensure_jsonb(outcomes, what="cycle outcomes")
    return {
        "id": completion_id or uuid7(),
        "parent_id": cycle_id,
        "agent": agent,
        "status": status,
        "outcomes": outcomes,
    }


def close_refused(cycle_id: uuid.UUID, error: AuditRuleViolation) -> CycleClosedError:
    return CycleClosedError(f"cannot close cycle {cycle_id}: {error}")


def closed_event(values: dict[str, Any], created_at: datetime) -> AuditEvent:
    return AuditEvent(
        table="planning_cycles",
        kind=f"cycle.{values['status']}",
        row_id=values["id"],
        created_at=created_at,
        status=values["status"],
        parent_id=values["parent_id"],
    )


Refusal = Callable[[AuditRuleViolation], BaseException]
"""What a refused append means to the caller (e.g. `close_refused` with its cycle)."""
EventOf = Callable[[dict[str, Any], datetime], AuditEvent]
"""The event listeners hear about a committed row."""

DatabaseT = TypeVar("DatabaseT")
ListenerT = TypeVar("ListenerT")


class PlanningLogBase(Generic[DatabaseT, ListenerT]):
    """What a planning log holds, sync (PlanningLog) or asyncio (AsyncPlanningLog): database, agent, listeners."""

    def __init__(self, database: DatabaseT, *, agent: str = DEFAULT_AGENT, listeners: Sequence[ListenerT] = ()) -> None:
        check_text(agent, "agent name")
        self.database = database
        self.agent = agent
        self.listeners = list(listeners)


class PlanningLog(PlanningLogBase[Database, AuditListener]):
    def open_cycle(self, goals: Any, *, cycle_id: uuid.UUID | None = None) -> uuid.UUID:
        """Record the start of a cycle with its goals (committed before this returns); the id ties decisions and tool
        calls to it. The database allows one open cycle per agent: a second is CycleAlreadyOpenError.
        """
        values = open_row(self.agent, goals, cycle_id)
        try:
            created_at = append_row(self.database, PLANNING_CYCLES, values)  # type: ignore[arg-type]
        except AuditRuleViolation as error:
            if is_second_open(error):
                raise already_open(self.agent, self.open_cycle_id()) from None
            raise
        announce(self.listeners, opened_event(values, created_at))
        row_id: uuid.UUID = values["id"]
        return row_id

    def record_decision(
        self, cycle_id: uuid.UUID, decision: str, reasoning: Any, *, decision_id: uuid.UUID | None = None
    ) -> uuid.UUID:
        """Record a decision and why it was taken, inside an open cycle; a closed or unknown cycle refuses it."""
        values = decision_row(cycle_id, decision, reasoning, decision_id)
        return self._append(DECISION_LOG, values, functools.partial(decision_refused, cycle_id), decided_event)

    def close_cycle(
        self,
        cycle_id: uuid.UUID,
        status: CompletionStatus = "succeeded",
        outcomes: Any = None,
        *,
        completion_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        """Record how the cycle ended (a completion status and its outcomes); a cycle is closed once only.

        An outcome: it waits for a busy pool rather than fail (see `append_row`).
        """
        values = close_row(self.agent, cycle_id, status, outcomes, completion_id)
        refused = functools.partial(close_refused, cycle_id)
        return self._append(PLANNING_CYCLES, values, refused, closed_event, outcome=True)

    def _append(
        self, table: Any, values: dict[str, Any], refused: Refusal, event: EventOf, *, outcome: bool = False
    ) -> uuid.UUID:
        """Append one row (a refusal is `refused(error)`), then tell the listeners `event`."""
        try:
            created_at = append_row(self.database, table, values, outcome=outcome)
        except AuditRuleViolation as error:
            raise refused(error) from None
        announce(self.listeners, event(values, created_at))
        row_id: uuid.UUID = values["id"]
        return row_id

    def open_cycle_id(self) -> uuid.UUID | None:
        """This agent's cycle that has no completion yet (None if there is none), to name it when a second open is
        refused.
        """
        row = self.database.read_one(OPEN_CYCLE_SQL, (self.agent,))
        found: uuid.UUID | None = row[0] if row else None
        return found
