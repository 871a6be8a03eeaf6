"""The asyncio twins of `ToolCallLog` and `PlanningLog`: the same rows, rules and errors, awaited.

    log = AsyncToolCallLog(database)
    async with log.record("http_get", {"url": url}) as call:
        call.succeed(await fetch(url))

    @log.audited()
    async def fetch(url: str) -> str: ...

Everything but the sending is the sync module's (jarvis.db.audit.tool_calls, .planning,
.append): the rows, their checks, the append's statements and retries, how a refusal is
named. The start row commits before the body (or the decorated coroutine) runs; the
outcome after it finished. A cancelled task (`asyncio.CancelledError`, `asyncio.timeout`,
an anyio cancel scope) gets a `cancelled` outcome. Every outcome row (a tool call's
completion, `succeeded` too, and a cycle's close) is written in a shielded task so the
cancellation cannot also cancel its record (`despite_cancellation`), and the cancellation
is re-raised once the row committed.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Table

from jarvis.db.aio.engine import AsyncDatabase
from jarvis.db.audit.append import (
    CONNECTION_LOST,
    AuditEvent,
    AuditRuleViolation,
    append_steps,
    retry_delay,
)
from jarvis.db.audit.ids import uuid7
from jarvis.db.audit.planning import (
    DECISION_LOG,
    OPEN_CYCLE_SQL,
    PLANNING_CYCLES,
    EventOf,
    PlanningLogBase,
    Refusal,
    already_open,
    close_refused,
    close_row,
    closed_event,
    decided_event,
    decision_refused,
    decision_row,
    is_second_open,
    open_row,
    opened_event,
)
from jarvis.db.audit.tool_calls import (
    CANCELLATIONS,
    LANDED_SQL,
    TOOL_CALLS,
    ActiveCall,
    ToolCallStart,
    check_completion,
    completed_event,
    completion_refused,
    completion_row,
    describe_error,
    interrupted_outcome,
    start_row,
    started_event,
)
from jarvis.db.base import CompletionStatus

log = logging.getLogger("jarvis.audit")

P = ParamSpec("P")
R = TypeVar("R")

AsyncAuditListener = Callable[[AuditEvent], Awaitable[None] | None]
"""Told about each committed row; may be a plain function or a coroutine function (awaited in turn)."""


async def append_row(
    database: AsyncDatabase, table: Table, values: dict[str, Any], *, outcome: bool = False
) -> datetime:
    """`jarvis.db.audit.append.append_row`, awaited: the same statements, the same retries after a lost connection.

    `outcome`: an outcome row waits for a busy pool however long it takes, never PoolExhaustedError, and
    for a lock another session holds (each statement waits LOCK_WAIT and is sent again, stamped afresh).
    """
    for attempt in itertools.count():
        try:
            created_at = await database.run_autocommit(
                append_steps(database, table, values, outcome=outcome), patient=outcome
            )
            database.wake_sealer()  # sealed and signed within JARVIS_SEAL_INTERVAL, in a thread of its own
            return created_at
        except CONNECTION_LOST as error:
            await asyncio.sleep(retry_delay(attempt, table, error))
    raise AssertionError("unreachable")


async def despite_cancellation(work: Coroutine[Any, Any, R]) -> R:
    """Run `work` to its end even if this task is cancelled (again) meanwhile: an outcome row is never lost.

    A cancellation that arrives while it runs is raised once `work` is done (anyio's cancel
    scopes deliver theirs again and again; plain asyncio's only once).
    """
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            cancelled = True  # ours, even if `work` finished before this task resumed: raised below
    result = task.result()  # may raise the work's own error
    if cancelled:
        raise asyncio.CancelledError
    return result


async def announce(listeners: Sequence[AsyncAuditListener], event: AuditEvent) -> None:
    """Tell listeners about a committed row; a failing listener never fails the append."""
    for listener in listeners:
        try:
            told = listener(event)
            if told is not None:
                await told
        except Exception:
            log.exception("audit listener %r failed for %s %s", listener, event.table, event.row_id)


class AsyncToolCallLog:
    """`ToolCallLog` for asyncio: write-ahead start row, then exactly one outcome row."""

    def __init__(self, database: AsyncDatabase, *, listeners: Sequence[AsyncAuditListener] = ()) -> None:
        self.database = database
        self.listeners = list(listeners)

    async def start(
        self, tool_name: str, input: Any, *, cycle_id: uuid.UUID | None = None, call_id: uuid.UUID | None = None
    ) -> ToolCallStart:
        """Durably record the intent to run a tool (committed before this returns)."""
        start, values = start_row(tool_name, input, cycle_id=cycle_id, call_id=call_id)
        created_at = await append_row(self.database, TOOL_CALLS, values)  # type: ignore[arg-type]
        await announce(self.listeners, started_event(start, created_at))
        return replace(start, started_at=time.monotonic())  # the duration counts from the commit

    async def record_completion(
        self,
        start: ToolCallStart,
        status: CompletionStatus,
        *,
        output: Any = None,
        error: str | None = None,
        completion_id: uuid.UUID | None = None,
        duration_ms: int | None = None,
    ) -> uuid.UUID:
        """Append the outcome row for `start` even if cancelled meanwhile; the database refuses a second one."""
        check_completion(start, status, output)
        return await despite_cancellation(
            self._append_completion(start, completion_row(start, status, output, error, completion_id, duration_ms))
        )

    async def _append_completion(self, start: ToolCallStart, values: dict[str, Any]) -> uuid.UUID:
        """The append itself, for values already checked (record()'s output was checked by succeed())."""
        try:
            created_at = await append_row(self.database, TOOL_CALLS, values, outcome=True)  # type: ignore[arg-type]
        except AuditRuleViolation as violation:
            raise completion_refused(start, violation) from None
        await announce(self.listeners, completed_event(start, values, created_at))
        row_id: uuid.UUID = values["id"]
        return row_id

    @asynccontextmanager
    async def record(
        self, tool_name: str, input: Any, *, cycle_id: uuid.UUID | None = None
    ) -> AsyncIterator[ActiveCall]:
        """Write-ahead start row, run the body, then one outcome row; exceptions (and cancellation) propagate."""
        call_id = uuid7()
        try:
            call = ActiveCall(await self.start(tool_name, input, cycle_id=cycle_id, call_id=call_id))
        except CANCELLATIONS as interruption:
            # Cancelled around the start row's commit: if it landed, it gets its `cancelled` outcome now.
            start = ToolCallStart(id=call_id, tool_name=tool_name, cycle_id=cycle_id)
            await despite_cancellation(self._cancel_if_landed(start, interruption))
            raise
        try:
            yield call
        except BaseException as raised:
            status, error = interrupted_outcome(raised)
            await despite_cancellation(
                self._append_completion(call.start, completion_row(call.start, status, None, error))
            )
            raise
        # The tool ran: a cancellation while its `succeeded` row is written must not lose that row.
        await despite_cancellation(
            self._append_completion(call.start, completion_row(call.start, "succeeded", call.output, None))
        )

    async def _cancel_if_landed(self, start: ToolCallStart, interruption: BaseException) -> None:
        if await self.database.read_one(LANDED_SQL, (start.id,)) is not None:
            await self.record_completion(start, "cancelled", error=describe_error(interruption))

    def audited(
        self, tool_name: str | None = None
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Coroutine[Any, Any, R]]]:
        """Decorator for `async def` tools: the start row commits before the coroutine runs, the outcome after it."""

        def decorate(function: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
            name = tool_name or str(getattr(function, "__name__", function))
            if not inspect.iscoroutinefunction(function):
                raise TypeError(
                    f"{name} is not an async def function; AsyncToolCallLog.audited() awaits the tools it records. "
                    "Fix: decorate a synchronous tool with ToolCallLog.audited() (or run it with asyncio.to_thread)"
                )

            @functools.wraps(function)
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                async with self.record(name, {"args": list(args), "kwargs": dict(kwargs)}) as call:
                    result = await function(*args, **kwargs)
                    call.succeed(result)
                return result

            return wrapper

        return decorate


class AsyncPlanningLog(PlanningLogBase[AsyncDatabase, AsyncAuditListener]):
    """`PlanningLog` for asyncio: open (goals) -> decisions -> close (outcomes); one open cycle per agent."""

    async def open_cycle(self, goals: Any, *, cycle_id: uuid.UUID | None = None) -> uuid.UUID:
        """Record the start of a cycle (committed before this returns); a second open one is CycleAlreadyOpenError."""
        values = open_row(self.agent, goals, cycle_id)
        try:
            created_at = await append_row(self.database, PLANNING_CYCLES, values)  # type: ignore[arg-type]
        except AuditRuleViolation as error:
            if is_second_open(error):
                raise already_open(self.agent, await self.open_cycle_id()) from None
            raise
        await announce(self.listeners, opened_event(values, created_at))
        row_id: uuid.UUID = values["id"]
        return row_id

    async def record_decision(
        self, cycle_id: uuid.UUID, decision: str, reasoning: Any, *, decision_id: uuid.UUID | None = None
    ) -> uuid.UUID:
        """Record a decision and why, inside an open cycle; a closed or unknown cycle is CycleClosedError."""
        values = decision_row(cycle_id, decision, reasoning, decision_id)
        return await self._append(DECISION_LOG, values, functools.partial(decision_refused, cycle_id), decided_event)

    async def close_cycle(
        self,
        cycle_id: uuid.UUID,
        status: CompletionStatus = "succeeded",
        outcomes: Any = None,
        *,
        completion_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        """Record how the cycle ended, even if cancelled meanwhile; a cycle is closed once only (CycleClosedError)."""
        values = close_row(self.agent, cycle_id, status, outcomes, completion_id)
        refused = functools.partial(close_refused, cycle_id)
        return await despite_cancellation(self._append(PLANNING_CYCLES, values, refused, closed_event, outcome=True))

    async def _append(
        self, table: Any, values: dict[str, Any], refused: Refusal, event: EventOf, *, outcome: bool = False
    ) -> uuid.UUID:
        """Append one row (a refusal is `refused(error)`), then tell the listeners `event`."""
        try:
            created_at = await append_row(self.database, table, values, outcome=outcome)
        except AuditRuleViolation as error:
            raise refused(error) from None
        await announce(self.listeners, event(values, created_at))
        row_id: uuid.UUID = values["id"]
        return row_id

    async def open_cycle_id(self) -> uuid.UUID | None:
        """This agent's cycle that has no completion yet, or None."""
        row = await self.database.read_one(OPEN_CYCLE_SQL, (self.agent,))
        found: uuid.UUID | None = row[0] if row else None
        return found
