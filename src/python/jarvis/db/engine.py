"""Engine and pool lifecycle: one `Database` per process, shut down cleanly.

Every transaction starts with `SET LOCAL ROLE` to the database's own
application role (or its read-only auditor role) and a fixed `search_path`
(pg_temp last), so even a superuser URL writes through a role that cannot
UPDATE, DELETE or TRUNCATE the audit tables, and nothing lives in the
session: a transaction-pooling PgBouncer hands connections between clients
without leaking a role or a search path. Migrations (`jarvis db upgrade`)
connect as the owner, without it. Audit appends need no role statement: they
call a function only the app role may execute (see jarvis.db.audit.append).

Named prepared statements are session state too, so only the audit hot path
prepares its one statement, and only on a connection that talks to PostgreSQL
directly: at connect, the backend PID the server announced must equal what
`pg_backend_pid()` returns. A pooler answers the startup with a key of its
own, so behind PgBouncer (or any proxy) nothing is prepared and a
neighbour's `PREPARE _pg3_0` cannot stand in for Jarvis' statement.
"""

from __future__ import annotations

import atexit
import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg
from sqlalchemy import Connection, Engine, PoolProxiedConnection, create_engine, event, exc

from jarvis.config import Settings
from jarvis.db.embedded import EmbeddedServer, embedded_url, start_embedded_postgres
from jarvis.db.jsonb import set_max_value_bytes
from jarvis.db.role_rules import (
    ROLES_SQL,
    SEARCH_PATH,
    DatabaseError,
    DatabaseUnavailableError,
    NotMigratedError,
    PoolExhaustedError,
    Role,
    RoleNotGrantedError,
    RoleRules,
    Roles,
    connection_lost,
    pool_exhausted,
    unavailable,
)
from jarvis.db.steps import Statement, Steps, T, drive
from jarvis.db.urls import libpq_url, sqlalchemy_url

# The role rules and errors lived here before the asyncio twin shared them (jarvis.db.role_rules):
# still importable from here.
__all__ = [
    "Database",
    "DatabaseError",
    "DatabaseUnavailableError",
    "EMBEDDED_DATABASE",
    "NotMigratedError",
    "PING_AFTER_IDLE",
    "PREPARE_ONLY_WHEN_ASKED",
    "PoolExhaustedError",
    "ROLES_SQL",
    "Role",
    "RoleNotGrantedError",
    "RoleRules",
    "Roles",
    "SEARCH_PATH",
    "open_database",
    "pool_exhausted",
    "psycopg_connection",
    "resolve_url",
    "unavailable",
]

log = logging.getLogger("jarvis.db")

EMBEDDED_DATABASE = "jarvis"


class Stoppable(Protocol):
    """What a database handle stops at shutdown (its background sealer)."""

    def stop(self) -> None:
        ...


