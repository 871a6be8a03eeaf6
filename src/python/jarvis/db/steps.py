"""The I/O-free core's protocol: an operation is a generator that yields statements and gets their rows back.

    def set_state(...) -> Steps[StateEntry]:
        row = yield Statement(UPDATE_SQL, (value, key, version))
        if row is None:
            actual = yield Statement(VERSION_SQL, (key,))
            raise StateConflictError(key, version, actual and actual[0])
        return entry(row)

Validation, SQL, row building and error mapping live in such generators, once. The
synchronous shells (jarvis.db.*) and the asyncio shells (jarvis.db.aio.*) only send each
`Statement` on their connection and hand back its rows, or the psycopg error it raised,
which the generator may turn into a Jarvis error. psycopg's own sync code is generated
from its async code; here the shared part is the generator, and both shells share the driver
loop below.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, TypeVar

T = TypeVar("T")

Rows = Literal["one", "all", "none"]


@dataclass(frozen=True)
class Statement:
    """One statement to send, and what to hand back: its first row (or None), all rows, or None.

    `in_role` matters only to one-round-trip steps outside a transaction (the append hot path):
    False sends the statement bare, True after the role's statements in one pipeline.
    """

    sql: str
    params: Sequence[Any] = ()
    rows: Rows = "one"
    in_role: bool = True


Steps: TypeAlias = Generator[Statement, Any, T]


@dataclass(frozen=True)
class _Done:
    value: Any


def advance(steps: Steps[Any], result: Any = None, error: BaseException | None = None) -> Statement | _Done:
    """Hand the last statement's result (or error) to the operation: its next statement, or what it returned.

    An error the operation does not catch propagates out of here, unchanged.
    """
    try:
        return steps.send(result) if error is None else steps.throw(error)
    except StopIteration as finished:
        return _Done(finished.value)


async def drive_async(
    steps: Steps[T],
    execute: Callable[[Statement], Awaitable[Any]],
    errors: type[BaseException] | tuple[type[BaseException], ...],
) -> T:
    """Run `steps`, awaiting each statement; `errors` (psycopg.Error) are handed to the operation to map."""
    outcome = advance(steps)
    while isinstance(outcome, Statement):
        try:
            result = await execute(outcome)
        except errors as error:
            outcome = advance(steps, error=error)
        else:
            outcome = advance(steps, result)
    value: T = outcome.value
    return value


def drive(
    steps: Steps[T], execute: Callable[[Statement], Any], errors: type[BaseException] | tuple[type[BaseException], ...]
) -> T:
    """`drive_async` with a blocking `execute`: the one loop, run to its end without an event loop.

    Nothing in it suspends (every await is of a coroutine that returns at once), so a single
    `send(None)` runs it to completion.
    """

    async def at_once(statement: Statement) -> Any:
        return execute(statement)

    coroutine = drive_async(steps, at_once, errors)
    try:
        coroutine.send(None)
    except StopIteration as finished:
        value: T = finished.value
        return value
    coroutine.close()
    raise RuntimeError("drive(): a blocking execute suspended")
