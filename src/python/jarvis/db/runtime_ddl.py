"""Runtime DDL: the agent extends its own schema while it runs, safely.

Callers name a table and its columns from a fixed menu of types; they never
pass SQL. Names are checked against a strict pattern and PostgreSQL's reserved
words before anything is sent, tables live in their own schema (`agent_ext`,
which Alembic never migrates), and every creation is recorded in the
append-only `schema_changes` table.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    Identity,
    MetaData,
    Numeric,
    Table,
    Text,
    Uuid,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql.base import RESERVED_WORDS
from sqlalchemy.types import TypeEngine

from jarvis.config import ExitCode, JarvisError
from jarvis.db.engine import Database
from jarvis.db.jsonb import check_text, ensure_jsonb
from jarvis.db.models import SchemaChange

SCHEMA = "agent_ext"
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
MANAGED_COLUMNS = ("id", "created_at")

# Menu of column types: the caller's word -> (SQLAlchemy type, PostgreSQL's format_type name).
COLUMN_TYPES: dict[str, tuple[type[TypeEngine[Any]] | TypeEngine[Any], str]] = {
    "text": (Text, "text"),
    "integer": (BigInteger, "bigint"),
    "numeric": (Numeric, "numeric"),
    "float": (Double, "double precision"),
    "boolean": (Boolean, "boolean"),
    "timestamp": (DateTime(timezone=True), "timestamp with time zone"),
    "jsonb": (JSONB, "jsonb"),
    "uuid": (Uuid, "uuid"),
}


class RuntimeDDLError(JarvisError, ValueError):
    """A runtime table definition was refused; nothing was created."""

    exit_code = ExitCode.BAD_INPUT


class TableConflictError(RuntimeDDLError):
    """A table of that name exists with another definition."""


@dataclass(frozen=True)
class TableCreated:
    name: str
    columns: dict[str, str]
    created: bool
    """False when an identical table already existed (the call was a no-op)."""


def check_identifier(name: str, what: str) -> str:
    """`name` if it is a plain lowercase SQL identifier, else RuntimeDDLError: nothing is ever quoted into DDL."""
    if not isinstance(name, str):
        raise RuntimeDDLError(f"{what} must be a string, not {type(name).__name__}")
    if unicodedata.normalize("NFKC", name) != name or not name.isascii() or not IDENTIFIER.fullmatch(name):
        raise RuntimeDDLError(
            f"{what} {name!r} is not allowed: use 1-63 characters of a-z, 0-9 and _, not starting with a digit"
        )
    if name in RESERVED_WORDS or name.startswith("pg_"):
        raise RuntimeDDLError(f"{what} {name!r} is a PostgreSQL reserved name; choose another")
    return name


def check_definition(name: str, columns: Mapping[str, str]) -> dict[str, str]:
    """The table definition checked (identifiers, known column types) before any DDL is built from it."""
    check_identifier(name, "table name")
    if not isinstance(columns, Mapping) or not columns:
        raise RuntimeDDLError(f"table {name!r} needs at least one column, e.g. {{'note': 'text'}}")
    checked = {}
    for column, kind in columns.items():
        check_identifier(column, f"column name in {name!r}")
        if column in MANAGED_COLUMNS:
            raise RuntimeDDLError(f"column {column!r} in {name!r} is added by Jarvis itself; choose another name")
        if kind not in COLUMN_TYPES:
            raise RuntimeDDLError(
                f"column {column!r} in {name!r} has type {kind!r}; choose one of {', '.join(sorted(COLUMN_TYPES))}"
            )
        checked[column] = kind
    return checked


def _table(name: str, columns: Mapping[str, str]) -> Table:
    return Table(
        name,
        MetaData(schema=SCHEMA),
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        *(Column(column, COLUMN_TYPES[kind][0]) for column, kind in columns.items()),
    )


class RuntimeSchema:
    """Tables the agent creates for itself while running."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def create_table(self, name: str, columns: Mapping[str, str]) -> TableCreated:
        """Create `agent_ext.<name>`; a no-op for an identical definition, an error for a conflicting one."""
        wanted = check_definition(name, columns)
        with self.database.begin() as conn:
            # Never queue behind a long transaction for ever; one creator per name at a time.
            conn.execute(text("SET LOCAL lock_timeout = '5s'"))
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('jarvis.runtime_ddl.' || :name))"), {"name": name})
            existing = self._existing_columns(conn, name)
            if existing is not None:
                expected = {column: COLUMN_TYPES[kind][1] for column, kind in wanted.items()}
                if existing != expected:
                    raise TableConflictError(
                        f"table {name!r} already exists with columns {existing}; refusing to redefine it as {expected}"
                    )
                return TableCreated(name=name, columns=wanted, created=False)
            _table(name, wanted).create(conn)
            conn.execute(insert(SchemaChange).values(table_name=name, action="create_table", columns=wanted))
        return TableCreated(name=name, columns=wanted, created=True)

    def insert_row(self, name: str, values: Mapping[str, Any]) -> int:
        """Insert one row into a runtime table; returns its id."""
        kinds = self.describe(check_identifier(name, "table name"))
        with self.database.begin() as conn:
            unknown = sorted(set(values) - set(kinds))
            if unknown:
                raise RuntimeDDLError(f"table {name!r} has no column(s) {unknown}; it has {sorted(kinds)}")
            for column, value in values.items():
                if isinstance(value, str):
                    check_text(value, f"{name}.{column}")
                elif kinds[column] == "jsonb":
                    ensure_jsonb(value, what=f"{name}.{column}")
            table = _table(name, kinds)
            return int(conn.execute(insert(table).values(**values).returning(table.c.id)).scalar_one())

    def rows(self, name: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """The table's first `limit` rows by id, as dictionaries (for the agent's tools and the CLI)."""
        table = _table(check_identifier(name, "table name"), self.describe(name))
        with self.database.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(select(table).order_by(table.c.id).limit(limit))]

    def describe(self, name: str) -> dict[str, str]:
        """The caller-level column types of a runtime table, as recorded when it was created."""
        with self.database.connect() as conn:
            recorded = conn.execute(
                select(SchemaChange.columns)
                .where(SchemaChange.table_name == name, SchemaChange.action == "create_table")
                .order_by(SchemaChange.id.desc())
                .limit(1)
            ).scalar()
        if recorded is None:
            raise RuntimeDDLError(f"table {name!r} does not exist; create it first")
        return dict(recorded)

    def tables(self) -> list[str]:
        """The names of the tables the agent created at runtime, in its own schema."""
        with self.database.connect() as conn:
            return list(
                conn.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = :schema ORDER BY tablename"),
                    {"schema": SCHEMA},
                ).scalars()
            )

    @staticmethod
    def _existing_columns(conn: Any, name: str) -> dict[str, str] | None:
        rows = conn.execute(
            text(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :schema AND c.relname = :name AND a.attnum > 0 AND NOT a.attisdropped "
                "ORDER BY a.attnum"
            ),
            {"schema": SCHEMA, "name": name},
        ).all()
        if not rows:
            return None
        return {column: kind for column, kind in rows if column not in MANAGED_COLUMNS}
