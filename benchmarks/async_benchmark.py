"""The asyncio API against the sync API's threads, with raw psycopg measured in the same run.

    ./pants run benchmarks:async -- --calls 2000 --write docs/benchmarks.md

One tool call is `record()`: a start row and an outcome row, each one append. Contenders,
in alternating rounds so drift on a shared machine hits all alike: raw psycopg (two
autocommit INSERTs, one connection; and 16 threads, a connection each), the sync
`ToolCallLog` on 16 threads, and `AsyncToolCallLog` with 16 and with 200 tasks on one event
loop, the pools JARVIS_POOL_SIZE (--pool) connections. Ratios are the result.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from audit_benchmark import Result, api_calls, concurrently, machine, raw_two_inserts, timed, write_section
from bench_database import benchmark_database

from jarvis.db.aio import AsyncDatabase, AsyncToolCallLog, open_async_database


async def async_calls(log: AsyncToolCallLog, calls: int, tasks: int) -> None:
    """`calls` audited tool calls shared out over `tasks` tasks on this event loop."""

    async def one_task(count: int) -> None:
        for i in range(count):
            async with log.record("bench", {"i": i}) as call:
                call.succeed({"ok": i})

    await asyncio.gather(*(one_task(calls // tasks) for _ in range(tasks)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=800, help="tool calls per measurement (a multiple of 200)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per contender")
    parser.add_argument("--pool", type=int, default=20, help="JARVIS_POOL_SIZE for both APIs")
    parser.add_argument("--write", type=Path, help="write the results as Markdown to this file")
    args = parser.parse_args()
    threads, few, many = 16, 16, 200
    per_round = args.calls // args.rounds

    loop = asyncio.new_event_loop()
    with benchmark_database(pool_size=args.pool) as (settings, database, url):
        async_database: AsyncDatabase = loop.run_until_complete(open_async_database(settings, url=url))
        log = AsyncToolCallLog(async_database)
        with psycopg.connect(url) as conn:
            server = conn.execute("SHOW server_version").fetchone()
        raw_two_inserts(url, 200)  # warm-up: caches, plans, both pools
        concurrently(lambda n: api_calls(database, n), 200, threads)
        loop.run_until_complete(async_calls(log, 200, many))
        raw = Result("raw psycopg, 2 autocommit INSERTs, one connection", 0, 0.0)
        raw_threads = Result(f"raw psycopg, {threads} threads, a connection each", 0, 0.0)
        sync_threads = Result(f"ToolCallLog.record(), {threads} threads (pool {args.pool})", 0, 0.0)
        async_few = Result(f"AsyncToolCallLog.record(), {few} tasks (pool {args.pool})", 0, 0.0)
        async_many = Result(f"AsyncToolCallLog.record(), {many} tasks (pool {args.pool})", 0, 0.0)
        for _ in range(args.rounds):
            for total, body in (
                (raw, lambda: raw_two_inserts(url, per_round)),
                (raw_threads, lambda: concurrently(lambda n: raw_two_inserts(url, n), per_round, threads)),
                (sync_threads, lambda: concurrently(lambda n: api_calls(database, n), per_round, threads)),
                (async_few, lambda: loop.run_until_complete(async_calls(log, per_round, few))),
                (async_many, lambda: loop.run_until_complete(async_calls(log, per_round, many))),
            ):
                measured = timed(total.name, per_round, body)
                total.operations += measured.operations
                total.seconds += measured.seconds
        loop.run_until_complete(async_database.aclose())
    loop.close()
    markdown = "\n".join(report(server, [raw, raw_threads, sync_threads, async_few, async_many]))
    print(markdown)
    if args.write:
        write_section(args.write, "asyncio API", markdown, "./pants run benchmarks:async -- --write docs/benchmarks.md")


def report(server: tuple[object, ...] | None, rows: list[Result]) -> list[str]:
    raw, raw_threads, sync_threads, async_few, async_many = rows
    ratios = [
        ("async, 16 tasks / sync, 16 threads", async_few.per_second / sync_threads.per_second),
        ("async, 200 tasks / sync, 16 threads", async_many.per_second / sync_threads.per_second),
        ("async, 16 tasks / raw psycopg, one connection", async_few.per_second / raw.per_second),
        ("async, 200 tasks / raw psycopg, 16 threads", async_many.per_second / raw_threads.per_second),
        ("sync, 16 threads / raw psycopg, 16 threads", sync_threads.per_second / raw_threads.per_second),
    ]
    return [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; PostgreSQL {server[0] if server else '?'}.",
        "",
        "| measurement | tool calls | seconds | per second |",
        "| --- | ---: | ---: | ---: |",
        *[f"| {r.name} | {r.operations} | {r.seconds:.2f} | {r.per_second:,.0f} |" for r in rows],
        "",
        "| ratio | measured |",
        "| --- | ---: |",
        *[f"| {name} | {value:.2f} |" for name, value in ratios],
    ]


if __name__ == "__main__":
    main()
