"""The audit stream from the asyncio API: the same signed events on the same stream, and Redis outages cost nothing."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import pytest

from jarvis.cache import RedisLink, StreamReader, namespace_for
from jarvis.cache.aio import AsyncAuditStream, AsyncRedisLink
from jarvis.db import Database
from jarvis.db.aio import AsyncDatabase, AsyncToolCallLog
from jarvis_testkit.services import RedisServer

pytestmark = pytest.mark.anyio

DEADLINE = 30.0
KEY = secrets.token_bytes(32)


@pytest.fixture
async def async_link(redis_url: str, database: Database) -> AsyncIterator[AsyncRedisLink]:
    link = AsyncRedisLink(redis_url, namespace=namespace_for(database.url), auth_key=KEY)
    yield link
    await link.aclose()


async def test_async_appends_are_published_signed_and_read_by_the_sync_reader(
    async_database: AsyncDatabase, async_link: AsyncRedisLink, redis_url: str, database: Database
) -> None:
    reader = StreamReader(RedisLink(redis_url, namespace=namespace_for(database.url), auth_key=KEY))
    reader.start_from_latest()
    log = AsyncToolCallLog(async_database, listeners=[AsyncAuditStream(async_link).publish])
    async with log.record("streamed", {"secret": "api-key-123"}) as call:
        call.succeed({"usd": 1})
    events = reader.read(block_ms=100)
    assert [(e.fields["kind"], e.fields["row_id"]) for e in events][0] == ("tool_call.started", str(call.id))
    assert [e.fields["kind"] for e in events] == ["tool_call.started", "tool_call.succeeded"]
    assert reader.forged == 0 and all("api-key-123" not in str(e.fields) for e in events)


async def test_appends_go_on_while_redis_is_down_and_publishing_resumes_after(
    async_database: AsyncDatabase, private_redis_server: RedisServer, database: Database
) -> None:
    link = AsyncRedisLink(
        private_redis_server.url, namespace=namespace_for(database.url), auth_key=KEY, retry_after=0.05
    )
    log = AsyncToolCallLog(async_database, listeners=[AsyncAuditStream(link).publish])
    private_redis_server.stop()
    try:
        during = await log.start("during_outage", {})  # committed in PostgreSQL; the event is skipped
        assert not link.available
    finally:
        private_redis_server.start()
    reader = StreamReader(RedisLink(private_redis_server.url, namespace=namespace_for(database.url), auth_key=KEY))
    reader.start_from_latest()
    deadline = time.monotonic() + DEADLINE
    seen: list[str] = []
    while not seen and time.monotonic() < deadline:  # the link probes Redis again once retry_after has passed
        after = await log.start("after_outage", {})
        seen = [e.fields["row_id"] for e in reader.read(block_ms=50) if e.fields["row_id"] == str(after.id)]
        await asyncio.sleep(0.05)
    await link.aclose()
    assert seen and link.available
    assert during.tool_name == "during_outage"
