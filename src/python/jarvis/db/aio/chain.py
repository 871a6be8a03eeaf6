"""`seal` and `verify` for the asyncio API: the sync implementation, run in a worker thread.

Deliberately not twinned: sealing and verifying are whole-trail operations with one
implementation that the threat model's tests attack (jarvis.db.audit.chain, .verifier); a
second one would be a second thing to trust. `asyncio.to_thread` keeps the event loop
free while they run, on a sync `Database` the `AsyncDatabase` opens for them on first use
(`AsyncDatabase.sync_twin()`: same URL, role and settings; closed by `aclose()`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from jarvis.db.aio.engine import AsyncDatabase
from jarvis.db.audit import SealResult, VerifyReport
from jarvis.db.audit import seal as seal_sync
from jarvis.db.audit import verify as verify_sync


async def seal(database: AsyncDatabase, *, wait: float = 0.0) -> SealResult:
    """`jarvis.db.audit.seal` in a worker thread: link every queued audit row into the chain."""
    return await asyncio.to_thread(seal_sync, database.sync_twin(), wait=wait)


async def verify(database: AsyncDatabase, **options: Any) -> VerifyReport:
    """`jarvis.db.audit.verify` in a worker thread, with the same keyword options (expect, trusted, ...)."""
    return await asyncio.to_thread(verify_sync, database.sync_twin(), **options)
