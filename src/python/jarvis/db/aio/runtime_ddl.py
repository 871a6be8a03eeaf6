"""`AsyncRuntimeSchema`: the asyncio twin of `RuntimeSchema` (jarvis.db.runtime_ddl).

The same statement generators (names checked against the strict pattern before any SQL is
built, the menu of types, `agent_ext`, every creation recorded in `schema_changes`), awaited.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jarvis.db.aio.engine import AsyncDatabase
from jarvis.db.runtime_ddl import (
    TableCreated,
    create_table_steps,
    describe_steps,
    insert_row_steps,
    rows_steps,
    tables_steps,
)


class AsyncRuntimeSchema:
    """Tables the agent creates for itself while running, awaited."""

    def __init__(self, database: AsyncDatabase) -> None:
        self.database = database

    async def create_table(self, name: str, columns: Mapping[str, str]) -> TableCreated:
        """Create `agent_ext.<name>`; a no-op for an identical definition, TableConflictError for a conflicting one."""
        created = await self.database.run(create_table_steps(name, columns))
        if created.created:
            self.database.wake_sealer()  # its schema_changes row is sealed and signed like any audit row
        return created

    async def insert_row(self, name: str, values: Mapping[str, Any]) -> int:
        """Insert one row into a runtime table; returns its id."""
        return await self.database.run(insert_row_steps(name, values))

    async def rows(self, name: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """The table's first `limit` rows by id, as dictionaries."""
        return await self.database.run(rows_steps(name, limit))

    async def describe(self, name: str) -> dict[str, str]:
        """The caller-level column types of a runtime table, as recorded when it was created."""
        return await self.database.run(describe_steps(name))

    async def tables(self) -> list[str]:
        """The names of the tables the agent created at runtime, in its own schema."""
        return await self.database.run(tables_steps())
