"""A throwaway, migrated database for a benchmark run: DATABASE_URL's server, or the embedded PostgreSQL 16."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from jarvis.config import Settings, load_settings
from jarvis.db import Database, open_database
from jarvis.db.embedded import embedded_url, start_embedded_postgres
from jarvis.db.migrate import upgrade_to_head
from jarvis.db.urls import libpq_url, with_database


@contextmanager
def benchmark_database(**overrides: object) -> Iterator[tuple[Settings, Database, str]]:
    configured = os.environ.get("DATABASE_URL")
    if configured:
        admin = libpq_url(configured)
    else:
        root = Path(tempfile.gettempdir()) / f"jarvis-bench-{os.getuid()}"
        root.mkdir(exist_ok=True)
        admin = embedded_url(start_embedded_postgres(root))
    name = f"jarvis_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(admin, name)
    settings = load_settings(database_url=url, **overrides)
    upgrade_to_head(settings, url=url)
    database = open_database(settings, url=url)
    try:
        yield settings, database, url
    finally:
        database.shutdown()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
