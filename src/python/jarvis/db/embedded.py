"""The embedded PostgreSQL 16 that makes Jarvis work with zero set-up.

With no DATABASE_URL, Jarvis starts (or reuses, when another Jarvis process
already runs it) a private server from the `pgserver` wheel under the data
directory. It listens on a Unix socket only, so it never collides with a
PostgreSQL already on the machine.

Where `pgserver` has no wheel (linux-arm64 on Python 3.11), the same thing is
done with `initdb` and `pg_ctl` from PATH; that server is left running for
the next caller, since processes share it without counting each other.

Several processes may do the first start at the same moment (two `jarvis
demo`, a reader next to them): every one of them initialises, starts and
creates the database under one lock file in the data directory, so the first
does the work and the others wait for it, then reuse it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import pwd
import shutil
import stat
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, Protocol

import psycopg

from jarvis.config import ExitCode, JarvisError

log = logging.getLogger("jarvis.db")

Backend = Literal["auto", "pgserver", "path"]


class EmbeddedPostgresUnavailable(JarvisError, RuntimeError):
    """The embedded server cannot run here; the message says what to set instead."""

    exit_code = ExitCode.UNAVAILABLE


class EmbeddedServer(Protocol):
    """What Jarvis uses of a running embedded server: pgserver's handle, or a PathPostgres.

    A Protocol, not pgserver's class, because pgserver is optional (no wheel on linux-arm64)
    and untyped; both handles have these two members.
    """

    pgdata: Path
    """The cluster's data directory (its `log` file is where a failed start is explained)."""

    def get_uri(self, database: str = "postgres") -> str:
        """A libpq URL for `database`, over the server's Unix socket."""
        ...


LOCK_FILE = ".postgres16.lock"
"""In the data directory: held while one process initialises, starts or creates the database."""

LOCK_TIMEOUT = 300.0
"""Seconds to wait for another process's first start (initdb + start take seconds, even on a slow disk)."""

CONNECT_TIMEOUT = 30.0
"""Seconds a freshly started server gets to accept the first connection."""


def start_embedded_postgres(
    data_dir: Path, *, stop_at_exit: bool = True, backend: Backend = "auto", database: str | None = None
) -> EmbeddedServer:
    """Start or reuse the server whose data lives in `data_dir/postgres16`; returns its handle.

    The handle has `get_uri(database)`. With pgserver, `stop_at_exit` stops the
    server when the last process using it exits (pgserver counts its users).
    With `database`, that database exists on the server when this returns.

    Safe when several processes call it at once for the same `data_dir`: they
    take turns under the data directory's lock file, so only the first one
    initialises, starts and creates; the others find its server and database.
    """
    root = Path(data_dir).expanduser().resolve()
    with first_start_lock(root):
        pgdata = server_directory(root).resolve()  # the server's user may reach the cluster, not the link
        server = _start(pgdata, stop_at_exit=stop_at_exit, backend=backend)
        if database is not None:
            ensure_database(server, database)
    return server


SERVERS_ROOT = Path("/var/lib/jarvis/servers")
"""Where root's embedded clusters live when its data directory is one the server's user cannot reach."""


def server_directory(root: Path) -> Path:
    """The cluster directory of the data directory `root`: `root`/postgres16, or a link to where it really is.

    As root, PostgreSQL runs as an unprivileged user (pgserver's `pgserver`, or `postgres`), which
    must traverse every parent of its cluster; pgserver would make them traversable (and listable)
    by everyone, root's home included. So when a parent of `root` is closed to others, the cluster
    is made in SERVERS_ROOT/<hash of root> (one per data directory: two data directories never
    share a server) and `root`/postgres16 is a symbolic link to it. Everything else of Jarvis
    (keys, witness logs) stays in `root`, private. A cluster already at `root`/postgres16 is used
    where it is. The caller holds `first_start_lock(root)`.
    """
    pgdata = root / "postgres16"
    if pgdata.exists() or pgdata.is_symlink() or os.geteuid() != 0 or _reachable_by_others(root.parent):
        return pgdata
    home = SERVERS_ROOT / hashlib.sha256(str(root).encode()).hexdigest()[:16]
    try:
        (home / "postgres16").mkdir(parents=True, exist_ok=True)
        (home / "data-directory").write_text(f"{root}\n")  # whose server this is, for a person cleaning up
        pgdata.symlink_to(home / "postgres16", target_is_directory=True)
    except OSError as error:
        raise EmbeddedPostgresUnavailable(
            f"Running as root with the data directory {root}, which the embedded PostgreSQL's unprivileged "
            f"user cannot reach, Jarvis keeps the server's cluster in {home}, but cannot: {error.strerror}. "
            "Fix: make /var/lib/jarvis writable, set JARVIS_DATA_DIR to a directory others may traverse, "
            "or set DATABASE_URL."
        ) from None
    log.info("the embedded PostgreSQL of %s keeps its cluster in %s (%s links to it)", root, home, pgdata)
    return pgdata


def _reachable_by_others(directory: Path) -> bool:
    """Whether every directory from / down to `directory` may be traversed by any user (o+x)."""
    return all(part.stat().st_mode & stat.S_IXOTH for part in (directory, *directory.parents))


