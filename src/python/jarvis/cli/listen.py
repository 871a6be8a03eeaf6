"""The listening socket of `jarvis ui` and `jarvis mcp serve --http`, bound before either says where it is.

uvicorn binds only once the server starts: a busy port used to print "at http://…" first, then uvicorn's
`[Errno 98]`, and exit with a code that means something else. Binding here first turns that into one line
naming the address and the flag to change, with exit 2 (bad input), and lets `--port 0` print the port it got.
"""

from __future__ import annotations

import errno
import socket

from jarvis.cli.session import ExitCode, fail

REASONS = {
    errno.EADDRINUSE: "the port is already in use (another `jarvis ui`, `jarvis mcp serve --http` or another program)",
    errno.EADDRNOTAVAIL: "the address is not one of this machine's",
    errno.EACCES: "binding a port below 1024 needs privileges",
}


def listening_socket(host: str, port: int, *, command: str) -> socket.socket:
    """A TCP socket bound to host:port for uvicorn (`Server.serve(sockets=[…])`), or exit 2 naming --port/--host."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart reuses the port at once
    try:
        sock.bind((host, port))
    except OSError as error:  # also a --host that does not resolve (socket.gaierror)
        sock.close()
        reason = REASONS.get(error.errno or 0, error.strerror or str(error))
        fail(
            f"`{command}` cannot listen on {host}:{port}: {reason}. "
            "Fix: pick another port with --port (0: any free port), or another address with --host",
            ExitCode.BAD_INPUT,
        )
    return sock


def shown_address(host: str, sock: socket.socket) -> str:
    """http://host:port/ as a browser takes it, with the port actually bound (--port 0 picks one)."""
    port = sock.getsockname()[1]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"
