"""The state cache from the asyncio API: never a value older than PostgreSQL's, forgeries ignored, shared with sync."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator

import pytest
import redis

from jarvis.cache import CachedStateStore, RedisLink, namespace_for
from jarvis.cache.aio import AsyncCachedStateStore, AsyncRedisLink
from jarvis.db import Database, StateStore
from jarvis.db.aio import AsyncDatabase, AsyncStateStore

pytestmark = pytest.mark.anyio

KEY = secrets.token_bytes(32)
FORGED = b'j1.00.{"v":"forged","ver":1,"at":"2020-01-01T00:00:00+00:00","id":"1","xmin":"1"}'
"""A cache entry in the right format with a MAC that is not one (whoever can write to Redis can plant it)."""


@pytest.fixture
async def async_link(redis_url: str, database: Database) -> AsyncIterator[AsyncRedisLink]:
    link = AsyncRedisLink(redis_url, namespace=namespace_for(database.url), auth_key=KEY)
    yield link
    await link.aclose()


@pytest.fixture
def cache(async_database: AsyncDatabase, async_link: AsyncRedisLink) -> AsyncCachedStateStore:
    return AsyncCachedStateStore(AsyncStateStore(async_database), async_link)


@pytest.fixture
def key() -> str:
    return f"cached.{uuid.uuid4().hex[:8]}"


async def test_a_second_read_is_a_hit_with_postgresqls_value(cache: AsyncCachedStateStore, key: str) -> None:
    await cache.set(key, {"usd": 1})
    first = await cache.get(key)
    second = await cache.get(key)
    assert first is not None and second is not None
    assert (cache.misses, cache.hits) == (1, 1)
    assert (second.value, second.version) == ({"usd": 1}, 1)


async def test_a_write_that_bypassed_the_cache_is_never_hidden(
    cache: AsyncCachedStateStore, database: Database, key: str
) -> None:
    await cache.set(key, "old")
    await cache.get(key)  # cached
    StateStore(database).set(key, "new")  # straight to PostgreSQL: no invalidation
    got = await cache.get(key)
    assert got is not None and (got.value, got.version) == ("new", 2)
    assert cache.outdated == 1


async def test_a_planted_entry_is_ignored_and_removed(
    cache: AsyncCachedStateStore, async_link: AsyncRedisLink, redis_url: str, key: str
) -> None:
    await cache.set(key, "real")
    attacker = redis.Redis.from_url(redis_url)
    value_key = async_link.key("state", key)
    attacker.set(value_key, FORGED)
    got = await cache.get(key)
    assert got is not None and got.value == "real"
    assert cache.rejected == 1
    assert attacker.get(value_key) != FORGED


async def test_an_entry_cached_by_the_sync_api_is_a_hit_for_the_async_one(
    cache: AsyncCachedStateStore, database: Database, redis_url: str, key: str
) -> None:
    sync_cache = CachedStateStore(
        StateStore(database), RedisLink(redis_url, namespace=namespace_for(database.url), auth_key=KEY)
    )
    sync_cache.set(key, [1, 2])
    assert sync_cache.get(key) is not None and sync_cache.misses == 1  # installed by the sync cache
    got = await cache.get(key)
    assert got is not None and got.value == [1, 2] and (cache.hits, cache.misses) == (1, 0)


async def test_without_redis_reads_and_writes_go_to_postgresql(
    async_database: AsyncDatabase, database: Database, key: str
) -> None:
    link = AsyncRedisLink("redis://127.0.0.1:9/0", namespace=namespace_for(database.url), auth_key=KEY)
    cache = AsyncCachedStateStore(AsyncStateStore(async_database), link)
    written = await cache.set(key, "alone")
    got = await cache.get(key)
    await link.aclose()
    assert got is not None and (got.value, got.version) == ("alone", written.version)
    assert not link.available
