"""PostgreSQL restarts while an agent runs a plan: it recovers within 5 s, no gap, no duplicate, verify passes."""

from __future__ import annotations

import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from jarvis.agent import Agent, CyclePlan, CycleResult, ScriptedPlanner
from jarvis.config import load_settings
from jarvis.db import Database, open_database
from jarvis.db.audit import find_dangling
from jarvis.db.embedded import EmbeddedServer, embedded_url
from jarvis.db.migrate import upgrade_to_head
from jarvis_testkit import tamper
from jarvis_testkit.faults import restart_postgres
from jarvis_testkit.processes import wait_for
from jarvis_testkit.services import scratch_root, service_unavailable
from jarvis_testkit.trail import seal_and_verify

STEPS = 30
RECOVERY_TARGET = 5.0
"""Seconds from the server accepting connections again to the agent's next audit row (its longest back-off is 2 s)."""
RECOVERY_DEADLINE = 60.0
PLAN = CyclePlan.model_validate(
    {
        "goals": ["keep working through a database restart"],
        "steps": [{"decision": f"step {i}", "tool": "sleep", "input": {"seconds": 0.05}} for i in range(STEPS)],
    }
)


@pytest.fixture(scope="module")
def private_cluster() -> Iterator[EmbeddedServer]:
    """A PostgreSQL 16 of this module's own: restarting it disturbs nobody else.

    Not under pytest's tmp_path: pytest re-tightens /tmp/pytest-of-<user> to 0700 whenever another
    test process starts, which locks the cluster's unprivileged server user out mid-run.
    """
    try:
        with warnings.catch_warnings():  # as jarvis.db.embedded does: platformdirs' XDG_RUNTIME_DIR notice
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            from pgserver.postgres_server import get_server
    except ImportError as exc:
        service_unavailable("a private PostgreSQL cluster", f"pgserver is not installed here ({exc})")
    server = get_server(Path(tempfile.mkdtemp(prefix="restart-", dir=scratch_root())) / "pgdata", cleanup_mode="delete")
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def restart_database(private_cluster: EmbeddedServer) -> Iterator[tuple[str, Database]]:
    admin = embedded_url(private_cluster)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE DATABASE restart_test")
    url = embedded_url(private_cluster, "restart_test")
    settings = load_settings(database_url=url)
    upgrade_to_head(settings, url=url)
    database = open_database(settings, url=url)
    yield url, database
    database.shutdown()


def test_agent_survives_a_postgres_restart_mid_plan(
    private_cluster: object, restart_database: tuple[str, Database]
) -> None:
    url, database = restart_database
    agent = Agent(database, name="restarter")
    results: list[CycleResult] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(3):
                results.append(agent.run_cycle(PLAN.goals, ScriptedPlanner(PLAN)))
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    # Mid-plan for certain (a fixed sleep can end before a slow machine has started the plan): some calls are in.
    wait_for(lambda: errors or len(tamper.rows(url, "tool_calls")) >= 10, what="the agent to be mid-plan")
    down_at = time.monotonic()
    restart_postgres(private_cluster)
    restarted_at = time.monotonic()  # pg_ctl -w: the server accepts connections again
    before = len(tamper.rows(url, "tool_calls"))
    # The next audit row, or the worker giving up; the deadline only bounds a broken run (asserted below).
    wait_for(
        lambda: errors or not worker.is_alive() or len(tamper.rows(url, "tool_calls")) > before,
        timeout=RECOVERY_DEADLINE,
        what="an audit row after the restart",
    )
    recovery = time.monotonic() - restarted_at
    worker.join(timeout=300)

    assert not errors, errors
    assert [r.status for r in results] == ["succeeded"] * 3
    assert recovery < RECOVERY_TARGET, f"no audit row for {recovery:.1f} s after the restart"
    calls = tamper.rows(url, "tool_calls")
    starts = [r for r in calls if r["parent_id"] is None]
    completions = [r for r in calls if r["parent_id"] is not None]
    assert len(starts) == len(completions) == 3 * STEPS  # no gap
    assert len({r["parent_id"] for r in completions}) == len(completions)  # no duplicate
    assert find_dangling(database) == []
    report = seal_and_verify(database)
    assert report.ok, report.summary()
    print(
        f"RELIABILITY postgres-restart restarts=1 restart_s={restarted_at - down_at:.2f} "
        f"recovery_s={recovery:.2f} tool_calls={len(starts)} "
        f"rows={report.rows_checked} lost=0 duplicates=0"
    )
