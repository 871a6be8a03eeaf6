"""A small pool of psycopg `AsyncConnection`s for the asyncio API.

Why not psycopg_pool or SQLAlchemy's asyncio engine: neither is in Jarvis' resolve (SQLAlchemy's
needs greenlet), and what the sync pool promises is little: at most `size` connections, a
waiter gives up after `timeout` seconds with `PoolExhaustedError` (JARVIS_CONNECT_TIMEOUT)
unless it records an outcome (`patient`: it waits its turn),
the most recently used connection first (warm caches), a connection idle for more than a
second is pinged first and replaced if dead (survives a server restart), none is older than
JARVIS_POOL_MAX_AGE, and a connection that failed is never reused. Every connection is in
autocommit; transactions are explicit (`conn.transaction()`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from jarvis.config import Settings
from jarvis.db.engine import PING_AFTER_IDLE, PREPARE_ONLY_WHEN_ASKED
from jarvis.db.role_rules import pool_exhausted, unavailable

log = logging.getLogger("jarvis.db")


@dataclass
class _Pooled:
    connection: psycopg.AsyncConnection[Any]
    born: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)


class AsyncPool:
    """At most `settings.pool_size` connections to `url`; see the module's note for what it promises."""

    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url
        self.settings = settings
        self._slots = asyncio.Semaphore(settings.pool_size)
        self._idle: list[_Pooled] = []
        self._closed = False

    @asynccontextmanager
    async def connection(self, *, patient: bool = False) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection for one unit of work; broken or left mid-transaction, it is closed instead of returned.

        `patient`: wait in line however long the pool stays busy, never PoolExhaustedError (the outcome
        row of a tool that already ran must not be lost to a busy pool); a warning says so once the
        checkout timeout has passed.
        """
        if patient:
            warning = asyncio.get_running_loop().call_later(
                self.settings.connect_timeout,
                lambda: log.warning(
                    "%s; still waiting to record the outcome of work that already ran", pool_exhausted(self.settings)
                ),
            )
            try:
                await self._slots.acquire()
            finally:
                warning.cancel()
        else:
            try:
                async with asyncio.timeout(self.settings.connect_timeout):
                    await self._slots.acquire()
            except TimeoutError:
                raise pool_exhausted(self.settings) from None
        pooled: _Pooled | None = None
        try:
            pooled = await self._usable()
            yield pooled.connection
        except psycopg.OperationalError:
            if pooled is not None:
                await pooled.connection.close()
            raise
        finally:
            if pooled is not None:
                await self._give_back(pooled)
            self._slots.release()

    async def _usable(self) -> _Pooled:
        max_age = self.settings.pool_recycle_seconds()
        while self._idle:
            pooled = self._idle.pop()  # LIFO: the warmest
            now = time.monotonic()
            if now - pooled.born >= max_age:
                await pooled.connection.close()
                continue
            if now - pooled.last_used >= PING_AFTER_IDLE:
                try:
                    await pooled.connection.execute("SELECT 1")
                except psycopg.Error:
                    await pooled.connection.close()
                    continue
            return pooled
        return _Pooled(await self._connect())

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        try:
            connection = await psycopg.AsyncConnection.connect(
                self.url,
                autocommit=True,
                connect_timeout=max(1, math.ceil(self.settings.connect_timeout)),
                application_name="jarvis",
                prepare_threshold=None,  # never prepared automatically; see below
            )
        except psycopg.OperationalError as error:
            raise unavailable(self.url, error) from None
        # Direct to PostgreSQL (not a pooler): the hot path may prepare. See jarvis.db.engine's note.
        row = await (await connection.execute("SELECT pg_catalog.pg_backend_pid()")).fetchone()
        if row is not None and row[0] == connection.info.backend_pid:
            connection.prepare_threshold = PREPARE_ONLY_WHEN_ASKED
        return connection

    async def _give_back(self, pooled: _Pooled) -> None:
        connection = pooled.connection
        if connection.closed:
            return
        if self._closed or connection.info.transaction_status != TransactionStatus.IDLE or not connection.autocommit:
            await connection.close()
            return
        pooled.last_used = time.monotonic()
        self._idle.append(pooled)

    async def close(self) -> None:
        """Close the idle connections now; busy ones close when given back."""
        self._closed = True
        idle, self._idle = self._idle, []
        for pooled in idle:
            await pooled.connection.close()
