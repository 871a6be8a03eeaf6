"""`AsyncDatabase`: the asyncio twin of `Database`, on psycopg `AsyncConnection`s.

Same guarantees as the sync engine (jarvis.db.engine): every transaction begins with the
role statements of `RoleRules` (shared, not copied), nothing is left in the session, the
hot path prepares only on a direct connection, pool exhaustion and outages are
`PoolExhaustedError` / `DatabaseUnavailableError` with the same messages. Operations are the
I/O-free generators of the core (jarvis.db.steps); `run()` and `read_one()` send their
statements without ever blocking the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg

from jarvis.config import Settings
from jarvis.db.aio.pool import AsyncPool
from jarvis.db.engine import Database, open_database, resolve_url
from jarvis.db.jsonb import set_max_value_bytes
from jarvis.db.role_rules import ROLES_SQL, Role, RoleRules, Roles, connection_lost, unavailable
from jarvis.db.steps import Statement, Steps, T, drive_async

log = logging.getLogger("jarvis.db")


@dataclass
class AsyncDatabase(RoleRules):
    """A pool of async connections to one database, and the role every transaction runs as."""

    pool: AsyncPool
    url: str
    settings: Settings
    role: Role = "app"
    _roles: Roles | None = field(default=None, repr=False)
    _role_statements: dict[bool, tuple[str, tuple[str, ...]]] = field(default_factory=dict, repr=False)
    _sync_twin: Database | None = field(default=None, repr=False)

    def sync_twin(self) -> Database:
        """A sync `Database` on the same URL, role and settings, for what runs in worker threads (seal, verify).

        Opened on first use (no connection until then) and shut down by `aclose()`.
        """
        if self._sync_twin is None:
            self._sync_twin = open_database(self.settings, url=self.url, role=self.role)
        return self._sync_twin

    @asynccontextmanager
    async def connection(self, *, patient: bool = False) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection in autocommit, the database's roles resolved; an outage is DatabaseUnavailableError.

        `patient`: it waits for a busy pool however long it takes (see `AsyncPool.connection`).
        """
        try:
            async with self.pool.connection(patient=patient) as connection:
                if self.role != "owner" and self._roles is None:
                    await self._resolve_roles(connection)
                yield connection
        except psycopg.OperationalError as error:
            if connection_lost(error):
                raise unavailable(self.url, error) from None
            raise

    async def _resolve_roles(self, connection: psycopg.AsyncConnection[Any]) -> None:
        try:
            row = await (await connection.execute(ROLES_SQL)).fetchone()
        except psycopg.errors.UndefinedTable:
            raise self.not_migrated() from None
        self.remember_roles(row)

    @asynccontextmanager
    async def transaction(self, *, read_only: bool = False) -> AsyncIterator[psycopg.AsyncCursor[Any]]:
        """A cursor inside a transaction begun as the role; commits on success, rolls back on error."""
        async with self.connection() as connection, connection.transaction():
            cursor = connection.cursor()
            try:
                async with connection.pipeline():
                    for sql, params in self.role_statements(read_only=read_only):
                        await cursor.execute(sql, params)
            except psycopg.errors.InsufficientPrivilege as error:
                raise self.role_not_granted(error) from None
            yield cursor

    async def run(self, steps: Steps[T]) -> T:
        """Run one core operation (a jarvis.db.steps generator) in one transaction as the role."""
        async with self.transaction() as cursor:

            async def execute(statement: Statement) -> Any:
                await cursor.execute(statement.sql, statement.params)
                if statement.rows == "one":
                    return await cursor.fetchone()
                return await cursor.fetchall() if statement.rows == "all" else None

            return await drive_async(steps, execute, psycopg.Error)

    async def run_autocommit(self, steps: Steps[T], *, patient: bool = False) -> T:
        """Run a core operation whose statements commit one by one, each in one round trip (the append path)."""
        async with self.connection(patient=patient) as connection:
            cursor = connection.cursor(binary=True)

            async def execute(statement: Statement) -> Any:
                return await self.fetch_one(cursor, statement.sql, statement.params, in_role=statement.in_role)

            return await drive_async(steps, execute, psycopg.Error)

    async def fetch_one(
        self, cursor: psycopg.AsyncCursor[Any], sql: str, params: Sequence[Any], *, in_role: bool = True
    ) -> tuple[Any, ...] | None:
        """`sql`'s first row in one implicit transaction and one round trip (see `Database.fetch_one`)."""
        statements = self.one_round_trip(sql, params, in_role=in_role)
        if len(statements) == 1:
            await cursor.execute(sql, params, prepare=True)
        else:
            async with cursor.connection.pipeline():
                for statement, arguments in statements:
                    await cursor.execute(statement, arguments, prepare=True)
        row: tuple[Any, ...] | None = await cursor.fetchone()
        return row

    async def read_one(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        """`sql`'s first row as this database's role, in one round trip."""
        async with self.connection() as connection:
            return await self.fetch_one(connection.cursor(binary=True), sql, params)

    def wake_sealer(self) -> None:
        """A row was appended: the sync twin's background sealer seals and signs it within JARVIS_SEAL_INTERVAL."""
        if self.role == "app" and self.settings.seal_interval > 0:
            from jarvis.db.audit.autoseal import wake_sealer  # jarvis.db.audit imports this module's package

            wake_sealer(self.sync_twin())

    async def aclose(self) -> None:
        """Seal and sign what was appended (in a worker thread), then close idle pooled connections."""
        if self._sync_twin is not None:
            await asyncio.to_thread(self._sync_twin.shutdown)
        await self.pool.close()

    async def __aenter__(self) -> AsyncDatabase:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()


async def open_async_database(settings: Settings, *, url: str | None = None, role: Role = "app") -> AsyncDatabase:
    """The asyncio twin of `open_database`: no connection is made until the first use.

    Without DATABASE_URL the embedded PostgreSQL is started (in a worker thread: it takes
    seconds). `role` is what every transaction runs as, as in `open_database`.
    """
    where = url if url is not None else (await asyncio.to_thread(resolve_url, settings))[0]
    set_max_value_bytes(settings.max_value_bytes)
    database = AsyncDatabase(pool=AsyncPool(where, settings), url=where, settings=settings, role=role)
    log.log(logging.INFO if role == "app" else logging.DEBUG, "using PostgreSQL at %s (asyncio)", database.display_url)
    return database
