"""The embedded PostgreSQL 16 that makes Jarvis work with zero set-up.

With no DATABASE_URL, Jarvis starts (or reuses, when another Jarvis process
already runs it) a private server from the `pgserver` wheel under the data
directory. It listens on a Unix socket only, so it never collides with a
PostgreSQL already on the machine.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("jarvis.db")


class EmbeddedPostgresUnavailable(RuntimeError):
    """The embedded server cannot run here; the message says what to set instead."""


def start_embedded_postgres(data_dir: Path, *, stop_at_exit: bool = True) -> Any:
    """Start or reuse the server whose data lives in `data_dir/postgres16`; returns pgserver's handle.

    `stop_at_exit` stops the server when the last process using it exits
    (pgserver counts its users); False leaves it running for the next caller.
    """
    try:
        from pgserver.postgres_server import get_server
    except ImportError as exc:  # pragma: no cover - platforms without a pgserver wheel
        raise EmbeddedPostgresUnavailable(
            "The embedded PostgreSQL (pgserver) is not available on this platform "
            f"({exc}). Fix: set DATABASE_URL to a PostgreSQL 16 server, e.g. "
            "postgresql://postgres@localhost:5432/jarvis"
        ) from exc
    pgdata = Path(data_dir).expanduser().resolve() / "postgres16"
    try:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        return get_server(pgdata, cleanup_mode="stop" if stop_at_exit else None)
    except Exception as exc:
        raise EmbeddedPostgresUnavailable(
            f"Could not start the embedded PostgreSQL in {pgdata}: {exc}. "
            f"Fix: check {pgdata}/log, free the directory (JARVIS_DATA_DIR), or set DATABASE_URL."
        ) from exc


def embedded_url(server: Any, database: str = "postgres") -> str:
    """A libpq URL for `database` on the embedded server (Unix socket, trust auth)."""
    return str(server.get_uri(database))
