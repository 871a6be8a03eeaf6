"""`AsyncStateStore` and `AsyncMemoryStore`: the asyncio twins of `StateStore` and `MemoryStore`.

Each method runs the sync module's statement generator (jarvis.db.state, jarvis.db.memory)
on an `AsyncDatabase`: the same SQL, checks and errors (`StateConflictError`,
`InvalidKeyError`, `InvalidJsonError`); state `get` and `set` as one-round-trip statements
(as the sync store sends them), everything else in one transaction per call.
"""

from __future__ import annotations

from typing import Any

from jarvis.db.aio.engine import AsyncDatabase
from jarvis.db.memory import Fact, add_steps, mark_stale_steps, newest_first_steps
from jarvis.db.state import StateEntry, delete_steps, get_steps, list_steps, set_steps


class AsyncStateStore:
    """Key/value state with compare-and-set, awaited."""

    def __init__(self, database: AsyncDatabase) -> None:
        self.database = database

    async def get(self, key: str) -> StateEntry | None:
        """The entry under `key`, or None, in one round trip (as `StateStore.get`: `get_steps`)."""
        return await self.database.run_autocommit(get_steps(key))

    async def set(self, key: str, value: Any, *, expected_version: int | None = None) -> StateEntry:
        """Write `value`; with `expected_version` (0 = must not exist yet) a compare-and-set, in one round trip."""
        return await self.database.run_autocommit(set_steps(key, value, expected_version))

    async def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        """Remove `key`; False if it did not exist. With `expected_version`, only that version."""
        return await self.database.run(delete_steps(key, expected_version))

    async def list(self, prefix: str = "", *, limit: int = 1000) -> list[StateEntry]:
        """Entries whose key starts with `prefix`, in key order."""
        return await self.database.run(list_steps(prefix, limit))


class AsyncMemoryStore:
    """Facts by subject, containment search, stale marking, awaited."""

    def __init__(self, database: AsyncDatabase) -> None:
        self.database = database

    async def add(self, subject: str, body: Any) -> Fact:
        return await self.database.run(add_steps(subject, body))

    async def about(self, subject: str, *, include_stale: bool = False, limit: int = 100) -> list[Fact]:
        """Facts about `subject`, newest first."""
        return await self.database.run(newest_first_steps(subject=subject, include_stale=include_stale, limit=limit))

    async def search(
        self, contains: dict[str, Any], *, subject: str | None = None, include_stale: bool = False, limit: int = 100
    ) -> list[Fact]:
        """Facts whose body contains `contains` (JSONB @>), newest first; with `subject`, only about it."""
        steps = newest_first_steps(subject=subject, contains=contains, include_stale=include_stale, limit=limit)
        return await self.database.run(steps)

    async def fresh(self, *, limit: int = 100) -> list[Fact]:
        """The newest facts that still hold."""
        return await self.database.run(newest_first_steps(limit=limit))

    async def mark_stale(self, *, fact_id: int | None = None, subject: str | None = None) -> int:
        """Mark one fact (by id) or every fact about a subject as stale; how many changed."""
        return await self.database.run(mark_stale_steps(fact_id, subject))
