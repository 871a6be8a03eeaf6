"""Server time of each `jarvis ui` page over a large trail (a benchmark, not a test: nothing asserts a speed).

    ./pants run benchmarks:ui                      # a small trail (about 20,000 audit rows)
    ./pants run benchmarks:ui -- --rows 1000000    # the issue's target: every page under 150 ms

The trail is written by the database owner in one PL/pgSQL loop (each cycle as the agent writes it,
through the same triggers that check it and queue every row for sealing), then sealed; the UI reads
it as the auditor role, like `jarvis ui`. Each page is requested in-process (Starlette's TestClient,
no network), so the time is the server's: queries plus rendering. Median and 95th percentile of `--repeat` requests.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from bench_database import benchmark_database
from sqlalchemy import text
from starlette.testclient import TestClient

from jarvis.db import Database, open_database
from jarvis.db.audit import AuditQueries, seal
from jarvis.ui import create_app

CALLS_PER_CYCLE = 4
ROWS_PER_CYCLE = 2 + CALLS_PER_CYCLE * 3  # start + completion, and per call: a decision, a start, an outcome

BULK = [
    # Each cycle as the agent writes it (the triggers allow nothing else): opened, then per step a
    # decision, a tool call's start and outcome (one in ten of `tool_2` fails), then closed.
    """DO $$ DECLARE cycle uuid; call uuid; agent text; BEGIN
         FOR n IN 1..CYCLES LOOP
           cycle := gen_random_uuid();
           agent := CASE WHEN mod(n, 2) = 0 THEN 'bench' ELSE 'other' END;
           INSERT INTO planning_cycles (id, agent, goals, status)
             VALUES (cycle, agent, jsonb_build_array('goal ' || n), 'started');
           FOR k IN 1..CALLS LOOP
             call := gen_random_uuid();
             INSERT INTO decision_log (id, cycle_id, decision, reasoning)
               VALUES (gen_random_uuid(), cycle, 'step ' || k, jsonb_build_object('why', 'benchmark'));
             INSERT INTO tool_calls (id, tool_name, status, input, cycle_id)
               VALUES (call, 'tool_' || k, 'started', jsonb_build_object('k', k), cycle);
             INSERT INTO tool_calls (id, parent_id, tool_name, status, output, duration_ms)
               VALUES (gen_random_uuid(), call, 'tool_' || k,
                       CASE WHEN k = 2 AND mod(n, 10) = 0 THEN 'failed' ELSE 'succeeded' END, '{"ok": true}', 3);
           END LOOP;
           INSERT INTO planning_cycles (id, parent_id, agent, status, outcomes)
             VALUES (gen_random_uuid(), cycle, agent, CASE WHEN mod(n, 10) = 0 THEN 'failed' ELSE 'succeeded' END,
                     '{"steps": []}');
         END LOOP; END $$""",
    "INSERT INTO memory_facts (subject, body) SELECT 'subject:' || mod(n, 100), jsonb_build_object('n', n, 'chain', "
    "CASE WHEN mod(n, 3) = 0 THEN 'ethereum' ELSE 'bitcoin' END) FROM generate_series(1, 10000) n",
    "INSERT INTO agent_state (key, value) SELECT 'bench.key.' || n, to_jsonb(n) FROM generate_series(1, 1000) n",
]


def build_trail(owner: Database, app: Database, rows: int) -> None:
    cycles = max(1, rows // ROWS_PER_CYCLE)
    started = time.perf_counter()
    with owner.begin() as conn:
        for statement in BULK:
            sql = statement.replace("CYCLES", str(cycles)).replace("CALLS", str(CALLS_PER_CYCLE))
            conn.execute(text(sql))
        conn.execute(text("ANALYZE"))
    written = time.perf_counter() - started
    started = time.perf_counter()
    seal(app, wait=60)  # links every queued row, batch after batch
    print(
        f"trail: {cycles:,} cycles, {cycles * ROWS_PER_CYCLE:,} audit rows written in {written:.1f} s, "
        f"sealed in {time.perf_counter() - started:.1f} s"
    )


def measure(client: TestClient, path: str, repeat: int) -> tuple[float, float]:
    client.get(path)  # warm: the first request compiles the template and fills the pool
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - began) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{path} answered {response.status_code}: {response.text[:300]}")
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.95))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000, help="Audit rows in the trail (default 20,000).")
    parser.add_argument("--repeat", type=int, default=30, help="Requests per page (default 30).")
    args = parser.parse_args()
    with benchmark_database() as (settings, app_database, url):
        owner = open_database(settings, url=url, role="owner")
        auditor = open_database(settings, url=url, role="auditor")
        try:
            build_trail(owner, app_database, args.rows)
            queries = AuditQueries(auditor)
            newest = queries.cycles(limit=51)
            failed = queries.cycles(status="failed", limit=1)[0]
            since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
            pages = {
                "cycles, newest": "/",
                "cycles, page 2 (keyset)": "/?" + urlencode({"before": str(newest[-1].cursor)}),
                "cycles of one agent": "/?agent=bench",
                "failed cycles": "/?status=failed",
                "cycles in a time range": "/?" + urlencode({"since": since}),
                "one cycle (timeline + SVG)": f"/cycles/{failed.id}",
                "integrity": "/integrity",
                "memory containment search": '/memory?contains={"chain":"ethereum"}',
                "memory by subject": "/memory?subject=subject:7",
                "state": "/state?prefix=bench.",
            }
            with TestClient(create_app(auditor, settings), base_url="http://127.0.0.1") as client:
                results = {name: measure(client, path, args.repeat) for name, path in pages.items()}
        finally:
            owner.shutdown()
            auditor.shutdown()
    print(
        f"\n`jarvis ui` server time, {args.rows:,} audit rows, {args.repeat} requests per page "
        f"({platform.processor() or platform.machine()}, Python {platform.python_version()})\n"
    )
    print("| page | median ms | p95 ms |\n| --- | ---: | ---: |")
    for name, (median, p95) in results.items():
        print(f"| {name} | {median:.1f} | {p95:.1f} |")


if __name__ == "__main__":
    main()
