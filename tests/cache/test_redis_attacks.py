"""Whoever can write to Redis must not control what the agent sees (issue #12, item 6).

Each test plays the attacker for real: it writes to the same Redis the agent
uses, with a plain client and no key, exactly as anyone with network access
to Redis could.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
import redis
from typer.testing import CliRunner

from jarvis.agent import Agent, CyclePlan, ScriptedPlanner
from jarvis.cache import (
    AuditStream,
    CachedStateStore,
    CycleLock,
    CycleLockHeldError,
    RedisLink,
    StreamReader,
    namespace_for,
)
from jarvis.cli.main import app
from jarvis.db import Database, StateStore
from jarvis.db.audit import AuditEvent, ToolCallLog
from jarvis_testkit.services import free_port
from jarvis_testkit.trail import seal_and_verify

FORGED_TOOL_EVENT: dict[Any, Any] = {
    "table": "tool_calls",
    "kind": "tool_call.succeeded",
    "tool_name": "transfer_funds",
    "status": "succeeded",
    "row_id": "0190b3a0-0000-7000-8000-000000000001",
    "created_at": "2026-01-01T00:00:00+00:00",
}


@pytest.fixture
def link(redis_url: str, isolated_database: Database) -> Iterator[RedisLink]:
    link = RedisLink(redis_url, namespace=namespace_for(isolated_database))
    yield link
    link.close()


@pytest.fixture
def attacker(redis_url: str) -> Iterator[redis.Redis]:
    """A plain Redis client: no Jarvis, no key."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


# --- the state cache ---------------------------------------------------------------------------------------------


def test_a_planted_entry_without_expiry_is_a_miss_and_a_warning(
    isolated_database: Database, link: RedisLink, attacker: redis.Redis, cache_warnings: Callable[[], list[str]]
) -> None:
    cache = CachedStateStore(StateStore(isolated_database), link)
    cache.set("wallet.usd", 0)
    planted = json.dumps({"v": 1_000_000, "ver": 99, "at": "2026-01-01T00:00:00+00:00"})  # the old, unsigned format
    attacker.set(link.key("state", "wallet.usd"), planted)  # no expiry
    assert attacker.pttl(link.key("state", "wallet.usd")) == -1

    entry = cache.get("wallet.usd")
    assert entry is not None and entry.value == 0 and entry.version == 1
    assert (cache.rejected, cache.misses, cache.hits) == (1, 1, 0)
    assert any("failed authentication" in w and "wallet.usd" in w for w in cache_warnings())
    # the planted entry is gone; what is cached now is PostgreSQL's value, signed
    assert attacker.get(link.key("state", "wallet.usd")) != planted.encode()
    again = cache.get("wallet.usd")
    assert again is not None and again.value == 0 and cache.hits == 1


def test_an_entry_signed_with_another_key_or_moved_from_another_key_is_refused(
    isolated_database: Database, link: RedisLink, redis_url: str, attacker: redis.Redis
) -> None:
    cache = CachedStateStore(StateStore(isolated_database), link)
    cache.set("wallet.usd", 0)
    cache.set("wallet.bonus", 1_000_000)
    # a key of the attacker's own: a perfectly formed entry, but not under our key
    rogue_link = RedisLink(redis_url, namespace=link.namespace, auth_key=secrets.token_bytes(32))
    CachedStateStore(StateStore(isolated_database), rogue_link).get("wallet.bonus")
    attacker.copy(link.key("state", "wallet.bonus"), link.key("state", "wallet.usd"), replace=True)
    entry = cache.get("wallet.usd")
    assert entry is not None and entry.value == 0 and cache.rejected == 1
    # a genuine entry of ours, moved to another key: the MAC binds the key, so it is refused too
    attacker.delete(link.key("state", "wallet.bonus"))
    genuine = cache.get("wallet.bonus")
    assert genuine is not None and genuine.value == 1_000_000 and cache.rejected == 1
    attacker.copy(link.key("state", "wallet.bonus"), link.key("state", "wallet.usd"), replace=True)
    entry = cache.get("wallet.usd")
    assert entry is not None and entry.value == 0 and cache.rejected == 2
    rogue_link.close()


