"""Reading the audit trail for display: the one place `audit show`, `run --timeline` and a web UI read it.

    queries = AuditQueries(database)
    page = queries.cycles(agent="jarvis", limit=20)
    older = queries.cycles(agent="jarvis", before=page[-1].cursor, limit=20)

Writers (`PlanningLog`, `ToolCallLog`) are bound to one agent; reading is not, so it lives here.
Lists are newest first and paged by keyset, never by OFFSET: `before` is the (created_at, id) of
the last start row of the previous page, so a page boundary between rows with equal timestamps
loses or repeats nothing, and rows appended meanwhile do not shift later pages.

Every read is `FROM ONLY public.<table>`: rows in an inheritance child a superuser attached are
never shown. Every audit row shown (cycles, tool calls, timelines) is a *verified read*
(`jarvis.db.audit.verified`): PostgreSQL re-hashes it and checks it against its chain link in the
query that reads it, and it carries `integrity` ("verified", "unsealed", "flagged", "tampered" or
"unverifiable": verify's catalog and built-in checks, run first in the same snapshot, found that
the checks themselves cannot be trusted, and `why` says why in one line); a tampered or
unverifiable row's values are withheld here (None), so no caller can show them as data. A cycle's timeline is
read a page at a time (keyset on (created_at, id)), its values optionally cut in SQL (`preview`),
so a cycle of any size is shown in bounded memory and time.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text

from jarvis.db.audit.verified import TAMPERED, UNVERIFIABLE, WITHHELD, Reader, verified_reading, worst
from jarvis.db.base import STATUSES
from jarvis.db.engine import Database
from jarvis.db.jsonb import check_text

MAX_LIMIT = 10_000
"""The most rows one call returns: a page, not the whole trail."""
MAX_PREVIEW = 100_000
"""The longest preview of one value a timeline page may ask for."""


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
    """One row of a cycle's story, as `jarvis audit show` prints it.

    `integrity`: "verified", "unsealed", "flagged", "tampered" or "unverifiable"; a tampered or
    unverifiable row has no status, name or detail (withheld), and its kind says only its table
    ("cycle.tampered", "decision", "tool.unverifiable"). `detail_chars`: set when `detail` is a
    preview (the first characters of the value's JSON text, cut in SQL): the length of the whole
    text. `why`: for an unverifiable row, one line saying why (`Reader.why`).
    """

    at: datetime
    table: str
    id: uuid.UUID
    kind: str
    status: str | None
    name: str | None
    detail: Any
    integrity: str
    detail_chars: int | None = None
    why: str | None = None

    @property
    def cursor(self) -> Cursor:
        """Pass as `after` to read the timeline's next page."""
        return Cursor(self.at, self.id)


@dataclass(frozen=True, kw_only=True)
class CycleSummary:
    """A planning cycle as one item: its start row with the outcome of its completion row (if any).

    `integrity`: the worse of the two rows'. A tampered start row withholds agent and goals (None),
    a tampered completion withholds the outcomes, and its status reads "tampered".
    """

    id: uuid.UUID
    agent: str | None
    goals: Any
    status: str
    started_at: datetime
    closed_at: datetime | None
    outcomes: Any
    integrity: str
    why: str | None = None

    @property
    def cursor(self) -> Cursor:
        """Pass as `before` to list the cycles after this one (older)."""
        return Cursor(self.started_at, self.id)


@dataclass(frozen=True, kw_only=True)
class ToolCallSummary:
    """A tool call as one item: its start row (input) with its outcome row (status, output or error), if any.

    `integrity`: the worse of the two rows'. A tampered start row withholds tool name and input
    (None), a tampered outcome withholds output, error and duration, and its status reads "tampered".
    """

    id: uuid.UUID
    tool_name: str | None
    cycle_id: uuid.UUID | None
    status: str
    input: Any
    output: Any
    error: str | None
    duration_ms: int | None
    started_at: datetime
    ended_at: datetime | None
    integrity: str
    why: str | None = None

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
    "c.id AS closed_id, c.created_at AS closed_at, c.outcomes, {start} AS start_integrity, "
    "{end} AS end_integrity FROM ONLY public.planning_cycles s "
    "LEFT JOIN ONLY public.planning_cycles c ON c.parent_id = s.id WHERE s.parent_id IS NULL"
)

