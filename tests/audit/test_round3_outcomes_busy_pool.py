"""The sync API through a tiny pool (2 connections, 0.5 s checkout timeout) that stays busy while tools finish:
an outcome row of work that already ran waits for a connection instead of failing with PoolExhaustedError, so
every tool that ran has exactly one completion and a closed cycle its close row. A start row still fails fast."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from jarvis.config import load_settings
from jarvis.db import Database, PoolExhaustedError, open_database
from jarvis.db.audit import PlanningLog, ToolCallLog
from jarvis_testkit import tamper

TOOLS = 12
DEADLINE = 30.0
WAITING = "still waiting"
"""What the pool logs for an outcome that waits past the checkout timeout."""


@pytest.fixture
def tiny_pool(isolated_database_url: str) -> Iterator[Database]:
    """Pool 2, checkout timeout 0.5 s; no background sealer competing for the two connections."""
    settings = load_settings(database_url=isolated_database_url, pool_size=2, connect_timeout=0.5, seal_interval=0)
    database = open_database(settings, url=isolated_database_url)
    yield database
    database.shutdown()


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"not within {DEADLINE} s: {what}"
        time.sleep(0.02)


@contextmanager
def every_connection_busy(database: Database) -> Iterator[None]:
    """Hold both pooled connections, as two long pieces of work would."""
    with database.connect(), database.connect():
        yield


def waiting_threads(caplog: pytest.LogCaptureFixture) -> set[int]:
    return {record.thread for record in caplog.records if WAITING in record.getMessage() and record.thread}


def test_every_tool_that_ran_has_exactly_one_completion_though_the_pool_stayed_busy(
    tiny_pool: Database, isolated_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="jarvis.db")
    tools, release = ToolCallLog(tiny_pool), threading.Event()
    ran: dict[int, uuid.UUID] = {}
    raised: dict[int, BaseException] = {}
    lock = threading.Lock()

    def tool(i: int) -> None:
        try:
            with tools.record("busy_pool", {"i": i}) as call:
                with lock:
                    ran[threading.get_ident()] = call.id
                assert release.wait(DEADLINE)  # the tool holds for a bit, holding no connection
                call.succeed({"i": i})
        except BaseException as error:  # a start that failed fast is allowed: that tool did not run
            with lock:
                raised[threading.get_ident()] = error

    threads = [threading.Thread(target=tool, args=(i,)) for i in range(TOOLS)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(ran) + len(raised) == TOOLS, "every tool ran or failed to start")
    with every_connection_busy(tiny_pool):
        release.set()  # every tool finishes now, with no connection to be had for longer than the timeout
        wait_until(
            lambda: set(ran) <= waiting_threads(caplog) | {t.ident for t in threads if not t.is_alive()},
            "every tool's outcome waited past the checkout timeout (or gave up)",
        )
    for thread in threads:
        thread.join(DEADLINE)
    assert ran, "no tool ran"
    assert not {ident: error for ident, error in raised.items() if ident in ran}  # no outcome failed
    rows = tamper.rows(isolated_database_url, "tool_calls")
    completions = [row["parent_id"] for row in rows if row["parent_id"] is not None]
    assert sorted(map(str, completions)) == sorted(map(str, ran.values()))  # exactly one each
    assert all(row["status"] == "succeeded" for row in rows if row["parent_id"] is not None)


def test_a_cycle_close_waits_for_a_busy_pool_instead_of_failing(
    tiny_pool: Database, isolated_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="jarvis.db")
    planning = PlanningLog(tiny_pool, agent=f"busy-{uuid.uuid4().hex[:8]}")
    cycle = planning.open_cycle({"goal": "close through a busy pool"})
    outcome: list[Any] = []
    closing = threading.Thread(target=lambda: outcome.append(capture(planning.close_cycle, cycle, "succeeded")))
    with every_connection_busy(tiny_pool):
        closing.start()
        wait_until(lambda: closing.ident in waiting_threads(caplog) or not closing.is_alive(), "the close waited")
    closing.join(DEADLINE)
    assert not isinstance(outcome[0], BaseException), outcome[0]
    closes = [row for row in tamper.rows(isolated_database_url, "planning_cycles") if row["parent_id"] == cycle]
    assert [row["status"] for row in closes] == ["succeeded"]


def test_a_start_row_still_fails_fast_on_a_busy_pool(tiny_pool: Database, isolated_database_url: str) -> None:
    ran = []
    with every_connection_busy(tiny_pool), pytest.raises(PoolExhaustedError, match="JARVIS_POOL_SIZE"):
        with ToolCallLog(tiny_pool).record("never_runs", {}):
            ran.append(True)
    assert ran == []
    assert tamper.rows(isolated_database_url, "tool_calls") == []


def capture(function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)`, or the exception it raised."""
    try:
        return function(*args)
    except BaseException as error:
        return error
