"""Real services for tests: configured ones when the URL is set, private throwaway ones otherwise.

Every test module gets its own database, so Pants' parallel test processes
never see each other's rows. When CI is set, a service that cannot be had is a
failure, never a skip: a skipped test must not hide a missing service.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest
import redis

from jarvis.db.embedded import embedded_url, start_embedded_postgres
from jarvis.db.urls import database_name, libpq_url, with_database
from jarvis_testkit.binaries import find_binary, search_path


def service_unavailable(what: str, why: str) -> NoReturn:
    message = f"{what} is unavailable: {why}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set, so this fails instead of skipping)", pytrace=False)
    pytest.skip(message)


def scratch_root() -> Path:
    """Shared by every test process of this user, so the embedded server is started once and reused."""
    root = Path(tempfile.gettempdir()) / f"jarvis-tests-{os.getuid()}"
    root.mkdir(exist_ok=True)
    return root


def postgres_admin_url() -> str:
    """A superuser URL: DATABASE_URL when set, else the shared embedded PostgreSQL 16."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        return libpq_url(configured)
    try:
        server = start_embedded_postgres(scratch_root())
    except Exception as exc:
        service_unavailable("PostgreSQL", str(exc))
    return embedded_url(server)


def create_database(admin_url: str, label: str) -> str:
    name = "jarvis_t_" + re.sub(r"[^a-z0-9_]", "_", label.lower())[-30:] + "_" + uuid.uuid4().hex[:8]
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(admin_url, name)


def clone_database(admin_url: str, template_url: str, label: str) -> str:
    """A copy of a (migrated) template database: much faster than migrating a new one."""
    template = database_name(template_url)
    name = "jarvis_c_" + re.sub(r"[^a-z0-9_]", "_", label.lower())[-30:] + "_" + uuid.uuid4().hex[:8]
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    url = with_database(admin_url, name)
    # A database's own privileges (CONNECT, TEMP) are not copied from its template: apply migration 0003's.
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        roles = conn.execute("SELECT app_role, auditor_role FROM public.trail_info").fetchone()
        if roles is not None:
            conn.execute(f'REVOKE ALL ON DATABASE "{name}" FROM PUBLIC')
            conn.execute(f'GRANT CONNECT ON DATABASE "{name}" TO {roles[0]}, {roles[1]}')
            # A copy of a database is a copy of its trail's identity; each test's trail is its own (witness logs are
            # named by the trail id), as a database migrated on its own would be.
            conn.execute("SET session_replication_role = replica")
            conn.execute("UPDATE public.trail_info SET trail_id = gen_random_uuid()")
    return url


def drop_database(admin_url: str, url: str, *, drop_roles: bool = False) -> None:
    """Drop the database; with `drop_roles`, also the per-database roles its migration created."""
    name = database_name(url)
    roles: list[str] = []
    if drop_roles:
        with contextlib.suppress(psycopg.Error), psycopg.connect(url, connect_timeout=5) as conn:
            row = conn.execute("SELECT app_role, auditor_role FROM public.trail_info").fetchone()
            roles = [str(r) for r in row] if row else []
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for role in roles:
            try:
                conn.execute(f"DROP ROLE IF EXISTS {role}")
            except psycopg.Error:
                pass  # still used elsewhere (a clone, a login): harmless to leave


@contextlib.contextmanager
def fresh_database(admin_url: str, label: str) -> Iterator[str]:
    try:
        url = create_database(admin_url, label)
    except psycopg.Error as exc:
        service_unavailable("PostgreSQL", f"cannot create a test database: {exc}")
    try:
        yield url
    finally:
        drop_database(admin_url, url, drop_roles=True)


START_TIMEOUT = 30.0
"""Seconds a private redis-server gets to answer PING, or to exit (well under a second on an idle machine)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """A private redis-server: tests may stop and restart it to inject faults."""

    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = find_binary("redis-server")
        if binary is None:
            service_unavailable(
                "Redis",
                f"redis-server is in none of {search_path()} and REDIS_URL is unset "
                "(apt-get install redis-server, or set REDIS_URL)",
            )
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        client = redis.Redis.from_url(self.url, socket_timeout=0.5)
        while True:
            try:
                client.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    service_unavailable("Redis", f"redis-server did not start on port {self.port}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.thaw()  # a frozen server cannot act on SIGTERM
            self.process.terminate()
            self.process.wait(timeout=START_TIMEOUT)
        self.process = None

    def freeze(self) -> None:
        """SIGSTOP: the server keeps its data and its connections but answers nothing until `thaw()`.

        Unlike a timed `CLIENT PAUSE`, the outage lasts exactly as long as the test needs, however slow the machine.
        """
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    """REDIS_URL when set (flushed of nothing: keys are namespaced per database), else a private server."""
    configured = os.environ.get("REDIS_URL")
    if configured:
        try:
            redis.Redis.from_url(configured, socket_timeout=2).ping()
        except redis.RedisError as exc:
            service_unavailable("Redis", f"REDIS_URL does not answer PING: {exc}")
        yield configured
        return
    with private_redis() as server:
        yield server.url


@contextlib.contextmanager
def private_redis() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="jarvis-redis-") as workdir:
        server = RedisServer(port=free_port(), workdir=Path(workdir))
        server.start()
        try:
            yield server
        finally:
            server.stop()
