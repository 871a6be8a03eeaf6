"""The floor: raw psycopg on the same server, measured in the same run as everything it is compared with."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from peer_bench.rounds import Contender

PLAIN_TABLE = """
CREATE TABLE IF NOT EXISTS public.bench_plain_calls (
    id uuid PRIMARY KEY,
    parent_id uuid,
    tool_name text NOT NULL,
    status text NOT NULL,
    input jsonb,
    output jsonb,
    duration_ms integer,
    created_at timestamptz NOT NULL DEFAULT now()
)"""
"""tool_calls' columns without its triggers, foreign keys, checks or extra indexes."""

START_SQL = "INSERT INTO {table} (id, tool_name, status, input) VALUES (%s, 'bench', 'started', %s)"
OUTCOME_SQL = (
    "INSERT INTO {table} (id, parent_id, tool_name, status, output, duration_ms) "
    "VALUES (%s, %s, 'bench', 'succeeded', %s, 0)"
)
SELECT_SQL = "SELECT value, version, updated_at FROM public.agent_state WHERE key = %s"
UPSERT_SQL = (
    "INSERT INTO public.agent_state (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE "
    "SET value = excluded.value, version = agent_state.version + 1, updated_at = now()"
)


def two_inserts(conn: psycopg.Connection[Any], table: str, n: int) -> None:
    """An audited call's two rows as two autocommit INSERTs (prepared after the first few: psycopg's default)."""
    start, outcome = START_SQL.format(table=table), OUTCOME_SQL.format(table=table)
    for i in range(n):
        call = uuid.uuid4()
        conn.execute(start, (call, Jsonb({"i": i})))
        conn.execute(outcome, (uuid.uuid4(), call, Jsonb({"ok": i})))


def connect(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


def raw_contenders(
    url: str, *, workers: int, read_key: str, write_key: str, seal_queued: Callable[[], None]
) -> list[Contender]:
    """Plain-table inserts, the same inserts into tool_calls (as the login: every trigger fires), `workers`
    connections in as many threads, and a prepared SELECT and UPSERT on agent_state.

    The rows written into tool_calls queue for sealing like any audit row; `seal_queued` links them after
    each run, untimed, so that a Jarvis contender's seal never pays for them."""
    plain, audited, reader, writer = connect(url), connect(url), connect(url), connect(url)
    plain.execute(PLAIN_TABLE)
    pool = [connect(url) for _ in range(workers)]

    def inserts_into(conn: psycopg.Connection[Any], table: str) -> Any:
        def run(n: int) -> tuple[int, float]:
            started = time.perf_counter()
            two_inserts(conn, table, n)
            return n, time.perf_counter() - started

        return run

    def concurrent(n: int) -> tuple[int, float]:
        share = max(1, n // workers)
        threads = [
            threading.Thread(target=two_inserts, args=(conn, "public.bench_plain_calls", share)) for conn in pool
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return share * workers, time.perf_counter() - started

    def select(n: int) -> tuple[int, float]:
        started = time.perf_counter()
        for _ in range(n):
            reader.execute(SELECT_SQL, (read_key,), prepare=True).fetchone()
        return n, time.perf_counter() - started

    def upsert(n: int) -> tuple[int, float]:
        started = time.perf_counter()
        for i in range(n):
            writer.execute(UPSERT_SQL, (write_key, Jsonb({"balance": i})), prepare=True)
        return n, time.perf_counter() - started

    return [
        Contender(
            "raw",
            "raw psycopg, 2 autocommit INSERTs into a plain table",
            inserts_into(plain, "public.bench_plain_calls"),
        ),
        Contender(
            "raw_tool_calls",
            "raw psycopg, the same 2 INSERTs into Jarvis' `tool_calls` as its owner (its triggers, FKs, indexes)",
            inserts_into(audited, "public.tool_calls"),
            settle=seal_queued,
        ),
        Contender("raw16", f"raw psycopg, {workers} connections in {workers} threads (plain table)", concurrent),
        Contender("raw_select", "raw psycopg prepared SELECT (agent_state by key)", select),
        Contender("raw_upsert", "raw psycopg prepared UPSERT (agent_state, autocommit)", upsert),
    ]
