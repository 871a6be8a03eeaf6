"""The asyncio API through a tiny pool (2 connections, 0.5 s checkout timeout) that stays busy while tools finish:
an outcome row of work that already ran waits its turn for a connection instead of failing with PoolExhaustedError,
so every tool that ran has exactly one completion and a closed cycle its close row. A start row still fails fast."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from jarvis.config import load_settings
from jarvis.db import PoolExhaustedError
from jarvis.db.aio import AsyncDatabase, AsyncPlanningLog, AsyncToolCallLog, open_async_database
from jarvis_testkit import tamper

pytestmark = pytest.mark.anyio
TOOLS = 24
DEADLINE = 30.0
WAITING = "still waiting"
"""What the pool logs for an outcome that waits past the checkout timeout."""


@pytest.fixture
async def tiny_pool(isolated_database_url: str) -> AsyncIterator[AsyncDatabase]:
    """Pool 2, checkout timeout 0.5 s; no background sealer competing for the two connections."""
    settings = load_settings(database_url=isolated_database_url, pool_size=2, connect_timeout=0.5, seal_interval=0)
    database = await open_async_database(settings, url=isolated_database_url)
    yield database
    await database.aclose()


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"not within {DEADLINE} s: {what}"
        await asyncio.sleep(0.02)


@asynccontextmanager
async def every_connection_busy(database: AsyncDatabase) -> AsyncIterator[None]:
    """Hold both pooled connections, as two long pieces of work would."""
    async with database.connection(), database.connection():
        yield


def waiting(caplog: pytest.LogCaptureFixture) -> int:
    return sum(WAITING in record.getMessage() for record in caplog.records)


async def test_every_tool_that_ran_has_exactly_one_completion_though_the_pool_stayed_busy(
    tiny_pool: AsyncDatabase, isolated_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="jarvis.db")
    tools, release = AsyncToolCallLog(tiny_pool), asyncio.Event()
    ran: dict[int, uuid.UUID] = {}

    async def tool(i: int) -> None:
        async with tools.record("busy_pool", {"i": i}) as call:
            ran[i] = call.id
            await release.wait()  # the tool holds for a bit, holding no connection
            call.succeed({"i": i})

    tasks = [asyncio.create_task(tool(i)) for i in range(TOOLS)]
    await wait_until(lambda: len(ran) + sum(task.done() for task in tasks) == TOOLS, "every tool ran or failed")
    async with every_connection_busy(tiny_pool):
        release.set()  # every tool finishes now, with no connection to be had for longer than the timeout
        finished = [tasks[i] for i in ran]
        await wait_until(
            lambda: waiting(caplog) + sum(task.done() for task in finished) >= len(ran),
            "every tool's outcome waited past the checkout timeout (or gave up)",
        )
    outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), DEADLINE)
    assert ran, "no tool ran"
    assert [outcomes[i] for i in ran] == [None] * len(ran)  # no outcome failed; a start may have failed fast
    rows = tamper.rows(isolated_database_url, "tool_calls")
    completions = [row["parent_id"] for row in rows if row["parent_id"] is not None]
    assert sorted(map(str, completions)) == sorted(map(str, ran.values()))  # exactly one each
    assert all(row["status"] == "succeeded" for row in rows if row["parent_id"] is not None)


async def test_a_cycle_close_waits_for_a_busy_pool_instead_of_failing(
    tiny_pool: AsyncDatabase, isolated_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="jarvis.db")
    planning = AsyncPlanningLog(tiny_pool, agent=f"busy-{uuid.uuid4().hex[:8]}")
    cycle = await planning.open_cycle({"goal": "close through a busy pool"})
    async with every_connection_busy(tiny_pool):
        closing = asyncio.create_task(planning.close_cycle(cycle, "succeeded"))
        await wait_until(lambda: waiting(caplog) > 0 or closing.done(), "the close waited")
    await asyncio.wait_for(closing, DEADLINE)  # raises what the close raised
    closes = [row for row in tamper.rows(isolated_database_url, "planning_cycles") if row["parent_id"] == cycle]
    assert [row["status"] for row in closes] == ["succeeded"]


async def test_a_start_row_still_fails_fast_on_a_busy_pool(
    tiny_pool: AsyncDatabase, isolated_database_url: str
) -> None:
    ran = []
    async with every_connection_busy(tiny_pool):
        with pytest.raises(PoolExhaustedError, match="JARVIS_POOL_SIZE"):
            async with AsyncToolCallLog(tiny_pool).record("never_runs", {}):
                ran.append(True)
    assert ran == []
    assert tamper.rows(isolated_database_url, "tool_calls") == []
