"""The audit tables' insert rules, each run by one trigger function per table (migration 0007), refuse every bad
row the app role can send, and the one-open-cycle check stays race-safe while it reads only the latest start row."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.types.json import Jsonb

from jarvis_testkit import tamper

OPEN_CYCLE = "INSERT INTO public.planning_cycles (id, agent, status, goals) VALUES (%s, %s, 'started', '[]')"
CLOSE_CYCLE = (
    "INSERT INTO public.planning_cycles (id, parent_id, agent, status, outcomes) VALUES (%s, %s, %s, 'succeeded', '{}')"
)


@pytest.fixture
def app(migrated_database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with tamper.as_app_role(migrated_database_url) as conn:
        yield conn


def open_cycle(conn: psycopg.Connection[tuple[object, ...]], agent: str) -> uuid.UUID:
    cycle = uuid.uuid4()
    conn.execute(OPEN_CYCLE, (cycle, agent))
    return cycle


def close_cycle(conn: psycopg.Connection[tuple[object, ...]], cycle: uuid.UUID, agent: str) -> uuid.UUID:
    completion = uuid.uuid4()
    conn.execute(CLOSE_CYCLE, (completion, cycle, agent))
    return completion


def test_each_audit_table_runs_its_insert_rules_in_one_trigger(migrated_database_url: str) -> None:
    with psycopg.connect(migrated_database_url) as conn:
        rows = conn.execute(
            "SELECT c.relname, count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            # tgtype bits: 1 row, 2 before, 4 insert
            "WHERE NOT t.tgisinternal AND t.tgtype & 2 = 2 AND t.tgtype & 4 = 4 AND t.tgtype & 1 = 1 "
            "AND c.relname IN ('planning_cycles', 'tool_calls', 'decision_log', 'schema_changes') GROUP BY 1"
        ).fetchall()
    assert dict(rows) == {"planning_cycles": 1, "tool_calls": 1, "decision_log": 1, "schema_changes": 1}


def test_a_tool_call_in_a_closed_cycle_is_refused(app: psycopg.Connection[tuple[object, ...]]) -> None:
    cycle = open_cycle(app, f"closed-{uuid.uuid4()}")
    close_cycle(app, cycle, "x")
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="already closed") as refused:
        app.execute(
            "INSERT INTO public.tool_calls (id, cycle_id, tool_name, status, input) "
            "VALUES (%s, %s, 't', 'started', %s)",
            (uuid.uuid4(), cycle, Jsonb({})),
        )
    assert refused.value.diag.constraint_name == "cycle_is_open"


@pytest.mark.parametrize("table", ["tool_calls", "decision_log"])
def test_a_row_whose_cycle_is_a_completion_row_is_refused(
    app: psycopg.Connection[tuple[object, ...]], table: str
) -> None:
    agent = f"completion-{uuid.uuid4()}"
    completion = close_cycle(app, open_cycle(app, agent), agent)
    insert = {
        "tool_calls": "INSERT INTO public.tool_calls (id, cycle_id, tool_name, status) VALUES (%s, %s, 't', 'started')",
        "decision_log": "INSERT INTO public.decision_log (id, cycle_id, reasoning, decision) "
        "VALUES (%s, %s, '{}', 'd')",
    }[table]
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match=f"{table}: cycle_id must point at") as refused:
        app.execute(insert, (uuid.uuid4(), completion))
    assert refused.value.diag.constraint_name == "cycle_is_start"


def test_opening_a_cycle_reads_only_the_latest_start_row_however_long_the_history(
    migrated_database_url: str, app: psycopg.Connection[tuple[object, ...]]
) -> None:
    agent = f"veteran-{uuid.uuid4()}"
    for _ in range(40):
        close_cycle(app, open_cycle(app, agent), agent)
    # A new session: its transaction counters hold nothing but the one open.
    with tamper.as_app_role(migrated_database_url, autocommit=False) as fresh:
        open_cycle(fresh, agent)
        row = fresh.execute(
            "SELECT seq_scan, seq_tup_read, idx_tup_fetch FROM pg_stat_xact_user_tables "
            "WHERE relid = 'public.planning_cycles'::regclass"
        ).fetchone()
        fresh.rollback()
    assert row is not None
    seq_scan, seq_tup_read, idx_tup_fetch = row
    # The latest start row by its primary key, and no completion of it: one row fetched, not 40.
    assert (seq_scan, seq_tup_read) == (0, 0)
    assert idx_tup_fetch <= 2, idx_tup_fetch


@pytest.mark.parametrize("recorded", ["nothing", "a completion row"])
def test_a_guard_that_does_not_name_the_latest_start_row_still_refuses_a_second_open_cycle(
    migrated_database_url: str, app: psycopg.Connection[tuple[object, ...]], recorded: str
) -> None:
    """Cycles opened before migration 0007 have no latest start on record: the check looks at all of them."""
    agent = f"legacy-{uuid.uuid4()}"
    completion = close_cycle(app, open_cycle(app, agent), agent)
    still_open = open_cycle(app, agent)
    with psycopg.connect(migrated_database_url, autocommit=True) as owner:
        owner.execute(
            "UPDATE public.agent_cycle_guard SET latest_start = %s WHERE agent = %s",
            (None if recorded == "nothing" else completion, agent),
        )
    with pytest.raises(psycopg.errors.UniqueViolation, match="already has an open planning cycle"):
        open_cycle(app, agent)
    close_cycle(app, still_open, agent)
    open_cycle(app, agent)  # and once it is closed, the next one opens


def wait_until_blocked(url: str, pid: int, deadline: float = 30.0) -> None:
    """Wait (with a deadline) until backend `pid` waits for a lock."""
    with psycopg.connect(url, autocommit=True) as watcher:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            row = watcher.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
            if row is not None and row[0] == "Lock":
                return
            time.sleep(0.02)
    raise AssertionError(f"backend {pid} never waited for the cycle lock within {deadline} s")


def test_two_agents_opening_one_agents_cycle_at_once_open_exactly_one(migrated_database_url: str) -> None:
    agent = f"racer-{uuid.uuid4()}"
    outcome: list[BaseException | None] = []
    with (
        tamper.as_app_role(migrated_database_url, autocommit=False) as first,
        tamper.as_app_role(migrated_database_url) as second,
    ):
        open_cycle(first, agent)  # not committed: holds the agent's guard row
        second_pid = second.info.backend_pid

        def race() -> None:
            try:
                open_cycle(second, agent)
                outcome.append(None)
            except psycopg.Error as error:
                outcome.append(error)

        racer = threading.Thread(target=race, daemon=True)
        racer.start()
        wait_until_blocked(migrated_database_url, second_pid)
        first.commit()
        racer.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], psycopg.errors.UniqueViolation), outcome
    with psycopg.connect(migrated_database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM public.planning_cycles WHERE agent = %s AND parent_id IS NULL", (agent,)
        ).fetchone()
    assert row == (1,)
