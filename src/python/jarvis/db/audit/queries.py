"""Reading the audit trail for display: the one place `audit show`, `run --timeline` and a web UI read it.

    queries = AuditQueries(database)
    page = queries.cycles(agent="jarvis", limit=20)
    older = queries.cycles(agent="jarvis", before=page[-1].cursor, limit=20)

Writers (`PlanningLog`, `ToolCallLog`) are bound to one agent; reading is not, so it lives here.
Lists are newest first and paged by keyset, never by OFFSET: `before` is the (created_at, id) of
the last start row of the previous page, so a page boundary between rows with equal timestamps
loses or repeats nothing, and rows appended meanwhile do not shift later pages.

Every read is `FROM ONLY public.<table>` through `Database.connect()` (the role is entered per
transaction): rows in an inheritance child a superuser attached are never shown.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text

from jarvis.db.base import STATUSES
from jarvis.db.engine import Database
from jarvis.db.jsonb import check_text

MAX_LIMIT = 10_000
"""The most rows one call returns: a page, not the whole trail."""


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the (created_at, id) of its last start row; pass it as `before` for the next page.

    `str(cursor)` and `Cursor.parse` carry it through a URL or a command line.
    """

    created_at: datetime
    id: uuid.UUID

    def __str__(self) -> str:
        return f"{self.created_at.isoformat()}~{self.id}"

    @classmethod
    def parse(cls, value: str) -> Cursor:
        """The cursor `str(cursor)` made; ValueError for anything else (it came from outside)."""
        at, sep, row_id = value.rpartition("~")
        if not sep:
            raise ValueError(f"{value!r} is not a page cursor (TIMESTAMP~UUID)")
        created_at = datetime.fromisoformat(at)
        if created_at.tzinfo is None:
            raise ValueError(f"{value!r}: the cursor's timestamp has no time zone")
        return cls(created_at, uuid.UUID(row_id))


@dataclass(frozen=True, kw_only=True)
class TimelineEntry:
    """One row of a cycle's story, as `jarvis audit show` prints it."""

    at: datetime
    table: str
    id: uuid.UUID
    kind: str
    status: str | None
    name: str | None
    detail: Any


@dataclass(frozen=True, kw_only=True)
class CycleSummary:
    """A planning cycle as one item: its start row with the outcome of its completion row (if any)."""

    id: uuid.UUID
    agent: str
    goals: Any
    status: str
    started_at: datetime
    closed_at: datetime | None
    outcomes: Any

    @property
    def cursor(self) -> Cursor:
        """Pass as `before` to list the cycles after this one (older)."""
        return Cursor(self.started_at, self.id)


@dataclass(frozen=True, kw_only=True)
class ToolCallSummary:
    """A tool call as one item: its start row (input) with its outcome row (status, output or error), if any."""

    id: uuid.UUID
    tool_name: str
    cycle_id: uuid.UUID | None
    status: str
    input: Any
    output: Any
    error: str | None
    duration_ms: int | None
    started_at: datetime
    ended_at: datetime | None

    @property
    def cursor(self) -> Cursor:
        """Pass as `before` to list the tool calls after this one (older)."""
        return Cursor(self.started_at, self.id)


@dataclass(frozen=True)
class CallCounts:
    """A cycle's tool calls: all of them, those that ended other than `succeeded`, and those still open."""

    calls: int
    unsuccessful: int
    running: int


@dataclass(frozen=True, kw_only=True)
class TrailEvent:
    """One audit row as a live feed shows it: what happened, to which call or cycle, when."""

    at: datetime
    id: uuid.UUID
    table: str
    kind: str
    name: str | None
    status: str | None
    cycle_id: uuid.UUID | None

    @property
    def cursor(self) -> Cursor:
        """Pass as `after` to read the events written after this one."""
        return Cursor(self.at, self.id)


@dataclass(frozen=True)
class TrailHead:
    """The sealed chain's newest position and hash (hex; empty before the first seal), and the rows queued."""

    seq: int
    chain_hash: str
    pending: int


_CYCLES = (
    "SELECT s.id, s.agent, s.goals, coalesce(c.status, 'started') AS status, s.created_at AS started_at, "
    "c.created_at AS closed_at, c.outcomes FROM ONLY public.planning_cycles s "
    "LEFT JOIN ONLY public.planning_cycles c ON c.parent_id = s.id WHERE s.parent_id IS NULL"
)

_TOOL_CALLS = (
    "SELECT s.id, s.tool_name, s.cycle_id, coalesce(c.status, 'started') AS status, s.input, c.output, c.error, "
    "c.duration_ms, s.created_at AS started_at, c.created_at AS ended_at FROM ONLY public.tool_calls s "
    "LEFT JOIN ONLY public.tool_calls c ON c.parent_id = s.id WHERE s.parent_id IS NULL"
)

