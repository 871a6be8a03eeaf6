"""Jarvis against its peers on the agent's hot paths, in one run against one PostgreSQL.

    ./pants run benchmarks:peers                                   # the rounds, printed
    ./pants run benchmarks:peers -- --rows 1000000 --write docs/benchmarks.md

Raw psycopg (the floor), Jarvis, LangGraph (Postgres checkpointer and a compiled graph) and DBOS
(workflow + step) run in alternating rounds on DATABASE_URL's server (else an embedded
PostgreSQL), each in a fresh database; medians, min-max and ratios to raw psycopg measured in the
same run. Then what each writes per unit, and with `--rows N` the growth run (the agent's cycle,
seal and verify with N calls of history). Ratios, not absolute rates, are the result.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

from audit_benchmark import machine, write_section
from bench_database import benchmark_database
from peer_bench.dbos_side import dbos_contender
from peer_bench.footprint import Footprint, Job, Meter
from peer_bench.goals import goals
from peer_bench.growth import Growth, grow
from peer_bench.jarvis_side import jarvis_contenders, seal_queued
from peer_bench.langgraph_side import langgraph_contenders
from peer_bench.raw import raw_contenders
from peer_bench.report import AUDITED, server, tables
from peer_bench.rounds import Contender, alternate
from state_benchmark import redis_for_benchmark

from jarvis.db import StateStore
from jarvis.db.audit import verify
from jarvis.db.urls import database_name, with_database

SECTION = "Peers: Jarvis, raw psycopg, LangGraph and DBOS"
SUPERSEDED = ("Audit trail", "State cache", "Reading the numbers")
"""Sections of docs/benchmarks.md whose figures this run replaces (benchmarks:audit's and :state's, and the
notes on them): dropped when the peers section is written, so the file never shows two answers."""
READ_KEY, WRITE_KEY = "bench.read", "bench.write"
ACCOUNTED = (*AUDITED, "raw_upsert", "state_set")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds (default 7)")
    parser.add_argument("--calls", type=int, default=1000, help="units per contender per round (default 1000)")
    parser.add_argument("--workers", type=int, default=16, help="concurrent agents / connections (default 16)")
    parser.add_argument("--warm-up", type=int, default=100, help="untimed units per contender first (default 100)")
    parser.add_argument("--account", type=int, default=500, help="units in each contender's write pass (default 500)")
    parser.add_argument("--rows", type=int, default=0, help="also run the growth run with this many audited calls")
    parser.add_argument("--write", type=Path, help="write the results as a section of this Markdown file")
    return parser.parse_args()


def main() -> None:
    args = arguments()
    with benchmark_database() as (_settings, database, url), redis_for_benchmark() as redis_url:
        admin, name = with_database(url, "postgres"), database_name(url)
        system_database = f"{name}_dbos"
        machine_line = f"{machine()}; {server(url)}"
        StateStore(database).set(READ_KEY, {"balance": 1234.5, "positions": [{"symbol": "ETH", "qty": 2}]})
        StateStore(database).set(WRITE_KEY, {"balance": 0})
        with langgraph_contenders(url) as langgraph, dbos_contender(admin, system_database) as dbos:
            raw = raw_contenders(
                url,
                workers=args.workers,
                read_key=READ_KEY,
                write_key=WRITE_KEY,
                seal_queued=lambda: seal_queued(database),
            )
            jarvis = jarvis_contenders(
                database, workers=args.workers, redis_url=redis_url, read_key=READ_KEY, write_key=WRITE_KEY
            )
            contenders = _ordered([*raw, *jarvis, *langgraph, dbos])
            rates = alternate(contenders, rounds=args.rounds, units=args.calls, warm_up=args.warm_up)
            report = verify(database)
            footprints = _footprints(contenders, admin, name, system_database, args.account)
    growth: Growth | None = None
    if args.rows:
        with benchmark_database() as (_settings, growth_database, growth_url):
            growth_name = database_name(growth_url)
            meter = Meter(admin, [growth_name])
            try:
                growth = grow(growth_database, growth_url, meter, growth_name, rows=args.rows, rounds=args.rounds)
            finally:
                meter.close()
    judged = goals(rates, forks=len(report.problems), growth=growth)
    command = "./pants run benchmarks:peers -- " + shlex.join(sys.argv[1:])
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine_line}.",
        f"{args.rounds} alternating rounds of {args.calls:,} units per contender; medians.",
        "",
        *tables(
            contenders,
            rates,
            footprints,
            chain=report,
            growth=growth,
            goals=judged,
        ),
    ]
    print("\n".join(lines))
    if args.write:
        write_section(args.write, SECTION, "\n".join(lines), command)
        drop_sections(args.write, SUPERSEDED)


def drop_sections(path: Path, titles: tuple[str, ...]) -> None:
    """Remove the `## title` sections of a Markdown file (up to the next `## `), keeping the rest."""
    kept: list[str] = []
    dropping = False
    for line in path.read_text().splitlines(keepends=True):
        if line.startswith("## "):
            dropping = line[3:].strip() in titles
        if not dropping:
            kept.append(line)
    path.write_text("".join(kept))


def _ordered(contenders: list[Contender]) -> list[Contender]:
    """The issue's table order: the audited unit of work, then concurrency, then state."""
    order = [*AUDITED, "raw16", "agents16", "raw_select", "state_get", "cached_get", "raw_upsert", "state_set"]
    by_key = {c.key: c for c in contenders}
    return [by_key[key] for key in order]


def _footprints(
    contenders: list[Contender], admin: str, name: str, system_database: str, units: int
) -> dict[str, Footprint]:
    """Each accounted contender's writes per unit, DBOS last: its system database is never quiet for long."""
    by_key = {c.key: c for c in contenders}

    def job(key: str) -> Job:
        contender = by_key[key]

        def work() -> None:
            contender.run(units)
            contender.settle()

        return Job(key, [name, system_database] if key == "dbos" else [name], units, work)

    meter = Meter(admin, [name, system_database])
    try:
        measured = meter.measure([job(key) for key in ACCOUNTED if key != "dbos"] + [job("dbos")])
    finally:
        meter.close()
    return {key: measured[key] for key in ACCOUNTED}


if __name__ == "__main__":
    main()
