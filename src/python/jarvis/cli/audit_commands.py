"""`jarvis audit ...`: read, follow, verify and export the audit trail."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from jarvis.agent.bundle import BundleError, export_bundle, verify_bundle
from jarvis.agent.witnessing import (
    CheckpointContradictedError,
    ImplausibleSealTimeError,
    checkpoints,
    seal_and_sign,
    verify_trail,
    witness_log_path,
)
from jarvis.cache import RedisLink, StreamReader, ensure_cache_key, namespace_for
from jarvis.cli.otel_commands import export_spans
from jarvis.cli.session import (
    ExitCode,
    console,
    errors,
    fail,
    opened_database,
    print_json,
    reported_errors,
    settings_or_exit,
)
from jarvis.cli.views import cycles_table, printable, safe, short_json, styled, timeline_table, verify_line
from jarvis.config import Settings
from jarvis.db import Database, RoleNotGrantedError, open_database
from jarvis.db.audit import AuditQueries, ExpectedHead, SealPermissionError, find_dangling
from jarvis.db.audit.dangling import DanglingStart, running_agents, sweep_dangling
from jarvis.db.audit.export import export_rows
from jarvis.db.audit.witnessed import rebind
from jarvis.db.migrate import require_head

app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)

TAIL_OVERLAP = timedelta(seconds=5)
MAX_SECONDS = 100 * 365 * 86_400  # --older-than / --since: a century (a date before year 1 is an overflow)


@app.command("show")
def show_command(
    cycle: str = typer.Option(None, "--cycle", help="Show one cycle's timeline (a cycle id, or 'last')."),
    agent: str = typer.Option("*", "--agent", help="Only this agent's cycles ('*' for all)."),
    limit: int = typer.Option(20, "--limit", min=1, max=10_000),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List recent planning cycles, or the full timeline of one cycle."""
    only = None if agent == "*" else agent
    with opened_database() as database:
        queries = AuditQueries(database)
        if cycle is None:
            cycles = queries.cycles(agent=only, limit=limit)
            if as_json:
                print_json([vars(c) for c in cycles])
            else:
                console.print(cycles_table(cycles))
                _print_why(cycles)
            return
        if cycle == "last":
            chosen = next(iter(queries.cycles(agent=only, limit=1)), None)
        else:
            try:
                wanted = uuid.UUID(cycle)
            except ValueError:
                fail(f"--cycle {cycle!r} is not a cycle id (a UUID) or 'last'", ExitCode.BAD_INPUT)
            chosen = queries.cycle(wanted)
            if chosen is not None and only is not None and chosen.agent != only:
                chosen = None  # --agent narrows the search: another agent's cycle is not found
        if chosen is None:
            fail(f"no planning cycle {cycle}", ExitCode.NOT_FOUND)
        entries = queries.timeline(chosen.id)
    if as_json:
        print_json({"cycle": vars(chosen), "timeline": [vars(e) for e in entries]})
    else:
        console.print(timeline_table(chosen, entries))
        _print_why([chosen, *entries])


def _print_why(shown: Sequence[Any]) -> None:
    """The one line saying why rows read UNVERIFIABLE (the server's catalog or built-ins were changed), if any."""
    why = next((item.why for item in shown if getattr(item, "why", None)), None)
    if why is not None:
        console.print(f"[bold red]{safe(why)}[/bold red]")


