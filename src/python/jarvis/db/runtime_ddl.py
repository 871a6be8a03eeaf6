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

from psycopg.types.json import Jsonb
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
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql.base import RESERVED_WORDS
from sqlalchemy.schema import CreateTable
from sqlalchemy.types import TypeEngine

from jarvis.config import ExitCode, JarvisError
from jarvis.db.engine import Database
from jarvis.db.jsonb import check_text, ensure_jsonb
from jarvis.db.steps import Statement, Steps

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


def create_table_sql(name: str, columns: Mapping[str, str]) -> str:
    """The CREATE TABLE of a checked definition, rendered by SQLAlchemy for PostgreSQL (no connection needed)."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    return str(CreateTable(_table(name, columns)).compile(dialect=dialect))


LOCK_TIMEOUT_SQL = "SET LOCAL lock_timeout = '5s'"
"""Never queue behind a long transaction for ever."""
CREATOR_LOCK_SQL = "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('jarvis.runtime_ddl.' || %s))"
"""One creator per name at a time."""
EXISTING_COLUMNS_SQL = (
    "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
    "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
    "ORDER BY a.attnum"
)
RECORD_SQL = "INSERT INTO public.schema_changes (table_name, action, columns) VALUES (%s, 'create_table', %s)"
RECORDED_COLUMNS_SQL = (
    "SELECT columns FROM public.schema_changes WHERE table_name = %s AND action = 'create_table' "
    "ORDER BY id DESC LIMIT 1"
)
TABLES_SQL = "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename"


# The rules of runtime DDL, without I/O: RuntimeSchema and AsyncRuntimeSchema (jarvis.db.aio) run these.
# Every identifier put into SQL text below passed check_identifier (directly, or when its table was created).


def create_table_steps(name: str, columns: Mapping[str, str]) -> Steps[TableCreated]:
    """Create `agent_ext.<name>`; a no-op for an identical definition, TableConflictError for a conflicting one."""
    wanted = check_definition(name, columns)
    yield Statement(LOCK_TIMEOUT_SQL, rows="none")
    yield Statement(CREATOR_LOCK_SQL, (name,))
    rows = yield Statement(EXISTING_COLUMNS_SQL, (SCHEMA, name), rows="all")
    if rows:
        existing = {column: kind for column, kind in rows if column not in MANAGED_COLUMNS}
        expected = {column: COLUMN_TYPES[kind][1] for column, kind in wanted.items()}
        if existing != expected:
            raise TableConflictError(
                f"table {name!r} already exists with columns {existing}; refusing to redefine it as {expected}"
            )
        return TableCreated(name=name, columns=wanted, created=False)
    yield Statement(create_table_sql(name, wanted), rows="none")
    yield Statement(RECORD_SQL, (name, Jsonb(wanted)), rows="none")
    return TableCreated(name=name, columns=wanted, created=True)


def describe_steps(name: str) -> Steps[dict[str, str]]:
    """The caller-level column types of a runtime table, as recorded when it was created."""
    recorded = yield Statement(RECORDED_COLUMNS_SQL, (name,))
    if recorded is None:
        raise RuntimeDDLError(f"table {name!r} does not exist; create it first")
    return dict(recorded[0])


def insert_row_steps(name: str, values: Mapping[str, Any]) -> Steps[int]:
    """Insert one row into a runtime table: its id. Only recorded columns; text and JSON checked first."""
    kinds = yield from describe_steps(check_identifier(name, "table name"))
    unknown = sorted(set(values) - set(kinds))
    if unknown:
        raise RuntimeDDLError(f"table {name!r} has no column(s) {unknown}; it has {sorted(kinds)}")
    for column, value in values.items():
        if isinstance(value, str):
            check_text(value, f"{name}.{column}")
        elif kinds[column] == "jsonb":
            ensure_jsonb(value, what=f"{name}.{column}")
    columns = list(values)
    params = [Jsonb(values[c]) if kinds[c] == "jsonb" else values[c] for c in columns]
    sql = (
        f"INSERT INTO {SCHEMA}.{name} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) RETURNING id"
        if columns
        else f"INSERT INTO {SCHEMA}.{name} DEFAULT VALUES RETURNING id"
    )
    row = yield Statement(sql, params)
    return int(row[0])


def rows_steps(name: str, limit: int) -> Steps[list[dict[str, Any]]]:
    """The table's first `limit` rows by id, as dictionaries."""
    kinds = yield from describe_steps(check_identifier(name, "table name"))
    columns = [*MANAGED_COLUMNS, *kinds]
    found = yield Statement(
        f"SELECT {', '.join(columns)} FROM {SCHEMA}.{name} ORDER BY id LIMIT %s", (limit,), rows="all"
    )
    return [dict(zip(columns, row, strict=True)) for row in found]


def tables_steps() -> Steps[list[str]]:
    """The names of the tables the agent created at runtime, in its own schema."""
    rows = yield Statement(TABLES_SQL, (SCHEMA,), rows="all")
    return [row[0] for row in rows]


class RuntimeSchema:
    """Tables the agent creates for itself while running."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def create_table(self, name: str, columns: Mapping[str, str]) -> TableCreated:
        """Create `agent_ext.<name>`; a no-op for an identical definition, an error for a conflicting one."""
        created = self.database.run(create_table_steps(name, columns))
        if created.created:
            from jarvis.db.audit.autoseal import wake_sealer  # jarvis.db.audit imports jarvis.db

            wake_sealer(self.database)  # its schema_changes row is sealed and signed like any audit row
        return created

    def insert_row(self, name: str, values: Mapping[str, Any]) -> int:
        """Insert one row into a runtime table; returns its id."""
        return self.database.run(insert_row_steps(name, values))

    def rows(self, name: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """The table's first `limit` rows by id, as dictionaries (for the agent's tools and the CLI)."""
        return self.database.run(rows_steps(name, limit))

    def describe(self, name: str) -> dict[str, str]:
        """The caller-level column types of a runtime table, as recorded when it was created."""
        return self.database.run(describe_steps(name))

    def tables(self) -> list[str]:
        """The names of the tables the agent created at runtime, in its own schema."""
        return self.database.run(tables_steps())
