"""Persistence: engine, tables, migrations and the audit trail. Knows nothing of the agent."""

from jarvis.db.engine import (
    Database,
    DatabaseError,
    DatabaseUnavailableError,
    NotMigratedError,
    PoolExhaustedError,
    Role,
    RoleNotGrantedError,
    Roles,
    open_database,
)
from jarvis.db.jsonb import InvalidJsonError, ensure_jsonb
from jarvis.db.memory import Fact, MemoryStore
from jarvis.db.runtime_ddl import RuntimeDDLError, RuntimeSchema, TableConflictError, TableCreated
from jarvis.db.state import InvalidKeyError, StateConflictError, StateEntry, StateStore

__all__ = [
    "Database",
    "DatabaseError",
    "DatabaseUnavailableError",
    "Fact",
    "InvalidJsonError",
    "InvalidKeyError",
    "NotMigratedError",
    "MemoryStore",
    "PoolExhaustedError",
    "Role",
    "RoleNotGrantedError",
    "Roles",
    "RuntimeDDLError",
    "RuntimeSchema",
    "StateConflictError",
    "StateEntry",
    "StateStore",
    "TableConflictError",
    "TableCreated",
    "ensure_jsonb",
    "open_database",
]
