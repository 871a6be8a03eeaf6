"""The agent runtime: validated tools, audited steps, failures recorded as outcomes, not crashes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from jarvis.agent import Agent, CyclePlan, PlanError, ScriptedPlanner, parse_plan
from jarvis.agent.builtin_tools import BUILTIN_TOOL_INPUTS
from jarvis.agent.plan import Step
from jarvis.cache import RedisLink, namespace_for
from jarvis.config import Settings
from jarvis.db import Database, open_database
from jarvis.db.audit import AuditQueries, CycleSummary, append
from jarvis.db.jsonb import InvalidJsonError
from jarvis_testkit.faults import DroppingProxy, dropping_proxy
from jarvis_testkit.trail import seal_and_verify


def plan(*steps: dict[str, object]) -> CyclePlan:
    return CyclePlan.model_validate({"goals": ["test"], "steps": list(steps)})


@pytest.fixture
def agent(isolated_database: Database) -> Agent:
    return Agent(isolated_database, name="runtime-test")


def latest_cycle(agent: Agent) -> CycleSummary:
    return AuditQueries(agent.database).cycles(agent=agent.name, limit=1)[0]


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
    closed = latest_cycle(agent)
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
    outcomes = latest_cycle(agent).outcomes
    assert outcomes["fencing_token"] == second.fencing_token


def test_a_plan_checks_tool_inputs_before_running() -> None:
    with pytest.raises(PlanError, match=r"<plan>:5: cycles\.0\.steps\.0\.input\.seconds"):
        parse_plan(
            "cycles:\n  - goals: [g]\n    steps:\n"
            "      - {decision: d, tool: sleep, input:\n          {seconds: -5}}\n",
            tools=BUILTIN_TOOL_INPUTS,
        )


class ExplodingPlanner:
    """A tick, then `second` if given, then the planner (where an LLM plugs in) raises `error` if given."""

    def __init__(self, error: Exception | None = None, second: Step | None = None) -> None:
        self.error = error
        self.second = second

    def steps(self, goals: Sequence[Any]) -> Iterator[Step]:
        yield Step(decision="tick", tool="clock")
        if self.second is not None:
            yield self.second
        if self.error is not None:
            raise self.error


def test_a_planner_that_raises_closes_its_cycle_as_failed_and_the_next_cycle_runs(agent: Agent) -> None:
    # Issue #12 item 9: only cancellations closed the cycle; the next run_cycle raised CycleAlreadyOpenError.
    with pytest.raises(RuntimeError, match="the model returned garbage"):
        agent.run_cycle(["g"], ExplodingPlanner(RuntimeError("the model returned garbage")))
    failed = latest_cycle(agent)
    assert failed.status == "failed"
    assert failed.outcomes["error"] == "RuntimeError: the model returned garbage"
    assert [step["ok"] for step in failed.outcomes["steps"]] == [True]
    assert agent.planning.open_cycle_id() is None
    after = agent.run_cycle(["g"], ExplodingPlanner())
    assert after.status == "succeeded"
    assert seal_and_verify(agent.database).ok


def test_an_append_the_database_refuses_closes_the_cycle_as_failed(agent: Agent) -> None:
    # A decision the audit trail cannot store (NUL) fails record_decision: an ordinary exception mid-cycle.
    bad = Step(decision="say \x00", tool="clock")
    with pytest.raises(InvalidJsonError):
        agent.run_cycle(["g"], ExplodingPlanner(second=bad))
    failed = latest_cycle(agent)
    assert failed.status == "failed" and "InvalidJsonError" in failed.outcomes["error"]
    assert agent.run_cycle(["g"], ExplodingPlanner()).status == "succeeded"


class OutageProxy(DroppingProxy):
    """While `down`, every INSERT is dropped before it reaches PostgreSQL (reads still pass)."""

    down = False

    def _take_mode(self, wanted: str) -> bool:
        if self.down:
            self.drops += 1
            return wanted == "before_send"
        return super()._take_mode(wanted)

    def outage(self, on: bool) -> None:
        self.down = on
        self.mode = "before_send" if on else None


def test_an_append_that_exhausts_its_retries_does_not_wedge_the_agent(
    isolated_database_url: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(append, "RETRY_DELAYS", (0.01, 0.01))
    monkeypatch.setattr("jarvis_testkit.faults.DroppingProxy", OutageProxy)
    with dropping_proxy(isolated_database_url) as (dropping, through):
        assert isinstance(dropping, OutageProxy)
        proxy = dropping
        database = open_database(settings, url=through)
        try:
            agent = Agent(database, name="outage-agent")

            class CutsTheDatabase:
                def steps(self, goals: Sequence[Any]) -> Iterator[Step]:
                    yield Step(decision="tick", tool="clock")
                    proxy.outage(True)  # the next decision, and the best-effort close, cannot be written
                    yield Step(decision="tock", tool="clock")

            with pytest.raises(psycopg.OperationalError):
                agent.run_cycle(["g"], CutsTheDatabase())
            assert proxy.drops >= 3  # every retry of the decision, and the close, really hit the outage
            stuck = agent.planning.open_cycle_id()
            assert stuck is not None
            proxy.outage(False)
            after = agent.run_cycle(["g"], ExplodingPlanner())  # before the fix: CycleAlreadyOpenError
            assert after.status == "succeeded"
            closed = AuditQueries(database).cycle(stuck)
            assert closed is not None
            assert closed.status == "failed" and "OperationalError" in closed.outcomes["error"]
            assert seal_and_verify(database).ok
        finally:
            database.shutdown()
