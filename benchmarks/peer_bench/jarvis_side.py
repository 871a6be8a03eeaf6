"""Jarvis' contenders: the audited call, the agent's cycle (alone and 16 agents at once) and state."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable

from jarvis.cache import CachedStateStore, RedisLink, namespace_for
from jarvis.db import Database, StateStore
from jarvis.db.audit import PlanningLog, ToolCallLog, seal
from peer_bench.rounds import Contender

CALLS_PER_CYCLE = 10
SEAL_WAIT = 30.0
"""Concurrent agents seal in turn (the sealer is one lock): each waits for the others, as JARVIS_SEAL_WAIT lets it."""


def seal_queued(database: Database) -> None:
    """Link whatever is queued (untimed, between runs), waiting for a sealer that is still busy."""
    seal(database, wait=SEAL_WAIT)


def agent_cycle(planning: PlanningLog, tools: ToolCallLog, database: Database) -> None:
    """What the agent does per planning cycle: open it, ten audited calls, close it, seal."""
    cycle = planning.open_cycle({"goal": "bench"})
    for i in range(CALLS_PER_CYCLE):
        with tools.record("bench", {"i": i}, cycle_id=cycle) as call:
            call.succeed({"ok": i})
    planning.close_cycle(cycle, "succeeded", {"done": True})
    seal(database, wait=SEAL_WAIT)


def agent_calls(planning: PlanningLog, tools: ToolCallLog, database: Database, calls: int) -> int:
    """Whole cycles covering `calls` audited calls (at least one); the calls made."""
    cycles = max(1, calls // CALLS_PER_CYCLE)
    for _ in range(cycles):
        agent_cycle(planning, tools, database)
    return cycles * CALLS_PER_CYCLE


def jarvis_contenders(
    database: Database, *, workers: int, redis_url: str, read_key: str, write_key: str
) -> list[Contender]:
    tools = ToolCallLog(database)
    recorder = PlanningLog(database, agent="bench-record")
    agent = PlanningLog(database, agent="bench-agent")
    agents = [PlanningLog(database, agent=f"bench-agent-{i}") for i in range(workers)]
    store = StateStore(database)
    cached = CachedStateStore(
        store, RedisLink(redis_url, namespace=namespace_for(database), auth_key=secrets.token_bytes(32))
    )

    def record(n: int) -> tuple[int, float]:
        cycle = recorder.open_cycle({"goal": "bench"})  # untimed: record() is measured inside an open cycle
        started = time.perf_counter()
        for i in range(n):
            with tools.record("bench", {"i": i}, cycle_id=cycle) as call:
                call.succeed({"ok": i})
        seconds = time.perf_counter() - started
        recorder.close_cycle(cycle, "succeeded", {"done": True})
        return n, seconds

    def one_agent(n: int) -> tuple[int, float]:
        started = time.perf_counter()
        done = agent_calls(agent, tools, database, n)
        return done, time.perf_counter() - started

    def many_agents(n: int) -> tuple[int, float]:
        share = max(CALLS_PER_CYCLE, n // workers)
        done: list[int] = []
        threads = [
            threading.Thread(target=lambda a=a: done.append(agent_calls(a, tools, database, share))) for a in agents
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(done), time.perf_counter() - started

    def timed_loop(operation: Callable[[int], object]) -> Callable[[int], tuple[int, float]]:
        def run(n: int) -> tuple[int, float]:
            started = time.perf_counter()
            for i in range(n):
                operation(i)
            return n, time.perf_counter() - started

        return run

    return [
        Contender(
            "record",
            "Jarvis `ToolCallLog.record()` in an open cycle, no sealing",
            record,
            settle=lambda: seal_queued(database),
        ),
        Contender("agent", "Jarvis agent pattern: open cycle, 10 x `record()`, close, seal", one_agent),
        Contender(
            "agents16",
            f"Jarvis, {workers} agents in {workers} threads (each its own agent, cycle pattern)",
            many_agents,
        ),
        Contender("state_get", "Jarvis `StateStore.get`", timed_loop(lambda _: store.get(read_key))),
        Contender(
            "cached_get",
            "Jarvis `CachedStateStore.get` (Redis, checked against PostgreSQL)",
            timed_loop(lambda _: cached.get(read_key)),
        ),
        Contender("state_set", "Jarvis `StateStore.set`", timed_loop(lambda i: store.set(write_key, {"balance": i}))),
    ]
