"""DBOS' contender: a durable workflow that runs one step, with its own system database on the same server."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from dbos import DBOS

from jarvis.db.urls import sqlalchemy_url, with_database
from peer_bench.rounds import Contender


@DBOS.step()
def tool_step(i: int) -> dict[str, int]:
    """The step: a tool call whose output is its input."""
    return {"ok": i}


@DBOS.workflow()
def tool_workflow(i: int) -> dict[str, int]:
    return tool_step(i)


@contextmanager
def dbos_contender(admin_url: str, system_database: str) -> Iterator[Contender]:
    """DBOS launched against `system_database` (created here on the same server, dropped afterwards)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{system_database}"')
    system_url = sqlalchemy_url(with_database(admin_url, system_database))
    DBOS(config={"name": "jarvis-peers", "system_database_url": system_url, "log_level": "WARNING"})
    logging.getLogger("dbos").setLevel(logging.WARNING)
    DBOS.launch()

    def run(n: int) -> tuple[int, float]:
        started = time.perf_counter()
        for i in range(n):
            tool_workflow(i)
        return n, time.perf_counter() - started

    try:
        yield Contender("dbos", "DBOS `@DBOS.workflow` calling one `@DBOS.step`", run)
    finally:
        DBOS.destroy(destroy_registry=False)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{system_database}" WITH (FORCE)')
