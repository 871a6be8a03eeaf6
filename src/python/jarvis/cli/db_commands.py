"""`jarvis db ...`: migrations through Alembic (plain `alembic` works too, from the repository root)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import typer
from alembic.util.exc import CommandError
from sqlalchemy import text

from jarvis.agent.witnessing import witness_log_path
from jarvis.cli.session import ExitCode, console, fail, print_json, reported_errors, settings_or_exit
from jarvis.cli.views import printable
from jarvis.config import Settings
from jarvis.db import Database, Roles, open_database
from jarvis.db.audit.trail_binding import TrailBindings, database_identity
from jarvis.db.engine import psycopg_connection
from jarvis.db.migrate import current_revision, downgrade, downgrade_plan, head_revision, history, upgrade
from jarvis.db.urls import database_name

app = typer.Typer(help="Schema migrations (Alembic).", no_args_is_help=True)


@contextmanager
def owner_database(settings: Settings) -> Iterator[Database]:
    """The database as its owner (migrations need the tables' owner), never migrated on opening, always shut
    down, with errors reported as actionable messages and exit codes."""
    with reported_errors():
        database = open_database(settings, role="owner")
        try:
            yield database
        finally:
            database.shutdown()


@app.command("upgrade")
def upgrade_command(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Upgrade the schema (a no-op when already current). Safe to run from several processes at once.

    Run it as the database owner; it prints the database's own roles, for the logins you create.
    """
    settings = settings_or_exit()
    if not revision.strip():
        fail("REVISION is empty; use head, or a revision `jarvis db history` lists", ExitCode.BAD_INPUT)
    with owner_database(settings) as database:
        before = current_revision(database)
        try:
            upgrade(database, revision)
        except CommandError as error:
            fail(f"cannot upgrade to {revision!r}: {error}. `jarvis db history` lists them", ExitCode.BAD_INPUT)
        after = current_revision(database)
        roles = database_roles(database)
    if before == after:
        console.print(printable(f"already at {after} ({database.display_url})"), highlight=False, markup=False)
    else:
        console.print(
            printable(f"upgraded {before or 'empty database'} -> {after} ({database.display_url})"),
            highlight=False,
            markup=False,
        )
    if roles is not None:
        console.print(
            f"roles: {roles.app} (the agent: SELECT, INSERT), {roles.auditor} (auditors: SELECT only); "
            f"give logins membership, e.g. CREATE ROLE agent_login LOGIN PASSWORD '…' IN ROLE {roles.app}",
            highlight=False,
            markup=False,
        )


def database_roles(database: Database) -> Roles | None:
    with database.connect() as conn:
        if conn.execute(text("SELECT to_regclass('public.trail_info')")).scalar() is None:
            return None
        return database.roles(psycopg_connection(conn))


@app.command("downgrade")
def downgrade_command(
    revision: str = typer.Argument(..., help="Target revision, e.g. -1 or base (base drops every Jarvis table)."),
    destroy_audit_trail: bool = typer.Option(
        False,
        "--destroy-audit-trail",
        help="Go through even when a step drops or rewrites audit rows (exports the trail first).",
    ),
    export_to: Path = typer.Option(
        None, "--export-to", help="Where the export goes with --destroy-audit-trail (default: under the data dir)."
    ),
) -> None:
    """Downgrade the schema. Refused while a step would drop or rewrite audit rows.

    With --destroy-audit-trail the whole trail is first exported as a verifiable
    bundle (nothing is dropped if that fails) and, on a terminal, the database
    name must be typed back.
    """
    settings = settings_or_exit()
    with owner_database(settings) as database:
        try:
            steps = downgrade_plan(database, revision)
        except ValueError as error:
            fail(str(error), ExitCode.BAD_INPUT)
        for step in steps:
            held = ", ".join(f"{table} ({rows} rows)" for table, rows in step.audit_rows.items())
            console.print(
                f"step {step.revision} -> {step.down_to or 'base'}: "
                + (f"drops or rewrites {held}" if held else "touches no audit table"),
                highlight=False,
                markup=False,
            )
        destroyed: dict[str, int] = {}
        for step in steps:
            destroyed.update(step.destroyed_rows)
        if destroyed and not destroy_audit_trail:
            listed = ", ".join(f"{table} ({rows} rows)" for table, rows in destroyed.items())
            fail(
                f"refused: downgrading to {revision} would destroy audit rows in {listed}. Nothing was changed. "
                "Keep the trail, or export and destroy it deliberately with --destroy-audit-trail "
                "(the export is written and must succeed first)",
                ExitCode.BAD_INPUT,
            )
        if destroyed and not owns_the_tables(database):
            fail(
                "only the owner of the Jarvis tables (the login that ran `jarvis db upgrade`) may destroy the "
                "trail; nothing was exported or changed",
                ExitCode.BAD_INPUT,
            )
        if destroyed:
            name = database_name(database.url)
            if sys.stdin.isatty():
                typed = typer.prompt(f"This destroys the audit trail of database {name!r}. Type its name")
                if typed != name:
                    fail(f"{typed!r} is not {name!r}; nothing was changed", ExitCode.BAD_INPUT)
            from jarvis.agent.bundle import export_bundle  # (only this path needs it)

            path = export_to
            if path is None:
                path = default_export_path(settings, name)
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            summary = export_bundle(database, settings, path)
            console.print(f"exported the trail to {path} ({summary})", highlight=False, markup=False)
        # Found before the downgrade: the log is named by the trail id, which goes with trail_info.
        witness_log = witness_log_path(settings, database) if destroyed else None
        identity = database_identity(database) if destroyed else None
        downgrade(database, revision, destroy_audit_trail=destroy_audit_trail)
        after = current_revision(database)
        if witness_log is not None:
            retire_witness_log(witness_log)
        if identity is not None:  # a new trail made here later is not a changed trail id
            TrailBindings.of(settings).forget(identity, "its trail was destroyed (`jarvis db downgrade`)")
    console.print(printable(f"downgraded to {after or 'base (empty)'}"), markup=False)


def owns_the_tables(database: Database) -> bool:
    with database.connect() as conn:
        return bool(
            conn.execute(
                text(
                    "SELECT pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE') FROM pg_catalog.pg_class c "
                    "WHERE c.oid = CAST('public.tool_calls' AS regclass)"
                )
            ).scalar()
        )


def retire_witness_log(log: Path) -> None:
    """The destroyed trail's checkpoints stay (renamed, beside the export) but no longer speak for this database:
    a new trail started here would otherwise be reported as a replaced one."""
    if log.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        retired = log.with_name(f"{log.stem}.destroyed-{stamp}{log.suffix}")
        log.rename(retired)
        console.print(f"moved the destroyed trail's witness log to {retired}", highlight=False, markup=False)


def default_export_path(settings: Settings, database: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return settings.data_dir / "exports" / f"audit-trail-{database}-{stamp}.jsonl"


@app.command("current")
def current_command(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Show the database's revision and whether it is the newest."""
    settings = settings_or_exit()
    with owner_database(settings) as database:
        current = current_revision(database)
    head = head_revision()
    if as_json:
        print_json({"current": current, "head": head, "up_to_date": current == head})
    else:
        console.print(
            printable(f"{current or 'none'} ({'up to date' if current == head else f'head is {head}'})"), markup=False
        )


@app.command("history")
def history_command(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List the migrations, newest first."""
    revisions = history()
    if as_json:
        print_json([{"revision": r, "down_revision": d, "message": m} for r, d, m in revisions])
        return
    for revision, down, message in revisions:
        console.print(f"{down or '<base>'} -> {revision}: {message.splitlines()[0] if message else ''}")
