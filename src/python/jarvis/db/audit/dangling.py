"""Dangling work: start rows whose process never recorded an outcome (it crashed, or was killed).

They are closed by appending an `abandoned` completion; the start row itself
is never touched, so the trail still shows what was attempted and when.

A start row without an outcome is not always dead: a running agent's current
tool call and cycle look the same. A running agent holds its name's lease
(jarvis.db.liveness, renewed by its heartbeat), so `sweep_dangling` closes an
agent's work only while it holds that lease itself, and skips agents whose
lease is live.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from jarvis.db.audit.append import AuditListener
from jarvis.db.audit.planning import CycleClosedError, PlanningLog
from jarvis.db.audit.tool_calls import ToolCallAlreadyCompletedError, ToolCallLog, ToolCallStart
from jarvis.db.engine import Database
from jarvis.db.liveness import held_lease
from jarvis.db.liveness import running_agents as running_agents  # its home before leases: still importable here

ABANDONED_REASON = "abandoned: no outcome was recorded (the process stopped while this was running)"


@dataclass(frozen=True, kw_only=True)
class DanglingStart:
    """A start row with no outcome (its process died); keyword-only, as its ids are easy to swap."""

    table: str
    id: uuid.UUID
    name: str
    started_at: datetime
    cycle_id: uuid.UUID | None
    agent: str | None = None
    """The agent whose cycle this is; None for a tool call made outside any cycle (it belongs to no agent)."""


@dataclass(frozen=True)
class DanglingSweep:
    """What `sweep_dangling` did."""

    closed: list[DanglingStart]
    skipped: list[DanglingStart]
    """Work of running agents (their lease is live), left open."""
    running: list[str]
    """Agents with dangling-looking work that were running (with force, their work was closed anyway)."""


def find_dangling(
    database: Database, *, older_than: timedelta = timedelta(0), agent: str | None = None
) -> list[DanglingStart]:
    """Start rows of tool calls and planning cycles with no completion, started before now - older_than.

    With `agent`, only that agent's cycles and the tool calls made in them: what an agent may close
    at start-up while holding its lease. Tool calls outside any cycle belong to no agent;
    `jarvis audit dangling --close` (with its age threshold) closes those.
    """
    with database.connect() as conn:
        rows = conn.execute(
            text(
                """
                SELECT 'tool_calls' AS tbl, s.id, s.tool_name AS name, s.created_at, s.cycle_id,
                       (SELECT p.agent FROM ONLY public.planning_cycles p WHERE p.id = s.cycle_id) AS agent
                  FROM ONLY public.tool_calls s
                 WHERE s.parent_id IS NULL AND s.created_at < now() - :age
                   AND NOT EXISTS (SELECT 1 FROM ONLY public.tool_calls c WHERE c.parent_id = s.id)
                   AND (CAST(:agent AS text) IS NULL
                        OR s.cycle_id IN (SELECT id FROM ONLY public.planning_cycles WHERE agent = :agent))
                UNION ALL
                SELECT 'planning_cycles', s.id, s.agent, s.created_at, NULL, s.agent
                  FROM ONLY public.planning_cycles s
                 WHERE s.parent_id IS NULL AND s.created_at < now() - :age
                   AND NOT EXISTS (SELECT 1 FROM ONLY public.planning_cycles c WHERE c.parent_id = s.id)
                   AND (CAST(:agent AS text) IS NULL OR s.agent = :agent)
                 ORDER BY 4
                """
            ),
            {"age": older_than, "agent": agent},
        ).all()
    return [
        DanglingStart(table=r.tbl, id=r.id, name=r.name, started_at=r.created_at, cycle_id=r.cycle_id, agent=r.agent)
        for r in rows
    ]


def close_dangling(
    database: Database,
    *,
    older_than: timedelta = timedelta(0),
    agent: str | None = None,
    listeners: Sequence[AuditListener] = (),
) -> list[DanglingStart]:
    """Append an `abandoned` completion for every dangling start row; tool calls before their cycles.

    No check for running agents: an agent calls this for itself, holding its lease.
    People and supervisors use `sweep_dangling`.
    """
    dangling = find_dangling(database, older_than=older_than, agent=agent)
    _close(database, dangling, listeners, tolerate_closed=False)
    return dangling


def sweep_dangling(
    database: Database,
    *,
    older_than: timedelta = timedelta(0),
    force: bool = False,
    listeners: Sequence[AuditListener] = (),
) -> DanglingSweep:
    """Close dangling work of agents that are not running, and tool calls outside any cycle.

    Each agent's work is closed while holding that agent's lease, so it cannot start (and
    claim the same rows) meanwhile; an agent whose lease another process holds, or whose lease
    expired less than one of its lifetimes ago (`running_agents`: a late heartbeat takes it
    back), is running, and its open rows are its live work: skipped, unless `force`.
    """
    found = find_dangling(database, older_than=older_than)
    closed: list[DanglingStart] = []
    skipped: list[DanglingStart] = []
    running: list[str] = []
    agents = sorted({d.agent for d in found if d.agent is not None})
    presumed_running = set(running_agents(database, agents))
    for agent in agents:
        if agent in presumed_running:  # never take its lease: a late heartbeat would find it gone
            running.append(agent)
            if force:
                mine = find_dangling(database, older_than=older_than, agent=agent)
                closed.extend(_close(database, mine, listeners, tolerate_closed=True))
            else:
                skipped.extend(d for d in found if d.agent == agent)
            continue
        with held_lease(database, agent) as ours:
            if not ours:  # it started meanwhile
                running.append(agent)
                if not force:
                    skipped.extend(d for d in found if d.agent == agent)
                    continue
            # Looked up again under the lock: the agent may have run (and closed them) meanwhile.
            mine = find_dangling(database, older_than=older_than, agent=agent)
            closed.extend(_close(database, mine, listeners, tolerate_closed=not ours))
    # Tool calls outside any cycle belong to no agent: the age threshold is all there is.
    loose = [d for d in found if d.agent is None]
    closed.extend(_close(database, loose, listeners, tolerate_closed=True))
    return DanglingSweep(closed=closed, skipped=skipped, running=running)


def _close(
    database: Database, starts: Sequence[DanglingStart], listeners: Sequence[AuditListener], *, tolerate_closed: bool
) -> list[DanglingStart]:
    """Abandon `starts`, tool calls before their cycles; with `tolerate_closed`, skip those closed meanwhile."""
    closed = []
    tool_calls = ToolCallLog(database, listeners=listeners)
    for start in sorted(starts, key=lambda d: d.table != "tool_calls"):
        try:
            if start.table == "tool_calls":
                tool_calls.record_completion(
                    ToolCallStart(id=start.id, tool_name=start.name, cycle_id=start.cycle_id),
                    "abandoned",
                    error=ABANDONED_REASON,
                    duration_ms=None,
                )
            else:
                outcomes: Any = {"reason": ABANDONED_REASON}
                planning = PlanningLog(database, agent=start.name, listeners=listeners)
                planning.close_cycle(start.id, "abandoned", outcomes)
        except (ToolCallAlreadyCompletedError, CycleClosedError):
            if not tolerate_closed:
                raise
            continue
        closed.append(start)
    return closed