def test_a_replayed_genuine_entry_is_never_served_once_postgres_has_a_newer_version(
    isolated_database: Database, link: RedisLink, attacker: redis.Redis
) -> None:
    cache = CachedStateStore(StateStore(isolated_database), link)
    value_key, generation_key = link.key("state", "wallet.usd"), link.key("state-gen", "wallet.usd")
    cache.set("wallet.usd", 1_000_000)
    cache.get("wallet.usd")
    recorded, recorded_generation = attacker.get(value_key), attacker.get(generation_key)
    assert recorded is not None  # a genuine, signed entry for version 1

    cache.set("wallet.usd", 0)  # the operator empties the wallet: version 2, invalidated
    attacker.set(value_key, recorded)  # ...and the attacker puts the signed version 1 back,
    attacker.set(generation_key, recorded_generation or b"0")  # generation counter and all

    entry = cache.get("wallet.usd")
    assert entry is not None and entry.value == 0 and entry.version == 2
    assert cache.outdated == 1 and cache.hits == 0


def test_a_deleted_and_recreated_key_is_not_confused_with_its_old_self(
    isolated_database: Database, link: RedisLink, attacker: redis.Redis
) -> None:
    cache = CachedStateStore(StateStore(isolated_database), link)
    value_key = link.key("state", "session.token")
    cache.set("session.token", "old-secret")
    cache.get("session.token")
    recorded = attacker.get(value_key)
    assert recorded is not None
    cache.delete("session.token")
    cache.set("session.token", "new-secret")  # version 1 again, like the recorded one
    attacker.set(value_key, recorded)
    entry = cache.get("session.token")
    assert entry is not None and entry.value == "new-secret" and entry.version == 1
    assert cache.outdated == 1


def test_a_replayed_entry_of_a_deleted_key_is_not_served_and_is_removed(
    isolated_database: Database, link: RedisLink, attacker: redis.Redis
) -> None:
    cache = CachedStateStore(StateStore(isolated_database), link)
    value_key = link.key("state", "api.allowance")
    cache.set("api.allowance", 500)
    cache.get("api.allowance")
    recorded = attacker.get(value_key)
    assert recorded is not None
    cache.delete("api.allowance")
    attacker.set(value_key, recorded)
    assert cache.get("api.allowance") is None and cache.outdated == 1
    assert attacker.exists(value_key) == 0


def test_a_planted_value_is_never_sealed_into_the_trail_as_a_tools_output(
    isolated_database: Database, isolated_database_url: str, link: RedisLink, attacker: redis.Redis
) -> None:
    agent = Agent(isolated_database, name="victim", redis_link=link)
    StateStore(isolated_database).set("wallet.usd", 0)
    attacker.set(link.key("state", "wallet.usd"), json.dumps({"v": 1_000_000, "ver": 1, "at": "2026-01-01T00:00:00"}))
    cycle = CyclePlan.model_validate(
        {"goals": ["check funds"], "steps": [{"decision": "read", "tool": "get_state", "input": {"key": "wallet.usd"}}]}
    )
    result = agent.run_cycle(cycle.goals, ScriptedPlanner(cycle))
    assert result.status == "succeeded" and result.steps[0].output == {"value": 0, "version": 1}
    with psycopg.connect(isolated_database_url) as conn:
        recorded = conn.execute(
            "SELECT output FROM public.tool_calls WHERE parent_id = %s", (result.steps[0].tool_call_id,)
        ).fetchone()
    assert recorded is not None and recorded[0] == {"value": 0, "version": 1}
    assert seal_and_verify(isolated_database).ok


# --- the audit stream --------------------------------------------------------------------------------------------


