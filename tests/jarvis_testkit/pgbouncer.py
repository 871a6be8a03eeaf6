"""A private PgBouncer in front of the test PostgreSQL, for tests of Jarvis behind a transaction pooler.

Each `pgbouncer(...)` starts Debian's `pgbouncer` binary as a process of its
own on a free 127.0.0.1 port, with its own directory (config, auth file, log,
pidfile) under `services.scratch_root()`, and stops it on exit. The Debian
package's service (port 6432, /etc/pgbouncer) is never used.

The directory is not under pytest's tmp dirs: when the tests run as root,
PgBouncer (which refuses to run as root) runs as another user, and that user
must be able to reach its files; pytest's /tmp/pytest-of-root is 0700.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict

from jarvis_testkit import services
from jarvis_testkit.binaries import find_binary, search_path

POOL_MODES = ("session", "transaction", "statement")
STARTUP_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 40
# Connection parameters that say where the server is: url_for() replaces them with the bouncer's address.
_ADDRESS_PARAMETERS = {"host", "hostaddr", "port", "user", "password", "dbname"}


class PgBouncerFailed(RuntimeError):
    """PgBouncer did not start (or not in time); the message ends with its log tail."""


@dataclass
class PgBouncer:
    """A running private PgBouncer: connect with `url_for(database_url)`."""

    port: int
    workdir: Path
    server_url: str
    pool_mode: str
    pool_size: int
    users: dict[str, str]
    """Logins in its auth_file (name -> password given to the server; '' when the server trusts it)."""
    version: tuple[int, ...]
    run_as: str | None = None
    """The system user PgBouncer runs as (only set when the tests run as root)."""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    aliases: dict[str, str] = field(default_factory=dict)
    """Pool names that lead to a database of another name (`agentpool` -> the real database)."""

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def log_path(self) -> Path:
        return self.workdir / "pgbouncer.log"

    @property
    def url(self) -> str:
        """The server URL's own database and user, through the bouncer."""
        return self.url_for(self.server_url)

    def url_for(self, database_url: str, user: str | None = None) -> str:
        """`database_url`'s database (and user, unless `user` is given) through this bouncer.

        Host, port and any `?host=` socket directory are replaced by 127.0.0.1
        and the bouncer's port; other parameters (connect_timeout, ...) are kept.
        The URL's password is kept only for the URL's own user.
        """
        params = _params(database_url)
        url_user = params.get("user") or _default_user(self.server_url)
        login = user or url_user
        if login not in self.users:
            raise ValueError(
                f"user {login!r} is not in this PgBouncer's auth_file ({sorted(self.users)}): "
                f"pass it to pgbouncer(..., users=({login!r},))"
            )
        dbname = params.get("dbname") or login
        password = params.get("password") if login == url_user else None
        credentials = quote(login, safe="") + (":" + quote(password, safe="") if password else "")
        extras = {key: value for key, value in params.items() if key not in _ADDRESS_PARAMETERS}
        query = "?" + urlencode(extras) if extras else ""
        return f"postgresql://{credentials}@{self.host}:{self.port}/{quote(dbname, safe='')}{query}"

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT seconds."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


@contextlib.contextmanager
def pgbouncer(
    server_url: str,
    *,
    pool_mode: str = "transaction",
    pool_size: int = 10,
    users: Iterable[str] | Mapping[str, str] = (),
    startup_timeout: float = STARTUP_TIMEOUT,
    aliases: Mapping[str, str] | None = None,
) -> Iterator[PgBouncer]:
    """A private PgBouncer in front of the server of `server_url` (any database on it passes through).

    `server_url` is a superuser (or any trusted) URL of the server, such as
    the `postgres_admin_url` fixture: TCP or Unix socket (`?host=/dir`). Its
    user is always in the auth_file; `users` adds more logins, either names or
    a mapping of names to the passwords PgBouncer gives the server for them
    (clients themselves are trusted). `pool_size` is per database and user.
    `aliases` maps pool names to the databases they lead to (a client asking for
    `agentpool` reaches the database named by it).
    """
    if pool_mode not in POOL_MODES:
        raise ValueError(f"pool_mode must be one of {POOL_MODES}, not {pool_mode!r}")
    if pool_size < 1:
        raise ValueError(f"pool_size must be at least 1, not {pool_size}")
    binary = find_binary("pgbouncer")
    if binary is None:
        services.service_unavailable(
            "PgBouncer", f"the pgbouncer binary is in none of {search_path()} (apt-get install pgbouncer)"
        )
    server = _params(server_url)
    logins = _logins(server_url, server, users)
    run_as = _run_as(server.get("host"))
    workdir = Path(tempfile.mkdtemp(prefix="pgbouncer-", dir=services.scratch_root()))
    version = _version(binary)
    bouncer: PgBouncer | None = None
    try:
        for attempt in range(3):  # a free port can be taken by someone else before PgBouncer binds it
            bouncer = PgBouncer(
                port=services.free_port(),
                workdir=workdir,
                server_url=server_url,
                pool_mode=pool_mode,
                pool_size=pool_size,
                users=logins,
                version=version,
                run_as=run_as,
                aliases=dict(aliases or {}),
            )
            _write_files(bouncer, server)
            try:
                _start(bouncer, binary, startup_timeout)
                break
            except PgBouncerFailed:
                address_taken = "Address already in use" in bouncer.log_tail()
                bouncer.stop()
                if not address_taken or attempt == 2:
                    raise
        assert bouncer is not None
        yield bouncer
    finally:
        if bouncer is not None:
            bouncer.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _params(url: str) -> dict[str, str]:
    """libpq's connection parameters of `url` (a URL or key=value conninfo), the unset ones left out."""
    return {key: str(value) for key, value in conninfo_to_dict(url).items() if value is not None}


