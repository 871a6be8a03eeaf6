"""What only the asyncio API has to prove: async tools, cancellation, many tasks on one loop, a loop never blocked."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

import anyio
import psycopg
import pytest
from sqlalchemy import text

from jarvis.config import Settings, load_settings
from jarvis.db import Database, PoolExhaustedError
from jarvis.db.aio import AsyncDatabase, AsyncPlanningLog, AsyncToolCallLog, open_async_database
from jarvis.db.aio.audit import despite_cancellation
from jarvis_testkit.trail import seal_and_verify

pytestmark = pytest.mark.anyio

T = TypeVar("T")

DEADLINE = 30.0
"""Seconds a condition may take on a loaded 2-core machine before the test calls it failed."""


def statuses_of(database: Database, start_id: uuid.UUID) -> list[str]:
    with database.connect() as conn:
        return list(
            conn.execute(
                text("SELECT status FROM tool_calls WHERE id = :id OR parent_id = :id ORDER BY created_at"),
                {"id": start_id},
            ).scalars()
        )


def outcome_of(database: Database, start_id: uuid.UUID) -> dict[str, object]:
    with database.connect() as conn:
        row = conn.execute(text("SELECT * FROM tool_calls WHERE parent_id = :id"), {"id": start_id}).mappings().one()
        return dict(row)


@pytest.fixture
def log(async_database: AsyncDatabase) -> AsyncToolCallLog:
    return AsyncToolCallLog(async_database)


async def test_the_start_row_commits_before_the_async_tool_runs(log: AsyncToolCallLog, database: Database) -> None:
    seen: list[list[str]] = []

    @log.audited("probe_async")
    async def probe() -> int:
        with database.connect() as conn:  # another connection, while the coroutine runs
            seen.append(
                list(conn.execute(text("SELECT status FROM tool_calls WHERE tool_name = 'probe_async'")).scalars())
            )
        await asyncio.sleep(0)
        return 42

    assert await probe() == 42
    assert seen == [["started"]]


async def test_the_completion_holds_what_the_coroutine_returned(log: AsyncToolCallLog, database: Database) -> None:
    @log.audited()
    async def add(a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    assert await add(2, b=3) == 5
    with database.connect() as conn:
        start_input, output, status = conn.execute(
            text(
                "SELECT s.input, c.output, c.status FROM tool_calls s JOIN tool_calls c ON c.parent_id = s.id "
                "WHERE s.tool_name = 'add'"
            )
        ).one()
    assert (start_input, output, status) == ({"args": [2], "kwargs": {"b": 3}}, 5, "succeeded")


async def test_a_failing_async_tool_is_recorded_failed_and_its_exception_propagates(
    log: AsyncToolCallLog, database: Database
) -> None:
    original = ValueError("bad ticker 'XYZ'")
    async with log.record("quote", {}) as call:
        pass
    with pytest.raises(ValueError) as info:
        async with log.record("quote", {}) as call:
            raise original
    assert info.value is original
    assert outcome_of(database, call.id)["error"] == "ValueError: bad ticker 'XYZ'"
    assert statuses_of(database, call.id) == ["started", "failed"]


async def test_the_async_decorator_refuses_a_synchronous_function(log: AsyncToolCallLog) -> None:
    def plain() -> int:
        return 1

    with pytest.raises(TypeError, match=r"plain is not an async def function.*ToolCallLog\.audited\(\)"):
        log.audited()(plain)  # type: ignore[arg-type]


async def test_a_task_cancelled_mid_tool_records_cancelled_and_stays_cancelled(
    log: AsyncToolCallLog, database: Database
) -> None:
    running = asyncio.Event()
    ids: list[uuid.UUID] = []

    async def tool() -> None:
        async with log.record("hang", {}) as call:
            ids.append(call.id)
            running.set()
            await asyncio.Event().wait()  # never set: only a cancellation ends it

    task = asyncio.create_task(tool())
    async with asyncio.timeout(DEADLINE):
        await running.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert statuses_of(database, ids[0]) == ["started", "cancelled"]
    assert str(outcome_of(database, ids[0])["error"]).startswith("CancelledError")


async def test_an_anyio_cancel_scope_mid_tool_records_cancelled(log: AsyncToolCallLog, database: Database) -> None:
    """anyio cancels again at every await inside a cancelled scope: the outcome row must still be written."""
    running = asyncio.Event()
    ids: list[uuid.UUID] = []
    with anyio.CancelScope() as scope:

        async def cancel_when_running() -> None:
            await running.wait()
            scope.cancel()

        canceller = asyncio.create_task(cancel_when_running())
        async with log.record("scoped", {}) as call:
            ids.append(call.id)
            running.set()
            await asyncio.Event().wait()
    await canceller
    assert scope.cancelled_caught
    assert statuses_of(database, ids[0]) == ["started", "cancelled"]


async def test_a_task_timeout_mid_tool_records_cancelled_and_raises_timeout(
    log: AsyncToolCallLog, database: Database
) -> None:
    @log.audited("slow")
    async def slow() -> None:
        await asyncio.Event().wait()

    async def run_with_timeout() -> None:
        async with asyncio.timeout(0.05):  # fires whenever the loop gets to it: no bound is asserted
            await slow()

    with pytest.raises(TimeoutError):
        await run_with_timeout()
    with database.connect() as conn:
        ids = list(
            conn.execute(text("SELECT id FROM tool_calls WHERE tool_name = 'slow' AND parent_id IS NULL")).scalars()
        )
    assert [statuses_of(database, start) for start in ids] == [["started", "cancelled"]]


async def until_a_backend_waits_to_lock(watcher: psycopg.Connection[tuple[object, ...]], table: str) -> None:
    """Return once some backend waits for a lock on `table` (an ungranted pg_locks row); fail after DEADLINE."""
    deadline = time.monotonic() + DEADLINE
    while True:
        row = watcher.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE relation = %s::regclass AND NOT granted)", (table,)
        ).fetchone()
        if row is not None and row[0]:
            return
        assert time.monotonic() < deadline, f"no backend waited for a lock on {table} within {DEADLINE}s"
        await asyncio.sleep(0.01)


async def until_true(condition: Callable[[], bool]) -> None:
    """Return once `condition()` holds, letting the loop run meanwhile; fail after DEADLINE."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"not true within {DEADLINE}s"
        await asyncio.sleep(0.01)