@app.command("verify")
def verify_command(
    expect: str = typer.Option(
        None, "--expect", help="A head published earlier (SEQ:HASH or HASH); fails if the chain no longer holds it."
    ),
    seal_first: bool = typer.Option(
        False, "--seal", help="Seal queued rows first (needs the agent's login; waits at most JARVIS_SEAL_WAIT)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    bundle: Path = typer.Option(
        None, "--bundle", help="Verify this bundle (`audit export --format bundle`) offline: no database is used."
    ),
    public_key: Path = typer.Option(
        None, "--public-key", help="The signer's trusted public key (default: JARVIS_SIGNING_KEY + .pub)."
    ),
    since_checkpoint: bool = typer.Option(
        False,
        "--since-checkpoint",
        help="Fast and partial: re-read only the links and rows after the newest signed checkpoint the chain still "
        "holds. An edit below it that leaves the chain alone is NOT found; the output names the positions not re-read.",
    ),
    full: bool = typer.Option(
        False, "--full", help="Re-check every row and link from genesis (the default; kept for scripts that pass it)."
    ),
    witness_log: Path = typer.Option(
        None,
        "--witness-log",
        help="With --bundle: the signer's witness log (from the agent's host); the bundle must reach its newest "
        "checkpoint of this trail.",
    ),
) -> None:
    """Recompute every hash and check every signed checkpoint: exit 0, or 1 naming what was tampered with.

    By default every row and link is re-hashed from genesis (a progress bar on a terminal), so any edit,
    deletion, insertion or reordering is found. --since-checkpoint re-reads only what came after the
    newest signed checkpoint, and says which positions it did not re-read. Read-only: works with the
    SELECT-only auditor login, never migrates, never writes (unless --seal). With --bundle it reads
    only the file and the public key.
    """
    if since_checkpoint and full:
        fail("--since-checkpoint and --full contradict each other: pass one of them", ExitCode.BAD_INPUT)
    expected = None
    if expect is not None:
        try:
            expected = ExpectedHead.parse(expect)
        except ValueError as error:
            fail(str(error), ExitCode.BAD_INPUT)
    if bundle is not None:
        _verify_bundle(bundle, public_key, seal_first, expected, as_json, witness_log)
        return
    if witness_log is not None:
        fail("--witness-log goes with --bundle; a database verify reads JARVIS_WITNESS_LOG", ExitCode.BAD_INPUT)
    settings = settings_or_exit()
    if seal_first:
        with reported_errors():
            sealer = open_database(settings, role="app")
            try:
                require_head(sealer)
                seal_and_sign(sealer, settings, wait=settings.seal_wait)
            except (CheckpointContradictedError, ImplausibleSealTimeError) as tampering:
                errors.print(f"not sealed: {tampering}", style="yellow", markup=False, highlight=False)
            except RoleNotGrantedError:
                raise SealPermissionError(
                    "this login may read the audit trail but not seal it. "
                    "Fix: seal with the agent's login, or verify without --seal"
                ) from None
            finally:
                sealer.shutdown()
    with opened_database() as database, reported_errors(), verify_progress(shown=not as_json) as bar:
        report = verify_trail(
            database,
            settings,
            expect=expected,
            public_key=public_key,
            incremental=since_checkpoint,
            planned=bar.planned,
            progress=bar.advanced,
        )
    if as_json:
        print_json(
            {
                "ok": report.ok,
                "mode": "full" if report.verified_from is None else "since-checkpoint",
                "verified_from": None if report.verified_from is None else report.verified_from.seq,
                "rows_checked": report.rows_checked,
                "head_seq": report.head_seq,
                "head_hash": report.head_hex,
                "pending": report.pending,
                "checkpoints_checked": report.checkpoints_checked,
                "expected_head_found": report.expected_head_found,
                "problems": [str(p) for p in report.problems],
            }
        )
    else:
        console.print(verify_line(report), highlight=False, soft_wrap=True)
        for problem in report.problems[1:]:
            console.print(f"  also: {safe(str(problem))}", highlight=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(int(ExitCode.FAILED))


PROGRESS_ABOVE = 200_000
"""Rows plus links above which `audit verify` shows a progress bar: about a second of work."""


class VerifyProgress:
    """A progress bar on stderr for a verify that will take more than about a second.

    Only on a terminal and never with --json; it disappears when verify ends.
    """

    def __init__(self, shown: bool) -> None:
        self.shown = shown and errors.is_terminal
        self.bar = Progress(
            TextColumn("verifying rows and links"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=errors,
            transient=True,
        )
        self.task: TaskID | None = None

    def planned(self, total: int) -> None:
        if self.shown and total > PROGRESS_ABOVE:
            self.bar.start()
            self.task = self.bar.add_task("verify", total=total)

    def advanced(self, done: int) -> None:
        if self.task is not None:
            self.bar.update(self.task, completed=done)


@contextmanager
def verify_progress(*, shown: bool) -> Iterator[VerifyProgress]:
    progress = VerifyProgress(shown)
    try:
        yield progress
    finally:
        progress.bar.stop()


def _verify_bundle(
    bundle: Path,
    public_key: Path | None,
    seal_first: bool,
    expected: ExpectedHead | None,
    as_json: bool,
    witness_log: Path | None = None,
) -> None:
    """`verify --bundle`: the file against the trusted public key (and the signer's log); never opens the database."""
    if seal_first:
        fail("--seal needs the database; a bundle is verified offline (drop --seal)", ExitCode.BAD_INPUT)
    settings = settings_or_exit()
    with reported_errors():
        try:
            report = verify_bundle(
                bundle, public_key or settings.public_key_path(), expect=expected, witness_log=witness_log
            )
        except BundleError as error:
            fail(str(error), ExitCode.BAD_INPUT)
    if as_json:
        print_json(
            {
                "ok": report.ok,
                "trail": report.trail,
                "exported_at": report.exported_at,
                "key_id": report.key_id,
                "rows_checked": report.rows_checked,
                "head_seq": report.head_seq,
                "head_hash": report.head_hex,
                "signed_seq": report.signed_seq,
                "pending": report.pending,
                "checkpoints_checked": report.checkpoints_checked,
                "expected_head_found": report.expected_head_found,
                "problems": [str(p) for p in report.problems],
            }
        )
    else:
        colour = "green" if report.ok else "bold red"
        console.print(f"[{colour}]{safe(report.summary())}[/{colour}]", highlight=False, soft_wrap=True)
        for problem in report.problems[1:]:
            console.print(f"  also: {safe(str(problem))}", highlight=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(int(ExitCode.FAILED))


@app.command("checkpoints")
def checkpoints_command(
    limit: int = typer.Option(20, "--limit", min=1, max=1_000_000, help="The newest N."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List the signed checkpoints of this database's witness log (kept outside PostgreSQL), newest last."""
    settings = settings_or_exit()
    with opened_database() as database, reported_errors():
        where = witness_log_path(settings, database)
        entries = checkpoints(settings, database)[-limit:]
    if as_json:
        print_json([vars(entry) for entry in entries])
        return
    for entry in entries:
        line = f"{entry.seq}:{entry.head_hash} sealed {entry.sealed_at} signed {entry.signed_at} key {entry.key_id}"
        console.print(
            printable(line),
            highlight=False,
            markup=False,
        )
    console.print(f"{len(entries)} checkpoint(s) in {printable(where)}", highlight=False, markup=False)


@app.command("rebind")
def rebind_command() -> None:
    """Bind this database to its trail id in the signer's index, after a restore, a move or a deliberate new trail id.

    The signer refuses a database whose trail id changed, or whose trail is bound to another database
    (a copy), and verify says so; run this as the signer's user when that change was legitimate. A copy
    should get its own trail instead (the refusal says how).
    """
    settings = settings_or_exit()
    with opened_database() as database, reported_errors():
        decided = rebind(settings, database)
    console.print(printable(decided), highlight=False, markup=False)


@app.command("dangling")
def dangling_command(
    older_than: float = typer.Option(
        60.0, "--older-than", min=0, max=MAX_SECONDS, help="Seconds since the start row was written."
    ),
    close: bool = typer.Option(False, "--close", help="Append 'abandoned' completions for them."),
    force: bool = typer.Option(
        False, "--force", help="With --close: close running agents' work too (each fails when it records an outcome)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List start rows that never got an outcome (their process died); --close marks them abandoned.

    A running agent (its lease is live) owns its open cycle and tool calls: they are listed as
    running, and --close skips them unless --force. Tool calls outside any cycle belong to no agent.
    """
    if force and not close:
        fail("--force only goes with --close", ExitCode.BAD_INPUT)
    age = timedelta(seconds=older_than)
    skipped: list[DanglingStart] = []
    with opened_database("app" if close else "auditor") as database:
        if close:
            sweep = sweep_dangling(database, older_than=age, force=force)
            found, skipped, running = sweep.closed, sweep.skipped, set(sweep.running)
        else:
            found = find_dangling(database, older_than=age)
            running = set(running_agents(database, sorted({d.agent for d in found if d.agent is not None})))
    live = sorted({d.agent for d in skipped if d.agent is not None})
    skipped_line = (
        f"skipped {len(skipped)} start row(s) of running agent(s) {', '.join(live)}: their lease is live, "
        "so this is live work, not dangling (--force closes it anyway)"
    )
    forced = sorted({d.agent for d in found if d.agent in running}) if close else []
    forced_line = f"closed live work of running agent(s) {', '.join(forced)} (--force): each fails at its next outcome"
    if as_json:
        print_json([{**vars(d), "running": d.agent in running} for d in found])
        for line, shown in ((skipped_line, skipped), (forced_line, forced)):
            if shown:
                errors.print(safe(line), highlight=False)
        return
    for item in found:
        note = f" (agent {item.agent} is running)" if item.agent in running else ""
        console.print(
            safe(f"{item.table} {item.id} {item.name} started {item.started_at.isoformat(timespec='seconds')}{note}"),
            highlight=False,
        )
    verb = "closed as abandoned" if close else "dangling"
    console.print(f"{len(found)} {verb} (older than {older_than:g} s)")
    for line, shown in ((skipped_line, skipped), (forced_line, forced)):
        if shown:
            console.print(f"[yellow]{safe(line)}[/yellow]", highlight=False)


@app.command("export")
def export_command(
    fmt: str = typer.Option(
        "jsonl",
        "--format",
        help="jsonl: every audit row; otel: cycles and tool calls as OpenTelemetry spans in OTLP/JSON (stdout or "
        "--output); otlp: the same spans to a collector (--endpoint); bundle: rows, chain and signed checkpoints "
        "in one file (--output) that `audit verify --bundle` checks without the database.",
    ),
    include_content: bool = typer.Option(
        False, "--include-content", help="otel, otlp: add tool arguments and results (may hold secrets)."
    ),
    output: Path = typer.Option(None, "--output", "-o", help="bundle, otel: the file to write (atomically)."),
    force: bool = typer.Option(False, "--force", help="bundle, otel: replace an existing --output file."),
    endpoint: str = typer.Option(
        None, "--endpoint", help="otlp: the collector, e.g. http://127.0.0.1:4318 (/v1/traces is added)."
    ),
    protocol: str = typer.Option("http/protobuf", "--protocol", help="otlp: http/protobuf or grpc."),
    follow: bool = typer.Option(
        False, "--follow", help="otlp: keep exporting as rows are sealed, until Ctrl-C or SIGTERM."
    ),
    interval: float = typer.Option(1.0, "--interval", min=0.05, max=3600, help="otlp --follow: seconds between polls."),
) -> None:
    """Write the audit trail to stdout, one JSON document per line (--format bundle: to --output FILE;
    otlp: to an OpenTelemetry collector)."""
    if fmt not in ("jsonl", "otel", "otlp", "bundle"):
        fail(f"--format {fmt!r} is not supported; use jsonl, otel, otlp or bundle", ExitCode.BAD_INPUT)
    if fmt in ("otel", "otlp"):
        export_spans(
            fmt,
            endpoint=endpoint,
            protocol=protocol,
            follow=follow,
            interval=interval,
            include_content=include_content,
            output=output,
            force=force,
        )
        return
    if endpoint is not None or follow:
        fail("--endpoint and --follow are for --format otlp", ExitCode.BAD_INPUT)
    if fmt == "bundle":
        _export_bundle(output, force)
        return
    if output is not None:
        fail("--output is for --format bundle and otel; jsonl writes to stdout (redirect it)", ExitCode.BAD_INPUT)
    with opened_database() as database:
        for document in export_rows(database):
            sys.stdout.write(json.dumps(document, ensure_ascii=False, default=str) + "\n")


def _export_bundle(output: Path | None, force: bool) -> None:
    if output is None:
        fail("--format bundle needs --output FILE (the bundle is one file, written atomically)", ExitCode.BAD_INPUT)
    if output.exists() and not force:
        fail(f"{output} exists; choose another file, or pass --force to replace it", ExitCode.BAD_INPUT)
    settings = settings_or_exit()
    sealed = _seal_before_export(settings)
    with opened_database() as database, reported_errors():
        try:
            summary = export_bundle(database, settings, output, force=force)
        except BundleError as error:
            fail(str(error), ExitCode.BAD_INPUT)
    if summary.unsigned:
        why = "the newest checkpoint could not be signed" if sealed else "this login cannot seal and sign"
        errors.print(
            f"{summary.unsigned} link(s) (chain positions {summary.signed_seq + 1}…{summary.head_seq}) come after "
            f"the newest signed checkpoint ({why}): `verify --bundle` reports them as vouched for by no signature. "
            "Export with the agent's login, which seals and signs first",
            highlight=False,
            markup=False,
        )
    if summary.pending:
        errors.print(
            f"{summary.pending} row(s) are waiting to be sealed and are not in the bundle "
            "(`jarvis audit verify --seal` seals them)",
            highlight=False,
            markup=False,
        )
    if summary.unreadable:
        errors.print(
            f"{summary.unreadable} row(s) could not be encoded; the bundle marks them and verifying it reports them",
            highlight=False,
            markup=False,
        )
    console.print(f"wrote {summary} to", highlight=False, markup=False, soft_wrap=True)
    console.print(str(summary.path), highlight=False, markup=False, soft_wrap=True)


def _seal_before_export(settings: Settings) -> bool:
    """Seal and sign what is queued, as the agent's login, so the bundle ends at a signed checkpoint.

    Returns False when this login cannot (an auditor's): the export then says what is unsigned.
    """
    with reported_errors():
        sealer = open_database(settings, role="app")
        try:
            require_head(sealer)
            seal_and_sign(sealer, settings, wait=settings.seal_wait)
        except (CheckpointContradictedError, ImplausibleSealTimeError) as tampering:
            errors.print(f"not sealed: {tampering}", style="yellow", markup=False, highlight=False)
        except RoleNotGrantedError:
            return False
        finally:
            sealer.shutdown()
    return True


@app.command("tail")
def tail_command(
    from_db: bool = typer.Option(False, "--from-db", help="Replay from PostgreSQL instead of the Redis stream."),
    follow: bool = typer.Option(True, "--follow/--no-follow", help="Keep waiting for new events."),
    as_json: bool = typer.Option(False, "--json", help="One JSON event per line."),
    since_seconds: float = typer.Option(
        300.0, "--since", min=0, max=MAX_SECONDS, help="Start with events from the last N seconds."
    ),
    interval: float = typer.Option(
        1.0, "--interval", min=0.05, max=3600, help="Seconds between polls / blocking reads."
    ),
) -> None:
    """Follow the audit trail live, like tail -f (Ctrl-C to stop).

    Reads the Redis stream when REDIS_URL is set; otherwise, or with --from-db, PostgreSQL.
    """
    settings = settings_or_exit()
    with opened_database() as database:
        if settings.redis_url and not from_db:
            link = RedisLink(settings.redis_url, namespace=namespace_for(database), auth_key=ensure_cache_key(settings))
            _tail_stream(link, follow=follow, as_json=as_json, since_seconds=since_seconds, interval=interval)
        else:
            _tail_database(database, follow=follow, as_json=as_json, since_seconds=since_seconds, interval=interval)


def _tail_stream(link: RedisLink, *, follow: bool, as_json: bool, since_seconds: float, interval: float) -> None:
    """Follow the Redis stream (blocking reads; closes `link`): fast, but it holds only what was not trimmed yet."""
    start_ms = int((time.time() - since_seconds) * 1000)
    reader = StreamReader(link, last_id=f"{start_ms}-0")
    try:
        while True:
            events = reader.read(block_ms=int(interval * 1000))
            for event in events:
                _print_stream_event(event.id, event.fields, as_json)
            if reader.trimmed_past_position():
                errors.print(
                    "[yellow]the stream was trimmed past this reader; use --from-db for the full history[/yellow]"
                )
            if not follow and not events:
                return
    finally:
        link.close()


def _tail_database(database: Database, *, follow: bool, as_json: bool, since_seconds: float, interval: float) -> None:
    """Poll PostgreSQL every `interval` seconds: the whole history, without Redis."""
    since = datetime.now(UTC) - timedelta(seconds=since_seconds)
    printed: dict[str, datetime] = {}
    while True:
        # Re-read a short overlap: a row's created_at is taken before its commit, so a
        # concurrent append can land just behind the newest row already printed.
        for row in export_rows(database, since=since - TAIL_OVERLAP):
            if row["id"] not in printed:
                printed[row["id"]] = datetime.fromisoformat(row["created_at"])
                _print_event(row, as_json)
        if printed:
            since = max(printed.values())
            printed = {k: v for k, v in printed.items() if v >= since - TAIL_OVERLAP}
        if not follow:
            return
        time.sleep(interval)


def _print_stream_event(stream_id: str, fields: dict[str, str], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps({"stream_id": stream_id, **fields}, ensure_ascii=False) + "\n")
        sys.stdout.flush()
        return
    console.print(  # every field comes from Redis: shown, never obeyed as markup
        f"{safe(fields.get('created_at', '')[11:23])} {safe(fields.get('kind', '')):<20} "
        f"{safe(fields.get('tool_name', ''))} {styled(fields.get('status'))} {safe(fields.get('row_id', ''))}",
        highlight=False,
    )


def _print_event(row: dict[str, object], as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        sys.stdout.flush()
        return
    name = row.get("tool_name") or row.get("decision") or row.get("agent") or ""
    detail = short_json(row.get("output") or row.get("input") or row.get("error") or "", 50)
    console.print(  # names and values come from the database: shown, never obeyed as markup
        f"{str(row['created_at'])[11:23]} {row['table']:<16} {styled(str(row.get('status') or ''))} "
        f"{safe(short_json(name, 80))} {safe(detail)}",
        highlight=False,
    )