def _default_user(url: str) -> str:
    """The login libpq would use for `url`: its user, else the name of the user running the tests."""
    return _params(url).get("user") or pwd.getpwuid(os.getuid()).pw_name


def _logins(server_url: str, server: dict[str, str], users: Iterable[str] | Mapping[str, str]) -> dict[str, str]:
    logins = {_default_user(server_url): server.get("password", "")}
    if isinstance(users, Mapping):
        logins.update({str(name): str(password) for name, password in users.items()})
    else:
        if isinstance(users, str):
            raise TypeError("users must be a collection of names, e.g. users=('jarvis_login',)")
        logins.update({name: logins.get(name, "") for name in users})
    return logins


def _run_as(server_host: str | None) -> str | None:
    """The system user PgBouncer runs as: None (this user) unless the tests run as root.

    As root, it is the owner of the server's Unix socket directory when that
    is not root (the embedded server's `pgserver` user, or `postgres` for
    PathPostgres): only that user is sure to reach a 0700 data directory.
    Otherwise the `postgres` system user.
    """
    if os.geteuid() != 0:
        return None
    if server_host and server_host.startswith("/"):
        with contextlib.suppress(OSError, KeyError):
            owner = pwd.getpwuid(Path(server_host).stat().st_uid).pw_name
            if owner != "root":
                return owner
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        services.service_unavailable(
            "PgBouncer", "running as root, PgBouncer needs a system user named 'postgres' to run as"
        )
    return "postgres"


def _version(binary: str) -> tuple[int, ...]:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    first = (done.stdout or done.stderr).split("\n", 1)[0]  # "PgBouncer 1.18.0"
    number = first.split()[-1] if first.split() else ""
    return tuple(int(part) for part in number.split(".") if part.isdigit())


def _auth_quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _write_files(bouncer: PgBouncer, server: dict[str, str]) -> None:
    target = []
    for key in ("host", "port"):
        value = server.get(key)
        if value:
            if any(char.isspace() or char in "'\"" for char in value):
                raise ValueError(f"PgBouncer fixture: unsupported server {key} {value!r}")
            target.append(f"{key}={value}")
    workdir = bouncer.workdir
    (workdir / "userlist.txt").write_text(
        "".join(f"{_auth_quote(name)} {_auth_quote(password)}\n" for name, password in bouncer.users.items())
    )
    (workdir / "pgbouncer.ini").write_text(
        "\n".join(
            [
                "[databases]",
                *(f"{alias} = " + " ".join([*target, f"dbname={real}"]) for alias, real in bouncer.aliases.items()),
                # Any other database name the client asks for is passed through to the same server.
                "* = " + " ".join(target),
                "",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {bouncer.port}",
                "unix_socket_dir =",
                f"pidfile = {workdir / 'pgbouncer.pid'}",
                "auth_type = trust",
                f"auth_file = {workdir / 'userlist.txt'}",
                f"pool_mode = {bouncer.pool_mode}",
                f"default_pool_size = {bouncer.pool_size}",
                "max_client_conn = 200",
                # 1.18 tracks client_encoding, DateStyle, TimeZone, standard_conforming_strings and
                # application_name itself; options (-c ...) is refused rather than silently dropped.
                "ignore_startup_parameters = extra_float_digits",
                # A failed server login is retried after 1 s, not the default 15 s.
                "server_login_retry = 1",
                "",
            ]
        )
    )
    if bouncer.run_as is not None:
        entry = pwd.getpwnam(bouncer.run_as)
        for path in (workdir, *workdir.iterdir()):
            os.chown(path, entry.pw_uid, entry.pw_gid)


def _start(bouncer: PgBouncer, binary: str, timeout: float) -> None:
    entry = pwd.getpwnam(bouncer.run_as) if bouncer.run_as is not None else None
    with open(bouncer.log_path, "wb") as log:
        # Foreground (no -d): the pid is PgBouncer's own, and it logs to stderr.
        bouncer.process = subprocess.Popen(
            [binary, str(bouncer.workdir / "pgbouncer.ini")],
            cwd=bouncer.workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=entry.pw_uid if entry else None,
            group=entry.pw_gid if entry else None,
            extra_groups=[] if entry else None,
        )
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        assert bouncer.process is not None
        if bouncer.process.poll() is not None:
            raise PgBouncerFailed(
                f"pgbouncer exited with status {bouncer.process.returncode} on port {bouncer.port}"
                f"{_as(bouncer)}; its log:\n{bouncer.log_tail()}"
            )
        try:
            with psycopg.connect(bouncer.url, connect_timeout=2, autocommit=True, prepare_threshold=None) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.Error as exc:
            last_error = exc
        if time.monotonic() > deadline:
            raise PgBouncerFailed(
                f"pgbouncer on port {bouncer.port}{_as(bouncer)} did not serve {bouncer.url} within {timeout:g} s "
                f"(last error: {str(last_error).strip()}); its log:\n{bouncer.log_tail()}"
            )
        time.sleep(0.05)


def _as(bouncer: PgBouncer) -> str:
    return f" (running as {bouncer.run_as})" if bouncer.run_as else ""