def test_a_forged_event_is_dropped_and_counted(
    isolated_database: Database,
    link: RedisLink,
    redis_url: str,
    attacker: redis.Redis,
    cache_warnings: Callable[[], list[str]],
) -> None:
    tools = ToolCallLog(isolated_database, listeners=[AuditStream(link).publish])
    reader = StreamReader(link, last_id="0-0")
    stream = link.key("audit")
    with tools.record("quote", {}) as call:
        call.succeed(1)
    attacker.xadd(stream, FORGED_TOOL_EVENT)  # unsigned
    attacker.xadd(stream, {**FORGED_TOOL_EVENT, "mac": "0" * 64})  # a made-up MAC
    # a correctly signed event from another database's stream (same key): bound to its stream, so refused here
    other = RedisLink(redis_url, namespace=f"jarvis:another-database-{uuid.uuid4().hex}")
    AuditStream(other).publish(_event())
    published: Any = attacker.xrange(other.key("audit"))
    copied = published[-1][1]
    attacker.xadd(stream, copied)
    with tools.record("quote", {}) as call:
        call.succeed(2)

    events = reader.read(block_ms=100)
    assert [e.fields["kind"] for e in events] == ["tool_call.started", "tool_call.succeeded"] * 2
    assert all(e.fields.get("tool_name") == "quote" and "mac" not in e.fields for e in events)
    assert reader.forged == 3
    assert any("dropped 3 forged" in w for w in cache_warnings())
    assert reader.read(block_ms=50) == []  # dropped events are behind the reader, never read again
    attacker.delete(other.key("audit"))
    other.close()


def test_a_replayed_event_is_delivered_once(
    isolated_database: Database, link: RedisLink, attacker: redis.Redis
) -> None:
    tools = ToolCallLog(isolated_database, listeners=[AuditStream(link).publish])
    reader = StreamReader(link, last_id="0-0")
    with tools.record("transfer_funds", {}) as call:
        call.succeed({"usd": 5})
    published: Any = attacker.xrange(link.key("audit"))
    genuine = published[-1][1]
    attacker.xadd(link.key("audit"), genuine)  # the "transfer succeeded" event, once more
    events = reader.read(block_ms=100)
    assert [e.fields["kind"] for e in events] == ["tool_call.started", "tool_call.succeeded"]
    assert reader.replayed == 1


def test_audit_tail_never_shows_a_forged_event(
    isolated_database_url: str,
    isolated_database: Database,
    link: RedisLink,
    redis_url: str,
    attacker: redis.Redis,
    respell: Callable[[str], str],
) -> None:
    tools = ToolCallLog(isolated_database, listeners=[AuditStream(link).publish])
    with tools.record("quote", {}) as call:
        call.succeed(None)
    attacker.xadd(link.key("audit"), FORGED_TOOL_EVENT)
    alternate_spelling = respell(isolated_database_url)  # the same database, reached another way
    result = CliRunner().invoke(
        app,
        ["audit", "tail", "--no-follow", "--json", "--interval", "0.1"],
        env={"DATABASE_URL": alternate_spelling, "REDIS_URL": redis_url},
    )
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["kind"] for e in events] == ["tool_call.started", "tool_call.succeeded"]
    assert "transfer_funds" not in result.stdout


# --- the cycle lock ----------------------------------------------------------------------------------------------


def test_a_squatted_lock_key_without_expiry_does_not_block_the_agent(
    isolated_database: Database, link: RedisLink, attacker: redis.Redis, cache_warnings: Callable[[], list[str]]
) -> None:
    lock_key = link.key("cycle-lock", "squatted")
    attacker.set(lock_key, "mine-forever")  # no expiry
    agent = Agent(isolated_database, name="squatted", redis_link=link)
    cycle = CyclePlan.model_validate({"goals": ["tick"], "steps": [{"decision": "tick", "tool": "clock"}]})
    result = agent.run_cycle(cycle.goals, ScriptedPlanner(cycle))
    assert result.status == "succeeded" and result.fencing_token is not None
    assert any("removed the planning-cycle lock" in w and "squatted" in w for w in cache_warnings())
    assert attacker.exists(lock_key) == 0  # released after the cycle, as usual