@contextmanager
def first_start_lock(root: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """An exclusive lock on `root`/.postgres16.lock, shared by every process that starts the server there."""
    path = root / LOCK_FILE
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")  # closed below: the lock lives as long as this open file
    except OSError as error:
        raise EmbeddedPostgresUnavailable(
            f"Cannot use the data directory {root} for the embedded PostgreSQL: {error.strerror}. "
            "Fix: make it writable, choose another one (JARVIS_DATA_DIR), or set DATABASE_URL."
        ) from None
    with handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EmbeddedPostgresUnavailable(
                        f"Another process has been starting the embedded PostgreSQL in {root} for more than "
                        f"{timeout:.0f} s (it holds {path}). Fix: wait for it or stop it, or set DATABASE_URL."
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _start(pgdata: Path, *, stop_at_exit: bool, backend: Backend) -> EmbeddedServer:
    """Initialise and start (or reuse) the server; the caller holds the data directory's lock."""
    if backend != "path":
        try:
            with warnings.catch_warnings():
                # platformdirs warns, on stderr, when XDG_RUNTIME_DIR is unset (containers, CI); pgserver copes.
                warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
                from pgserver.postgres_server import PostgresServer, get_server
        except ImportError as exc:
            if backend == "pgserver":
                raise EmbeddedPostgresUnavailable(f"pgserver is not installed here ({exc})") from exc
        else:
            try:
                # pgserver creates a missing pgdata with exist_ok=False: make it here, where a loser is harmless.
                pgdata.mkdir(parents=True, exist_ok=True)
                with PostgresServer._lock:  # pgserver's own: held by every user while it joins or leaves
                    forget_dead_users(pgdata)
                server: EmbeddedServer = get_server(pgdata, cleanup_mode="stop" if stop_at_exit else None)
                return server
            except Exception as exc:
                detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise EmbeddedPostgresUnavailable(
                    f"Could not start the embedded PostgreSQL in {pgdata}: {detail}. "
                    f"Fix: check {pgdata}/log, free the directory (JARVIS_DATA_DIR), or set DATABASE_URL."
                ) from exc
    return PathPostgres(pgdata).start()


HANDLE_PIDS = ".handle_pids.json"
"""pgserver's list of the processes using a server (in its pgdata); the last one to leave stops it."""


def forget_dead_users(pgdata: Path) -> list[int]:
    """Drop the processes that died without leaving (kill -9, the OOM killer) from pgserver's list; returns them.

    pgserver stops the server when the last process listed in `.handle_pids.json` exits, and each
    process removes only itself, at exit. One killed with SIGKILL stayed listed for good, so no
    later process was ever the last and the server ran on after every command. Every start now
    removes the dead first; the caller holds pgserver's lock, under which the list is changed.
    """
    path = pgdata / HANDLE_PIDS
    try:
        listed = [int(pid) for pid in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError):
        return []  # no list yet (or not one pgserver wrote): nothing to forget
    dead = [pid for pid in listed if not process_alive(pid)]
    if dead:
        path.write_text(json.dumps([pid for pid in listed if pid not in dead]))
        log.info("the embedded PostgreSQL in %s: forgot processes that died without stopping it: %s", pgdata, dead)
    return dead


def process_alive(pid: int) -> bool:
    """Whether `pid` is a running process (of any user); a zombie, dead but not yet reaped, is not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): trust kill(0)
    return state not in ("Z", "X")


def ensure_database(server: EmbeddedServer, database: str, *, timeout: float = CONNECT_TIMEOUT) -> None:
    """Create `database` on the embedded server unless it exists.

    Callers hold the data directory's lock, so Jarvis processes never race to
    create it; the errors a concurrent CREATE DATABASE from elsewhere raises
    (DuplicateDatabase, or UniqueViolation on pg_database's index) still mean
    "it exists now".
    """
    admin = embedded_url(server)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
                if not exists:
                    try:
                        conn.execute(f'CREATE DATABASE "{database}"')
                        log.debug("created database %s on the embedded PostgreSQL", database)
                    except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                        pass  # someone else created it between our check and our CREATE
            return
        except psycopg.OperationalError as error:
            # A server that is still starting up refuses connections for a moment: wait for it.
            if time.monotonic() > deadline:
                raise EmbeddedPostgresUnavailable(_embedded_failure(server, database, error)) from None
            time.sleep(0.2)
        except psycopg.Error as error:
            raise EmbeddedPostgresUnavailable(_embedded_failure(server, database, error)) from None


def _embedded_failure(server: EmbeddedServer, database: str, error: BaseException) -> str:
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    pgdata = server.pgdata
    return (
        f"The embedded PostgreSQL did not let Jarvis create or find its database {database!r}: {detail}. "
        f"Fix: check {pgdata}/log, choose another data directory (JARVIS_DATA_DIR), or set DATABASE_URL."
    )


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
        """Initialise and start unless done; the caller holds `first_start_lock` on the data directory."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
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
        """Stop the server (fast shutdown: sessions are disconnected, nothing is lost)."""
        self._run(str(self.pg_ctl), "-D", str(self.pgdata), "-w", "-m", "fast", "stop")

    def get_uri(self, database: str = "postgres") -> str:
        """A libpq URL for `database` over the server's Unix socket (trust auth, no password)."""
        return f"postgresql://postgres@/{database}?host={self.pgdata}"


def embedded_url(server: EmbeddedServer, database: str = "postgres") -> str:
    """A libpq URL for `database` on the embedded server (Unix socket, trust auth)."""
    return server.get_uri(database)
