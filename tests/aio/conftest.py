"""Fixtures for the asyncio API: anyio's pytest plugin on asyncio, an AsyncDatabase per test, and `api`,
the same behavioural tests run against the sync API and its asyncio twin."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from jarvis.config import Settings
from jarvis.db import Database, MemoryStore, RuntimeSchema, StateStore
from jarvis.db.aio import (
    AsyncDatabase,
    AsyncMemoryStore,
    AsyncPlanningLog,
    AsyncRuntimeSchema,
    AsyncStateStore,
    AsyncToolCallLog,
    open_async_database,
)
from jarvis.db.audit import PlanningLog, ToolCallLog
from jarvis_testkit.both_apis import Api


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def async_database(migrated_database_url: str, settings: Settings) -> AsyncIterator[AsyncDatabase]:
    """The module's migrated database through the asyncio API, as the app role."""
    database = await open_async_database(settings, url=migrated_database_url)
    yield database
    await database.aclose()


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest, database: Database, async_database: AsyncDatabase) -> Api:
    """The sync API or its asyncio twin; its planning log has an agent name of its own (one open cycle each)."""
    agent = f"agent-{uuid.uuid4().hex[:8]}"
    if request.param == "sync":
        return Api(
            "sync",
            ToolCallLog(database),
            PlanningLog(database, agent=agent),
            StateStore(database),
            MemoryStore(database),
            RuntimeSchema(database),
        )
    return Api(
        "async",
        AsyncToolCallLog(async_database),
        AsyncPlanningLog(async_database, agent=agent),
        AsyncStateStore(async_database),
        AsyncMemoryStore(async_database),
        AsyncRuntimeSchema(async_database),
    )
