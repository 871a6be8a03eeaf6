"""Alembic, driven from Python: migrations are the source of truth for the schema."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import exc, text

from jarvis.config import ExitCode, Settings
from jarvis.db.engine import Database, DatabaseError, NotMigratedError, open_database, unavailable
from jarvis.db.migrations.guard import DESTROY_FLAG

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK_KEY = 0x4A415256  # 'JARV': one advisory lock serialises concurrent upgrades


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Tables the agent creates at run time live in their own schema and are never migrated."""
    if type_ == "schema":
        return name in (None, "public")
    return True


def alembic_config(database: Database) -> Config:
    """An Alembic config for this package's migrations that runs on `database`'s own engine (no second URL)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = database.engine
    return config


@contextmanager
def _reachable(database: Database) -> Iterator[None]:
    """Alembic connects on its own: give its connection failures the same actionable message."""
    try:
        yield
    except exc.OperationalError as error:
        raise unavailable(database.url, error) from None


_ALEMBIC = threading.Lock()
"""Alembic keeps module-global state while it runs: one migration command at a time per process."""


class MigrationError(DatabaseError):
    """A migration was refused by PostgreSQL (usually a missing privilege); the message says what to grant."""

    exit_code = ExitCode.BAD_INPUT


@contextmanager
def _refusals(database: Database, doing: str) -> Iterator[None]:
    """A statement PostgreSQL refused (usually a missing privilege) becomes one line that says what to do."""
    try:
        yield
    except exc.DBAPIError as error:
        if isinstance(error, exc.OperationalError):
            raise
        orig = error.orig
        diag = getattr(orig, "diag", None)
        hint = getattr(diag, "message_hint", None)
        first = str(orig).strip().splitlines()[0] if orig is not None else str(error)
        raise MigrationError(
            f"could not {doing} {database.display_url}: {first}"
            + (
                f". Fix: {hint}"
                if hint
                else ". Fix: run it as the database's owner (the login that ran `jarvis db upgrade`)"
            )
        ) from None


def upgrade(database: Database, revision: str = "head") -> None:
    """Migrate to `revision` as the tables' owner; concurrent callers serialise, refusals become actionable errors."""
    with _reachable(database), _ALEMBIC, _refusals(database, "migrate"):
        command.upgrade(alembic_config(database), revision)


def upgrade_to_head(settings: Settings, *, url: str | None = None) -> None:
    """Connect as the database owner (not the restricted app role), upgrade to head, disconnect."""
    owner = open_database(settings, url=url, role="owner")
    try:
        upgrade(owner)
    finally:
        owner.shutdown()


def require_head(database: Database) -> None:
    """Readers never migrate: a database behind the code is an error that says how to fix it."""
    with database.connect() as conn:
        try:
            current = conn.execute(text("SELECT version_num FROM public.alembic_version")).scalar()
        except exc.ProgrammingError:
            current = None
    head = head_revision()
    if current != head:
        raise NotMigratedError(
            f"the database at {database.display_url} is at migration {current or 'none'}, this Jarvis needs {head}. "
            "Fix: run `jarvis db upgrade` (as the database owner)."
        )


def downgrade(database: Database, revision: str = "-1", *, destroy_audit_trail: bool = False) -> None:
    """Downgrade; a step that would drop or rewrite audit rows is refused unless `destroy_audit_trail`."""
    config = alembic_config(database)
    config.attributes[DESTROY_FLAG] = destroy_audit_trail
    with _reachable(database), _ALEMBIC, _refusals(database, "downgrade"):
        command.downgrade(config, revision)


@dataclass(frozen=True)
class DowngradeStep:
    revision: str
    down_to: str | None
    audit_rows: dict[str, int]
    """Rows held now by the audit tables this step drops or rewrites."""
    guarded: tuple[str, ...]
    """The tables whose rows the step's guard protects (it refuses while they hold any)."""

    @property
    def destroyed_rows(self) -> dict[str, int]:
        """Audit rows this step would drop or rewrite, by table: why a downgrade is refused."""
        return {table: rows for table, rows in self.audit_rows.items() if table in self.guarded and rows}


def downgrade_plan(database: Database, target: str) -> list[DowngradeStep]:
    """The steps from the current revision down to `target` (a revision, `base`, or `-N`), newest first."""
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    current = current_revision(database)
    steps: list[DowngradeStep] = []
    relative = int(target) if target.lstrip("-").isdigit() and target.startswith("-") else None
    known = {rev.revision for rev in script.walk_revisions()}
    if relative is None and target != "base" and target not in known:
        raise ValueError(f"unknown revision {target!r}; `jarvis db history` lists them (or use base, -1)")
    revision = current
    while revision is not None and revision != target and (relative is None or len(steps) < -relative):
        module = script.get_revision(revision).module
        down = script.get_revision(revision).down_revision
        tables = tuple(getattr(module, "AUDIT_TABLES_DROPPED", ()))
        guarded = tuple(getattr(module, "GUARDED", tables))
        counts = _row_counts(database, tables)
        steps.append(DowngradeStep(revision, down if isinstance(down, str) else None, counts, guarded))
        revision = down if isinstance(down, str) else None
    return steps


def _row_counts(database: Database, tables: tuple[str, ...]) -> dict[str, int]:
    counts: dict[str, int] = {}
    with database.connect() as conn:
        for table in tables:
            if conn.execute(text("SELECT to_regclass(:t)"), {"t": f"public.{table}"}).scalar() is not None:
                counts[table] = int(conn.execute(text(f"SELECT count(*) FROM public.{table}")).scalar_one())
    return counts


def current_revision(database: Database) -> str | None:
    """The revision the database is at (None when never migrated)."""
    with _refusals(database, "read the migration version of"), database.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    """The newest revision this code ships: what `current_revision` must equal to run."""
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def history() -> list[tuple[str, str | None, str]]:
    """(revision, down_revision, message), newest first."""
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    return [
        (rev.revision, rev.down_revision if isinstance(rev.down_revision, str) else None, rev.doc or "")
        for rev in script.walk_revisions()
    ]
