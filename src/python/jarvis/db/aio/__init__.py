"""The asyncio API: twins of jarvis.db's public classes that never block the event loop.

One pattern: the asyncio twin of `jarvis.db.X` lives in `jarvis.db.aio`, named `AsyncX`
(`Database` -> `AsyncDatabase`, `ToolCallLog` -> `AsyncToolCallLog`, ...), with the same
methods, arguments, rows and errors, awaited. Only the sending is twinned: the SQL, the
rows, their checks and the mapping of PostgreSQL's refusals to Jarvis' errors are the sync
modules' I/O-free functions and statement generators (jarvis.db.steps), used by both.
Connections are psycopg `AsyncConnection`s from a small pool of their own (jarvis.db.aio.pool).
"""

from jarvis.db.aio.audit import AsyncAuditListener, AsyncPlanningLog, AsyncToolCallLog
from jarvis.db.aio.chain import seal, verify
from jarvis.db.aio.engine import AsyncDatabase, open_async_database
from jarvis.db.aio.runtime_ddl import AsyncRuntimeSchema
from jarvis.db.aio.stores import AsyncMemoryStore, AsyncStateStore

__all__ = [
    "AsyncAuditListener",
    "AsyncDatabase",
    "AsyncMemoryStore",
    "AsyncPlanningLog",
    "AsyncRuntimeSchema",
    "AsyncStateStore",
    "AsyncToolCallLog",
    "open_async_database",
    "seal",
    "verify",
]
