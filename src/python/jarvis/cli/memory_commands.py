"""`jarvis memory ...`: facts the agent knows, and which are stale."""

from __future__ import annotations

import typer
from rich.table import Table

from jarvis.cli.session import ExitCode, console, fail, opened_database, parse_json_argument, print_json
from jarvis.cli.views import plain, printable, short_json
from jarvis.db import Fact, MemoryStore

app = typer.Typer(help="Facts the agent remembers (JSON bodies, by subject).", no_args_is_help=True)


@app.command("add")
def add_command(subject: str, body: str = typer.Argument(..., help="A JSON object, e.g. '{\"usd\": 3000}'.")) -> None:
    """Remember a fact about SUBJECT."""
    parsed = parse_json_argument(body, "BODY")
    if not isinstance(parsed, dict):
        fail("BODY must be a JSON object, e.g. '{\"usd\": 3000}'", ExitCode.BAD_INPUT)
    with opened_database("app") as database:
        fact = MemoryStore(database).add(subject, parsed)
    console.print(f"remembered fact {fact.id} about {printable(subject)}", markup=False, highlight=False)


@app.command("search")
def search_command(
    contains: str = typer.Argument(None, help='JSON object the body must contain, e.g. \'{"chain": "ethereum"}\'.'),
    subject: str = typer.Option(None, "--subject", help="Only facts about this subject."),
    include_stale: bool = typer.Option(False, "--stale", help="Include stale facts."),
    limit: int = typer.Option(20, "--limit", min=1, max=10_000),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Find facts by JSON containment or subject, newest first (fresh ones only unless --stale)."""
    with opened_database() as database:
        store = MemoryStore(database)
        if contains is not None:
            parsed = parse_json_argument(contains, "CONTAINS")
            facts = store.search(parsed, subject=subject, include_stale=include_stale, limit=limit)
        elif subject is not None:
            facts = store.about(subject, include_stale=include_stale, limit=limit)
        else:
            facts = store.fresh(limit=limit)
    _print_facts(facts, as_json)


@app.command("stale")
def stale_command(
    subject: str = typer.Option(None, "--subject", help="Mark every fact about this subject."),
    fact_id: int = typer.Option(None, "--id", min=1, max=2**63 - 1, help="Mark one fact."),
) -> None:
    """Mark facts as no longer true (they stay in memory, flagged)."""
    if (subject is None) == (fact_id is None):
        fail("give exactly one of --subject or --id", ExitCode.BAD_INPUT)
    with opened_database("app") as database:
        count = MemoryStore(database).mark_stale(fact_id=fact_id, subject=subject)
    if count == 0:
        fail("no fresh fact matched", ExitCode.NOT_FOUND)
    console.print(f"marked {count} fact(s) stale")


def _print_facts(facts: list[Fact], as_json: bool) -> None:
    if as_json:
        print_json(
            [
                {"id": f.id, "subject": f.subject, "body": f.body, "is_stale": f.is_stale, "created_at": f.created_at}
                for f in facts
            ]
        )
        return
    table = Table("id", "subject", "body", "stale", "created")
    for fact in facts:
        table.add_row(
            str(fact.id),
            plain(fact.subject),
            plain(short_json(fact.body, 500)),
            "yes" if fact.is_stale else "",
            fact.created_at.isoformat(timespec="seconds"),
        )
    console.print(table)