def appending_in_a_task_of_its_own(caller: asyncio.Task[Any], append: str) -> bool:
    """Whether a task other than `caller` runs the coroutine named `append` (the shielded append)."""
    return any(
        other is not caller and getattr(other.get_coro(), "__qualname__", "") == append for other in asyncio.all_tasks()
    )


async def cancel_while_its_insert_waits(
    database_url: str, table: str, append: str, work: Callable[[psycopg.Connection[Any]], Coroutine[Any, Any, T]]
) -> asyncio.Task[T]:
    """Run `work(locker)` in a task; once `work` has locked `table` (SHARE mode, on `locker`) and an INSERT
    waits for it, cancel the task, then release the lock; return the finished task."""
    locker = psycopg.connect(database_url)
    try:
        task = asyncio.create_task(work(locker))
        await until_a_backend_waits_to_lock(locker, table)
        task.cancel()
        # An unshielded append is cancelled in the server while the lock is still held, and the task ends;
        # a shielded one runs in a task of its own that the cancellation cannot reach.
        await until_true(lambda: task.done() or appending_in_a_task_of_its_own(task, append))
        locker.rollback()  # releases the lock: a shielded append can now commit
        await asyncio.wait({task}, timeout=DEADLINE)
        return task
    finally:
        locker.close()


