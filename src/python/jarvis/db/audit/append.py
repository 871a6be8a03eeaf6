"""Appending one audit row: idempotent, retried after a lost connection, announced after commit."""

from __future__ import annotations

import functools
import itertools
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import Table, exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB

from jarvis.config import JarvisError
from jarvis.db.audit.autoseal import wake_sealer
from jarvis.db.engine import Database, DatabaseUnavailableError
from jarvis.db.role_rules import RoleRules, connection_lost
from jarvis.db.steps import Statement, Steps, drive

log = logging.getLogger("jarvis.audit")

RETRY_DELAYS = (0.05, 0.2, 0.5, 1.0, 2.0, 2.0)
"""Backoff between attempts (~6 s in all): enough to ride out a PostgreSQL restart."""


class AuditAppendError(JarvisError):
    """An audit row was refused; the message says which rule it broke."""


class AuditIdCollisionError(AuditAppendError):
    """A row with this id exists with other content: an id was reused, not a retry."""


class AuditAppendBlockedError(AuditAppendError):
    """Another session kept a lock the append needs for every try (a start row only); the message names it."""


@dataclass(frozen=True, kw_only=True)
class AuditEvent:
    """What listeners (the Redis stream) learn about a committed audit row. No payloads.

    Keyword-only: eight fields, five of them optional and three of them UUIDs, are
    too easy to put in the wrong place by position.
    """

    table: str
    kind: str
    row_id: uuid.UUID
    created_at: datetime
    status: str | None = None
    parent_id: uuid.UUID | None = None
    cycle_id: uuid.UUID | None = None
    tool_name: str | None = None

    def as_strings(self) -> dict[str, str]:
        return {
            key: value.isoformat() if isinstance(value, datetime) else str(value)
            for key, value in asdict(self).items()
            if value is not None
        }


AuditListener = Callable[[AuditEvent], None]


class AuditRuleViolation(AuditAppendError):
    """PostgreSQL refused the row (a constraint or trigger); `constraint` names the rule when known."""

    def __init__(self, message: str, constraint: str | None) -> None:
        super().__init__(message)
        self.constraint = constraint


_SQL_TYPES = {"UUID": "uuid", "TEXT": "text", "JSONB": "jsonb", "INTEGER": "int4"}

LEFTOVERS_TO_UNDO = (
    psycopg.errors.ReadOnlySqlTransaction,  # default_transaction_read_only = on
    psycopg.errors.QueryCanceled,  # a statement_timeout (a lock_timeout is the function's own: see LOCK_WAIT)
    psycopg.errors.ObjectNotInPrerequisiteState,  # session_replication_role is not origin
    psycopg.errors.InsufficientPrivilege,  # a role left set that may not append (or the login may not)
    psycopg.DataError,
)
"""What the bare append can fail on because of a session a pooled neighbour left behind."""

LOCK_WAIT = "5s"
"""How long an append function waits for one lock (its own `lock_timeout`, migration 0011) before the statement
fails with lock_not_available and is sent again. The row's `created_at` is stamped before some of those waits
(the one-completion index), so a row must never commit much later than that: a sealer that swept meanwhile
flags a row dated more than BACKDATE_SLACK (60 s) before its sweep as backdated, and the app role could hold
such a lock on purpose to get an honest row flagged."""
LOCK_TRIES = 4
"""Statements a start row or decision gets (each waiting LOCK_WAIT at most) before AuditAppendBlockedError; an
outcome row (a completion, a cycle's close) tries for as long as the lock is held, as it waits for a pool."""

LOCK_HOLDERS_SQL = (
    "SELECT pg_catalog.array_agg(h.pid ORDER BY h.n), pg_catalog.array_agg(h.usename ORDER BY h.n), "
    "pg_catalog.array_agg(h.state ORDER BY h.n), pg_catalog.array_agg(h.xact_start ORDER BY h.n) FROM ("
    "SELECT l.pid, a.usename, a.state, a.xact_start, "
    "pg_catalog.row_number() OVER (ORDER BY a.xact_start NULLS LAST, l.pid) AS n FROM pg_catalog.pg_locks l "
    "LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) l.pid "
    "WHERE l.locktype OPERATOR(pg_catalog.=) 'relation' AND l.granted "
    "AND l.mode OPERATOR(pg_catalog.=) 'RowExclusiveLock' "
    "AND l.relation OPERATOR(pg_catalog.=) %s::pg_catalog.regclass "
    "AND l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d "
    "WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) "
    "AND l.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid() "
    "ORDER BY n LIMIT 5) h"
)
"""Who else is writing the table, in one row of arrays (pid, login, state, transaction start): the session whose
uncommitted row the append waited on is among them (first, when this login may see when transactions began)."""


