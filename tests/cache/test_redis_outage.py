"""Redis down mid-run: state and audit keep working from PostgreSQL, one warning, and recovery by itself."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from jarvis.agent import Agent, CyclePlan, ScriptedPlanner
from jarvis.cache import CachedStateStore, RedisLink, namespace_for
from jarvis.db import Database, StateStore
from jarvis.db.audit import ToolCallLog
from jarvis_testkit.services import RedisServer
from jarvis_testkit.trail import seal_and_verify

PLAN = CyclePlan.model_validate(
    {
        "goals": ["survive an outage"],
        "steps": [
            {"decision": "write", "tool": "set_state", "input": {"key": "outage.counter", "value": 1}},
            {"decision": "read", "tool": "get_state", "input": {"key": "outage.counter"}},
        ],
    }
)


def redis_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "jarvis.cache" and r.levelno == logging.WARNING]


def test_state_and_audit_keep_working_while_redis_is_stopped_and_resume_after(
    database: Database,
    private_redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
    wait_until: Callable[..., Any],
) -> None:
    caplog.set_level(logging.WARNING, logger="jarvis.cache")
    link = RedisLink(private_redis_server.url, namespace=namespace_for(database.url), retry_after=0.2)
    cache = CachedStateStore(StateStore(database), link)
    tools = ToolCallLog(database)
    cache.set("outage.key", 0)
    cache.get("outage.key")
    assert cache.hits == 0 and cache.misses == 1

    private_redis_server.stop()
    failures = 0
    for i in range(1, 21):
        try:
            cache.set("outage.key", i)
            entry = cache.get("outage.key")
            assert entry is not None and entry.value == i
            with tools.record("during_outage", {"i": i}) as call:
                call.succeed(i)
        except Exception:  # any exception here is a failed operation
            failures += 1
    assert failures == 0
    assert len([w for w in redis_warnings(caplog) if "unavailable" in w]) == 1

    private_redis_server.start()
    hits_before = cache.hits

    def served_from_the_cache_again() -> bool:
        entry = cache.get("outage.key")
        assert entry is not None and entry.value == 20
        return cache.hits > hits_before

    wait_until(served_from_the_cache_again, "caching to resume by itself")
    assert any("is back" in w for w in redis_warnings(caplog))
    assert seal_and_verify(database).ok


def test_lost_invalidation_is_replayed_when_redis_answers_again(
    database: Database, private_redis_server: RedisServer, wait_until: Callable[..., Any]
) -> None:
    link = RedisLink(private_redis_server.url, namespace=namespace_for(database.url), retry_after=0.1)
    cache = CachedStateStore(StateStore(database), link)
    cache.set("paused.key", "before")
    cache.get("paused.key")  # cached
    # Redis stays up (keeps its data) but stops answering: the invalidation of the next write is lost. Frozen
    # until the write has given up on it (a timed CLIENT PAUSE can end first on a slow machine, and then the
    # invalidation is merely late, not lost).
    private_redis_server.freeze()
    try:
        cache.set("paused.key", "after")
        assert not link.available
    finally:
        private_redis_server.thaw()

    def read_through_a_live_link() -> bool:
        entry = cache.get("paused.key")
        assert entry is not None and entry.value == "after"  # PostgreSQL's value, all along
        return link.available

    wait_until(read_through_a_live_link, "Redis to answer again")
    # The replayed invalidation removed the stale copy before anyone read it: it never even had to be refused.
    assert cache.outdated == 0
    entry = cache.get("paused.key")
    assert entry is not None and entry.value == "after" and cache.hits >= 1


def test_an_agent_runs_cycles_through_a_redis_restart(
    database: Database, private_redis_server: RedisServer, wait_until: Callable[..., Any]
) -> None:
    link = RedisLink(private_redis_server.url, namespace=namespace_for(database.url), retry_after=0.1)
    agent = Agent(database, name="outage-agent", redis_link=link)
    statuses = [agent.run_cycle(PLAN.goals, ScriptedPlanner(PLAN)).status]
    private_redis_server.stop()
    statuses.append(agent.run_cycle(PLAN.goals, ScriptedPlanner(PLAN)).status)
    private_redis_server.start()
    wait_until(lambda: link.run(lambda r: bool(r.ping()), False), "the agent's link to Redis to come back")
    statuses.append(agent.run_cycle(PLAN.goals, ScriptedPlanner(PLAN)).status)
    assert statuses == ["succeeded"] * 3
    assert seal_and_verify(database).ok