async def test_a_cancellation_while_the_success_row_is_written_still_records_it(
    log: AsyncToolCallLog, database: Database, migrated_database_url: str
) -> None:
    """The tool ran: a cancellation that arrives while its `succeeded` row waits for a lock must not lose that row."""
    ids: list[uuid.UUID] = []

    async def transfer(locker: psycopg.Connection[Any]) -> None:
        async with log.record("transfer", {"usd": 10}) as call:
            ids.append(call.id)
            locker.execute("LOCK TABLE tool_calls IN SHARE MODE")  # the completion's INSERT waits behind it
            call.succeed({"tx": "0xabc"})

    task = await cancel_while_its_insert_waits(
        migrated_database_url, "tool_calls", "AsyncToolCallLog._append_completion", transfer
    )
    with pytest.raises(asyncio.CancelledError):
        await task
    assert statuses_of(database, ids[0]) == ["started", "succeeded"]
    assert outcome_of(database, ids[0])["output"] == {"tx": "0xabc"}


async def test_a_cancellation_while_record_completion_writes_still_records_it(
    log: AsyncToolCallLog, database: Database, migrated_database_url: str
) -> None:
    """The two-call API keeps the same promise as record(): its outcome row survives a cancellation."""
    start = await log.start("transfer", {"usd": 10})

    async def complete(locker: psycopg.Connection[Any]) -> uuid.UUID:
        locker.execute("LOCK TABLE tool_calls IN SHARE MODE")  # the completion's INSERT waits behind it
        return await log.record_completion(start, "succeeded", output={"tx": "0xabc"})

    task = await cancel_while_its_insert_waits(
        migrated_database_url, "tool_calls", "AsyncToolCallLog._append_completion", complete
    )
    with pytest.raises(asyncio.CancelledError):
        await task
    assert statuses_of(database, start.id) == ["started", "succeeded"]


async def test_a_cancellation_while_a_cycle_is_closed_still_closes_it(
    async_database: AsyncDatabase, database: Database, migrated_database_url: str
) -> None:
    """A cancellation that arrives while the close row waits for a lock must not leave the cycle open."""
    planning = AsyncPlanningLog(async_database, agent=f"agent-{uuid.uuid4().hex[:8]}")
    cycle_id = await planning.open_cycle(["pay"])

    async def close(locker: psycopg.Connection[Any]) -> uuid.UUID:
        locker.execute("LOCK TABLE planning_cycles IN SHARE MODE")  # the close row's INSERT waits behind it
        return await planning.close_cycle(cycle_id, "succeeded", {"paid": True})

    task = await cancel_while_its_insert_waits(
        migrated_database_url, "planning_cycles", "AsyncPlanningLog._append", close
    )
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await planning.open_cycle_id() is None
    with database.connect() as conn:
        closes = conn.execute(
            text("SELECT status, outcomes FROM planning_cycles WHERE parent_id = :id"), {"id": cycle_id}
        ).all()
    assert [tuple(row) for row in closes] == [("succeeded", {"paid": True})]


async def test_a_cancellation_that_arrives_as_the_shielded_write_finishes_is_still_raised() -> None:
    """The write finished and the cancellation came before the task resumed: the row's result must not hide it."""
    outer: list[asyncio.Task[int]] = []

    async def write_that_ends_as_its_caller_is_cancelled() -> int:
        await asyncio.sleep(0)
        outer[0].cancel()  # in the same step that ends this work
        return 1

    outer.append(asyncio.create_task(despite_cancellation(write_that_ends_as_its_caller_is_cancelled())))
    with pytest.raises(asyncio.CancelledError):
        await outer[0]


@pytest.fixture
async def pool_of_20(migrated_database_url: str) -> AsyncIterator[AsyncDatabase]:
    settings = load_settings(database_url=migrated_database_url, pool_size=20, connect_timeout=60)
    database = await open_async_database(settings, url=migrated_database_url)
    yield database
    await database.aclose()


