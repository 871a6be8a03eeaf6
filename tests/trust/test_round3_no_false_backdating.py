"""The app role cannot get an honest row flagged as backdated by making its append wait on a lock (issue 22: A, B13).

The attack: the app role inserts its own outcome for an honest start row (or cycle) and keeps its
transaction open. The honest outcome's `created_at` is stamped by the before-insert trigger, then
its INSERT waits on the one-completion index. Held past the sealer's slack (60 s) while another
session seals, the honest row committed dated more than the slack before that seal's sweep, and
the next seal flagged it as backdated: every verify of the trail failed for good, blaming a
superuser for what the app role did.

Now an append function waits for a lock 5 s at most (migration 0011) and the client sends the
row again as a new statement with a fresh stamp, so it commits within a lock wait of its
`created_at`, whenever the hostile transaction ends. These tests hold the lock past one lock wait
(not 60 s): the honest statement must be sent again while the lock is held, its stored
`created_at` must be within a lock wait (plus a margin) of the moment the lock was released and
of a seal made meanwhile, and a seal after the release flags nothing.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from jarvis.config import load_settings
from jarvis.db import Database
from jarvis.db.aio import AsyncToolCallLog, open_async_database
from jarvis.db.audit import AuditAppendBlockedError, PlanningLog, ToolCallLog, seal, verify
from jarvis.db.audit import append as append_module
from jarvis.db.audit.chain import BACKDATE_SLACK
from jarvis.db.audit.tool_calls import ToolCallStart
from jarvis_testkit import tamper
from jarvis_testkit.tamper import Trail

LOCK_WAIT = timedelta(seconds=5)
"""The append functions' own lock_timeout (migration 0011)."""
MARGIN = timedelta(seconds=5)
"""Between a lock wait's end and the fresh statement's stamp: one short query and a round trip, on a busy machine."""
assert LOCK_WAIT + MARGIN < BACKDATE_SLACK / 4, "the bounds below must prove something about the slack"
DEADLINE = 30.0


