"""The asyncio twins of the Redis pieces, on `redis.asyncio`: the link, the audit stream's publisher, the cycle lock.

`AsyncRedisLink` degrades exactly like `RedisLink` (the same `RedisHealth` rules: a fallback
while Redis is down, one warning per outage, a probe after `retry_after`, recoveries on
its return) and signs with the same `Authenticator`; `AsyncAuditStream.publish` is an
`AsyncAuditListener` for `AsyncToolCallLog` / `AsyncPlanningLog` that XADDs the same signed
fields (`sign_fields`) to the same stream, so `jarvis audit tail` and `StreamReader` read
both alike; `AsyncCycleLock` is `CycleLock` on redis.asyncio's `Lock`, with the same keys,
signed tokens and stale rule (`LockRules`), so sync and async agents exclude each other.
The state cache has no asyncio twin yet.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis
import redis.asyncio
import redis.asyncio.lock
from redis.exceptions import LockError

from jarvis.cache.audit_stream import STREAM_MAXLEN, sign_fields
from jarvis.cache.cycle_lock import DELETE_IF_UNCHANGED, LOCK_TTL_MS, CycleLease, LockRules
from jarvis.cache.link import CONNECTION_ERRORS, LinkBase
from jarvis.db.audit import AuditEvent

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
        except CONNECTION_ERRORS as error:
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