async def test_200_concurrent_tasks_over_a_pool_of_20_record_every_call_in_one_chain(
    pool_of_20: AsyncDatabase, database: Database
) -> None:
    planning = AsyncPlanningLog(pool_of_20, agent="two-hundred")
    log = AsyncToolCallLog(pool_of_20)
    cycle = await planning.open_cycle({"tasks": 200})

    async def one(n: int) -> uuid.UUID:
        async with log.record("concurrent", {"n": n}, cycle_id=cycle) as call:
            await asyncio.sleep(0)
            call.succeed(n)
        return call.id

    async with asyncio.timeout(DEADLINE * 4):
        ids = await asyncio.gather(*(one(n) for n in range(200)))
    await planning.close_cycle(cycle)
    with database.connect() as conn:
        starts = conn.execute(
            text("SELECT count(*) FROM tool_calls WHERE cycle_id = :c AND status = 'started'"), {"c": cycle}
        ).scalar()
        outcomes = conn.execute(
            text("SELECT count(*) FROM tool_calls WHERE parent_id = ANY(:ids) AND status = 'succeeded'"),
            {"ids": list(ids)},
        ).scalar()
    assert (len(set(ids)), starts, outcomes) == (200, 200, 200)
    report = seal_and_verify(database)
    assert report.ok, report.problems


async def test_an_exhausted_pool_is_a_clear_error_after_the_connect_timeout(
    migrated_database_url: str, settings: Settings
) -> None:
    small = load_settings(database_url=migrated_database_url, pool_size=2, connect_timeout=0.2)
    async with await open_async_database(small, url=migrated_database_url) as database:
        holding = asyncio.Event()
        release = asyncio.Event()

        holders: list[int] = []

        async def hold() -> None:
            async with database.connection():
                holders.append(1)
                if len(holders) == 2:
                    holding.set()
                await release.wait()

        tasks = [asyncio.create_task(hold()) for _ in range(2)]
        async with asyncio.timeout(DEADLINE):
            await holding.wait()
        with pytest.raises(
            PoolExhaustedError, match=r"All 2 pooled .* 0\.2 s \(JARVIS_CONNECT_TIMEOUT\).*JARVIS_POOL_SIZE"
        ):
            await AsyncToolCallLog(database).start("starved", {})
        release.set()
        await asyncio.gather(*tasks)
        start = await AsyncToolCallLog(database).start("fed", {})  # the pool recovers once connections come back
    assert start.tool_name == "fed"


async def test_the_event_loop_keeps_running_while_an_append_waits_on_the_database(
    log: AsyncToolCallLog, migrated_database_url: str
) -> None:
    """A blocking append would freeze the loop until the lock is released; the ticker must tick meanwhile.

    A thread holds a lock that makes the append wait, and releases it once the ticker has ticked
    TICKS times, or after DEADLINE seconds (which a blocking append would need, and then fail on
    the count).
    """
    ticks_wanted = 20
    ticked_enough = threading.Event()
    locked = threading.Event()
    released = threading.Event()

    def lock_holder() -> None:
        with psycopg.connect(migrated_database_url) as conn:
            conn.execute("LOCK TABLE public.tool_calls IN EXCLUSIVE MODE")
            locked.set()
            ticked_enough.wait(DEADLINE)
            conn.rollback()
            released.set()

    holder = threading.Thread(target=lock_holder, daemon=True)
    holder.start()
    assert locked.wait(DEADLINE)
    ticks: list[float] = []
    append = asyncio.create_task(log.start("while_locked", {}))

    async def ticker() -> None:
        while not append.done():
            ticks.append(time.monotonic())
            if len(ticks) >= ticks_wanted:
                ticked_enough.set()
            await asyncio.sleep(0.01)

    await asyncio.gather(ticker(), append)
    holder.join(DEADLINE)
    assert released.is_set()
    assert len(ticks) >= ticks_wanted, f"the loop ticked {len(ticks)} times while the append waited"
    gaps = [later - earlier for earlier, later in itertools.pairwise(ticks)]
    assert max(gaps) < 1.0, f"the loop stalled for {max(gaps):.2f} s"
