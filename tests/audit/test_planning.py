"""Planning cycles: open -> decisions -> tool calls -> close, one open cycle per agent, a readable timeline."""

from __future__ import annotations

import uuid

import pytest

from jarvis.db import Database
from jarvis.db.audit import AuditQueries, CycleAlreadyOpenError, CycleClosedError, PlanningLog, ToolCallLog


def test_timeline_lists_start_decisions_tool_calls_and_completion_in_order(database: Database) -> None:
    planning = PlanningLog(database, agent="timeline")
    tools = ToolCallLog(database)
    cycle = planning.open_cycle(["buy low"])
    planning.record_decision(cycle, "check price", {"because": "need a quote"})
    with tools.record("quote", {"symbol": "ETH"}, cycle_id=cycle) as call:
        call.succeed({"usd": 3000})
    planning.record_decision(cycle, "hold", {"because": "too expensive"})
    planning.close_cycle(cycle, "succeeded", {"held": True})
    kinds = [entry.kind for entry in AuditQueries(database).timeline(cycle)]
    assert kinds == ["cycle.opened", "decision", "tool.started", "tool.succeeded", "decision", "cycle.closed"]


def test_second_open_cycle_for_an_agent_is_refused(database: Database) -> None:
    planning = PlanningLog(database, agent="busy")
    first = planning.open_cycle(["a"])
    with pytest.raises(CycleAlreadyOpenError, match=str(first)):
        planning.open_cycle(["b"])
    planning.close_cycle(first, "succeeded", {})
    planning.close_cycle(planning.open_cycle(["b"]), "succeeded", {})


def test_other_agents_may_have_their_own_open_cycle(database: Database) -> None:
    one = PlanningLog(database, agent="one").open_cycle(["x"])
    two = PlanningLog(database, agent="two").open_cycle(["y"])
    assert one != two


def test_decision_after_close_is_refused(database: Database) -> None:
    planning = PlanningLog(database, agent="closer")
    cycle = planning.open_cycle(["z"])
    planning.close_cycle(cycle, "failed", {"why": "test"})
    with pytest.raises(CycleClosedError, match="already closed"):
        planning.record_decision(cycle, "too late", {})


def test_closing_twice_is_refused(database: Database) -> None:
    planning = PlanningLog(database, agent="twice")
    cycle = planning.open_cycle(["z"])
    planning.close_cycle(cycle, "succeeded", {})
    with pytest.raises(CycleClosedError):
        planning.close_cycle(cycle, "failed", {})


def test_decision_for_an_unknown_cycle_is_refused(database: Database) -> None:
    with pytest.raises(CycleClosedError):
        PlanningLog(database, agent="ghost").record_decision(uuid.uuid4(), "nothing", {})


def test_cycles_lists_newest_first_with_status(database: Database) -> None:
    planning = PlanningLog(database, agent="lister")
    first = planning.open_cycle(["1"])
    planning.close_cycle(first, "succeeded", {"n": 1})
    second = planning.open_cycle(["2"])
    summaries = AuditQueries(database).cycles(agent="lister")
    assert [(s.id, s.status) for s in summaries] == [(second, "started"), (first, "succeeded")]
    assert planning.open_cycle_id() == second
