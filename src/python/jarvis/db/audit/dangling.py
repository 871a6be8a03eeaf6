"""Dangling work: start rows whose process never recorded an outcome (it crashed, or was killed).

They are closed by appending an `abandoned` completion; the start row itself
is never touched, so the trail still shows what was attempted and when.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from jarvis.db.audit.append import AuditListener
from jarvis.db.audit.planning import PlanningLog
from jarvis.db.audit.tool_calls import ToolCallLog, ToolCallStart
from jarvis.db.engine import Database

ABANDONED_REASON = "abandoned: no outcome was recorded (the process stopped while this was running)"


@dataclass(frozen=True)
class DanglingStart:
    table: str
    id: uuid.UUID
    name: str
    started_at: datetime
    cycle_id: uuid.UUID | None


def find_dangling(
    database: Database, *, older_than: timedelta = timedelta(0), agent: str | None = None
) -> list[DanglingStart]:
    """Start rows of tool calls and planning cycles with no completion, started before now - older_than.

    With `agent`, only that agent's cycles and the tool calls made in them: what an agent may close
    at start-up while holding its instance lock. Tool calls outside any cycle belong to no agent;
    `jarvis audit dangling --close` (with its age threshold) closes those.
    """
    with database.connect() as conn:
        rows = conn.execute(
            text(
                """
                SELECT 'tool_calls' AS tbl, s.id, s.tool_name AS name, s.created_at, s.cycle_id
                  FROM ONLY tool_calls s
                 WHERE s.parent_id IS NULL AND s.created_at < now() - :age
                   AND NOT EXISTS (SELECT 1 FROM ONLY tool_calls c WHERE c.parent_id = s.id)
                   AND (CAST(:agent AS text) IS NULL
                        OR s.cycle_id IN (SELECT id FROM ONLY planning_cycles WHERE agent = :agent))
                UNION ALL
                SELECT 'planning_cycles', s.id, s.agent, s.created_at, NULL
                  FROM ONLY planning_cycles s
                 WHERE s.parent_id IS NULL AND s.created_at < now() - :age
                   AND NOT EXISTS (SELECT 1 FROM ONLY planning_cycles c WHERE c.parent_id = s.id)
                   AND (CAST(:agent AS text) IS NULL OR s.agent = :agent)
                 ORDER BY 4
                """
            ),
            {"age": older_than, "agent": agent},
        ).all()
    return [DanglingStart(r.tbl, r.id, r.name, r.created_at, r.cycle_id) for r in rows]


def close_dangling(
    database: Database,
    *,
    older_than: timedelta = timedelta(0),
    agent: str | None = None,
    listeners: Sequence[AuditListener] = (),
) -> list[DanglingStart]:
    """Append an `abandoned` completion for every dangling start row; tool calls before their cycles."""
    dangling = find_dangling(database, older_than=older_than, agent=agent)
    tool_calls = ToolCallLog(database, listeners=listeners)
    for start in (d for d in dangling if d.table == "tool_calls"):
        tool_calls.record_completion(
            ToolCallStart(start.id, start.name, start.cycle_id), "abandoned", error=ABANDONED_REASON, duration_ms=None
        )
    for start in (d for d in dangling if d.table == "planning_cycles"):
        outcomes: Any = {"reason": ABANDONED_REASON}
        PlanningLog(database, agent=start.name, listeners=listeners).close_cycle(start.id, "abandoned", outcomes)
    return dangling
