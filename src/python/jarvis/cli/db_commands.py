"""`jarvis db ...`: migrations through Alembic (plain `alembic` works too, from the repository root)."""

from __future__ import annotations

import typer

from jarvis.cli.session import console, print_json, reported_errors, settings_or_exit
from jarvis.db import open_database
from jarvis.db.migrate import current_revision, downgrade, head_revision, history, upgrade

app = typer.Typer(help="Schema migrations (Alembic).", no_args_is_help=True)


@app.command("upgrade")
def upgrade_command(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Upgrade the schema (a no-op when already current). Safe to run from several processes at once."""
    settings = settings_or_exit()
    with reported_errors():
        database = open_database(settings, role="owner")
        try:
            before = current_revision(database)
            upgrade(database, revision)
            after = current_revision(database)
        finally:
            database.shutdown()
    if before == after:
        console.print(f"already at {after} ({database.display_url})")
    else:
        console.print(f"upgraded {before or 'empty database'} -> {after} ({database.display_url})")


@app.command("downgrade")
def downgrade_command(
    revision: str = typer.Argument(..., help="Target revision, e.g. -1 or base (base drops every Jarvis table)."),
) -> None:
    """Downgrade the schema. Destroys data in the dropped tables: there is no undo."""
    settings = settings_or_exit()
    with reported_errors():
        database = open_database(settings, role="owner")
        try:
            downgrade(database, revision)
            after = current_revision(database)
        finally:
            database.shutdown()
    console.print(f"downgraded to {after or 'base (empty)'}")


@app.command("current")
def current_command(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Show the database's revision and whether it is the newest."""
    settings = settings_or_exit()
    with reported_errors():
        database = open_database(settings, role="owner")
        try:
            current = current_revision(database)
        finally:
            database.shutdown()
    head = head_revision()
    if as_json:
        print_json({"current": current, "head": head, "up_to_date": current == head})
    else:
        console.print(f"{current or 'none'} ({'up to date' if current == head else f'head is {head}'})")


@app.command("history")
def history_command(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List the migrations, newest first."""
    revisions = history()
    if as_json:
        print_json([{"revision": r, "down_revision": d, "message": m} for r, d, m in revisions])
        return
    for revision, down, message in revisions:
        console.print(f"{down or '<base>'} -> {revision}: {message.splitlines()[0] if message else ''}")