_TIMELINE = """
    SELECT created_at, 'planning_cycles' AS tbl, id,
           CASE WHEN parent_id IS NULL THEN 'cycle.opened' ELSE 'cycle.closed' END AS kind,
           status, agent AS name, coalesce(goals, outcomes) AS detail
      FROM ONLY public.planning_cycles WHERE id = :cycle OR parent_id = :cycle
    UNION ALL
    SELECT created_at, 'decision_log', id, 'decision', NULL, decision, reasoning
      FROM ONLY public.decision_log WHERE cycle_id = :cycle
    UNION ALL
    SELECT created_at, 'tool_calls', id, 'tool.started', status, tool_name, input
      FROM ONLY public.tool_calls WHERE cycle_id = :cycle AND parent_id IS NULL
    UNION ALL
    SELECT c.created_at, 'tool_calls', c.id, 'tool.' || c.status, c.status, c.tool_name,
           CASE WHEN c.error IS NOT NULL THEN to_jsonb(c.error) ELSE c.output END
      FROM ONLY public.tool_calls s JOIN ONLY public.tool_calls c ON c.parent_id = s.id
     WHERE s.cycle_id = :cycle AND s.parent_id IS NULL
    ORDER BY 1, 3
"""
"""Starts and completions of tool calls are two branches, each served by an index (the per-cycle start-row
index, then the one-completion index): one `cycle_id = … OR parent_id IN …` condition read the whole table.
Completions carry no cycle id (a check constraint), so a start row is exactly a row with this cycle id."""


_CALL_COUNTS = """
    SELECT s.cycle_id, count(*) AS calls,
           count(*) FILTER (WHERE c.status IS NOT NULL AND c.status <> 'succeeded') AS unsuccessful,
           count(*) FILTER (WHERE c.status IS NULL) AS running
      FROM ONLY public.tool_calls s LEFT JOIN ONLY public.tool_calls c ON c.parent_id = s.id
     WHERE s.parent_id IS NULL AND s.cycle_id = ANY(:ids)
     GROUP BY s.cycle_id
"""

_EVENT_SOURCES = (
    "SELECT created_at, id, 'planning_cycles' AS tbl, "
    "CASE WHEN parent_id IS NULL THEN 'cycle.opened' ELSE 'cycle.closed' END AS kind, agent AS name, status, "
    "coalesce(parent_id, id) AS cycle FROM ONLY public.planning_cycles",
    "SELECT created_at, id, 'decision_log', 'decision', decision, NULL, cycle_id FROM ONLY public.decision_log",
    "SELECT created_at, id, 'tool_calls', CASE WHEN parent_id IS NULL THEN 'tool.started' ELSE 'tool.' || status END, "
    "tool_name, status, cycle_id FROM ONLY public.tool_calls",
)
"""The rows a live feed shows, each as (created_at, id, table, kind, name, status, cycle)."""

_TRAIL_HEAD = (
    "SELECT h.seq, h.chain_hash, (SELECT count(*) FROM ONLY public.audit_pending) AS pending "
    "FROM (SELECT 1) one LEFT JOIN ONLY public.audit_seal_head h ON true"
)


