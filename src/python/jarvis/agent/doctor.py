"""The doctor: the checks behind `jarvis doctor` (and the Docker HEALTHCHECK); each says what is wrong and the fix.

One function per check, run in order by `run_health_checks`; the database checks past the migrations
run only at head, where the schema they inspect is the one the code expects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from sqlalchemy import Connection, exc, text

from jarvis.config import ConfigError, Settings, load_settings, redact
from jarvis.db import Database, DatabaseError, Roles, open_database
from jarvis.db.audit.catalog import catalog_problems
from jarvis.db.base import AUDIT_TABLES, CHAINED_TABLES
from jarvis.db.embedded import EmbeddedPostgresUnavailable
from jarvis.db.engine import psycopg_connection
from jarvis.db.migrate import current_revision, head_revision

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class HealthCheck:
    """One line of the doctor's report: what was checked, how it went, and the fix when it did not."""

    name: str
    status: Status
    detail: str
    fix: str = ""


def run_health_checks(settings: Settings | None = None) -> list[HealthCheck]:
    """Every check `jarvis doctor` prints, in order; a check that cannot run is reported, never raised."""
    checks: list[HealthCheck] = []
    if settings is None:
        try:
            settings = load_settings()
        except ConfigError as error:
            return [HealthCheck("config", "fail", str(error), "correct the variables named above")]
    checks.append(HealthCheck("config", "ok", "settings are valid"))
    checks.extend(_postgres_checks(settings))
    checks.append(_redis_check(settings))
    return checks


def _postgres_checks(settings: Settings) -> list[HealthCheck]:
    """The server, the login, the migrations and (at head only) the roles, the audit schema and the chain."""
    try:
        database = open_database(settings, role="owner")  # the login itself, to see what it may do
    except (DatabaseError, EmbeddedPostgresUnavailable) as error:
        return [_unreachable(error)]
    checks: list[HealthCheck] = []
    try:
        with database.connect() as conn:
            checks.append(_server_check(conn, database))
            login, superuser = conn.execute(
                text("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")
            ).one()
            if superuser:
                checks.append(_superuser_check(settings, database, login))
            migrations = _migrations_check(database)
            checks.append(migrations)
            if migrations.status != "ok":
                return checks
            raw = psycopg_connection(conn)
            checks.extend(_role_checks(conn, login, database.roles(raw)))
            checks.append(_catalog_check(raw))
            checks.append(_chain_check(conn))
    except DatabaseError as error:
        checks.append(_unreachable(error))
    finally:
        database.shutdown()
    return checks


def _unreachable(error: Exception) -> HealthCheck:
    return HealthCheck("postgres", "fail", redact(str(error)), "start PostgreSQL or fix DATABASE_URL")


def _server_check(conn: Connection, database: Database) -> HealthCheck:
    """The server's version (Jarvis is built on 16) and where it is."""
    version = conn.execute(text("SHOW server_version")).scalar()
    major = int(str(version).split(".")[0])
    where = "embedded" if database.embedded_server is not None else database.display_url
    return HealthCheck(
        "postgres",
        "ok" if major >= 16 else "warn",
        f"PostgreSQL {version} at {where}",
        "" if major >= 16 else "Jarvis is built and tested on PostgreSQL 16",
    )


def _superuser_check(settings: Settings, database: Database, login: str) -> HealthCheck:
    """A superuser login bypasses every trigger: a warning in development, a failure in production."""
    embedded = database.embedded_server is not None
    return HealthCheck(
        "login role",
        "fail" if settings.production else "warn",
        f"connected as superuser {login}" + (" (the embedded server's own)" if embedded else ""),
        "a superuser can bypass every trigger; in production (JARVIS_PRODUCTION=1) use a login "
        "that is only a member of the database's app role (docs/deploy.md: roles and logins)",
    )


def _migrations_check(database: Database) -> HealthCheck:
    """The database's revision against the code's head: every later check needs the head's schema."""
    current, head = current_revision(database), head_revision()
    if current != head:
        return HealthCheck(
            "migrations",
            "fail",
            f"database at {current or 'no revision'}, code at {head}",
            "run `jarvis db upgrade` as the database owner",
        )
    return HealthCheck("migrations", "ok", f"at head ({head})")


def _catalog_check(raw: psycopg.Connection[Any]) -> HealthCheck:
    """Triggers, functions and tables of the audit trail as the migrations installed them."""
    problems = catalog_problems(raw)
    if problems:
        return HealthCheck(
            "audit tables",
            "fail",
            "; ".join(f"{obj}: {why}" for obj, why in problems),
            "run `jarvis audit verify` and investigate: someone changed the audit schema",
        )
    return HealthCheck("audit tables", "ok", "triggers, functions and tables as the migrations installed them")


def _chain_check(conn: Connection) -> HealthCheck:
    """How many rows wait to be sealed into the hash chain."""
    pending = conn.execute(text("SELECT count(*) FROM public.audit_pending")).scalar()
    return HealthCheck("audit chain", "ok", f"{pending} row(s) waiting to be sealed")


