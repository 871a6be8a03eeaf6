"""Appending one audit row: idempotent, retried after a lost connection, announced after commit."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, exc, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from jarvis.db.engine import Database, DatabaseUnavailableError

log = logging.getLogger("jarvis.audit")

RETRY_DELAYS = (0.05, 0.2, 0.5, 1.0, 2.0, 2.0)
"""Backoff between attempts (~6 s in all): enough to ride out a PostgreSQL restart."""


class AuditAppendError(Exception):
    """An audit row was refused; the message says which rule it broke."""


class AuditIdCollisionError(AuditAppendError):
    """A row with this id exists with other content: an id was reused, not a retry."""


@dataclass(frozen=True)
class AuditEvent:
    """What listeners (the Redis stream) learn about a committed audit row. No payloads."""

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


def append_row(database: Database, table: Table, values: dict[str, Any]) -> datetime:
    """Insert one row whose id the caller chose; returns its created_at.

    If the connection dies after COMMIT was sent, nobody knows whether the row
    landed. Retrying with the same id is safe: ON CONFLICT (id) DO NOTHING
    turns a landed row into a no-op, and the stored row is compared with ours
    so a reused id is an error, never silently accepted.
    """
    stmt = pg_insert(table).values(**values).on_conflict_do_nothing(index_elements=["id"]).returning(table.c.created_at)
    for attempt, delay in enumerate((*RETRY_DELAYS, None)):
        try:
            with database.begin() as conn:
                created_at = conn.execute(stmt).scalar()
                if created_at is None:
                    created_at = _existing_created_at(conn, table, values)
            return created_at
        except (exc.OperationalError, exc.InterfaceError, DatabaseUnavailableError) as error:
            if delay is None or (isinstance(error, exc.DBAPIError) and not error.connection_invalidated):
                raise
            log.warning(
                "audit append to %s failed (%s); retry %d in %.2f s",
                table.name,
                type(error).__name__,
                attempt + 1,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")


def _existing_created_at(conn: Any, table: Table, values: dict[str, Any]) -> datetime:
    row = conn.execute(select(table).where(table.c.id == values["id"])).mappings().one()
    differing = sorted(column for column, value in values.items() if row[column] != value)
    if differing:
        raise AuditIdCollisionError(
            f"{table.name} already has a row {values['id']} with different {', '.join(differing)}; "
            "ids must be fresh (uuid7()) for every new row"
        )
    created_at: datetime = row["created_at"]
    return created_at


def announce(listeners: Sequence[AuditListener], event: AuditEvent) -> None:
    """Tell listeners about a committed row. A failing listener never fails the append."""
    for listener in listeners:
        try:
            listener(event)
        except Exception:
            log.exception("audit listener %r failed for %s %s", listener, event.table, event.row_id)
