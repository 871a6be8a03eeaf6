"""Backdating: the agent never chooses `created_at`; a superuser's backdated row is caught by the checkpoints."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime

import psycopg
import pytest
from psycopg.types.json import Jsonb

from jarvis.agent.witnessing import seal_and_sign, verify_trail
from jarvis.config import Settings
from jarvis.db import Database
from jarvis_testkit import tamper
from jarvis_testkit.tamper import Trail, without_traceback


@pytest.fixture
def app(migrated_database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with tamper.as_app_role(migrated_database_url) as conn:
        yield conn


def insert_statements(conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, tuple[str, tuple[object, ...]]]:
    """One valid INSERT per chained table (the `%s` placeholders bound by the tuple), without created_at."""
    cycle = uuid.uuid4()
    conn.execute(
        "INSERT INTO public.planning_cycles (id, agent, status, goals) VALUES (%s, %s, 'started', %s)",
        (cycle, f"agent-{cycle}", Jsonb(["g"])),
    )
    return {
        "planning_cycles": (
            "INSERT INTO public.planning_cycles (id, agent, status, goals{}) VALUES (%s, %s, 'started', %s{})",
            (uuid.uuid4(), f"agent-{uuid.uuid4()}", Jsonb(["g"])),
        ),
        "tool_calls": (
            "INSERT INTO public.tool_calls (id, tool_name, status, input{}) VALUES (%s, 'transfer', 'started', %s{})",
            (uuid.uuid4(), Jsonb({"usd": 1})),
        ),
        "decision_log": (
            "INSERT INTO public.decision_log (id, cycle_id, reasoning, decision{}) VALUES (%s, %s, %s, 'pay'{})",
            (uuid.uuid4(), cycle, Jsonb({"why": "rent"})),
        ),
        "schema_changes": (
            "INSERT INTO public.schema_changes (table_name, action, columns{}) VALUES ('prices', 'create_table', %s{})",
            (Jsonb({"usd": "numeric"}),),
        ),
    }


TABLES = ["planning_cycles", "tool_calls", "decision_log", "schema_changes"]


@pytest.mark.parametrize("table", TABLES)
def test_app_role_cannot_choose_created_at(app: psycopg.Connection[tuple[object, ...]], table: str) -> None:
    statement, params = insert_statements(app)[table]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute(statement.format(", created_at", ", %s"), (*params, datetime(2020, 1, 1).astimezone()))


@pytest.mark.parametrize("table", TABLES)
def test_app_role_insert_is_stamped_with_the_database_clock(
    app: psycopg.Connection[tuple[object, ...]], table: str
) -> None:
    statement, params = insert_statements(app)[table]
    with app.transaction():
        app.execute("SET LOCAL TimeZone = 'Pacific/Kiritimati'")  # a session setting cannot move the stamp either
        before = app.execute("SELECT clock_timestamp()").fetchone()
        row = app.execute(statement.format("", "") + " RETURNING created_at", params).fetchone()
        after = app.execute("SELECT clock_timestamp()").fetchone()
    assert before is not None and row is not None and after is not None
    assert before[0] <= row[0] <= after[0]  # type: ignore[operator]


def test_backdated_row_queued_by_hand_after_a_checkpoint_is_reported(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    checkpoint = seal_and_sign(isolated_database, witnessed)
    forged = uuid.uuid4()
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute(
            "INSERT INTO public.tool_calls (id, cycle_id, tool_name, status, input, created_at) "
            "VALUES (%s, %s, 'transfer', 'started', %s, now() - interval '1 hour')",
            (forged, trail.cycle, Jsonb({"to": "attacker", "usd": 5000})),
        )
    tamper.queue_by_hand(trail.url, "tool_calls", forged)
    seal_and_sign(isolated_database, witnessed)  # the agent's next seal links it, after the checkpoint

    report = without_traceback(lambda: verify_trail(isolated_database, witnessed))

    assert not report.ok, report.summary()
    named = [p for p in report.problems if p.row_id == forged]
    assert named and "backdated" in named[0].reason, [str(p) for p in report.problems]
    assert f"checkpoint {checkpoint.head_seq}:" in named[0].reason
