"""The audited tool-call API: write-ahead start row, then exactly one outcome row.

    log = ToolCallLog(database)
    with log.record("http_get", {"url": url}) as call:
        call.succeed(fetch(url))

The start row is committed before the body runs, so a process that dies
inside the tool leaves the intent behind (found later by `dangling`). The
outcome is a second row: `succeeded` with the output, `failed` with the error
(the exception still propagates unchanged), or `cancelled` on interruption.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

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
from jarvis.db.jsonb import ensure_jsonb
from jarvis.db.models import ToolCall

P = ParamSpec("P")
R = TypeVar("R")

# Interruptions, not failures of the tool: recorded as `cancelled`.
CANCELLATIONS = (KeyboardInterrupt, SystemExit, asyncio.CancelledError, GeneratorExit)
MAX_ERROR_LENGTH = 4000
_ASYNC_TOOL = (
    "{name} is asynchronous; ToolCallLog.audited() records synchronous tools only. "
    "Fix: decorate it with AsyncToolCallLog.audited() from jarvis.db.aio, which awaits it between the two rows"
)


class ToolCallAlreadyCompletedError(AuditAppendError):
    """A start row already has its outcome; a second one is refused by the database."""


@dataclass(frozen=True, kw_only=True)
class ToolCallStart:
    """A tool call's start row, as its completion needs it (keyword-only: two fields could swap ids)."""

    id: uuid.UUID
    tool_name: str
    cycle_id: uuid.UUID | None
    started_at: float = field(default_factory=time.monotonic, compare=False)


@dataclass
class ActiveCall:
    """Handed to the body of `record()`; call `succeed(output)` to set what is recorded."""

    start: ToolCallStart
    output: Any = None

    @property
    def id(self) -> uuid.UUID:
        """The start row's id, to link other records to this call while it runs."""
        return self.start.id

    def succeed(self, output: Any) -> None:
        """Set the output recorded when the body returns (checked now, so a bad value fails inside the body)."""
        self.output = ensure_jsonb(output, what=f"output of {self.start.tool_name}")


def describe_error(error: BaseException) -> str:
    """The error as one bounded line for the outcome row: type and message, NULs escaped, at most MAX_ERROR_LENGTH."""
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    text = text.replace("\x00", "\\0")
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"


TOOL_CALLS = ToolCall.__table__
LANDED_SQL = "SELECT 1 FROM ONLY public.tool_calls WHERE id = %s"
"""Whether a start row committed: asked after an interruption around its commit."""


# The rules of a tool call's two rows, without I/O: ToolCallLog and AsyncToolCallLog (jarvis.db.aio) both use them.


def start_row(
    tool_name: str, input: Any, *, cycle_id: uuid.UUID | None, call_id: uuid.UUID | None
) -> tuple[ToolCallStart, dict[str, Any]]:
    """The start row's values, checked, and the `ToolCallStart` its completion will need."""
    ensure_jsonb(input, what="tool input")
    start = ToolCallStart(id=call_id or uuid7(), tool_name=tool_name, cycle_id=cycle_id)
    return start, {"id": start.id, "tool_name": tool_name, "status": "started", "input": input, "cycle_id": cycle_id}


def started_event(start: ToolCallStart, created_at: datetime) -> AuditEvent:
    return AuditEvent(
        table="tool_calls",
        kind="tool_call.started",
        row_id=start.id,
        created_at=created_at,
        status="started",
        cycle_id=start.cycle_id,
        tool_name=start.tool_name,
    )


def check_completion(start: ToolCallStart, status: str, output: Any) -> None:
    """A completion status, and an output that fits a JSONB column; else ValueError / InvalidJsonError."""
    if status not in COMPLETION_STATUSES:
        raise ValueError(f"status {status!r} is not a completion status; use one of {COMPLETION_STATUSES}")
    if output is not None:
        ensure_jsonb(output, what=f"output of {start.tool_name}")


def completion_row(
    start: ToolCallStart,
    status: CompletionStatus,
    output: Any,
    error: str | None,
    completion_id: uuid.UUID | None = None,
    duration_ms: int | None = None,
) -> dict[str, Any]:
    """The completion row's values (checked already); the duration is measured from the start's commit."""
    if duration_ms is None and status != "abandoned":  # abandoned: nobody knows how long it ran
        duration_ms = round((time.monotonic() - start.started_at) * 1000)
    return {
        "id": completion_id or uuid7(),
        "parent_id": start.id,
        "tool_name": start.tool_name,
        "status": status,
        "output": output,
        "error": error,
        "duration_ms": duration_ms,
    }


def completion_refused(start: ToolCallStart, violation: AuditRuleViolation) -> AuditAppendError:
    """What a refused completion means to the caller: a second outcome is ToolCallAlreadyCompletedError."""
    if violation.constraint == "ix_tool_calls_one_completion":
        return ToolCallAlreadyCompletedError(
            f"tool call {start.id} ({start.tool_name}) already has an outcome; it cannot get a second one"
        )
    return violation


