"""`jarvis state ...`: the agent's key/value state.

Writes go to PostgreSQL and, when REDIS_URL is set, invalidate the agents'
Redis cache for that key (a running agent never keeps reading the old value).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.table import Table

from jarvis.cache import CachedStateStore, RedisLink, ensure_cache_key, namespace_for
from jarvis.cli.session import ExitCode, console, fail, opened_database, parse_json_argument, print_json
from jarvis.cli.views import plain, printable, short_json
from jarvis.db import Database, StateStore

app = typer.Typer(help="The agent's key/value state (JSON values, versioned).", no_args_is_help=True)


@contextmanager
def writable_state(database: Database) -> Iterator[StateStore | CachedStateStore]:
    """The state store writes go through: with REDIS_URL, the cache in front of it, so each write invalidates."""
    settings = database.settings
    if not settings.redis_url:
        yield StateStore(database)
        return
    link = RedisLink(settings.redis_url, namespace=namespace_for(database), auth_key=ensure_cache_key(settings))
    try:
        yield CachedStateStore(StateStore(database), link)
    finally:
        link.close()


@app.command("get")
def get_command(
    key: str, as_json: bool = typer.Option(False, "--json", help="Print value and version as JSON.")
) -> None:
    """Print one value (exit 4 if the key does not exist)."""
    with opened_database() as database:
        entry = StateStore(database).get(key)
    if entry is None:
        fail(f"no state under key {key!r}", ExitCode.NOT_FOUND)
    if as_json:
        print_json({"key": entry.key, "value": entry.value, "version": entry.version, "updated_at": entry.updated_at})
    else:
        print_json(entry.value)


@app.command("set")
def set_command(
    key: str,
    value: str = typer.Argument(..., help="A JSON value, e.g. '{\"usd\": 12.5}', 42 or '\"text\"'."),
    expect_version: int = typer.Option(
        None, "--expect-version", min=0, max=2**31 - 1, help="Compare-and-set: fail unless at this version."
    ),
) -> None:
    """Write a value; with --expect-version it fails (exit 1) if someone else changed it."""
    parsed = parse_json_argument(value, "VALUE")
    with opened_database("app") as database, writable_state(database) as state:
        entry = state.set(key, parsed, expected_version=expect_version)
    console.print(f"{printable(key)} = version {entry.version}", markup=False, highlight=False)


@app.command("delete")
def delete_command(key: str) -> None:
    """Remove a key (exit 4 if it did not exist)."""
    with opened_database("app") as database, writable_state(database) as state:
        deleted = state.delete(key)
    if not deleted:
        fail(f"no state under key {key!r}", ExitCode.NOT_FOUND)
    console.print(f"deleted {printable(key)}", markup=False, highlight=False)


@app.command("list")
def list_command(
    prefix: str = typer.Argument("", help="Only keys starting with this."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List keys (and versions) in key order."""
    with opened_database() as database:
        entries = StateStore(database).list(prefix)
    if as_json:
        print_json([{"key": e.key, "value": e.value, "version": e.version} for e in entries])
        return
    table = Table("key", "version", "updated", "value")
    for entry in entries:
        table.add_row(
            plain(entry.key),
            str(entry.version),
            entry.updated_at.isoformat(timespec="seconds"),
            plain(short_json(entry.value, 60)),
        )
    console.print(table)