def _role_checks(conn: Connection, login: str, roles: Roles) -> list[HealthCheck]:
    """The login must be able to become the app role, which must have what it needs and nothing more."""
    can_become_app = _can_become(conn, roles.app)
    if not can_become_app and _can_become(conn, roles.auditor):
        return [
            HealthCheck(
                "login role",
                "warn",
                f"{login} is a read-only auditor login ({roles.auditor}): audit verify, show and export work",
                f"the agent and `state set` need the app role: GRANT {roles.app} TO <the agent's login>",
            )
        ]
    if not can_become_app:
        return [
            HealthCheck(
                "login role",
                "fail",
                f"login {login} cannot SET ROLE {roles.app}",
                f"as the database owner: GRANT {roles.app} TO {login} (agents), or GRANT {roles.auditor} "
                f"TO {login} (read-only auditors: verify, show, export work without this)",
            )
        ]
    missing = _missing_privileges(conn, roles.app)
    excess = _excess_privileges(conn, roles.app)
    if missing or excess:
        detail = "; ".join(
            part
            for part in (
                f"{roles.app} lacks {', '.join(missing)}" if missing else "",
                f"{roles.app} has {', '.join(excess)}" if excess else "",
            )
            if part
        )
        return [HealthCheck("application role", "fail", detail, "run `jarvis db upgrade` as the database owner")]
    return [
        HealthCheck("login role", "ok", f"{login} can SET ROLE {roles.app}"),
        HealthCheck(
            "application role",
            "ok",
            f"{roles.app} may SELECT and INSERT the audit tables, nothing more; {roles.auditor} may only read",
        ),
    ]


def _missing_privileges(conn: Connection, role: str) -> list[str]:
    """What the app role needs and lacks: INSERT and SELECT on the audit trail, the state tables, and
    EXECUTE on the sealer, on every jarvis_append_<table> function and on the lease functions (liveness)."""
    missing = [
        f"{privilege} on {table}"
        for table, privilege in [
            *((t, "INSERT") for t in CHAINED_TABLES),
            *((t, "SELECT") for t in (*CHAINED_TABLES, "audit_chain", "audit_pending", "alembic_version")),
            ("agent_leases", "SELECT"),
            *((t, p) for t in ("agent_state", "memory_facts") for p in ("SELECT", "INSERT", "UPDATE", "DELETE")),
        ]
        if not conn.execute(
            # INSERT is granted per column (never created_at): any column counts
            text(
                "SELECT CASE WHEN :privilege = 'DELETE' THEN has_table_privilege(:role, :table, :privilege) "
                "ELSE has_any_column_privilege(:role, :table, :privilege) END"
            ),
            {"role": role, "table": f"public.{table}", "privilege": privilege},
        ).scalar()
    ]
    missing += [
        f"EXECUTE on {function}"
        for function in (
            "jarvis_seal",
            *(f"jarvis_append_{table}" for table in AUDIT_TABLES),
            *(f"jarvis_{verb}_lease" for verb in ("take", "renew", "release")),
        )
        if not conn.execute(
            text("SELECT to_regproc(:f) IS NOT NULL AND has_function_privilege(:role, to_regproc(:f)::oid, 'EXECUTE')"),
            {"role": role, "f": f"public.{function}"},
        ).scalar()
    ]
    return missing


def _excess_privileges(conn: Connection, role: str) -> list[str]:
    """What the app role has and must not: any way to change or remove audit rows, to write the liveness leases
    other than through their functions, or temporary tables."""
    excess = [
        f"{privilege} on {table}"
        for table in (*AUDIT_TABLES, "schema_changes", "audit_chain", "audit_pending", "agent_leases")
        for privilege in ("INSERT", "UPDATE", "DELETE", "TRUNCATE")
        if (privilege != "INSERT" or table in ("audit_chain", "audit_pending", "agent_leases"))
        and conn.execute(
            text("SELECT has_table_privilege(:role, :table, :privilege)"),
            {"role": role, "table": f"public.{table}", "privilege": privilege},
        ).scalar()
    ]
    if conn.execute(
        text("SELECT has_database_privilege(:role, current_database(), 'TEMPORARY')"), {"role": role}
    ).scalar():
        excess.append("TEMPORARY on the database")
    return excess


def _can_become(conn: Connection, role: str) -> bool:
    """Really try: membership alone is not enough (PostgreSQL 16: GRANT ... WITH SET FALSE)."""
    try:
        with conn.begin_nested() as attempt:
            conn.execute(text("SELECT pg_catalog.set_config('role', :r, true)"), {"r": role})
            attempt.rollback()
        return True
    except exc.DBAPIError:
        return False


def _redis_check(settings: Settings) -> HealthCheck:
    """Redis is optional: unset is fine, set but unreachable is a failure."""
    if not settings.redis_url:
        return HealthCheck("redis", "ok", "not configured: running on PostgreSQL alone (no cache, no live stream)")
    try:
        import redis
    except ModuleNotFoundError:
        return HealthCheck(
            "redis", "fail", "REDIS_URL is set but the redis package is not installed", "pip install 'jarvis[redis]'"
        )
    try:
        client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=settings.connect_timeout, socket_connect_timeout=settings.connect_timeout
        )
        version = client.info("server").get("redis_version", "?")
        return HealthCheck("redis", "ok", f"Redis {version} reachable")
    except redis.RedisError as error:
        return HealthCheck(
            "redis", "fail", redact(str(error)), "start Redis or fix REDIS_URL (unset it to run without)"
        )
