"""Planning cycles and tool calls as OpenTelemetry spans (GenAI semantic conventions), with ids from the trail.

Ids. A collector or back-end sees the same span when the same rows are exported again (a batch
export repeated, a live export restarted), because nothing here is random:

- trace id = the first 16 bytes of sha256("jarvis trace" ‖ trail id ‖ cycle id); a tool call
  outside any cycle is a trace of its own, keyed by its call id instead;
- span id = the first 8 bytes of sha256("jarvis span" ‖ trail id ‖ start row id): a cycle's span
  from its start row, a call's from its start row.

The trail id (`trail_info`) keeps two databases, a clone included, from sharing ids.

Spans. `invoke_agent {agent}` per cycle, parent of `execute_tool {tool}` per call made in it. Start
and end are the `created_at` of the start and the completion rows; a cycle or call with no completion
yet has no end and is not a span yet (`ReadyRow.ready`). Status OK when it `succeeded`; ERROR with
`error.type` otherwise (the error's class for a failed call, else the status: `cancelled`,
`abandoned`). Attributes: `gen_ai.operation.name`, `gen_ai.agent.id` and `gen_ai.agent.name` (the
agent name), `gen_ai.conversation.id` (the cycle id), `gen_ai.tool.name`, `gen_ai.tool.call.id`
(the call's start row id), `gen_ai.tool.type`; for a call made through `jarvis mcp proxy` or
`jarvis mcp serve` also `mcp.method.name` ("tools/call") and `mcp.session.id` (the session's agent
name, `mcp-<kind>:<label>#<hex>/<n>`, which is how the trail tells MCP sessions apart). The JSON-RPC
request id and the HTTP `Mcp-Session-Id` are not recorded in the trail, so `mcp.request.id` is
never set. Content (`gen_ai.tool.call.arguments`, `gen_ai.tool.call.result`, a cycle's goals and
outcomes, an error's message) only with `include_content`: it may hold secrets.

Integrity. Every row is a verified read (`AuditQueries`): `jarvis.audit.integrity` is the worse of
a span's two rows ("verified", "unsealed", "flagged", "tampered", "unverifiable"). The values of a
tampered or unverifiable row never become span data: such a start row leaves the span without its
tool or agent name and content; such a completion makes the span ERROR with `error.type` "tampered"
(or "unverifiable") and no result.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util.types import AttributeValue

from jarvis.db.audit import AuditQueries, Cursor, CycleSummary, ToolCallSummary
from jarvis.db.audit.verified import TAMPERED, UNSEALED
from jarvis.db.audit.witnessed import trail_id
from jarvis.db.engine import Database
from jarvis.mcp.sessions import process_of

SCOPE: Final = InstrumentationScope("jarvis.otel", "0.1.0")
PAGE: Final = 500
"""Rows read per query (one verified read each)."""
OVERLAP: Final = timedelta(seconds=5)
"""A row's created_at is taken before its commit: a live export re-reads this much before its horizon."""
WITHHELD_STATES: Final = frozenset({TAMPERED, "unverifiable"})
"""A row in one of these states is not shown as data: its values are withheld (verified reads)."""
MAX_CONTENT: Final = 64_000
"""The longest content attribute value, in characters (collectors cap attribute sizes too)."""
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _digest(label: bytes, trail: uuid.UUID, key: uuid.UUID) -> bytes:
    return hashlib.sha256(label + b"\x00" + trail.bytes + key.bytes).digest()


def trace_id_of(trail: uuid.UUID, key: uuid.UUID) -> int:
    """The trace of a cycle (key: its id), or of a call outside any cycle (key: its id)."""
    return int.from_bytes(_digest(b"jarvis trace", trail, key)[:16], "big") or 1  # 0 is no valid trace id


def span_id_of(trail: uuid.UUID, row_id: uuid.UUID) -> int:
    """The span of a cycle's or a call's start row."""
    return int.from_bytes(_digest(b"jarvis span", trail, row_id)[:8], "big") or 1


def nanos(at: datetime) -> int:
    """Nanoseconds since the epoch, exactly (no float rounding of microseconds)."""
    return (at - _EPOCH) // timedelta(microseconds=1) * 1000


