"""What verified reads cost: reading one cycle's timeline with and without re-hashing every row (a benchmark).

    ./pants run benchmarks:reads                                 # 1,000 calls of 100 B and of 20 kB
    ./pants run benchmarks:reads -- --calls 5000 --rounds 7

One cycle of `--calls` tool calls (2 rows each, plus the cycle's start row) is written by the database
owner through the triggers and sealed. Then, alternating, each `--rounds` times:

- raw psycopg: the timeline query as it was before verified reads (the same union of the cycle's rows
  with their values, no hashing), one connection, autocommit: the baseline;
- `AuditQueries.timeline(cycle)` as the auditor role: every row re-rendered, hashed and checked against
  its link and its link against its predecessor, in the query that reads it (`jarvis audit show`,
  `mcp serve`'s show_cycle);
- `AuditQueries.timeline(cycle, limit=200, preview=2001)`: one page of the web UI's cycle page;
- the catalog and built-in checks every verified read runs first (`verified_reading` entered with no
  query, less an empty `verifying_snapshot`): paid once per read, whatever its size.

Medians of the rounds; the ratio is to the baseline of the same run.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import uuid

import psycopg
from bench_database import benchmark_database

from jarvis.db import open_database
from jarvis.db.audit import AuditQueries, PlanningLog, seal
from jarvis.db.audit.chain import verifying_snapshot
from jarvis.db.audit.verified import verified_reading

UNVERIFIED_TIMELINE = """
    SELECT created_at, 'planning_cycles' AS tbl, id, status, agent AS name, coalesce(goals, outcomes) AS detail
      FROM ONLY public.planning_cycles WHERE id = %(cycle)s OR parent_id = %(cycle)s
    UNION ALL
    SELECT created_at, 'decision_log', id, NULL, decision, reasoning FROM ONLY public.decision_log
     WHERE cycle_id = %(cycle)s
    UNION ALL
    SELECT created_at, 'tool_calls', id, status, tool_name, input FROM ONLY public.tool_calls
     WHERE cycle_id = %(cycle)s AND parent_id IS NULL
    UNION ALL
    SELECT c.created_at, 'tool_calls', c.id, c.status, c.tool_name,
           CASE WHEN c.error IS NOT NULL THEN to_jsonb(c.error) ELSE c.output END
      FROM ONLY public.tool_calls s JOIN ONLY public.tool_calls c ON c.parent_id = s.id
     WHERE s.cycle_id = %(cycle)s AND s.parent_id IS NULL
    ORDER BY 1, 3
"""
"""`AuditQueries.timeline` before verified reads."""


def write_cycle(url: str, database: object, calls: int, value_bytes: int) -> uuid.UUID:
    cycle = PlanningLog(database, agent="bench").open_cycle(["read benchmark"])  # type: ignore[arg-type]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.tool_calls (id, cycle_id, tool_name, status, input) "
            "SELECT gen_random_uuid(), %s, 'fetch', 'started', jsonb_build_object('page', i) "
            "FROM generate_series(1, %s) i",
            (cycle, calls),
        )
        conn.execute(
            "INSERT INTO public.tool_calls (id, parent_id, tool_name, status, output, duration_ms) "
            "SELECT gen_random_uuid(), s.id, 'fetch', 'succeeded', "
            "jsonb_build_object('body', substr(repeat(md5(s.id::text), %s), 1, %s)), 1 "
            "FROM public.tool_calls s WHERE s.cycle_id = %s",
            (value_bytes // 32 + 1, value_bytes, cycle),
        )
        conn.execute("ANALYZE")
    return cycle


def median_seconds(work: object, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(calls: int, size: int, rounds: int) -> tuple[str, float, float, float, float]:
    """(server version, unverified, verified, one UI page, the checks before the first row): median seconds
    over a fresh cycle of `calls` calls."""
    rows = 2 * calls + 1
    with benchmark_database() as (settings, database, url):
        cycle = write_cycle(url, database, calls, size)
        seal(database, wait=120)
        auditor = open_database(settings, url=url, role="auditor")
        queries = AuditQueries(auditor)
        try:
            with psycopg.connect(url, autocommit=True) as raw:
                row = raw.execute("SHOW server_version").fetchone()

                def unverified() -> None:
                    assert len(raw.execute(UNVERIFIED_TIMELINE, {"cycle": cycle}).fetchall()) == rows

                def verified() -> None:
                    entries = queries.timeline(cycle)
                    assert len(entries) == rows and {e.integrity for e in entries} == {"verified"}

                def page() -> None:
                    assert len(queries.timeline(cycle, limit=200, preview=2_001)) == 200

                def checked_snapshot() -> None:
                    with verified_reading(auditor) as reader:
                        assert not reader.problems, reader.why

                def plain_snapshot() -> None:
                    with verifying_snapshot(auditor):
                        pass

                for warm in (unverified, verified, page, checked_snapshot, plain_snapshot):
                    warm()
                return (
                    str(row[0]) if row else "?",
                    median_seconds(unverified, rounds),
                    median_seconds(verified, rounds),
                    median_seconds(page, rounds),
                    median_seconds(checked_snapshot, rounds) - median_seconds(plain_snapshot, rounds),
                )
        finally:
            auditor.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 20_000], help="value sizes in bytes")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    rows = 2 * args.calls + 1
    print(
        "| value size | rows | raw psycopg, unverified | verified timeline | ratio | verified UI page (200 rows) "
        "| of each read: catalog and built-in checks |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    version = "?"
    for size in args.sizes:
        version, baseline, checked, paged, checks = measure(args.calls, size, args.rounds)
        print(
            f"| {size:,} B | {rows:,} | {baseline * 1000:.1f} ms ({rows / baseline:,.0f} rows/s) | "
            f"{checked * 1000:.1f} ms ({rows / checked:,.0f} rows/s) | {checked / baseline:.2f} | "
            f"{paged * 1000:.1f} ms | {checks * 1000:.1f} ms |"
        )
    print(f"PostgreSQL {version}; medians of {args.rounds} rounds")


if __name__ == "__main__":
    main()
