"""Alembic environment for Jarvis.

Used by `jarvis db ...` (which passes its engine in `config.attributes`) and by
plain `alembic` from the repository root (which reads DATABASE_URL like Jarvis does).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

import jarvis.db.models  # noqa: F401  (registers every table on Base.metadata)
from jarvis.db.base import Base
from jarvis.db.migrate import MIGRATION_LOCK_KEY, include_name


def run_migrations() -> None:
    engine = context.config.attributes.get("engine")
    if engine is None:
        from jarvis.config import load_settings
        from jarvis.db.engine import open_database

        engine = open_database(load_settings(), role="owner").engine
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            include_name=include_name,
            compare_server_default=False,
        )
        with context.begin_transaction():
            # Two processes upgrading at once: the second waits, then sees the first's version.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            context.run_migrations()


run_migrations()
