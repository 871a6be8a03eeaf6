"""`agent_state` API: JSON values by key, with optimistic concurrency.

Every write bumps `version`. Passing `expected_version` turns a write into a
compare-and-set, so two agents (or two processes of one) can never overwrite
each other's update unnoticed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from jarvis.config import ExitCode, JarvisError
from jarvis.db.base import JsonValue
from jarvis.db.engine import Database, unavailable
from jarvis.db.jsonb import check_text, ensure_jsonb
from jarvis.db.steps import Statement, Steps, T, drive

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


_RETURNING = "RETURNING key, value, version, updated_at"
GET_SQL = "SELECT s.value, s.version, s.updated_at FROM public.agent_state s WHERE s.key OPERATOR(pg_catalog.=) %s"
UPSERT_SQL = (
    "INSERT INTO public.agent_state AS s (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET "
    "value = excluded.value, version = s.version + 1, updated_at = pg_catalog.now() " + _RETURNING
)
CREATE_SQL = "INSERT INTO public.agent_state (key, value) VALUES (%s, %s) ON CONFLICT DO NOTHING " + _RETURNING
CHANGE_SQL = (
    "UPDATE public.agent_state SET value = %s, version = version + 1, updated_at = pg_catalog.now() "
    "WHERE key = %s AND version = %s " + _RETURNING
)
VERSION_SQL = "SELECT version FROM public.agent_state WHERE key = %s"
DELETE_SQL = "DELETE FROM public.agent_state WHERE key = %s RETURNING id"
DELETE_VERSION_SQL = "DELETE FROM public.agent_state WHERE key = %s AND version = %s RETURNING id"
LIST_SQL = "SELECT key, value, version, updated_at FROM public.agent_state ORDER BY key LIMIT %s"
LIST_PREFIX_SQL = (
    "SELECT key, value, version, updated_at FROM public.agent_state "
    "WHERE pg_catalog.starts_with(key, %s) ORDER BY key LIMIT %s"
)


# The rules of state, without I/O: StateStore and AsyncStateStore (jarvis.db.aio) run these (the sync store
# sends each statement in one round trip of its own; a write never needs a second statement in its transaction).


READ_LEFTOVERS_TO_UNDO = (
    psycopg.errors.QueryCanceled,  # a statement_timeout
    psycopg.errors.LockNotAvailable,  # a lock_timeout
    psycopg.errors.InsufficientPrivilege,  # a role left set that may not read (or the login may not)
)
"""What a bare read can fail on because of a session a pooled neighbour left behind (the role statement undoes it)."""


def get_steps(key: str) -> Steps[StateEntry | None]:
    """The entry under `key`: a bare SELECT first (everything in it is schema-qualified, so a neighbour's search
    path cannot change it, and reading needs no role), again after the role statement when a neighbour's
    leftovers refuse it."""
    check_key(key)
    try:
        row = yield Statement(GET_SQL, (key,), in_role=False)
    except READ_LEFTOVERS_TO_UNDO:
        row = yield Statement(GET_SQL, (key,), in_role=True)
    return entry_from_get(key, row)


def entry_from_get(key: str, row: Sequence[Any] | None) -> StateEntry | None:
    """`GET_SQL`'s row as an entry (the key is the one asked for)."""
    return StateEntry(key=key, value=row[0], version=row[1], updated_at=row[2]) if row else None


def set_steps(key: str, value: Any, expected_version: int | None) -> Steps[StateEntry]:
    """Write `value`; with `expected_version` (0 = must not exist yet) a compare-and-set, else StateConflictError."""
    check_key(key)
    ensure_jsonb(value, what=f"state {key!r}")
    if expected_version is None:
        row = yield Statement(UPSERT_SQL, (key, Jsonb(value)))
    elif expected_version == 0:
        row = yield Statement(CREATE_SQL, (key, Jsonb(value)))
    else:
        row = yield Statement(CHANGE_SQL, (Jsonb(value), key, expected_version))
    if row is None:
        actual = yield Statement(VERSION_SQL, (key,))
        raise StateConflictError(key, expected_version or 0, actual[0] if actual else None)
    return StateEntry(key=row[0], value=row[1], version=row[2], updated_at=row[3])


def delete_steps(key: str, expected_version: int | None) -> Steps[bool]:
    """Remove `key`: whether it existed; with `expected_version`, only that version (else StateConflictError)."""
    check_key(key)
    if expected_version is None:
        return (yield Statement(DELETE_SQL, (key,))) is not None
    if (yield Statement(DELETE_VERSION_SQL, (key, expected_version))) is not None:
        return True
    actual = yield Statement(VERSION_SQL, (key,))
    if actual is not None:
        raise StateConflictError(key, expected_version, actual[0])
    return False


def list_steps(prefix: str, limit: int) -> Steps[list[StateEntry]]:
    """Entries whose key starts with `prefix`, in key order."""
    if prefix:
        check_text(prefix, "state key prefix")
        rows = yield Statement(LIST_PREFIX_SQL, (prefix, limit), rows="all")
    else:
        rows = yield Statement(LIST_SQL, (limit,), rows="all")
    return [StateEntry(key=row[0], value=row[1], version=row[2], updated_at=row[3]) for row in rows]


class StateStore:
    """Key/value state in PostgreSQL, the source of truth (a cache may sit in front of it)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def get(self, key: str) -> StateEntry | None:
        """The entry under `key`, or None: one bare SELECT, as raw psycopg would send it (see `get_steps`)."""
        return self._in_round_trips(get_steps(key))

    def set(self, key: str, value: Any, *, expected_version: int | None = None) -> StateEntry:
        """Write `value`. With `expected_version` (0 = must not exist yet) it is a compare-and-set.

        One round trip: the role statement and the write in one pipeline, one implicit transaction.
        """
        return self._in_round_trips(set_steps(key, value, expected_version))

    def _in_round_trips(self, steps: Steps[T]) -> T:
        """Run `steps` in autocommit, each statement in one round trip and its own implicit transaction."""
        database = self.database
        try:
            with database.autocommit_cursor() as cursor:
                return drive(
                    steps,
                    lambda statement: database.fetch_one(
                        cursor, statement.sql, statement.params, in_role=statement.in_role
                    ),
                    psycopg.Error,
                )
        except psycopg.OperationalError as error:
            raise unavailable(database.url, error) from None

    def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        """Remove `key`; False if it did not exist. With `expected_version`, only that version is removed."""
        return self.database.run(delete_steps(key, expected_version))

    def list(self, prefix: str = "", *, limit: int = 1000) -> list[StateEntry]:
        """Entries whose key starts with `prefix`, in key order."""
        return self.database.run(list_steps(prefix, limit))