def wait_for(condition: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        time.sleep(0.05)
    return found


def waiting_append(owner: psycopg.Connection[Any], hostile_pid: int) -> tuple[int, datetime] | None:
    """The honest session's append statement waiting on a lock: (pid, when that statement began), or None."""
    row = owner.execute(
        "SELECT pid, query_start FROM pg_catalog.pg_stat_activity WHERE datname = current_database() "
        "AND pid <> %s AND wait_event_type = 'Lock' AND query LIKE '%%jarvis_append_%%'",
        (hostile_pid,),
    ).fetchone()
    return (row[0], row[1]) if row else None


@contextmanager
def in_background(work: Callable[[], uuid.UUID]) -> Iterator[Callable[[float], uuid.UUID]]:
    """Run `work` in a daemon thread; yields `result(timeout)`, which fails when it has not returned by then."""
    outcome: list[tuple[str, Any]] = []
    thread = threading.Thread(target=lambda: outcome.append(_attempt(work)), daemon=True)
    thread.start()

    def result(timeout: float) -> uuid.UUID:
        thread.join(timeout)
        assert outcome, f"the honest append did not return within {timeout:g} s of the lock's release"
        kind, value = outcome[0]
        if kind == "error":
            raise value
        row_id: uuid.UUID = value
        return row_id

    yield result


def _attempt(work: Callable[[], uuid.UUID]) -> tuple[str, Any]:
    try:
        return ("value", work())
    except BaseException as error:
        return ("error", error)


def honest_row_outlives_the_hostile_lock(
    database: Database,
    url: str,
    table: str,
    hostile_sql: str,
    hostile_params: tuple[Any, ...],
    honest: Callable[[], uuid.UUID],
) -> None:
    """The attack, with the lock held past one lock wait and a seal made meanwhile; then what must hold."""
    assert append_module.LOCK_WAIT == f"{LOCK_WAIT.seconds}s"
    with psycopg.connect(url, autocommit=True) as owner, tamper.as_app_role(url, autocommit=False) as hostile:
        hostile_pid = hostile.info.backend_pid
        hostile.execute(hostile_sql, hostile_params)  # its own outcome, uncommitted: the index entry is held
        with in_background(honest) as result:
            pid, first = wait_for(lambda: waiting_append(owner, hostile_pid), "the honest append waits on the lock")
            # The statement that waited is given up after one lock wait and sent again, stamped afresh.
            wait_for(
                lambda: (found := waiting_append(owner, hostile_pid)) and found[0] == pid and found[1] > first,
                "the honest append to be sent again as a new statement while the lock is held (it kept waiting "
                "after its created_at was stamped: held past the slack, the row is flagged as backdated)",
                timeout=(LOCK_WAIT + MARGIN).total_seconds() * 2,
            )
            seal(database, wait=30)  # another session seals while the lock is held: the sweep moves on
            swept_at = owner.execute("SELECT swept_at FROM public.audit_seal_head").fetchone()[0]  # type: ignore[index]
            released_at = hostile.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
            hostile.rollback()
            row_id = result(DEADLINE)
        found = owner.execute(f"SELECT created_at FROM public.{table} WHERE id = %s", (row_id,)).fetchone()
        assert found is not None
        created_at = found[0]
    assert released_at - created_at < LOCK_WAIT + MARGIN, (created_at, released_at)
    assert swept_at - created_at < LOCK_WAIT + MARGIN, (created_at, swept_at)
    sealed = seal(database, wait=30)
    assert sealed.flagged_total == 0, f"the seal after the release flagged {sealed.flagged_total} honest row(s)"
    report = verify(database)
    assert report.ok, report.summary()


def async_database_for(url: str) -> Any:
    return open_async_database(load_settings(database_url=url, seal_interval=0), url=url)


@pytest.mark.parametrize("api", ["sync", "async"])
def test_an_honest_completion_held_up_by_the_app_role_commits_close_to_its_stamp_and_is_never_flagged(
    api: str, isolated_database: Database, trail: Trail
) -> None:
    tools = ToolCallLog(isolated_database)
    start = tools.start("transfer", {"to": "landlord", "usd": 10})
    seal(isolated_database, wait=30)

    def honest() -> uuid.UUID:
        if api == "sync":
            return tools.record_completion(start, "succeeded", output={"tx": "0xabc"})

        async def completion(begun: ToolCallStart) -> uuid.UUID:
            async with await async_database_for(trail.url) as database:
                return await AsyncToolCallLog(database).record_completion(begun, "succeeded", output={"tx": "0xabc"})

        return asyncio.run(completion(start))

    honest_row_outlives_the_hostile_lock(
        isolated_database,
        trail.url,
        "tool_calls",
        "INSERT INTO public.tool_calls (id, parent_id, tool_name, status, output) "
        "VALUES (%s, %s, 'transfer', 'failed', %s)",
        (uuid.uuid4(), start.id, Jsonb({"held": True})),
        honest,
    )


def test_an_honest_cycle_close_held_up_by_the_app_role_commits_close_to_its_stamp_and_is_never_flagged(
    isolated_database: Database, trail: Trail
) -> None:
    planning = PlanningLog(isolated_database, agent="victim")
    cycle = planning.open_cycle(["pay rent"])
    seal(isolated_database, wait=30)
    honest_row_outlives_the_hostile_lock(
        isolated_database,
        trail.url,
        "planning_cycles",
        "INSERT INTO public.planning_cycles (id, parent_id, agent, status, outcomes) "
        "VALUES (%s, %s, 'victim', 'failed', %s)",
        (uuid.uuid4(), cycle, Jsonb({"held": True})),
        lambda: planning.close_cycle(cycle, "succeeded", {"paid": True}),
    )


def test_a_start_row_held_up_past_its_tries_fails_naming_the_session_that_holds_the_lock(
    isolated_database: Database, trail: Trail, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start row does not wait for ever (its tool has not run): after LOCK_TRIES lock waits it fails, naming
    the pid a person can end. The app role holds the agent's cycle guard by opening a cycle it never commits."""
    monkeypatch.setattr(append_module, "LOCK_TRIES", 2)
    with tamper.as_app_role(trail.url, autocommit=False) as hostile:
        hostile.execute(
            "SELECT public.jarvis_append_planning_cycles(p_id => %s, p_agent => 'victim', p_status => 'started', "
            "p_goals => '[]'::jsonb)",
            (uuid.uuid4(),),
        )
        budget = 2 * (LOCK_WAIT + MARGIN).total_seconds()
        with pytest.raises(AuditAppendBlockedError, match=f"pid {hostile.info.backend_pid}\\b"):
            tamper.within(budget, lambda: PlanningLog(isolated_database, agent="victim").open_cycle(["pay rent"]))
        hostile.rollback()
    assert PlanningLog(isolated_database, agent="victim").open_cycle(["pay rent"])  # free again once it ended
