"""seal/verify from the asyncio API: the sync implementation in a worker thread, so the same verdicts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from jarvis.config import Settings
from jarvis.db.aio import AsyncDatabase, AsyncToolCallLog, open_async_database, seal, verify
from jarvis_testkit import tamper

pytestmark = pytest.mark.anyio


@pytest.fixture
async def isolated_async_database(isolated_database_url: str, settings: Settings) -> AsyncIterator[AsyncDatabase]:
    database = await open_async_database(settings, url=isolated_database_url)
    yield database
    await database.aclose()


async def test_async_seal_links_the_async_appends_and_verify_passes(isolated_async_database: AsyncDatabase) -> None:
    log = AsyncToolCallLog(isolated_async_database)
    start = await log.start("sealed", {"n": 1})
    await log.record_completion(start, "succeeded", output=1)
    sealed = await seal(isolated_async_database, wait=30)
    report = await verify(isolated_async_database)
    assert sealed.linked >= 2
    assert report.ok, report.problems
    assert report.head_seq == sealed.head_seq


async def test_async_verify_names_a_row_a_superuser_edited(
    isolated_async_database: AsyncDatabase, isolated_database_url: str
) -> None:
    log = AsyncToolCallLog(isolated_async_database)
    start = await log.start("edited", {"amount": 1})
    await seal(isolated_async_database, wait=30)
    tamper.edit(isolated_database_url, "tool_calls", start.id, "input", """'{"amount": 1000}'""")
    report = await verify(isolated_async_database)
    assert not report.ok
    assert any(str(start.id) in str(problem) for problem in report.problems), report.problems