def completed_event(start: ToolCallStart, values: dict[str, Any], created_at: datetime) -> AuditEvent:
    return AuditEvent(
        table="tool_calls",
        kind=f"tool_call.{values['status']}",
        row_id=values["id"],
        created_at=created_at,
        status=values["status"],
        parent_id=start.id,
        cycle_id=start.cycle_id,
        tool_name=start.tool_name,
    )


def interrupted_outcome(error: BaseException) -> tuple[CompletionStatus, str]:
    """The outcome of a body that raised: `cancelled` for an interruption (CANCELLATIONS), else `failed`."""
    return ("cancelled" if isinstance(error, CANCELLATIONS) else "failed"), describe_error(error)


def refuse_async_tool(function: Callable[..., Any], name: str) -> None:
    """TypeError for an `async def` tool given to the synchronous decorator (see `ToolCallLog.audited`)."""
    if inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function):
        raise TypeError(_ASYNC_TOOL.format(name=name))


class ToolCallLog:
    def __init__(self, database: Database, *, listeners: Sequence[AuditListener] = ()) -> None:
        self.database = database
        self.listeners = list(listeners)

    def start(
        self, tool_name: str, input: Any, *, cycle_id: uuid.UUID | None = None, call_id: uuid.UUID | None = None
    ) -> ToolCallStart:
        """Durably record the intent to run a tool (committed before this returns)."""
        start, values = start_row(tool_name, input, cycle_id=cycle_id, call_id=call_id)
        created_at = append_row(self.database, TOOL_CALLS, values)  # type: ignore[arg-type]
        if self.listeners:
            announce(self.listeners, started_event(start, created_at))
        return replace(start, started_at=time.monotonic())  # the duration counts from the commit

    def record_completion(
        self,
        start: ToolCallStart,
        status: CompletionStatus,
        *,
        output: Any = None,
        error: str | None = None,
        completion_id: uuid.UUID | None = None,
        duration_ms: int | None = None,
    ) -> uuid.UUID:
        """Append the outcome row for `start`; the database refuses a second one."""
        check_completion(start, status, output)
        return self._append_completion(start, completion_row(start, status, output, error, completion_id, duration_ms))

    def _append_completion(self, start: ToolCallStart, values: dict[str, Any]) -> uuid.UUID:
        """The append itself, for values already checked (record()'s output was checked by succeed()).

        The tool ran (or was given up on): the row waits for a busy pool rather than fail (`append_row`).
        """
        try:
            created_at = append_row(self.database, TOOL_CALLS, values, outcome=True)  # type: ignore[arg-type]
        except AuditRuleViolation as violation:
            raise completion_refused(start, violation) from None
        if self.listeners:
            announce(self.listeners, completed_event(start, values, created_at))
        row_id: uuid.UUID = values["id"]
        return row_id

    @contextmanager
    def record(self, tool_name: str, input: Any, *, cycle_id: uuid.UUID | None = None) -> Iterator[ActiveCall]:
        """Write-ahead start row, run the body, then one outcome row; exceptions propagate unchanged."""
        call_id = uuid7()
        try:
            call = ActiveCall(self.start(tool_name, input, cycle_id=cycle_id, call_id=call_id))
        except CANCELLATIONS as interruption:
            # Interrupted around the start row's commit (a signal between the commit and the body): if the
            # row landed, it gets its `cancelled` outcome now instead of an `abandoned` one later.
            if self._landed(call_id):
                self.record_completion(
                    ToolCallStart(id=call_id, tool_name=tool_name, cycle_id=cycle_id),
                    "cancelled",
                    error=describe_error(interruption),
                )
            raise
        try:
            yield call
        except BaseException as raised:
            status, error = interrupted_outcome(raised)
            self._append_completion(call.start, completion_row(call.start, status, None, error))
            raise
        self._append_completion(call.start, completion_row(call.start, "succeeded", call.output, None))

    def _landed(self, call_id: uuid.UUID) -> bool:
        return self.database.read_one(LANDED_SQL, (call_id,)) is not None

    def audited(self, tool_name: str | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorator: every call of the function is recorded; its arguments are the input, its result the output.

        For synchronous functions only: an `async def` tool would return its coroutine unstarted, and
        the completion would be written before the tool ran. It is refused (TypeError) at decoration;
        a function that returns an awaitable anyway is recorded as failed. Async tools take
        `AsyncToolCallLog.audited()` (jarvis.db.aio), which awaits them between the two rows.
        """

        def decorate(function: Callable[P, R]) -> Callable[P, R]:
            name = tool_name or function.__name__
            refuse_async_tool(function, name)

            @functools.wraps(function)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                with self.record(name, {"args": list(args), "kwargs": dict(kwargs)}) as call:
                    result = function(*args, **kwargs)
                    if inspect.isawaitable(result):
                        if inspect.iscoroutine(result):
                            result.close()  # never started: no "was never awaited" warning
                        raise TypeError(_ASYNC_TOOL.format(name=name))
                    call.succeed(result)
                return result

            return wrapper

        return decorate
