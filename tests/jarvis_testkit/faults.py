"""Fault injection against real servers: a connection-dropping proxy, and restarting a private PostgreSQL."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

WRITES = (b"INSERT INTO", b"jarvis_append_")
"""What a write's SQL text contains: a plain INSERT, or a call of an audit table's append function."""

SSL_OR_GSS_REQUEST = (80877103, 80877104)


@dataclass
class WriteSpotter:
    """Reads the client's side of the protocol and says which chunks carry a write.

    A prepared statement's text crosses the wire once (Parse); later executions
    only name it (Bind), so the spotter remembers which statement names are writes.
    """

    buffer: bytes = b""
    startup_done: bool = False
    write_statements: set[bytes] = field(default_factory=set)

    def carries_write(self, data: bytes) -> bool:
        self.buffer += data
        found = False
        while True:
            if not self.startup_done:  # untyped messages: SSL/GSS requests, then the startup packet
                if len(self.buffer) < 8:
                    return found
                length = int.from_bytes(self.buffer[:4], "big")
                if len(self.buffer) < length:
                    return found
                code = int.from_bytes(self.buffer[4:8], "big")
                self.startup_done = code not in SSL_OR_GSS_REQUEST
                self.buffer = self.buffer[length:]
                continue
            if len(self.buffer) < 5:
                return found
            kind, length = self.buffer[:1], int.from_bytes(self.buffer[1:5], "big")
            if len(self.buffer) < 1 + length:
                return found
            body, self.buffer = self.buffer[5 : 1 + length], self.buffer[1 + length :]
            if kind == b"Q":
                found |= any(write in body for write in WRITES)
            elif kind == b"P":
                name, rest = body.split(b"\0", 1)
                if any(write in rest.split(b"\0", 1)[0] for write in WRITES):
                    self.write_statements.add(name)  # preparing alone writes nothing: its Bind will
                else:
                    self.write_statements.discard(name)
            elif kind == b"B":
                statement = body.split(b"\0", 2)[1]
                found |= statement in self.write_statements


@dataclass
class DroppingProxy:
    """A TCP proxy in front of PostgreSQL that can cut a connection at the worst moment.

    `drop_after_commit()`: the next INSERT (or append call) is forwarded, the server commits it and
    answers, and the answer is thrown away with the connection, so the client
    cannot know whether its row landed. `drop_before_send()`: the next INSERT
    never reaches the server.
    """

    upstream: tuple[str, int] | str
    listener: socket.socket = field(default_factory=lambda: socket.create_server(("127.0.0.1", 0)))
    mode: str | None = None
    drops: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    def drop_after_commit(self) -> None:
        self.mode = "after_commit"

    def drop_before_send(self) -> None:
        self.mode = "before_send"

    def start(self) -> None:
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self.listener.close()

    def _connect_upstream(self) -> socket.socket:
        if isinstance(self.upstream, str):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(self.upstream)
            return sock
        return socket.create_connection(self.upstream)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = self._connect_upstream()
            armed = threading.Event()
            threading.Thread(target=self._pump_to_server, args=(client, server, armed), daemon=True).start()
            threading.Thread(target=self._pump_to_client, args=(server, client, armed), daemon=True).start()

    def _take_mode(self, wanted: str) -> bool:
        with self._lock:
            if self.mode == wanted:
                self.mode = None
                self.drops += 1
                return True
            return False

    def _pump_to_server(self, client: socket.socket, server: socket.socket, armed: threading.Event) -> None:
        spotter = WriteSpotter()
        try:
            while data := client.recv(65536):
                if spotter.carries_write(data) and self.mode is not None:
                    if self._take_mode("before_send"):
                        break
                    if self.mode == "after_commit":
                        armed.set()
                server.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (client, server):
                _close(sock)

    def _pump_to_client(self, server: socket.socket, client: socket.socket, armed: threading.Event) -> None:
        held = b""
        try:
            while data := server.recv(65536):
                if armed.is_set():
                    held += data
                    # ReadyForQuery ('Z') after the write: the implicit transaction has committed.
                    done = next((tag for tag in (b"INSERT 0 1", b"SELECT 1") if tag in held), None)
                    if done is not None and b"Z\x00\x00\x00\x05" in held.split(done, 1)[1]:
                        if self._take_mode("after_commit"):
                            break
                    continue
                client.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (client, server):
                _close(sock)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@contextmanager
def dropping_proxy(database_url: str) -> Iterator[tuple[DroppingProxy, str]]:
    """A proxy in front of the server of `database_url`, and the URL that goes through it."""
    parts = urlsplit(database_url)
    socket_dir = parse_qs(parts.query).get("host", [None])[0]
    upstream: tuple[str, int] | str
    if socket_dir:
        upstream = str(Path(socket_dir) / f".s.PGSQL.{parts.port or 5432}")
    else:
        upstream = (parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy = DroppingProxy(upstream)
    proxy.start()
    user = parts.username or "postgres"
    password = f":{parts.password}" if parts.password else ""
    through = urlunsplit(parts._replace(netloc=f"{user}{password}@127.0.0.1:{proxy.port}", query=""))
    try:
        yield proxy, through
    finally:
        proxy.close()


RESTART_TIMEOUT = 120
"""Seconds pg_ctl may wait for the server to stop and to accept connections again (a second on an idle machine)."""


def restart_postgres(server: object) -> None:
    """`pg_ctl restart` on a private pgserver cluster (as the unprivileged user it runs as).

    Returns once the server accepts connections again (`-w`), however long a loaded machine takes.
    """
    from pgserver._commands import POSTGRES_BIN_PATH

    pgdata = Path(server.pgdata)  # type: ignore[attr-defined]
    user = getattr(server, "system_user", None)
    command = [
        str(POSTGRES_BIN_PATH / "pg_ctl"),
        "-D",
        str(pgdata),
        "-w",
        "-t",
        str(RESTART_TIMEOUT),
        "-m",
        "fast",
        "restart",
        "-l",
        str(pgdata / "log"),
    ]
    kwargs: dict[str, object] = {"timeout": RESTART_TIMEOUT + 30}
    if user is not None and os.geteuid() == 0:
        kwargs["user"] = pwd.getpwnam(user).pw_uid
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        log = (pgdata / "log").read_text()[-2000:] if (pgdata / "log").exists() else ""
        raise RuntimeError(f"pg_ctl restart failed ({done.returncode}): {done.stdout}{done.stderr}\n{log}")