@dataclass
class Database(RoleRules):
    """An engine plus what it took to get one (the embedded server, if any)."""

    engine: Engine
    url: str
    settings: Settings
    embedded_server: EmbeddedServer | None = None
    role: Role = "app"
    _closed: bool = field(default=False, repr=False)
    background_sealer: Stoppable | None = field(default=None, repr=False)
    """Seals and signs what this handle appended (jarvis.db.audit.autoseal); started by the first append."""
    _roles: Roles | None = field(default=None, repr=False)
    _role_statements: dict[bool, tuple[str, tuple[str, ...]]] = field(default_factory=dict, repr=False)

    def roles(self, cursor: Any) -> Roles:
        """The database's role names, read once through `cursor` (any psycopg cursor or connection)."""
        if self._roles is None:
            try:
                row = cursor.execute(ROLES_SQL).fetchone()
            except psycopg.errors.UndefinedTable:
                raise self.not_migrated() from None
            return self.remember_roles(row)
        return self._roles

    def enter_role(self, connection: Any, *, read_only: bool = False) -> None:
        """Begin this transaction as the database's app or auditor role; nothing outlives the transaction.

        `read_only` makes even an app-role transaction read-only (verify, export).
        """
        if self.role == "owner":
            if read_only:
                connection.execute("SET LOCAL transaction_read_only = on")
            return
        self.roles(connection)
        sql, params = self.role_statement(read_only=read_only)
        try:
            psycopg.ClientCursor(connection).execute(
                f"{self.transaction_mode_statement(read_only=read_only)}; {sql}", params
            )
        except psycopg.errors.InsufficientPrivilege as error:
            raise self.role_not_granted(error) from None

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A pooled connection; pool exhaustion and outages become actionable errors."""
        with self._checkout():
            conn = self.engine.connect()
        with conn:
            yield conn

    @contextmanager
    def raw_connection(self, *, patient: bool = False) -> Iterator[PoolProxiedConnection]:
        """The pooled DBAPI connection itself, for hot paths that skip SQLAlchemy's statement layer.

        Call `.invalidate()` on it after a connection error so the pool never reuses it;
        `psycopg_connection(proxy)` is the typed psycopg connection inside it. `patient`: wait for
        a busy pool as long as it takes, never PoolExhaustedError (an outcome row of a tool that ran).
        """
        with self._checkout():
            proxy = self._wait_for_connection() if patient else self.engine.raw_connection()
        try:
            yield proxy
        finally:
            proxy.close()  # back to the pool (or discarded, if invalidated)

    def _wait_for_connection(self) -> PoolProxiedConnection:
        """A pooled connection however long every one stays busy, saying so each JARVIS_CONNECT_TIMEOUT."""
        waited = 0.0
        while True:
            try:
                return self.engine.raw_connection()
            except exc.TimeoutError:
                waited += self.settings.connect_timeout
                log.warning(
                    "%s; still waiting (%.1f s) to record the outcome of work that already ran",
                    pool_exhausted(self.settings),
                    waited,
                )

    @contextmanager
    def autocommit_cursor(self, *, patient: bool = False) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor on a pooled connection in autocommit, for one-round-trip statements (`fetch_one`).

        The database's roles are resolved first; a connection that failed is never reused.
        `patient`: see `raw_connection`.
        """
        with self.raw_connection(patient=patient) as proxy:
            raw = psycopg_connection(proxy)
            try:
                if self.role != "owner" and self._roles is None:
                    with raw.transaction():
                        self.roles(raw)
                raw.autocommit = True
                try:
                    yield raw.cursor(binary=True)
                finally:
                    if not raw.closed:
                        raw.autocommit = False
            except psycopg.OperationalError:
                proxy.invalidate()
                raise

    def read_one(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        """`sql`'s first row as this database's role, in one round trip; an outage is `DatabaseUnavailableError`."""
        try:
            with self.autocommit_cursor() as cursor:
                return self.fetch_one(cursor, sql, params)
        except psycopg.OperationalError as error:
            raise unavailable(self.url, error) from None

    def fetch_one(
        self, cursor: psycopg.Cursor[Any], sql: str, params: Sequence[Any], *, in_role: bool = True
    ) -> tuple[Any, ...] | None:
        """`sql`'s first row, in one implicit transaction and one round trip.

        `in_role`: the transaction's mode and role statement go first, in one pipeline before a
        single Sync, so PostgreSQL runs them and `sql` as one transaction and nothing outlives it
        in the session. Without it, `sql` runs bare (the append functions need no role). Every
        statement is prepared when the connection is direct, never behind a pooler (see the
        module's note).
        """
        statements = self.one_round_trip(sql, params, in_role=in_role)
        if len(statements) == 1:
            cursor.execute(sql, params, prepare=True)
        else:
            with cursor.connection.pipeline():
                for statement, arguments in statements:
                    cursor.execute(statement, arguments, prepare=True)
        row: tuple[Any, ...] | None = cursor.fetchone()
        return row

    @contextmanager
    def _checkout(self) -> Iterator[None]:
        try:
            yield
        except exc.TimeoutError:
            raise pool_exhausted(self.settings) from None
        except exc.OperationalError as error:
            raise unavailable(self.url, error) from None

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A connection inside a transaction that commits on success and rolls back on error."""
        with self.connect() as conn, conn.begin():
            yield conn

    def run(self, steps: Steps[T]) -> T:
        """Run one core operation (a jarvis.db.steps generator) in one transaction as the role.

        An outage on the way is DatabaseUnavailableError, as in `AsyncDatabase.run`.
        """
        try:
            return self._run(steps)
        except psycopg.OperationalError as error:
            if connection_lost(error):
                raise unavailable(self.url, error) from None
            raise

    def _run(self, steps: Steps[T]) -> T:
        with self.begin() as conn:
            cursor = psycopg_connection(conn).cursor()

            def execute(statement: Statement) -> Any:
                cursor.execute(statement.sql, statement.params)
                if statement.rows == "one":
                    return cursor.fetchone()
                return cursor.fetchall() if statement.rows == "all" else None

            return drive(steps, execute, psycopg.Error)

    @property
    def closed(self) -> bool:
        return self._closed

    def shutdown(self) -> None:
        """Seal and sign what this handle appended, then close idle pooled connections (busy ones finish first)."""
        if not self._closed:
            sealer = self.background_sealer
            if sealer is not None:
                sealer.stop()  # its final seal needs the pool: before it is disposed
            self._closed = True
            self.engine.dispose()


def psycopg_connection(connection: Connection | PoolProxiedConnection) -> psycopg.Connection[Any]:
    """The psycopg connection under a SQLAlchemy connection or a pooled proxy, typed.

    SQLAlchemy types it as `Any | None` (it does not know the driver); Jarvis only ever
    runs on psycopg 3, and a checked-out connection always has one.
    """
    proxy = connection.connection if isinstance(connection, Connection) else connection
    raw = proxy.driver_connection
    assert isinstance(raw, psycopg.Connection), f"expected a psycopg connection, not {type(raw).__name__}"
    return raw


def resolve_url(settings: Settings) -> tuple[str, EmbeddedServer | None]:
    """The libpq URL to use, and the embedded server handle when one was started for it."""
    if settings.database_url:
        return libpq_url(settings.database_url), None
    # Started, and the database created, under the data directory's lock: safe for concurrent first starts.
    server = start_embedded_postgres(settings.data_dir, database=EMBEDDED_DATABASE)
    return embedded_url(server, EMBEDDED_DATABASE), server


def open_database(settings: Settings, *, url: str | None = None, role: Role = "app") -> Database:
    """Create the engine (starting the embedded PostgreSQL when DATABASE_URL is unset).

    `role` is what every transaction runs as: "app" for the agent, "auditor" for
    readers that must never write, "owner" (the login itself) for migrations.
    """
    server: EmbeddedServer | None = None
    if url is None:
        url, server = resolve_url(settings)
    engine = create_engine(
        sqlalchemy_url(url),
        pool_size=settings.pool_size,
        max_overflow=0,
        pool_timeout=settings.connect_timeout,
        pool_recycle=settings.pool_recycle_seconds(),  # JARVIS_POOL_MAX_AGE, rounded up: never 0
        pool_pre_ping=False,  # replaced by _ping_if_idle: same safety, no round trip on the hot path
        pool_use_lifo=True,  # the most recently used connection: its backend's caches are warm
        connect_args={
            "connect_timeout": max(1, math.ceil(settings.connect_timeout)),
            "application_name": "jarvis",
            # Never prepared automatically: `_allow_prepared_if_direct` lets the hot path ask for it.
            "prepare_threshold": None,
        },
    )
    database = Database(engine=engine, url=url, settings=settings, embedded_server=server, role=role)
    set_max_value_bytes(settings.max_value_bytes)  # every value this process stores is held to it
    if role != "owner":

        def enter_role(conn: Connection) -> None:
            database.enter_role(psycopg_connection(conn))

        event.listen(engine, "begin", enter_role)
    event.listen(engine, "connect", _allow_prepared_if_direct)
    event.listen(engine, "checkout", _ping_if_idle)
    event.listen(engine, "checkin", _note_last_use)
    atexit.register(database.shutdown)
    where = "embedded PostgreSQL 16" if server is not None else "PostgreSQL"
    # One line per process says where the data goes; the owner connection used for migrations stays quiet.
    log.log(logging.INFO if role == "app" else logging.DEBUG, "using %s at %s", where, database.display_url)
    return database


PING_AFTER_IDLE = 1.0
"""Seconds of idleness after which a pooled connection is pinged before use (survives server restarts)."""


PREPARE_ONLY_WHEN_ASKED = 2**62
"""A prepare threshold no statement reaches: only `execute(..., prepare=True)` prepares."""


def _allow_prepared_if_direct(dbapi_connection: Any, _record: Any) -> None:
    """On a direct connection, let `execute(..., prepare=True)` prepare; behind a pooler, never.

    PostgreSQL announces its backend PID at startup (BackendKeyData); a pooler
    sends a made-up key instead, because the server behind it changes.
    """
    announced = dbapi_connection.info.backend_pid
    row = dbapi_connection.execute("SELECT pg_catalog.pg_backend_pid()").fetchone()
    dbapi_connection.rollback()
    if row is not None and row[0] == announced:
        dbapi_connection.prepare_threshold = PREPARE_ONLY_WHEN_ASKED


def _note_last_use(_dbapi_connection: Any, record: Any) -> None:
    if record is not None:
        record.info["last_used"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Pessimistic disconnect handling without a round trip per checkout.

    A connection used within the last second is handed out as is (a failure
    there is retried by the callers that may retry, like audit appends); an
    idler one is pinged first, and a dead one is replaced transparently.
    """
    if time.monotonic() - record.info.get("last_used", 0.0) < PING_AFTER_IDLE:
        return
    try:
        dbapi_connection.execute("SELECT 1")
        dbapi_connection.rollback()
    except psycopg.Error as error:
        raise exc.DisconnectionError(str(error)) from error
