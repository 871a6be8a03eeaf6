"""The asyncio twins of the Redis pieces, on `redis.asyncio`: link, audit stream publisher, cycle lock, state cache.

`AsyncRedisLink` degrades exactly like `RedisLink` (the same `RedisHealth` rules: a fallback
while Redis is down, one warning per outage, a probe after `retry_after`, recoveries on
its return) and signs with the same `Authenticator`; `AsyncAuditStream.publish` is an
`AsyncAuditListener` for `AsyncToolCallLog` / `AsyncPlanningLog` that XADDs the same signed
fields (`sign_fields`) to the same stream, so `jarvis audit tail` and `StreamReader` read
both alike; `AsyncCycleLock` is `CycleLock` on redis.asyncio's `Lock`, with the same keys,
signed tokens and stale rule (`LockRules`), so sync and async agents exclude each other;
`AsyncCachedStateStore` is `CachedStateStore` over an `AsyncStateStore`, with the same
entries, signatures, stamp check against PostgreSQL and generation-guarded installs
(jarvis.cache.state_cache), so both APIs can share one cache.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from jarvis.config.extras import MissingExtraError

try:
    import redis
    import redis.asyncio
    import redis.asyncio.lock
    from redis.exceptions import LockError
except ModuleNotFoundError as missing:
    raise MissingExtraError(
        f"jarvis.cache.aio needs the Python package {missing.name!r}, which is not installed. "
        "Fix: pip install 'jarvis[redis]'"
    ) from None

from jarvis.cache.audit_stream import STREAM_MAXLEN, sign_fields
from jarvis.cache.cycle_lock import DELETE_IF_UNCHANGED, LOCK_TTL_MS, CycleLease, LockRules
from jarvis.cache.link import LinkBase, connection_errors
from jarvis.cache.state_cache import (
    CACHE_TTL_MS,
    GENERATION_TTL_S,
    ROW_SQL,
    STAMP_SQL,
    CacheState,
    _Row,
    decode_entry,
    encode_entry,
    generation_seen,
    rejected,
    row_from,
)
from jarvis.db.aio import AsyncStateStore
from jarvis.db.audit import AuditEvent
from jarvis.db.state import StateEntry, check_key

T = TypeVar("T")


class AsyncRedisLink(LinkBase[redis.asyncio.Redis, Callable[[], Awaitable[None]]]):
    """`RedisLink` on `redis.asyncio`: `await run(operation, fallback)` never raises a Redis error.

    Made like `RedisLink` (`namespace`: `namespace_for(database)`); its recoveries are awaited.
    """

    def connect(self, url: str, **options: Any) -> redis.asyncio.Redis:
        return redis.asyncio.Redis.from_url(url, **options)

    async def run(self, operation: Callable[[redis.asyncio.Redis], Awaitable[T]], fallback: T) -> T:
        """`await operation(client)`, or `fallback` while Redis is unreachable."""
        if self.health.wait_before_trying():
            return fallback
        if not self.health.available and not await self._answers():
            return fallback
        try:
            return await operation(self.client)
        except connection_errors() as error:
            self.health.failed(error)
        except redis.RedisError as error:
            self.health.command_failed(error)
        return fallback

    async def _answers(self) -> bool:
        """Probe a Redis that was down; on its return, run the recoveries."""
        try:
            await self.client.ping()
        except (redis.RedisError, OSError) as error:
            self.health.failed(error)
            return False
        if self.health.answered():
            for recovery in self.recoveries:
                await recovery()
        return True

    async def aclose(self) -> None:
        await self.client.aclose()


class AsyncAuditStream:
    """The live audit stream's publisher for the asyncio API (see jarvis.cache.audit_stream)."""

    def __init__(self, link: AsyncRedisLink, *, maxlen: int = STREAM_MAXLEN) -> None:
        self.link = link
        self.maxlen = maxlen
        self.name = link.key("audit")

    async def publish(self, event: AuditEvent) -> None:
        """An async audit listener: XADD the signed event (approximately capped); skipped while Redis is down."""
        fields: Any = sign_fields(self.link.auth, self.name, event.as_strings())

        async def xadd(client: redis.asyncio.Redis) -> Any:
            return await client.xadd(self.name, fields, maxlen=self.maxlen, approximate=True)

        await self.link.run(xadd, None)


