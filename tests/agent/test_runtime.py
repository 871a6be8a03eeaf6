"""The agent runtime: validated tools, audited steps, failures recorded as outcomes, not crashes."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from jarvis.agent import Agent, CyclePlan, PlanError, ScriptedPlanner, parse_plan
from jarvis.agent.builtin_tools import BUILTIN_TOOL_INPUTS
from jarvis.cache import RedisLink, namespace_for
from jarvis.db import Database
from jarvis_testkit.trail import seal_and_verify


def plan(*steps: dict[str, object]) -> CyclePlan:
    return CyclePlan.model_validate({"goals": ["test"], "steps": list(steps)})


@pytest.fixture
def agent(isolated_database: Database) -> Agent:
    return Agent(isolated_database, name="runtime-test")


def count(database: Database, table: str) -> int:
    with database.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_a_failing_tool_fails_its_step_and_the_cycle_records_it(agent: Agent) -> None:
    cycle = plan(
        {"decision": "break", "tool": "fail", "input": {"reason": "on purpose"}},
        {"decision": "carry on", "tool": "clock"},
    )
    result = agent.run_cycle(cycle.goals, ScriptedPlanner(cycle))
    assert result.status == "failed"
    assert [s.ok for s in result.steps] == [False, True]
    assert result.steps[0].error == "ToolFailedError: on purpose"
    closed = agent.planning.cycles(limit=1)[0]
    assert closed.outcomes["failed_steps"] == 1 and closed.status == "failed"
    assert seal_and_verify(agent.database).ok


def test_invalid_tool_input_is_refused_before_any_audited_call(agent: Agent) -> None:
    before = count(agent.database, "tool_calls")
    outcome = agent.run_tool("sleep", {"seconds": -1})
    assert not outcome.ok and "input for tool 'sleep' is invalid" in str(outcome.error)
    assert count(agent.database, "tool_calls") == before


def test_an_unknown_tool_is_an_outcome_not_an_exception(agent: Agent) -> None:
    outcome = agent.run_tool("launch_rockets", {})
    assert not outcome.ok and "unknown tool 'launch_rockets'" in str(outcome.error)


def test_runtime_tables_and_state_work_through_tools(agent: Agent) -> None:
    cycle = plan(
        {
            "decision": "make a table",
            "tool": "create_table",
            "input": {"name": "notes_rt", "columns": {"n": "integer"}},
        },
        {"decision": "fill it", "tool": "insert_row", "input": {"table": "notes_rt", "values": {"n": 7}}},
        {"decision": "remember", "tool": "set_state", "input": {"key": "rt.k", "value": [1, 2]}},
        {"decision": "read back", "tool": "get_state", "input": {"key": "rt.k"}},
    )
    result = agent.run_cycle(cycle.goals, ScriptedPlanner(cycle))
    assert result.status == "succeeded"
    assert result.steps[3].output == {"value": [1, 2], "version": 1}
    assert agent.schema.rows("notes_rt")[0]["n"] == 7


def test_with_redis_the_cycle_records_its_fencing_token(isolated_database: Database, redis_url: str) -> None:
    link = RedisLink(redis_url, namespace=namespace_for(isolated_database.url))
    agent = Agent(isolated_database, name="fenced-agent", redis_link=link)
    cycle = plan({"decision": "tick", "tool": "clock"})
    first = agent.run_cycle(cycle.goals, ScriptedPlanner(cycle))
    second = agent.run_cycle(cycle.goals, ScriptedPlanner(cycle))
    assert first.fencing_token is not None and second.fencing_token is not None
    assert second.fencing_token > first.fencing_token
    outcomes = agent.planning.cycles(limit=1)[0].outcomes
    assert outcomes["fencing_token"] == second.fencing_token


def test_a_plan_checks_tool_inputs_before_running() -> None:
    with pytest.raises(PlanError, match=r"<plan>:5: cycles\.0\.steps\.0\.input\.seconds"):
        parse_plan(
            "cycles:\n  - goals: [g]\n    steps:\n"
            "      - {decision: d, tool: sleep, input:\n          {seconds: -5}}\n",
            tools=BUILTIN_TOOL_INPUTS,
        )
