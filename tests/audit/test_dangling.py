"""Dangling starts (process died mid-call) are found and closed as abandoned, never edited."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from jarvis.db import Database
from jarvis.db.audit import PlanningLog, ToolCallLog, close_dangling, find_dangling
from jarvis_testkit.trail import seal_and_verify


def test_a_start_without_outcome_is_dangling_and_closing_appends_abandoned(database: Database) -> None:
    cycle = PlanningLog(database, agent="crashy").open_cycle(["crash"])
    start = ToolCallLog(database).start("slow_tool", {"sleep": 60}, cycle_id=cycle)
    found = {(d.table, d.id) for d in find_dangling(database)}
    assert {("tool_calls", start.id), ("planning_cycles", cycle)} <= found

    closed = close_dangling(database)
    assert {d.id for d in closed} >= {start.id, cycle}
    assert find_dangling(database) == []
    with database.connect() as conn:
        statuses = conn.execute(
            text("SELECT status, duration_ms FROM tool_calls WHERE parent_id = :id"), {"id": start.id}
        ).all()
        original = conn.execute(text("SELECT status FROM tool_calls WHERE id = :id"), {"id": start.id}).scalar()
    assert [tuple(s) for s in statuses] == [("abandoned", None)]
    assert original == "started"
    assert seal_and_verify(database).ok


def test_threshold_keeps_recent_starts_out(database: Database) -> None:
    start = ToolCallLog(database).start("fresh_tool", {})
    assert start.id not in {d.id for d in find_dangling(database, older_than=timedelta(hours=1))}
    assert start.id in {d.id for d in find_dangling(database)}


def test_an_agent_only_closes_its_own_cycles_work_at_start_up(database: Database) -> None:
    mine = PlanningLog(database, agent="owner").open_cycle(["mine"])
    my_call = ToolCallLog(database).start("mine", {}, cycle_id=mine)
    theirs = PlanningLog(database, agent="neighbour").open_cycle(["theirs"])
    loose_call = ToolCallLog(database).start("no_cycle", {})
    closed = {d.id for d in close_dangling(database, agent="owner")}
    assert closed == {mine, my_call.id}
    remaining = {d.id for d in find_dangling(database)}
    assert {theirs, loose_call.id} <= remaining
