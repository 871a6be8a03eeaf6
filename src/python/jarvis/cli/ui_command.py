"""`jarvis ui`: serve the read-only web view of the trail (jarvis.ui) with uvicorn."""

from __future__ import annotations

from pathlib import Path

import typer
from dotenv import dotenv_values

from jarvis.cache import RedisLink, namespace_for
from jarvis.cache.auth import cache_key_path, load_cache_key
from jarvis.cli.listen import listening_socket, shown_address
from jarvis.cli.session import ExitCode, console, errors, fail, opened_database, reported_errors, settings_or_exit
from jarvis.config import JarvisError, Settings
from jarvis.config.extras import require
from jarvis.db import Database

GRACE = 3
"""Seconds Ctrl-C waits for open responses (live event streams) before closing them."""


def ui_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; anything but loopback needs --token."),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port to listen on (0: any free port)."),
    token: str
    | None = typer.Option(
        None,
        "--token",
        envvar="JARVIS_UI_TOKEN",
        help="Every request must carry it (open /?token=... once, or send `Authorization: Bearer ...`). "
        "Required off loopback.",
        show_default=False,
    ),
) -> None:
    """Serve a read-only web view of the audit trail, memory and state (as the SELECT-only auditor role)."""
    with reported_errors():  # the [ui] extra; the rest of the CLI runs without it
        require("jarvis.ui", extra="ui", feature="jarvis ui")
        require("uvicorn", extra="ui", feature="jarvis ui")
    import uvicorn

    from jarvis.ui import create_app, is_loopback

    if not token:  # like every setting, JARVIS_UI_TOKEN may also come from .env
        token = dotenv_values(".env").get("JARVIS_UI_TOKEN") if Path(".env").is_file() else None
    loopback = is_loopback(host)
    if not loopback and not token:
        fail(
            f"--host {host} is reachable from other machines: give --token (or JARVIS_UI_TOKEN), e.g. "
            "--token \"$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')\"",
            ExitCode.BAD_INPUT,
        )
    settings = settings_or_exit()
    with (
        opened_database("auditor") as database,
        reported_errors(),
        listening_socket(host, port, command="jarvis ui") as listener,  # a busy port: one line and exit 2
    ):
        link = _stream_link(settings.redis_url, database, settings)
        try:
            app = create_app(database, settings, token=token, loopback_only=loopback, redis_link=link)
        except JarvisError as error:
            fail(str(error), ExitCode.BAD_INPUT)
        where = shown_address(host, listener) + ("?token=<your token>" if token else "")
        console.print(f"Jarvis trail (read-only) at {where} — Ctrl-C to stop", highlight=False, markup=False)
        try:
            # Open event streams end within GRACE seconds of Ctrl-C (browsers reconnect to the next server).
            config = uvicorn.Config(
                app, host=host, port=port, log_level="warning", server_header=False, timeout_graceful_shutdown=GRACE
            )
            server = uvicorn.Server(config)
            server.run(sockets=[listener])
            if not server.started:
                raise typer.Exit(int(ExitCode.FAILED))
        finally:
            if link is not None:
                link.close()


def _stream_link(redis_url: str | None, database: Database, settings: Settings) -> RedisLink | None:
    """The Redis stream for live events when REDIS_URL is set and the cache key exists; else None (polling).

    The key is only read, never created: the UI writes nothing, and without the agent's key no event would verify.
    """
    if not redis_url:
        return None
    path = cache_key_path(settings)
    if not path.exists():
        errors.print(
            f"live events poll PostgreSQL: no cache key at {path} (JARVIS_CACHE_KEY) to check the Redis stream with",
            style="yellow",
            markup=False,
            highlight=False,
        )
        return None
    return RedisLink(redis_url, namespace=namespace_for(database), auth_key=load_cache_key(path))
