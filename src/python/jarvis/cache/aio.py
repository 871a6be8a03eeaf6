"""The asyncio twins of the Redis pieces, on `redis.asyncio`: so far the link and the audit stream's publisher.

`AsyncRedisLink` degrades exactly like `RedisLink` (the same `RedisHealth` rules: a fallback
while Redis is down, one warning per outage, a probe after `retry_after`, recoveries on
its return) and signs with the same `Authenticator`; `AsyncAuditStream.publish` is an
`AsyncAuditListener` for `AsyncToolCallLog` / `AsyncPlanningLog` that XADDs the same signed
fields (`sign_fields`) to the same stream, so `jarvis audit tail` and `StreamReader` read
both alike. The state cache and the cycle lock have no asyncio twin yet.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis
import redis.asyncio

from jarvis.cache.audit_stream import STREAM_MAXLEN, sign_fields
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