@functools.cache
def _append_sql(table: Table, columns: tuple[str, ...]) -> str:
    """The call of the table's append function (migration 0004), arguments by name.

    Every name is schema-qualified, casts included: a neighbour's search path, or a temp
    table named like a type, cannot change what this statement means.
    """
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    arguments = ", ".join(
        f"p_{name} => %s::pg_catalog.{_SQL_TYPES[table.c[name].type.compile(dialect=dialect)]}" for name in columns
    )
    return f"SELECT public.jarvis_append_{table.name}({arguments})"


@functools.cache
def _json_columns(table: Table) -> dict[str, bool]:
    """JSONB columns of `table`, mapped to whether a value is required (None then means JSON null)."""
    return {
        column.name: not column.nullable or (table.name, column.name) == ("planning_cycles", "goals")
        for column in table.columns
        if isinstance(column.type, JSONB)
    }


def _adapted(table: Table, values: dict[str, Any]) -> list[Any]:
    """JSON values wrapped for psycopg. None is SQL NULL ("no output") where the column may be NULL,
    and JSON null where a value is required (a cycle's goals may be `null`; the column is nullable
    only because completion rows have no goals)."""
    json_columns = _json_columns(table)
    return [Jsonb(v) if k in json_columns and (v is not None or json_columns[k]) else v for k, v in values.items()]


def append_row(database: Database, table: Table, values: dict[str, Any], *, outcome: bool = False) -> datetime:
    """Insert one row whose id the caller chose; returns its created_at.

    `outcome`: the row records how work that already ran ended (a tool call's completion, a
    cycle's close). It waits for a pooled connection however long the pool stays busy: failing
    fast with PoolExhaustedError would lose the record of a tool that ran. A start row fails
    fast instead (its tool then does not run). Likewise for a lock another session holds: each
    statement waits LOCK_WAIT at most and is sent again, stamped afresh (an outcome for as long as
    the lock is held, a start row LOCK_TRIES times), so no row commits long after its created_at.

    If the connection dies after COMMIT was sent, nobody knows whether the row
    landed. Retrying with the same id is safe: ON CONFLICT (id) DO NOTHING
    turns a landed row into a no-op, and the stored row is compared with ours
    so a reused id is an error, never silently accepted.

    This is the hot path: one statement in autocommit, one round trip, one
    commit. It calls the table's append function (SECURITY DEFINER, executable
    by the app role only, plan cached in the server session), which inserts
    the row with every trigger firing; the row and its sealing-queue entry
    commit together, and nothing is left in the session. When a pooled
    neighbour's leftovers (a role, read-only default, timeouts, triggers off)
    make it fail, it is sent again after the full role statement, which undoes
    them for its transaction; a row that landed is found by its id.
    """
    for attempt in itertools.count():
        try:
            with database.autocommit_cursor(patient=outcome) as cursor:
                created_at = drive(
                    append_steps(database, table, values, outcome=outcome),
                    _one_round_trip(database, cursor),
                    psycopg.Error,
                )
            wake_sealer(database)  # sealed and signed within JARVIS_SEAL_INTERVAL, whoever the caller is
            return created_at
        except CONNECTION_LOST as error:
            time.sleep(retry_delay(attempt, table, error))
    raise AssertionError("unreachable")


CONNECTION_LOST = (psycopg.OperationalError, exc.OperationalError, exc.InterfaceError, DatabaseUnavailableError)
"""What makes an append try again on another connection (the row may have landed: its id makes that safe)."""


def retry_delay(attempt: int, table: Table, error: BaseException) -> float:
    """How long to wait before the next attempt after `error` (logged), or `error` itself once they are used up."""
    if attempt >= len(RETRY_DELAYS):
        raise error
    delay = RETRY_DELAYS[attempt]
    log.warning(
        "audit append to %s failed (%s); retry %d in %.2f s", table.name, type(error).__name__, attempt + 1, delay
    )
    return delay


def _one_round_trip(database: Database, cursor: psycopg.Cursor[Any]) -> Callable[[Statement], Any]:
    def execute(statement: Statement) -> Any:
        return database.fetch_one(cursor, statement.sql, statement.params, in_role=statement.in_role)

    return execute