_TOOL_CALLS = (
    "SELECT s.id, s.tool_name, s.cycle_id, coalesce(c.status, 'started') AS status, {values}, "
    "c.duration_ms, c.id AS ended_id, s.created_at AS started_at, c.created_at AS ended_at, "
    "{start} AS start_integrity, {end} AS end_integrity FROM ONLY public.tool_calls s "
    "LEFT JOIN ONLY public.tool_calls c ON c.parent_id = s.id WHERE s.parent_id IS NULL"
)

_TIMELINE_KEYS = """
    SELECT k.created_at, k.tbl, k.id FROM (
      (SELECT x.created_at, 'planning_cycles'::pg_catalog.text AS tbl, x.id FROM ONLY public.planning_cycles x
        WHERE (x.id = %(cycle)s OR x.parent_id = %(cycle)s){where_x} ORDER BY 1, 3 LIMIT %(limit)s)
      UNION ALL
      (SELECT x.created_at, 'decision_log', x.id FROM ONLY public.decision_log x
        WHERE x.cycle_id = %(cycle)s{where_x} ORDER BY 1, 3 LIMIT %(limit)s)
      UNION ALL
      (SELECT x.created_at, 'tool_calls', x.id FROM ONLY public.tool_calls x
        WHERE x.cycle_id = %(cycle)s AND x.parent_id IS NULL{where_x} ORDER BY 1, 3 LIMIT %(limit)s)
      UNION ALL
      (SELECT c.created_at, 'tool_calls', c.id FROM ONLY public.tool_calls s JOIN ONLY public.tool_calls c
        ON c.parent_id = s.id WHERE s.cycle_id = %(cycle)s AND s.parent_id IS NULL{where_c} ORDER BY 1, 3
        LIMIT %(limit)s)
    ) k ORDER BY 1, 3 LIMIT %(limit)s
"""
"""A page of a cycle's rows, keys only: starts and completions of tool calls are two branches, each served by an
index (the per-cycle start-row index, then the one-completion index). Completions carry no cycle id (a check
constraint), so a start row is exactly a row with this cycle id. Values are read for this page only."""

_TIMELINE = """
    SELECT p.created_at, p.tbl, p.id, v.kind, v.status, v.name, v.detail, v.chars, v.integrity
      FROM ({keys}) p CROSS JOIN LATERAL (
        SELECT CASE WHEN x.parent_id IS NULL THEN 'cycle.opened' ELSE 'cycle.closed' END AS kind, x.status,
               x.agent AS name, {detail_cycle}, {integrity_cycle} AS integrity
          FROM ONLY public.planning_cycles x{value_cycle} WHERE p.tbl = 'planning_cycles' AND x.id = p.id
        UNION ALL
        SELECT 'decision', NULL, x.decision, {detail_decision}, {integrity_decision}
          FROM ONLY public.decision_log x{value_decision} WHERE p.tbl = 'decision_log' AND x.id = p.id
        UNION ALL
        SELECT CASE WHEN x.parent_id IS NULL THEN 'tool.started' ELSE 'tool.' || x.status END, x.status,
               x.tool_name, {detail_call}, {integrity_call}
          FROM ONLY public.tool_calls x{value_call} WHERE p.tbl = 'tool_calls' AND x.id = p.id
      ) v
     ORDER BY 1, 3
"""

_DETAILS = {
    "cycle": "coalesce(x.goals, x.outcomes)",
    "decision": "x.reasoning",
    "call": "CASE WHEN x.parent_id IS NULL THEN x.input WHEN x.error IS NOT NULL THEN pg_catalog.to_jsonb(x.error) "
    "ELSE x.output END",
}
"""What a timeline row shows as its detail, per table."""