@pytest.mark.parametrize(
    "squat",
    [
        "no expiry, garbage value",
        "a year's expiry, garbage value",
        "a genuine token, expiry removed",
        "a genuine token, expiry stretched",
    ],
)
def test_a_lock_key_that_is_not_a_live_holder_of_ours_is_stale(
    redis_url: str, attacker: redis.Redis, squat: str
) -> None:
    link = RedisLink(redis_url, namespace=f"jarvis:test-squat-{uuid.uuid4().hex}")
    lock = CycleLock(link, "agent", ttl_ms=5_000)
    key = link.key("cycle-lock", "agent")
    if squat.startswith("a genuine token"):
        old = lock.acquire()  # a real lease whose holder died; the attacker keeps its key alive
        assert old is not None
        if squat.endswith("removed"):
            attacker.persist(key)
        else:
            attacker.pexpire(key, 365 * 86_400_000)
    else:
        attacker.set(key, "squatter", px=365 * 86_400_000 if "year" in squat else None)
    lease = lock.acquire()
    assert lease is not None and lock.stale_cleared == 1
    assert 0 < attacker.pttl(key) <= 5_000 and attacker.get(key) == lease.owner.encode()
    assert lock.release(lease)


def test_a_live_holder_is_still_respected(redis_url: str) -> None:
    link = RedisLink(redis_url, namespace=f"jarvis:test-live-{uuid.uuid4().hex}")
    first, second = CycleLock(link, "agent", ttl_ms=30_000), CycleLock(link, "agent", ttl_ms=30_000)
    lease = first.acquire()
    assert lease is not None
    with pytest.raises(CycleLockHeldError):
        second.acquire()
    assert second.stale_cleared == 0
    assert first.extend(lease) and first.release(lease)
    assert second.acquire() is not None


def test_the_lock_is_redis_pys_lock_with_a_signed_token(redis_url: str, attacker: redis.Redis) -> None:
    link = RedisLink(redis_url, namespace=f"jarvis:test-pylock-{uuid.uuid4().hex}")
    lock = CycleLock(link, "agent", ttl_ms=5_000)
    lease = lock.acquire()
    assert lease is not None
    key = link.key("cycle-lock", "agent")
    # the value is the token, the expiry the lease's; redis-py's Lock releases only with the right token
    assert attacker.get(key) == lease.owner.encode() and 0 < attacker.pttl(key) <= 5_000
    assert redis.lock.Lock(attacker, key, timeout=5).acquire(blocking=False) is False
    assert lock.release(lease) and attacker.exists(key) == 0
    assert not lock.release(lease)  # a second release is refused, never deletes a successor's lock


# --- Redis itself requires a password --------------------------------------------------------------------------


@pytest.fixture
def password_redis(wait_until: Callable[..., Any]) -> Iterator[tuple[int, str]]:
    """A redis-server with requirepass, like the shipped compose file runs it: (port, password)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not on PATH")
    password = secrets.token_hex(12)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="jarvis-redis-auth-") as workdir:
        command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        process = subprocess.Popen(
            [*command, "--dir", workdir, "--requirepass", password],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=port, password=password, socket_timeout=0.5)

        def answers() -> bool:
            assert process.poll() is None, "redis-server exited"
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        try:
            wait_until(answers, "the password-protected redis-server to answer")
            yield port, password
        finally:
            client.close()
            process.terminate()
            process.wait(timeout=10)


def test_jarvis_uses_a_redis_that_requires_a_password(
    database: Database, password_redis: tuple[int, str], cache_warnings: Callable[[], list[str]]
) -> None:
    port, password = password_redis
    with_password = RedisLink(f"redis://:{password}@127.0.0.1:{port}/0", namespace=namespace_for(database))
    cache = CachedStateStore(StateStore(database), with_password)
    cache.set("auth.probe", 1)
    cache.get("auth.probe")
    entry = cache.get("auth.probe")
    assert entry is not None and entry.value == 1 and cache.hits == 1
    # without the password Redis refuses: Jarvis carries on from PostgreSQL alone, with one warning
    without = RedisLink(f"redis://127.0.0.1:{port}/0", namespace=namespace_for(database))
    anonymous = CachedStateStore(StateStore(database), without)
    entry = anonymous.get("auth.probe")
    assert entry is not None and entry.value == 1 and anonymous.hits == 0 and not without.available
    assert any("unavailable" in w and password not in w for w in cache_warnings())
    with_password.close()
    without.close()


def _event() -> AuditEvent:
    return AuditEvent(table="tool_calls", kind="tool_call.succeeded", row_id=uuid.uuid4(), created_at=datetime.now(UTC))
