"""How every Jarvis transaction becomes its role, and the errors a person can act on: no I/O here.

Shared by the synchronous `Database` (jarvis.db.engine) and the asyncio `AsyncDatabase`
(jarvis.db.aio.engine), so the role statement, the read-only switch, the statements of a
one-round-trip read and every connection error's message are written once. Each shell only
sends what this module builds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from jarvis.config import ExitCode, JarvisError, Settings, mask_url, redact

SEARCH_PATH = "pg_catalog, public, pg_temp"

Role = Literal["app", "auditor", "owner"]
"""app: SELECT/INSERT (UPDATE/DELETE only on state and memory); auditor: SELECT only; owner: the login itself."""

ROLES_SQL = (
    "SELECT app_role, auditor_role, session_user, "
    "(SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = session_user) FROM public.trail_info"
)
"""The database's role names as its migration recorded them, and who is logged in."""


class DatabaseError(JarvisError):
    """Base of the errors jarvis.db raises for a person to act on."""


class DatabaseUnavailableError(DatabaseError):
    """PostgreSQL could not be reached; the message names the (masked) URL and the fix."""

    exit_code = ExitCode.UNAVAILABLE


class PoolExhaustedError(DatabaseError):
    """Every pooled connection stayed busy for the whole connect timeout."""

    exit_code = ExitCode.UNAVAILABLE


class NotMigratedError(DatabaseError):
    """The database has no Jarvis schema (or one too old to know its roles)."""

    exit_code = ExitCode.BAD_INPUT


class RoleNotGrantedError(DatabaseError):
    """The login is not a member of the role a command needs (an auditor login asked to write)."""

    exit_code = ExitCode.BAD_INPUT


@dataclass(frozen=True)
class Roles:
    """The database's own roles, as its migration recorded them in `trail_info`, and who is logged in."""

    app: str
    auditor: str
    login: str = ""
    login_is_superuser: bool = False


def unavailable(url: str, error: BaseException) -> DatabaseUnavailableError:
    detail = redact(str(getattr(error, "orig", None) or error).strip().splitlines()[0])
    return DatabaseUnavailableError(
        f"Cannot reach PostgreSQL at {mask_url(url)}: {detail}. "
        "Fix: start the server, or correct DATABASE_URL (unset it to use the embedded PostgreSQL)."
    )