class AuditQueries:
    """Read-only views of the audit trail for people (CLI tables, a web UI): cycles, timelines, tool calls.

    Needs only SELECT: works with the auditor login. Nothing here writes or migrates.
    """

    def __init__(self, database: Database) -> None:
        self.database = database

    def cycle(self, cycle_id: uuid.UUID) -> CycleSummary | None:
        """The cycle whose start row is `cycle_id`, or None (no such cycle, or the id of a completion row)."""
        with self.database.connect() as conn:
            row = conn.execute(text(f"{_CYCLES} AND s.id = :id"), {"id": cycle_id}).first()
        return None if row is None else _cycle(row)

    def cycles(
        self,
        *,
        agent: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before: Cursor | None = None,
        limit: int = 20,
    ) -> list[CycleSummary]:
        """A page of cycles, newest first: of one agent and/or in one status (`started`: still open),
        started at or after `since` and before `until` (both aware datetimes, either may be None).

        `before`: the `cursor` of the last cycle of the previous page.
        """
        where, params = _page_filter(before, limit, status)
        if agent is not None:
            check_text(agent, "agent name")
            where += " AND s.agent = :agent"
            params["agent"] = agent
        if since is not None:
            where += " AND s.created_at >= :since"
            params["since"] = since
        if until is not None:
            where += " AND s.created_at < :until"
            params["until"] = until
        return [_cycle(row) for row in self._page(_CYCLES, where, params)]

    def call_counts(self, cycle_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, CallCounts]:
        """How many tool calls each cycle made and how many did not succeed (failed, cancelled, abandoned).

        One query for a page of cycles (the per-cycle start-row index); cycles without calls are absent.
        """
        if not cycle_ids:
            return {}
        with self.database.connect() as conn:
            rows = conn.execute(text(_CALL_COUNTS), {"ids": list(cycle_ids)}).all()
        return {r.cycle_id: CallCounts(calls=r.calls, unsuccessful=r.unsuccessful, running=r.running) for r in rows}

    def events_after(self, after: Cursor | None, *, limit: int = 200) -> list[TrailEvent]:
        """Audit rows of the cycles and tool calls written after `after` (oldest first): a live feed by polling.

        With `after` None: the newest `limit` rows. Pass the last event's `cursor` to the next call.
        A row's created_at is taken before its commit, so a poller re-reads a short overlap
        (`overlap_cursor`) and drops the ids it has shown.
        """
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit {limit} is outside 1..{MAX_LIMIT}")
        params: dict[str, Any] = {"limit": limit}
        if after is None:
            where, order = "", "DESC"
        else:
            where, order = " WHERE (created_at, id) > (:after_at, :after_id)", "ASC"
            params.update(after_at=after.created_at, after_id=after.id)
        query = " UNION ALL ".join(
            f"(SELECT * FROM ({select}) e{where} ORDER BY created_at {order}, id {order} LIMIT :limit)"
            for select in _EVENT_SOURCES
        )
        with self.database.connect() as conn:
            rows = conn.execute(text(f"{query} ORDER BY 1 {order}, 2 {order} LIMIT :limit"), params).all()
        events = [
            TrailEvent(
                at=r.created_at, id=r.id, table=r.tbl, kind=r.kind, name=r.name, status=r.status, cycle_id=r.cycle
            )
            for r in rows
        ]
        return events if after is not None else events[::-1]

    def trail_head(self) -> TrailHead:
        """The sealed chain's head as the database records it, and how many rows wait to be sealed (no verifying)."""
        with self.database.connect() as conn:
            row = conn.execute(text(_TRAIL_HEAD)).one()
        return TrailHead(
            seq=int(row.seq or 0), chain_hash=bytes(row.chain_hash or b"").hex(), pending=int(row.pending or 0)
        )

    def timeline(self, cycle_id: uuid.UUID) -> list[TimelineEntry]:
        """The cycle's start, its decisions, its tool calls (start and outcome) and its completion, in order.

        Empty when there is no such cycle.
        """
        with self.database.connect() as conn:
            rows = conn.execute(text(_TIMELINE), {"cycle": cycle_id}).all()
        return [
            TimelineEntry(
                at=r.created_at, table=r.tbl, id=r.id, kind=r.kind, status=r.status, name=r.name, detail=r.detail
            )
            for r in rows
        ]

    def tool_calls(
        self,
        *,
        cycle_id: uuid.UUID | None = None,
        tool_name: str | None = None,
        status: str | None = None,
        before: Cursor | None = None,
        limit: int = 20,
    ) -> list[ToolCallSummary]:
        """A page of tool calls, newest first: in one cycle, of one tool and/or in one status (`started`: running
        or dangling). `before`: the `cursor` of the last call of the previous page.
        """
        where, params = _page_filter(before, limit, status)
        if cycle_id is not None:
            where += " AND s.cycle_id = :cycle_id"
            params["cycle_id"] = cycle_id
        if tool_name is not None:
            check_text(tool_name, "tool name")
            where += " AND s.tool_name = :tool_name"
            params["tool_name"] = tool_name
        return [
            ToolCallSummary(
                id=r.id,
                tool_name=r.tool_name,
                cycle_id=r.cycle_id,
                status=r.status,
                input=r.input,
                output=r.output,
                error=r.error,
                duration_ms=r.duration_ms,
                started_at=r.started_at,
                ended_at=r.ended_at,
            )
            for r in self._page(_TOOL_CALLS, where, params)
        ]

    def _page(self, query: str, where: str, params: dict[str, Any]) -> list[Any]:
        """One page of `query` (start rows `s` joined to their completion `c`), newest first."""
        with self.database.connect() as conn:
            return list(
                conn.execute(text(f"{query}{where} ORDER BY s.created_at DESC, s.id DESC LIMIT :limit"), params).all()
            )


def _page_filter(before: Cursor | None, limit: int, status: str | None) -> tuple[str, dict[str, Any]]:
    """The keyset condition and the parameters every page shares (checked: they may come from a URL)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit {limit} is outside 1..{MAX_LIMIT}")
    if status is not None and status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {STATUSES}")
    params: dict[str, Any] = {"limit": limit}
    where = ""
    if status is not None:
        where += " AND coalesce(c.status, 'started') = :status"
        params["status"] = status
    if before is not None:
        where += " AND (s.created_at, s.id) < (:before_at, :before_id)"
        params.update(before_at=before.created_at, before_id=before.id)
    return where, params


def _cycle(row: Any) -> CycleSummary:
    return CycleSummary(
        id=row.id,
        agent=row.agent,
        goals=row.goals,
        status=row.status,
        started_at=row.started_at,
        closed_at=row.closed_at,
        outcomes=row.outcomes,
    )
