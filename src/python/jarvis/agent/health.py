"""Health checks behind `jarvis doctor` (and the Docker HEALTHCHECK): each says what is wrong and the fix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import text

from jarvis.config import ConfigError, Settings, load_settings, redact
from jarvis.db import APP_ROLE, DatabaseError, open_database
from jarvis.db.base import AUDIT_TABLES
from jarvis.db.embedded import EmbeddedPostgresUnavailable
from jarvis.db.migrate import current_revision, head_revision

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class HealthCheck:
    name: str
    status: Status
    detail: str
    fix: str = ""


def run_health_checks(settings: Settings | None = None) -> list[HealthCheck]:
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
    try:
        database = open_database(settings, role="owner")
    except (DatabaseError, EmbeddedPostgresUnavailable) as error:
        return [HealthCheck("postgres", "fail", redact(str(error)), "start PostgreSQL or fix DATABASE_URL")]
    checks = []
    try:
        with database.connect() as conn:
            version = conn.execute(text("SHOW server_version")).scalar()
            major = int(str(version).split(".")[0])
            where = "embedded" if database.embedded_server is not None else database.display_url
            checks.append(
                HealthCheck(
                    "postgres",
                    "ok" if major >= 16 else "warn",
                    f"PostgreSQL {version} at {where}",
                    "" if major >= 16 else "Jarvis is built and tested on PostgreSQL 16",
                )
            )
            superuser = conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar()
            if superuser:
                embedded = database.embedded_server is not None
                checks.append(
                    HealthCheck(
                        "login role",
                        "warn",
                        "connected as a superuser" + (" (the embedded server's own 'postgres')" if embedded else ""),
                        f"Jarvis drops to {APP_ROLE} for its work, but a superuser login could bypass every trigger: "
                        + ("fine for a private embedded server; in production " if embedded else "")
                        + f"use a login role that is a member of {APP_ROLE} in DATABASE_URL",
                    )
                )
            current, head = current_revision(database), head_revision()
            if current != head:
                checks.append(
                    HealthCheck(
                        "migrations",
                        "fail",
                        f"database at {current or 'no revision'}, code at {head}",
                        "run `jarvis db upgrade`",
                    )
                )
                return checks
            checks.append(HealthCheck("migrations", "ok", f"at head ({head})"))
            missing = []
            for table in AUDIT_TABLES:
                for trigger in (f"{table}_append_only", f"{table}_no_truncate", f"{table}_queue_for_sealing"):
                    enabled = conn.execute(
                        text("SELECT tgenabled FROM pg_trigger WHERE tgname = :t AND tgrelid = CAST(:r AS regclass)"),
                        {"t": trigger, "r": table},
                    ).scalar()
                    if enabled != "O":
                        missing.append(f"{trigger} ({'disabled' if enabled else 'missing'})")
            checks.append(
                HealthCheck(
                    "append-only triggers",
                    "fail" if missing else "ok",
                    ", ".join(missing) if missing else f"present and enabled on {', '.join(AUDIT_TABLES)}",
                    "re-run migrations (`jarvis db downgrade base && jarvis db upgrade` on an empty database) "
                    "and run `jarvis audit verify`"
                    if missing
                    else "",
                )
            )
            granted = [
                f"{privilege} on {table}"
                for table in AUDIT_TABLES
                for privilege in ("UPDATE", "DELETE", "TRUNCATE")
                if conn.execute(
                    text("SELECT has_table_privilege(:role, :table, :privilege)"),
                    {"role": APP_ROLE, "table": table, "privilege": privilege},
                ).scalar()
            ]
            checks.append(
                HealthCheck(
                    "application role",
                    "fail" if granted else "ok",
                    f"{APP_ROLE} has {', '.join(granted)}"
                    if granted
                    else f"{APP_ROLE} can only SELECT and INSERT the audit tables",
                    f"REVOKE UPDATE, DELETE, TRUNCATE ON {', '.join(AUDIT_TABLES)} FROM {APP_ROLE}" if granted else "",
                )
            )
            pending = conn.execute(text("SELECT count(*) FROM audit_pending")).scalar()
            checks.append(HealthCheck("audit chain", "ok", f"{pending} row(s) waiting to be sealed"))
    except DatabaseError as error:
        checks.append(HealthCheck("postgres", "fail", redact(str(error)), "start PostgreSQL or fix DATABASE_URL"))
    finally:
        database.shutdown()
    return checks


def _redis_check(settings: Settings) -> HealthCheck:
    if not settings.redis_url:
        return HealthCheck("redis", "ok", "not configured: running on PostgreSQL alone (no cache, no live stream)")
    import redis

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