def connection_lost(error: BaseException) -> bool:
    """Whether a psycopg error means the connection is gone (no SQLSTATE, class 08, or the server shutting down).

    A statement the server refused (a lock or statement timeout: class 55, 57014) is not an outage.
    """
    sqlstate = getattr(error, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith(("08", "57P"))


def pool_exhausted(settings: Settings) -> PoolExhaustedError:
    return PoolExhaustedError(
        f"All {settings.pool_size} pooled PostgreSQL connections stayed busy for "
        f"{settings.connect_timeout} s (JARVIS_CONNECT_TIMEOUT). Fix: raise JARVIS_POOL_SIZE "
        "or hold connections for shorter."
    )


class RoleRules:
    """The role logic of a database handle; the class using it declares these four attributes."""

    url: str
    role: Role
    _roles: Roles | None
    _role_statements: dict[bool, tuple[str, tuple[str, ...]]]

    @property
    def role_names(self) -> Roles | None:
        """The role names once known (None before the first transaction)."""
        return self._roles

    @property
    def display_url(self) -> str:
        return mask_url(self.url)

    def not_migrated(self) -> NotMigratedError:
        return NotMigratedError(
            f"{self.display_url} has no Jarvis schema (or one from before migration 0003). "
            "Fix: run `jarvis db upgrade` as the database owner."
        )

    def remember_roles(self, row: Sequence[Any] | None) -> Roles:
        """Keep the roles `ROLES_SQL` returned; a missing row is an error naming the fix."""
        if row is None:
            raise NotMigratedError(
                f"{self.display_url}: public.trail_info is empty, so this database's roles are unknown "
                "(its one row was deleted: only a superuser can do that). Run `jarvis audit verify` as the "
                "owner and restore the row from a backup"
            )
        self._roles = Roles(app=row[0], auditor=row[1], login=row[2], login_is_superuser=bool(row[3]))
        return self._roles

    def role_statement(self, *, read_only: bool = False) -> tuple[str, tuple[str, ...]]:
        """The statement that starts a transaction as this database's role (roles must be resolved).

        Sent right after `transaction_mode_statement()` and before the transaction's own
        statements, in one round trip (a ClientCursor query string, or a pipeline). It also
        undoes, for this transaction, what a neighbour on a pooled connection may have left in
        the session: timeouts, a date style, and (for a superuser login)
        `session_replication_role = replica`, which would silence the triggers.
        """
        key = read_only
        cached = self._role_statements.get(key)
        if cached is not None:
            return cached
        roles = self._roles
        assert roles is not None, "resolve roles() first"
        settings = [
            "pg_catalog.set_config('role', %s, true)",
            "pg_catalog.set_config('search_path', %s, true)",
            "pg_catalog.set_config('statement_timeout', '0', true)",
            "pg_catalog.set_config('lock_timeout', '0', true)",
            "pg_catalog.set_config('DateStyle', 'ISO, MDY', true)",
        ]
        if roles.login_is_superuser:  # evaluated left to right: back to the login, triggers on, then the role
            settings[0:0] = [
                "pg_catalog.set_config('role', 'none', true)",
                "pg_catalog.set_config('session_replication_role', 'origin', true)",
            ]
        statement = (
            "SELECT " + ", ".join(settings),
            (roles.app if self.role == "app" else roles.auditor, SEARCH_PATH),
        )
        self._role_statements[key] = statement
        return statement

    def transaction_mode_statement(self, *, read_only: bool = False) -> str:
        """Read-write only for the app role's writing transactions; sent first, before any snapshot.

        It undoes a neighbour's `default_transaction_read_only` for the transaction.
        """
        mode = "off" if self.role == "app" and not read_only else "on"
        return f"SET LOCAL transaction_read_only = {mode}"

    def role_statements(self, *, read_only: bool = False) -> list[tuple[str, Sequence[Any]]]:
        """What begins a transaction as the role (roles resolved), in the order it is sent; nothing for the owner."""
        if self.role == "owner":
            return [("SET LOCAL transaction_read_only = on", ())] if read_only else []
        return [(self.transaction_mode_statement(read_only=read_only), ()), self.role_statement(read_only=read_only)]

    def one_round_trip(self, sql: str, params: Sequence[Any], *, in_role: bool) -> list[tuple[str, Sequence[Any]]]:
        """The statements of a one-round-trip read or append: `sql` alone, or after the role's, in one pipeline.

        In a pipeline before a single Sync, PostgreSQL runs them as one implicit transaction, so
        nothing outlives it in the session.
        """
        return [*(self.role_statements() if in_role else []), (sql, params)]

    def role_not_granted(self, error: BaseException) -> RoleNotGrantedError:
        roles = self._roles
        assert roles is not None
        role = roles.app if self.role == "app" else roles.auditor
        what = "the agent's work (app role)" if self.role == "app" else "reading the trail (auditor role)"
        # Never advise granting the app role to this login: it may be a read-only auditor's, which would then write.
        fix = (
            f"run it with the agent's login, one IN ROLE {roles.app} (as the database owner: CREATE ROLE <agent "
            f"login> LOGIN IN ROLE {roles.app}); a read-only login such as an auditor's must not be given {roles.app}"
            if self.role == "app"
            else f"as the database owner, GRANT {role} TO {roles.login} (read-only) — or use a login that has it"
        )
        return RoleNotGrantedError(
            f"login {roles.login} may not do {what} on {self.display_url}: {str(error).splitlines()[0]}. Fix: {fix}"
        )