_TIMELINE_TABLES = {"cycle": "planning_cycles", "decision": "decision_log", "call": "tool_calls"}

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
        with verified_reading(self.database) as reader:
            rows = reader.rows(f"{_cycles_sql(reader)} AND s.id = %(id)s", {"id": cycle_id})
            return None if not rows else _cycle(reader, rows[0])

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
            where += " AND s.agent = %(agent)s"
            params["agent"] = agent
        if since is not None:
            where += " AND s.created_at >= %(since)s"
            params["since"] = since
        if until is not None:
            where += " AND s.created_at < %(until)s"
            params["until"] = until
        with verified_reading(self.database) as reader:
            return [_cycle(reader, row) for row in _page(reader, _cycles_sql(reader), where, params)]

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

    def timeline(
        self,
        cycle_id: uuid.UUID,
        *,
        after: Cursor | None = None,
        limit: int | None = None,
        preview: int | None = None,
        row_id: uuid.UUID | None = None,
    ) -> list[TimelineEntry]:
        """The cycle's start, its decisions, its tool calls (start and outcome) and its completion, in order.

        Empty when there is no such cycle. `after` and `limit`: one page (pass the last entry's
        `cursor` for the next); without `limit`, every row. `preview`: each detail is the first
        `preview` characters of the value's indented JSON text, cut in PostgreSQL (`detail_chars`
        holds the whole length), so a page never carries whole large values. `row_id`: only that
        row of the cycle (its full value).
        """
        if limit is not None and not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit {limit} is outside 1..{MAX_LIMIT}")
        if preview is not None and not 0 <= preview <= MAX_PREVIEW:
            raise ValueError(f"preview {preview} is outside 0..{MAX_PREVIEW}")
        params: dict[str, Any] = {"cycle": cycle_id, "limit": limit}
        where_x = where_c = ""
        if after is not None:
            where_x = " AND (x.created_at, x.id) > (%(after_at)s, %(after_id)s)"
            where_c = " AND (c.created_at, c.id) > (%(after_at)s, %(after_id)s)"
            params.update(after_at=after.created_at, after_id=after.id)
        if row_id is not None:
            where_x += " AND x.id = %(row)s"
            where_c += " AND c.id = %(row)s"
            params["row"] = row_id
        keys = _TIMELINE_KEYS.format(where_x=where_x, where_c=where_c)
        with verified_reading(self.database) as reader:
            parts: dict[str, str] = {"keys": keys}
            for short, table in _TIMELINE_TABLES.items():
                parts[f"integrity_{short}"] = reader.integrity(table)
                if preview is None:
                    parts[f"detail_{short}"] = f"{_DETAILS[short]} AS detail, NULL::pg_catalog.int8 AS chars"
                    parts[f"value_{short}"] = ""
                else:
                    parts[
                        f"detail_{short}"
                    ] = f"pg_catalog.left(d.shown, {int(preview)}) AS detail, pg_catalog.length(d.shown) AS chars"
                    parts[
                        f"value_{short}"
                    ] = f" CROSS JOIN LATERAL (SELECT pg_catalog.jsonb_pretty({_DETAILS[short]}) AS shown) d"
            rows = reader.rows(_TIMELINE.format(**parts), params)
            return [_entry(reader, r) for r in rows]

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
            where += " AND s.cycle_id = %(cycle_id)s"
            params["cycle_id"] = cycle_id
        if tool_name is not None:
            check_text(tool_name, "tool name")
            where += " AND s.tool_name = %(tool_name)s"
            params["tool_name"] = tool_name
        with verified_reading(self.database) as reader:
            query = _tool_calls_sql(reader, "s.input, c.output, c.error")
            return [_call(reader, r) for r in _page(reader, query, where, params)]

    def calls_in_cycle(self, cycle_id: uuid.UUID, *, limit: int, error_chars: int = 500) -> list[ToolCallSummary]:
        """The cycle's first `limit` tool calls, oldest first, without their values (a chart draws them).

        Input and output are None and the error is cut to `error_chars` in PostgreSQL: the rows are
        still verified whole, but a page never carries their values.
        """
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit {limit} is outside 1..{MAX_LIMIT}")
        with verified_reading(self.database) as reader:
            values = (
                "NULL::pg_catalog.jsonb AS input, NULL::pg_catalog.jsonb AS output, "
                f"pg_catalog.left(c.error, {int(error_chars)}) AS error"
            )
            rows = reader.rows(
                f"{_tool_calls_sql(reader, values)} AND s.cycle_id = %(cycle)s "
                "ORDER BY s.created_at, s.id LIMIT %(limit)s",
                {"cycle": cycle_id, "limit": limit},
            )
            return [_call(reader, r) for r in rows]