def _content(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= MAX_CONTENT else text[: MAX_CONTENT - 1] + "…"


def _error_type(status: str, error: str | None) -> str:
    """`error.type`: a failed call's exception class (the recorded error is `Class: message`), else its status."""
    if status == "failed" and error:
        return error.split(":", 1)[0].strip()[:200] or status
    return status


class SpanMapper:
    """Turns cycle and tool-call summaries into `ReadableSpan`s of one trail."""

    def __init__(self, trail: uuid.UUID, *, include_content: bool = False) -> None:
        self.trail = trail
        self.include_content = include_content
        # service.instance.id is the trail's (the SDK would draw a random one): the same rows, the same resource.
        self.resource = Resource.create(
            {"service.name": "jarvis", "service.instance.id": str(trail), "jarvis.trail.id": str(trail)}
        )

    def context(self, trace_key: uuid.UUID, row_id: uuid.UUID) -> SpanContext:
        return SpanContext(
            trace_id=trace_id_of(self.trail, trace_key),
            span_id=span_id_of(self.trail, row_id),
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )

    def cycle_span(self, cycle: CycleSummary) -> ReadableSpan:
        """The `invoke_agent` span of a closed cycle (its `closed_at` is set)."""
        assert cycle.closed_at is not None, "an open cycle has no end yet"
        attributes: dict[str, AttributeValue] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.conversation.id": str(cycle.id),
            "jarvis.audit.integrity": cycle.integrity,
            "jarvis.cycle.status": cycle.status,
        }
        if cycle.agent is not None:  # None: the start row is tampered, its agent withheld
            attributes["gen_ai.agent.id"] = attributes["gen_ai.agent.name"] = cycle.agent
            attributes.update(_mcp(cycle.agent, method=False))
        if self.include_content:
            if cycle.goals is not None:
                attributes["jarvis.cycle.goals"] = _content(cycle.goals)
            if cycle.outcomes is not None:
                attributes["jarvis.cycle.outcomes"] = _content(cycle.outcomes)
        status = self._status(cycle.status, None, attributes)
        return ReadableSpan(
            name=f"invoke_agent {cycle.agent}" if cycle.agent is not None else "invoke_agent",
            context=self.context(cycle.id, cycle.id),
            parent=None,
            resource=self.resource,
            attributes=attributes,
            kind=SpanKind.INTERNAL,
            status=status,
            start_time=nanos(cycle.started_at),
            end_time=nanos(cycle.closed_at),
            instrumentation_scope=SCOPE,
        )

    def call_span(self, call: ToolCallSummary, agent: str | None) -> ReadableSpan:
        """The `execute_tool` span of a completed call; `agent`: its cycle's agent name, if known."""
        assert call.ended_at is not None, "a running call has no end yet"
        attributes: dict[str, AttributeValue] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.call.id": str(call.id),
            "gen_ai.tool.type": "function",
            "jarvis.audit.integrity": call.integrity,
            "jarvis.tool.status": call.status,
        }
        if call.tool_name is not None:
            attributes["gen_ai.tool.name"] = call.tool_name
        if call.cycle_id is not None:
            attributes["gen_ai.conversation.id"] = str(call.cycle_id)
        if agent is not None:
            attributes["gen_ai.agent.id"] = attributes["gen_ai.agent.name"] = agent
            attributes.update(_mcp(agent, method=True))
        if self.include_content:
            if call.input is not None:  # None also when withheld (a tampered row)
                attributes["gen_ai.tool.call.arguments"] = _content(call.input)
            if call.output is not None:
                attributes["gen_ai.tool.call.result"] = _content(call.output)
        status = self._status(call.status, call.error, attributes)
        trace_key = call.cycle_id if call.cycle_id is not None else call.id
        return ReadableSpan(
            name=f"execute_tool {call.tool_name}" if call.tool_name is not None else "execute_tool",
            context=self.context(trace_key, call.id),
            parent=self.context(call.cycle_id, call.cycle_id) if call.cycle_id is not None else None,
            resource=self.resource,
            attributes=attributes,
            kind=SpanKind.INTERNAL,
            status=status,
            start_time=nanos(call.started_at),
            end_time=nanos(call.ended_at),
            instrumentation_scope=SCOPE,
        )

    def _status(self, status: str, error: str | None, attributes: dict[str, AttributeValue]) -> Status:
        """OK for `succeeded`; else ERROR, with `error.type` set (the message only with content)."""
        if status == "succeeded":
            return Status(StatusCode.OK)
        if status in WITHHELD_STATES:
            attributes["error.type"] = status
            return Status(StatusCode.ERROR, f"{status.upper()}: the completion row's values are withheld")
        attributes["error.type"] = _error_type(status, error)
        message = error if self.include_content and error else str(attributes["error.type"])
        return Status(StatusCode.ERROR, message[:MAX_CONTENT])


def _mcp(agent: str, *, method: bool) -> dict[str, AttributeValue]:
    """The MCP attributes of a session's cycle or call (empty for an agent that is not an MCP session)."""
    if process_of(agent) is None:
        return {}
    attributes: dict[str, AttributeValue] = {"mcp.session.id": agent}
    if method:
        attributes["mcp.method.name"] = "tools/call"
    return attributes


