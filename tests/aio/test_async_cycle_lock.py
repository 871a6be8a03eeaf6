"""The planning-cycle lock from the asyncio API: one holder across both APIs, fencing tokens, stale keys cleared."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator

import pytest
import redis

from jarvis.cache import CycleLock, CycleLockHeldError, RedisLink
from jarvis.cache.aio import AsyncCycleLock, AsyncRedisLink

pytestmark = pytest.mark.anyio

KEY = secrets.token_bytes(32)


@pytest.fixture
def namespace() -> str:
    return f"jarvis:test-async-lock-{uuid.uuid4().hex}"


@pytest.fixture
async def async_link(redis_url: str, namespace: str) -> AsyncIterator[AsyncRedisLink]:
    link = AsyncRedisLink(redis_url, namespace=namespace, auth_key=KEY)
    yield link
    await link.aclose()


async def test_an_async_holder_excludes_a_sync_one_and_the_next_holder_gets_a_higher_token(
    async_link: AsyncRedisLink, redis_url: str, namespace: str
) -> None:
    async_lock = AsyncCycleLock(async_link, "shared")
    sync_lock = CycleLock(RedisLink(redis_url, namespace=namespace, auth_key=KEY), "shared")
    first = await async_lock.acquire()
    assert first is not None
    with pytest.raises(CycleLockHeldError):
        sync_lock.acquire()
    with pytest.raises(CycleLockHeldError):
        await AsyncCycleLock(async_link, "shared").acquire()
    assert await async_lock.extend(first) and await async_lock.release(first)
    second = sync_lock.acquire()
    assert second is not None and second.fencing_token > first.fencing_token
    assert not await async_lock.release(first)  # no longer ours: the successor's lock is never deleted
    assert sync_lock.release(second)


async def test_a_squatted_key_without_expiry_is_cleared_and_the_lock_taken(
    async_link: AsyncRedisLink, redis_url: str
) -> None:
    attacker = redis.Redis.from_url(redis_url)
    key = async_link.key("cycle-lock", "squatted")
    attacker.set(key, "mine-forever")  # no expiry, not a signed token
    lock = AsyncCycleLock(async_link, "squatted", ttl_ms=5_000)
    lease = await lock.acquire()
    assert lease is not None and lock.stale_cleared == 1
    assert attacker.get(key) == lease.owner.encode() and 0 < attacker.pttl(key) <= 5_000
    assert await lock.release(lease) and attacker.exists(key) == 0


async def test_without_redis_acquire_gives_no_lease_and_no_error(namespace: str) -> None:
    link = AsyncRedisLink("redis://127.0.0.1:9/0", namespace=namespace, auth_key=KEY)  # nothing listens on port 9
    assert await AsyncCycleLock(link, "alone").acquire() is None
    await link.aclose()
