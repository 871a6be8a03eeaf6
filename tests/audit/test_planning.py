"""Planning cycles: open -> decisions -> tool calls -> close, one open cycle per agent, a readable timeline."""

from __future__ import annotations

import uuid

import pytest

from jarvis.db import Database
from jarvis.db.audit import (
    AuditQueries,
    AuditRuleViolation,
    CycleAlreadyOpenError,
    CycleClosedError,
    PlanningLog,
    ToolCallLog,
)
from jarvis.db.audit import planning as planning_module


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


def test_a_too_long_decision_is_a_rule_violation_not_a_closed_cycle(database: Database) -> None:
    # Issue #13 item 1: every refusal of a decision, even its length CHECK, was "cycle closed".
    planning = PlanningLog(database, agent="verbose")
    cycle = planning.open_cycle(["talk"])
    with pytest.raises(AuditRuleViolation, match="decision_length") as info:
        planning.record_decision(cycle, "x" * 10_001, {})
    assert not isinstance(info.value, CycleClosedError)
    assert info.value.constraint == "ck_decision_log_decision_length"
    planning.record_decision(cycle, "short", {})  # the cycle is still open


def test_an_open_cycle_is_recognised_by_its_constraint_not_the_message(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue #13 item 1: open_cycle matched a substring of the server's (translatable) message.
    planning = PlanningLog(database, agent="constraint")

    def refused(message: str, constraint: str | None) -> None:
        def append_row(*_args: object) -> None:
            raise AuditRuleViolation(message, constraint)

        monkeypatch.setattr(planning_module, "append_row", append_row)

    refused("planning_cycles: ein Zyklus ist schon offen", "planning_cycles_one_open")
    with pytest.raises(CycleAlreadyOpenError, match="already has an open planning cycle"):
        planning.open_cycle(["a"])
    refused("planning_cycles: agent x already has an open planning cycle", "some_other_rule")
    with pytest.raises(AuditRuleViolation) as info:
        planning.open_cycle(["a"])
    assert not isinstance(info.value, CycleAlreadyOpenError)