def _page_filter(before: Cursor | None, limit: int, status: str | None) -> tuple[str, dict[str, Any]]:
    """The keyset condition and the parameters every page shares (checked: they may come from a URL)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit {limit} is outside 1..{MAX_LIMIT}")
    if status is not None and status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {STATUSES}")
    params: dict[str, Any] = {"limit": limit}
    where = ""
    if status is not None:
        where += " AND coalesce(c.status, 'started') = %(status)s"
        params["status"] = status
    if before is not None:
        where += " AND (s.created_at, s.id) < (%(before_at)s, %(before_id)s)"
        params.update(before_at=before.created_at, before_id=before.id)
    return where, params


def _page(reader: Reader, query: str, where: str, params: dict[str, Any]) -> list[Any]:
    """One page of `query` (start rows `s` joined to their completion `c`), newest first."""
    return reader.rows(f"{query}{where} ORDER BY s.created_at DESC, s.id DESC LIMIT %(limit)s", params)


def _cycles_sql(reader: Reader) -> str:
    table = "planning_cycles"
    return _CYCLES.format(start=reader.integrity(table, "s"), end=reader.integrity(table, "c"))


def _tool_calls_sql(reader: Reader, values: str) -> str:
    table = "tool_calls"
    return _TOOL_CALLS.format(values=values, start=reader.integrity(table, "s"), end=reader.integrity(table, "c"))


def _cycle(reader: Reader, row: Any) -> CycleSummary:
    start = reader.settle("planning_cycles", row.id, row.start_integrity)
    end = reader.settle("planning_cycles", row.closed_id, row.end_integrity)
    start_ok, end_ok = start not in WITHHELD, end not in WITHHELD
    return CycleSummary(
        id=row.id,
        agent=row.agent if start_ok else None,
        goals=row.goals if start_ok else None,
        status=row.status if end_ok else str(end),
        started_at=row.started_at,
        closed_at=row.closed_at,
        outcomes=row.outcomes if end_ok else None,
        integrity=worst(start, end),
        why=reader.why,
    )


def _call(reader: Reader, row: Any) -> ToolCallSummary:
    start = reader.settle("tool_calls", row.id, row.start_integrity)
    end = reader.settle("tool_calls", row.ended_id, row.end_integrity)
    start_ok, end_ok = start not in WITHHELD, end not in WITHHELD
    return ToolCallSummary(
        id=row.id,
        tool_name=row.tool_name if start_ok else None,
        cycle_id=row.cycle_id,
        status=row.status if end_ok else str(end),
        input=row.input if start_ok else None,
        output=row.output if end_ok else None,
        error=row.error if end_ok else None,
        duration_ms=row.duration_ms if end_ok else None,
        started_at=row.started_at,
        ended_at=row.ended_at,
        integrity=worst(start, end),
        why=reader.why,
    )


_WITHHELD_KINDS = {"planning_cycles": "cycle.{}", "decision_log": "decision", "tool_calls": "tool.{}"}
"""A withheld row's kind, from its table alone (a cycle's opened/closed and a call's status come from its values)."""


def _entry(reader: Reader, row: Any) -> TimelineEntry:
    """A timeline row; a tampered or unverifiable one keeps only its table, id and place (values withheld)."""
    state = reader.settle(row.tbl, row.id, row.integrity) or TAMPERED
    if state in WITHHELD:
        return TimelineEntry(
            at=row.created_at,
            table=row.tbl,
            id=row.id,
            kind=_WITHHELD_KINDS.get(row.tbl, "{}").format(state),
            status=None,
            name=None,
            detail=None,
            integrity=state,
            why=reader.why if state == UNVERIFIABLE else None,
        )
    return TimelineEntry(
        at=row.created_at,
        table=row.tbl,
        id=row.id,
        kind=row.kind,
        status=row.status,
        name=row.name,
        detail=row.detail,
        integrity=state,
        detail_chars=row.chars,
    )