class AsyncCycleLock(LockRules):
    """`CycleLock` for asyncio: at most one running planning cycle per agent, a fencing token per holder."""

    def __init__(self, link: AsyncRedisLink, agent: str, *, ttl_ms: int = LOCK_TTL_MS) -> None:
        super().__init__(link, agent, ttl_ms)
        self.link: AsyncRedisLink = link
        self._delete_if_unchanged = link.client.register_script(DELETE_IF_UNCHANGED)

    def _lock(self, owner: str | None = None) -> redis.asyncio.lock.Lock:
        lock = redis.asyncio.lock.Lock(
            self.link.client, self._key, timeout=self.ttl_ms / 1000, blocking=False, thread_local=False
        )
        if owner is not None:
            lock.local.token = owner.encode()
        return lock

    async def acquire(self) -> CycleLease | None:
        """A lease, None when Redis is unavailable, CycleLockHeldError when a live holder has it."""
        owner = self._new_token()

        async def take(client: redis.asyncio.Redis) -> bool:
            lock = self._lock()
            if await lock.acquire(blocking=False, token=owner):
                return True
            return await self._clear_if_stale(client) and bool(await lock.acquire(blocking=False, token=owner))

        got = await self.link.run(take, None)
        if got is None and not self.link.available:
            return None
        if not got:
            raise self._held_error()

        async def fence(client: redis.asyncio.Redis) -> int:
            return int(await client.incr(self._fence))

        return CycleLease(self.agent, owner, await self.link.run(fence, 0))

    async def _clear_if_stale(self, client: redis.asyncio.Redis) -> bool:
        """True if the key is free now (it expired, or it was stale and we removed it)."""
        held: Any
        remaining: Any
        pipe = client.pipeline(transaction=True)
        pipe.get(self._key)  # queued, not sent: the pipeline returns itself
        pipe.pttl(self._key)
        held, remaining = await pipe.execute()
        if held is None:
            return True
        why = self._stale_reason(held, remaining)
        if why is None or not await self._delete_if_unchanged(keys=[self._key], args=[held], client=client):
            return False  # a live holder, or it changed meanwhile: someone else's now
        self._cleared(why)
        return True

    async def extend(self, lease: CycleLease) -> bool:
        """Renew the lease for another TTL; False when it is no longer ours."""

        async def extend(client: redis.asyncio.Redis) -> bool:
            try:
                return bool(await self._lock(lease.owner).extend(self.ttl_ms / 1000, replace_ttl=True))
            except LockError:
                return False

        return await self.link.run(extend, False)

    async def release(self, lease: CycleLease) -> bool:
        """Give the lock up; False when it was no longer ours (the next holder's lock is never deleted)."""

        async def release(client: redis.asyncio.Redis) -> bool:
            try:
                await self._lock(lease.owner).release()
            except LockError:
                return False
            return True

        return await self.link.run(release, False)


class AsyncCachedStateStore(CacheState[AsyncStateStore, AsyncRedisLink]):
    """`CachedStateStore` for asyncio: a hit is served only when PostgreSQL confirms its stamp."""

    def __init__(self, store: AsyncStateStore, link: AsyncRedisLink, *, ttl_ms: int = CACHE_TTL_MS) -> None:
        super().__init__(store, link, ttl_ms=ttl_ms)
        link.recoveries.append(self._replay_lost_invalidations)

    async def get(self, key: str) -> StateEntry | None:
        """The entry, from Redis when the cached copy is current, else from PostgreSQL (and cached)."""
        check_key(key)
        value_key, generation_key = self._value_key(key), self._generation_key(key)

        async def both(client: redis.asyncio.Redis) -> Any:
            return await client.mget([value_key, generation_key])

        cached: Any = await self.link.run(both, None)
        raw, generation = cached if cached is not None else (None, None)
        row = await self._authentic(key, value_key, raw) if raw is not None else None
        if row is not None and await self.store.database.read_one(STAMP_SQL, (key,)) == row.stamp:
            self.hits += 1
            return row.entry
        if row is not None:
            self.outdated += 1  # authentic, but PostgreSQL has moved past it: never served
        self.misses += 1
        fresh = row_from(key, await self.store.database.read_one(ROW_SQL, (key,)))
        if fresh is None and row is not None and raw is not None:  # the row is gone, so goes its copy
            await self._delete_entry(value_key, raw)
        if fresh is not None and self.link.available:
            arguments = [generation_seen(generation), encode_entry(self.link.auth, value_key, fresh), self.ttl_ms]

            async def install(client: redis.asyncio.Redis) -> Any:
                return await self._install(keys=[value_key, generation_key], args=arguments, client=client)

            await self.link.run(install, 0)
        return fresh.entry if fresh is not None else None

    async def set(self, key: str, value: Any, *, expected_version: int | None = None) -> StateEntry:
        """Write through to PostgreSQL, then drop the cached copy (even on error: the write may have committed)."""
        try:
            return await self.store.set(key, value, expected_version=expected_version)
        finally:
            await self._invalidate(key)

    async def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        """Delete in PostgreSQL, then drop the cached copy."""
        try:
            return await self.store.delete(key, expected_version=expected_version)
        finally:
            await self._invalidate(key)

    async def list(self, prefix: str = "", *, limit: int = 1000) -> list[StateEntry]:
        """Entries whose key starts with `prefix`, read from PostgreSQL (scans are not cached)."""
        return await self.store.list(prefix, limit=limit)

    async def invalidate(self, key: str) -> bool:
        """Drop the cached copy and bump the generation; False when Redis did not answer (replayed later)."""
        check_key(key)
        return await self._invalidate(key)

    async def _invalidate(self, key: str) -> bool:
        async def bump(client: redis.asyncio.Redis) -> bool:
            pipe = client.pipeline(transaction=True)
            pipe.incr(self._generation_key(key))  # queued, not sent: the pipeline returns itself
            pipe.expire(self._generation_key(key), GENERATION_TTL_S)
            pipe.delete(self._value_key(key))
            await pipe.execute()
            return True

        if await self.link.run(bump, False):
            return True
        self._lost(key)
        return False

    async def _replay_lost_invalidations(self) -> None:
        for key in self._take_lost():
            await self._invalidate(key)

    async def _authentic(self, key: str, value_key: str, raw: bytes) -> _Row | None:
        """The entry, if it carries a valid MAC for this very key; otherwise None, a warning, and it is removed."""
        row = decode_entry(self.link.auth, key, value_key, raw)
        if row is None:
            self.rejected += 1
            rejected(value_key)
            await self._delete_entry(value_key, raw)
        return row

    async def _delete_entry(self, value_key: str, raw: bytes) -> None:
        """Remove the entry `raw` unless it changed meanwhile (then it is someone else's)."""

        async def delete(client: redis.asyncio.Redis) -> Any:
            return await self._delete_if_unchanged(keys=[value_key], args=[raw], client=client)

        await self.link.run(delete, 0)
