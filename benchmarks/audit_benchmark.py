"""Audit-trail throughput against a raw psycopg baseline measured in the same run.

    ./pants run benchmarks:audit -- --calls 2000 --write docs/benchmarks.md

Ratios, not absolute numbers, are the result: both sides hit the same server,
the same table and the same triggers, so what the ratio shows is the cost of
Jarvis' own work (validation, ids, SQLAlchemy, the context manager).
"""

from __future__ import annotations

import argparse
import os
import platform
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from bench_database import benchmark_database
from psycopg.types.json import Jsonb

from jarvis.db import Database
from jarvis.db.audit import ToolCallLog, seal, verify


@dataclass
class Result:
    name: str
    operations: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.operations / self.seconds


def timed(name: str, operations: int, body: Callable[[], object]) -> Result:
    started = time.perf_counter()
    body()
    return Result(name, operations, time.perf_counter() - started)


def raw_two_inserts(url: str, calls: int) -> None:
    """The baseline: the start row and the outcome row as two autocommit INSERTs, nothing else."""
    with psycopg.connect(url, autocommit=True) as conn:
        app_role = conn.execute("SELECT app_role FROM public.trail_info").fetchone()
        conn.execute(f"SET ROLE {app_role[0] if app_role else 'jarvis_app'}")
        for i in range(calls):
            start = uuid.uuid4()
            conn.execute(
                "INSERT INTO tool_calls (id, tool_name, status, input) VALUES (%s, %s, 'started', %s)",
                (start, "bench", Jsonb({"i": i})),
            )
            conn.execute(
                "INSERT INTO tool_calls (id, parent_id, tool_name, status, output, duration_ms) "
                "VALUES (%s, %s, %s, 'succeeded', %s, 0)",
                (uuid.uuid4(), start, "bench", Jsonb({"ok": i})),
            )


def api_calls(database: Database, calls: int) -> None:
    log = ToolCallLog(database)
    for i in range(calls):
        with log.record("bench", {"i": i}) as call:
            call.succeed({"ok": i})


def concurrently(work: Callable[[int], None], calls: int, workers: int) -> None:
    threads = [threading.Thread(target=work, args=(calls // workers,)) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000, help="tool calls per measurement")
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per contender")
    parser.add_argument("--write", type=Path, help="write the results as Markdown to this file")
    args = parser.parse_args()

    with benchmark_database() as (settings, database, url):
        with psycopg.connect(url) as conn:
            server = conn.execute("SHOW server_version").fetchone()
        raw_two_inserts(url, 200)  # warm-up: caches, plans, the pool
        api_calls(database, 200)
        # Alternate the contenders in rounds so drift on a shared machine hits both alike.
        raw = Result("raw psycopg, 2 autocommit INSERTs", 0, 0.0)
        api = Result("ToolCallLog.record(), 1 thread", 0, 0.0)
        raw_concurrent = Result(f"raw psycopg, {args.workers} threads, one connection each", 0, 0.0)
        concurrent = Result(f"ToolCallLog.record(), {args.workers} threads (pool {settings.pool_size})", 0, 0.0)
        per_round = args.calls // args.rounds
        for _ in range(args.rounds):
            for total, body in (
                (raw, lambda: raw_two_inserts(url, per_round)),
                (api, lambda: api_calls(database, per_round)),
                (raw_concurrent, lambda: concurrently(lambda n: raw_two_inserts(url, n), per_round, args.workers)),
                (concurrent, lambda: concurrently(lambda n: api_calls(database, n), per_round, args.workers)),
            ):
                measured = timed(total.name, per_round, body)
                total.operations += measured.operations
                total.seconds += measured.seconds
        sealing = timed("seal (link queued rows)", 1, lambda: seal(database))
        with database.connect() as conn:
            sealed = conn.exec_driver_sql("SELECT count(*) FROM audit_chain").scalar() or 0
        sealing.operations = int(sealed)
        report_holder: list[int] = []
        verifying = timed(
            "verify (recompute every hash)",
            1,
            lambda: report_holder.append(verify(database).rows_checked),
        )
        verifying.operations = report_holder[0]

    rows = [raw, api, raw_concurrent, concurrent, sealing, verifying]
    ratios = [
        ("API / raw, one connection", api.per_second / raw.per_second, 0.8),
        (f"{args.workers} workers / one connection (API)", concurrent.per_second / api.per_second, 3.0),
        (
            f"{args.workers} workers / one connection (raw psycopg: the machine's ceiling)",
            raw_concurrent.per_second / raw.per_second,
            3.0,
        ),
    ]
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}; PostgreSQL {server[0] if server else '?'}.",
        "",
        "| measurement | operations | seconds | per second |",
        "| --- | ---: | ---: | ---: |",
        *[f"| {r.name} | {r.operations} | {r.seconds:.2f} | {r.per_second:,.0f} |" for r in rows],
        "",
        "| ratio | measured | target | met |",
        "| --- | ---: | ---: | :---: |",
        *[
            f"| {name} | {value:.2f} | ≥ {target} | {'yes' if value >= target else 'NO'} |"
            for name, value, target in ratios
        ],
        f"| verify rows per second | {verifying.per_second:,.0f} | ≥ 200,000 | "
        f"{'yes' if verifying.per_second >= 200_000 else 'NO'} |",
    ]
    print("\n".join(lines))
    if args.write:
        write_section(
            args.write, "Audit trail", "\n".join(lines), "./pants run benchmarks:audit -- --write docs/benchmarks.md"
        )


def write_section(path: Path, title: str, body: str, command: str) -> None:
    """Replace (or append) the `## title` section of a Markdown file, keeping the others."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    marker = f"## {title}\n"
    section = f"{marker}\nReproduce: `{command}`\n\n{body}\n"
    if marker in text:
        before, rest = text.split(marker, 1)
        after = rest[rest.find("\n## ") :] if "\n## " in rest else ""
        text = before + section + ("\n" + after.lstrip("\n") if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


if __name__ == "__main__":
    main()
