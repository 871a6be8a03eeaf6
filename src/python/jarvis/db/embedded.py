"""The embedded PostgreSQL 16 that makes Jarvis work with zero set-up.

With no DATABASE_URL, Jarvis starts (or reuses, when another Jarvis process
already runs it) a private server from the `pgserver` wheel under the data
directory. It listens on a Unix socket only, so it never collides with a
PostgreSQL already on the machine.

Where `pgserver` has no wheel (linux-arm64 on Python 3.11), the same thing is
done with `initdb` and `pg_ctl` from PATH; that server is left running for
the next caller, since processes share it without counting each other.
"""

from __future__ import annotations

import fcntl
import logging
import os
import pwd
import shutil
import subprocess
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger("jarvis.db")

Backend = Literal["auto", "pgserver", "path"]


class EmbeddedPostgresUnavailable(RuntimeError):
    """The embedded server cannot run here; the message says what to set instead."""


def start_embedded_postgres(data_dir: Path, *, stop_at_exit: bool = True, backend: Backend = "auto") -> Any:
    """Start or reuse the server whose data lives in `data_dir/postgres16`; returns its handle.

    The handle has `get_uri(database)`. With pgserver, `stop_at_exit` stops the
    server when the last process using it exits (pgserver counts its users).
    """
    pgdata = Path(data_dir).expanduser().resolve() / "postgres16"
    if backend != "path":
        try:
            from pgserver.postgres_server import get_server
        except ImportError as exc:
            if backend == "pgserver":
                raise EmbeddedPostgresUnavailable(f"pgserver is not installed here ({exc})") from exc
        else:
            try:
                pgdata.parent.mkdir(parents=True, exist_ok=True)
                return get_server(pgdata, cleanup_mode="stop" if stop_at_exit else None)
            except Exception as exc:
                raise EmbeddedPostgresUnavailable(
                    f"Could not start the embedded PostgreSQL in {pgdata}: {exc}. "
                    f"Fix: check {pgdata}/log, free the directory (JARVIS_DATA_DIR), or set DATABASE_URL."
                ) from exc
    return PathPostgres(pgdata).start()


class PathPostgres:
    """A private cluster run with `initdb` / `pg_ctl` from PATH (the fallback where pgserver is missing)."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self.initdb = shutil.which("initdb")
        self.pg_ctl = shutil.which("pg_ctl")
        if not self.initdb or not self.pg_ctl:
            raise EmbeddedPostgresUnavailable(
                "No embedded PostgreSQL here: pgserver has no wheel for this platform and initdb/pg_ctl are "
                "not on PATH. Fix: install PostgreSQL 16 (e.g. apt-get install postgresql-16, or `nix develop`), "
                "or set DATABASE_URL."
            )
        # PostgreSQL refuses to run as root: then it runs as the system user `postgres`.
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise EmbeddedPostgresUnavailable(
                    "Running as root, the embedded PostgreSQL needs a system user named 'postgres' to run as. "
                    "Fix: create it (useradd --system postgres), run Jarvis as another user, or set DATABASE_URL."
                ) from None
            self.user = "postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [*args]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    def start(self) -> PathPostgres:
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        with open(self.pgdata.parent / ".postgres16.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one process initialises and starts; the others wait, then reuse
            if not (self.pgdata / "PG_VERSION").exists():
                self.pgdata.mkdir(mode=0o700, exist_ok=True)
                if self.user is not None:
                    entry = pwd.getpwnam(self.user)
                    os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
                    self.pgdata.parent.chmod(self.pgdata.parent.stat().st_mode | 0o011)
                done = self._run(
                    str(self.initdb), "-D", str(self.pgdata), "--auth=trust", "-U", "postgres", "--encoding=UTF8"
                )
                if done.returncode != 0:
                    raise EmbeddedPostgresUnavailable(f"initdb failed in {self.pgdata}: {done.stderr.strip()}")
            if self._run(str(self.pg_ctl), "-D", str(self.pgdata), "status").returncode != 0:
                done = self._run(
                    str(self.pg_ctl),
                    "-D",
                    str(self.pgdata),
                    "-w",
                    "-l",
                    str(self.pgdata / "log"),
                    "-o",
                    f"-h '' -k {self.pgdata}",
                    "start",
                )
                if done.returncode != 0:
                    raise EmbeddedPostgresUnavailable(
                        f"pg_ctl could not start PostgreSQL in {self.pgdata}: {done.stderr.strip()} "
                        f"(see {self.pgdata / 'log'})"
                    )
        return self

    def stop(self) -> None:
        self._run(str(self.pg_ctl), "-D", str(self.pgdata), "-w", "-m", "fast", "stop")

    def get_uri(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.pgdata}"


def embedded_url(server: Any, database: str = "postgres") -> str:
    """A libpq URL for `database` on the embedded server (Unix socket, trust auth)."""
    return str(server.get_uri(database))
