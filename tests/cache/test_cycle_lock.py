"""The planning-cycle lock: one holder across processes, fencing tokens, and the database as the backstop."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from jarvis.cache import CycleLock, CycleLockHeldError, RedisLink
from jarvis.db import Database
from jarvis.db.audit import CycleAlreadyOpenError, PlanningLog

COMPETITOR = """
import sys
from jarvis.cache import CycleLock, CycleLockHeldError, RedisLink
lock = CycleLock(RedisLink(sys.argv[1], namespace=sys.argv[2]), "contested", ttl_ms=60_000)
print("ready", flush=True)
sys.stdin.readline()  # the starting signal: both processes are loaded and connected
try:
    lease = lock.acquire()
    print("acquired", lease.fencing_token, flush=True)
except CycleLockHeldError:
    print("refused", flush=True)
sys.stdin.readline()  # hold the lock until both have answered
"""


def test_two_competing_processes_get_the_lock_exactly_once(redis_url: str) -> None:
    namespace = f"jarvis:test-lock-{os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", COMPETITOR, redis_url, namespace],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        answers = []
        for proc in procs:
            assert proc.stdout is not None
            answers.append(proc.stdout.readline().split()[0])
        assert sorted(answers) == ["acquired", "refused"]
    finally:
        for proc in procs:
            proc.communicate("done\n", timeout=60)


def test_release_lets_the_next_holder_in_with_a_higher_fencing_token(redis_url: str) -> None:
    link = RedisLink(redis_url, namespace=f"jarvis:test-fence-{time.monotonic_ns()}")
    lock = CycleLock(link, "fenced")
    first = lock.acquire()
    assert first is not None
    with pytest.raises(CycleLockHeldError):
        lock.acquire()
    assert lock.release(first)
    second = lock.acquire()
    assert second is not None and second.fencing_token > first.fencing_token


def test_an_expired_holder_cannot_release_the_new_holders_lock(redis_url: str, wait_until: Callable[..., Any]) -> None:
    link = RedisLink(redis_url, namespace=f"jarvis:test-expiry-{time.monotonic_ns()}")
    lock = CycleLock(link, "expiring", ttl_ms=100)
    stale = lock.acquire()
    wait_until(lambda: not link.client.exists(link.key("cycle-lock", "expiring")), "the lease to expire")
    fresh = lock.acquire()
    assert stale is not None and fresh is not None
    assert not lock.release(stale)
    assert not lock.extend(stale)
    assert lock.release(fresh)


def test_a_lost_lock_never_allows_two_open_cycles(
    redis_url: str, isolated_database: Database, wait_until: Callable[..., Any]
) -> None:
    link = RedisLink(redis_url, namespace=f"jarvis:test-backstop-{time.monotonic_ns()}")
    lock = CycleLock(link, "backstop", ttl_ms=100)
    planning = PlanningLog(isolated_database, agent="backstop")
    assert lock.acquire() is not None
    planning.open_cycle(["first holder"])
    # the first holder stalls; its lease expires
    wait_until(lambda: not link.client.exists(link.key("cycle-lock", "backstop")), "the lease to expire")
    assert lock.acquire() is not None  # a second process gets the lock...
    with pytest.raises(CycleAlreadyOpenError):
        planning.open_cycle(["second holder"])  # ...but PostgreSQL refuses the second open cycle