@dataclass(frozen=True)
class ReadyRow:
    """A span to export, with what marks it exported (`key`) and how far back it starts."""

    kind: Literal["cycle", "call"]
    key: uuid.UUID
    started_at: datetime
    span: ReadableSpan
    tampered: bool


@dataclass
class _Window:
    """What one kind of span (cycles or calls) still has to look at: rows started after `horizon`."""

    horizon: datetime | None = None
    exported: dict[uuid.UUID, datetime] = field(default_factory=dict)
    waiting: list[datetime] = field(default_factory=list)
    newest: datetime | None = None

    @property
    def lower(self) -> datetime | None:
        return None if self.horizon is None else self.horizon - OVERLAP

    def seen(self, started_at: datetime, ready: bool) -> None:
        if not ready:
            self.waiting.append(started_at)
        self.newest = started_at if self.newest is None else max(self.newest, started_at)

    def advance(self) -> int:
        """After a pass: the horizon moves to the oldest row still waiting (or the newest seen); returns the
        number waiting. Exported ids older than the re-read window are forgotten."""
        waiting = len(self.waiting)
        if self.waiting:
            self.horizon = min(self.waiting)
        elif self.newest is not None:
            self.horizon = self.newest
        self.waiting, self.newest = [], None
        lower = self.lower
        if lower is not None:
            self.exported = {key: at for key, at in self.exported.items() if at >= lower}
        return waiting


class TrailSpans:
    """Reads the trail a window at a time and yields the spans that are ready and not exported yet.

    `sealed_only` (live mode): a span is ready when both its rows are sealed (their integrity is
    final); otherwise (a batch export) when its completion row exists. Call `exported(row)` once a
    span was accepted; a pass (`ready()`) then never yields it again, and the next pass re-reads
    only rows started after the oldest span still waiting (less `OVERLAP`).
    """

    def __init__(self, database: Database, *, include_content: bool = False, sealed_only: bool = False) -> None:
        self.queries = AuditQueries(database)
        self.mapper = SpanMapper(uuid.UUID(trail_id(database)), include_content=include_content)
        self.sealed_only = sealed_only
        self.cycles = _Window()
        self.calls = _Window()
        self.agents: dict[uuid.UUID, str | None] = {}
        self.waiting = 0
        """Cycles and calls the last pass found not ready (open, or not sealed yet in live mode)."""

    def ready(self) -> Iterator[ReadyRow]:
        """One pass: every ready span not exported yet, cycles first."""
        for cycle in self._cycles():
            self.agents[cycle.id] = cycle.agent
            ready = cycle.closed_at is not None and not (self.sealed_only and cycle.integrity == UNSEALED)
            self.cycles.seen(cycle.started_at, ready)
            if ready and cycle.id not in self.cycles.exported:
                span = self.mapper.cycle_span(cycle)
                yield ReadyRow("cycle", cycle.id, cycle.started_at, span, cycle.integrity in WITHHELD_STATES)
        for call in self._calls():
            ready = call.ended_at is not None and not (self.sealed_only and call.integrity == UNSEALED)
            self.calls.seen(call.started_at, ready)
            if ready and call.id not in self.calls.exported:
                span = self.mapper.call_span(call, self._agent(call.cycle_id))
                yield ReadyRow("call", call.id, call.started_at, span, call.integrity in WITHHELD_STATES)
        self.waiting = self.cycles.advance() + self.calls.advance()
        if len(self.agents) > 100_000:
            self.agents.clear()

    def exported(self, row: ReadyRow) -> None:
        window = self.cycles if row.kind == "cycle" else self.calls
        window.exported[row.key] = row.started_at

    def _agent(self, cycle_id: uuid.UUID | None) -> str | None:
        if cycle_id is None:
            return None
        if cycle_id not in self.agents:
            cycle = self.queries.cycle(cycle_id)
            self.agents[cycle_id] = cycle.agent if cycle is not None else None
        return self.agents[cycle_id]

    def _cycles(self) -> Iterator[CycleSummary]:
        before: Cursor | None = None
        while True:
            page = self.queries.cycles(since=self.cycles.lower, before=before, limit=PAGE)
            yield from page
            if len(page) < PAGE:
                return
            before = page[-1].cursor

    def _calls(self) -> Iterator[ToolCallSummary]:
        lower, before = self.calls.lower, None
        while True:
            page = self.queries.tool_calls(before=before, limit=PAGE)
            for call in page:
                if lower is not None and call.started_at < lower:
                    return
                yield call
            if len(page) < PAGE:
                return
            before = page[-1].cursor
