"""`agent_state` API: JSON values by key, with optimistic concurrency.

Every write bumps `version`. Passing `expected_version` turns a write into a
compare-and-set, so two agents (or two processes of one) can never overwrite
each other's update unnoticed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from jarvis.config import ExitCode, JarvisError
from jarvis.db.base import JsonValue
from jarvis.db.engine import Database
from jarvis.db.jsonb import check_text, ensure_jsonb
from jarvis.db.models import AgentState

MAX_KEY_LENGTH = 512


class StateConflictError(JarvisError):
    """A compare-and-set found another version than the one expected."""

    def __init__(self, key: str, expected: int, actual: int | None) -> None:
        self.key, self.expected, self.actual = key, expected, actual
        found = "no value" if actual is None else f"version {actual}"
        super().__init__(
            f"state {key!r}: expected version {expected} but found {found}; someone else changed it. "
            "Fix: read it again and retry with the new version."
        )


class InvalidKeyError(JarvisError, ValueError):
    """A state key or fact subject is empty or too long; the message gives the limit.

    Not an InvalidJsonError: a key is a name, never a JSON value. (Text no column can hold,
    such as a NUL, is still reported by `check_text` as InvalidJsonError, whatever it names.)
    """

    exit_code = ExitCode.BAD_INPUT


@dataclass(frozen=True)
class StateEntry:
    key: str
    value: JsonValue
    version: int
    updated_at: datetime


def check_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidKeyError("state key must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(
            f"state key is {len(key)} characters long; at most {MAX_KEY_LENGTH} are allowed. "
            "Fix: use a shorter key (store long text in the value)"
        )
    check_text(key, "state key")
    return key


def _entry(row: Any) -> StateEntry:
    return StateEntry(key=row.key, value=row.value, version=row.version, updated_at=row.updated_at)


_COLUMNS = (AgentState.key, AgentState.value, AgentState.version, AgentState.updated_at)
GET_SQL = "SELECT s.value, s.version, s.updated_at FROM public.agent_state s WHERE s.key OPERATOR(pg_catalog.=) %s"


class StateStore:
    """Key/value state in PostgreSQL, the source of truth (a cache may sit in front of it)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def get(self, key: str) -> StateEntry | None:
        """The entry under `key`, or None: one round trip (the role statement and the SELECT together)."""
        check_key(key)
        row = self.database.read_one(GET_SQL, (key,))
        return StateEntry(key=key, value=row[0], version=row[1], updated_at=row[2]) if row else None

    def set(self, key: str, value: Any, *, expected_version: int | None = None) -> StateEntry:
        """Write `value`. With `expected_version` (0 = must not exist yet) it is a compare-and-set."""
        check_key(key)
        ensure_jsonb(value, what=f"state {key!r}")
        with self.database.begin() as conn:
            if expected_version is None:
                stmt = pg_insert(AgentState).values(key=key, value=value)
                stmt = stmt.on_conflict_do_update(
                    index_elements=[AgentState.key],
                    set_={"value": stmt.excluded.value, "version": AgentState.version + 1, "updated_at": func.now()},
                )
                row: Any = conn.execute(stmt.returning(*_COLUMNS)).one()
            elif expected_version == 0:
                created = pg_insert(AgentState).values(key=key, value=value).on_conflict_do_nothing()
                row = conn.execute(created.returning(*_COLUMNS)).first()
            else:
                changed = (
                    update(AgentState)
                    .where(AgentState.key == key, AgentState.version == expected_version)
                    .values(value=value, version=AgentState.version + 1, updated_at=func.now())
                )
                row = conn.execute(changed.returning(*_COLUMNS)).first()
            if row is None:
                actual = conn.execute(select(AgentState.version).where(AgentState.key == key)).scalar()
                raise StateConflictError(key, expected_version or 0, actual)
        return _entry(row)

    def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        """Remove `key`; False if it did not exist. With `expected_version`, only that version is removed."""
        stmt = delete(AgentState).where(AgentState.key == check_key(key))
        if expected_version is not None:
            stmt = stmt.where(AgentState.version == expected_version)
        with self.database.begin() as conn:
            deleted = conn.execute(stmt.returning(AgentState.id)).first() is not None
            if not deleted and expected_version is not None:
                actual = conn.execute(select(AgentState.version).where(AgentState.key == key)).scalar()
                if actual is not None:
                    raise StateConflictError(key, expected_version, actual)
        return deleted

    def list(self, prefix: str = "", *, limit: int = 1000) -> list[StateEntry]:
        """Entries whose key starts with `prefix`, in key order."""
        if prefix:
            check_text(prefix, "state key prefix")
        stmt = select(*_COLUMNS).order_by(AgentState.key).limit(limit)
        if prefix:
            stmt = stmt.where(func.starts_with(AgentState.key, prefix))
        with self.database.connect() as conn:
            return [_entry(row) for row in conn.execute(stmt)]