def append_steps(roles: RoleRules, table: Table, values: dict[str, Any], *, outcome: bool = False) -> Steps[datetime]:
    """The append as statements, each in one round trip; the stored row's created_at (I/O-free: both shells run it).

    Bare first; after a pooled neighbour's leftovers, again after the full role statement. A
    statement that waited LOCK_WAIT for a lock is sent again, a new statement with a fresh
    `created_at`, so no row commits long after its stamp: LOCK_TRIES times in all for a start
    row (then AuditAppendBlockedError naming who holds it), for as long as it takes for an
    `outcome` row. A refusal by a constraint or trigger is AuditRuleViolation, a role the login
    lacks RoleNotGrantedError.
    """
    sql = _append_sql(table, tuple(values))
    params = _adapted(table, values)
    in_role = False
    waits = 0
    try:
        while True:
            try:
                row = yield Statement(sql, params, in_role=in_role)
                break
            except LEFTOVERS_TO_UNDO:
                if in_role:
                    raise
                in_role = True
            except psycopg.errors.LockNotAvailable:
                waits += 1
                holders = yield from _lock_holders(table)
                if waits >= LOCK_TRIES and not outcome:
                    raise AuditAppendBlockedError(
                        f"{table.name}: row {values['id']} was not written: {waits} tries each waited {LOCK_WAIT} "
                        f"for a lock held by {holders}. Fix: end that transaction (as the owner: SELECT "
                        "pg_terminate_backend(<pid>)), then try again"
                    ) from None
                log.warning(
                    "audit append to %s waited %s for a lock held by %s; sending it again (try %d)",
                    table.name,
                    LOCK_WAIT,
                    holders,
                    waits + 1,
                )
        if row is None or row[0] is None:  # the id exists: a retry of a row that landed, or a reused id
            stored = yield Statement(_existing_sql(table, tuple(values)), [values["id"]], in_role=True)
            return _existing_created_at(stored, table, values)
        created_at: datetime = row[0]
        return created_at
    except psycopg.IntegrityError as error:
        first_line = str(error).splitlines()[0]
        raise AuditRuleViolation(f"{table.name}: {first_line}", error.diag.constraint_name) from None
    except psycopg.errors.InsufficientPrivilege as error:
        raise roles.role_not_granted(error) from None


def _lock_holders(table: Table) -> Steps[str]:
    """Who else holds a write lock on `table` now, for a person to act on ("pid 123 (login x, idle in transaction
    since ...)"); what this login may not see of other sessions is left out."""
    try:
        found = yield Statement(LOCK_HOLDERS_SQL, [f"public.{table.name}"])
    except psycopg.Error as error:
        if connection_lost(error):
            raise
        return f"another session (unknown: {str(error).splitlines()[0]})"
    described = []
    pids, logins, states, starts = found if found is not None and found[0] is not None else ((), (), (), ())
    for pid, login, state, since in zip(pids, logins, states, starts, strict=True):
        detail = ", ".join(
            part for part in (login and f"login {login}", state, since and f"since {since.isoformat()}") if part
        )
        described.append(f"pid {pid}" + (f" ({detail})" if detail else ""))
    return " or ".join(described) or "another session (gone by now)"


@functools.cache
def _existing_sql(table: Table, columns: tuple[str, ...]) -> str:
    return f"SELECT {', '.join(columns)}, created_at FROM ONLY public.{table.name} WHERE id = %s"


def _existing_created_at(stored: Any, table: Table, values: dict[str, Any]) -> datetime:
    if stored is None:  # the function said "exists" but nothing does: it is not the one 0004 installed
        raise AuditAppendError(
            f"{table.name}: public.jarvis_append_{table.name}() stored no row {values['id']} and reported none "
            "already there; the function was changed. Run `jarvis audit verify` as the owner to see how."
        )
    columns = list(values)
    differing = sorted(
        column for column, mine, theirs in zip(columns, values.values(), stored, strict=False) if mine != theirs
    )
    if differing:
        raise AuditIdCollisionError(
            f"{table.name} already has a row {values['id']} with different {', '.join(differing)}; "
            "ids must be fresh (uuid7()) for every new row"
        )
    created_at: datetime = stored[-1]
    return created_at


def announce(listeners: Sequence[AuditListener], event: AuditEvent) -> None:
    """Tell listeners about a committed row. A failing listener never fails the append."""
    for listener in listeners:
        try:
            listener(event)
        except Exception:
            log.exception("audit listener %r failed for %s %s", listener, event.table, event.row_id)
