"""Dangling starts (process died mid-call) are found and closed as abandoned, never edited."""

from __future__ import annotations

import json
import signal
from datetime import timedelta
from pathlib import Path

from sqlalchemy import text
from typer.testing import CliRunner

from jarvis.agent import Agent
from jarvis.cli.main import app
from jarvis.config import Settings
from jarvis.db import Database, open_database
from jarvis.db.audit import PlanningLog, ToolCallLog, close_dangling, find_dangling
from jarvis.db.audit.dangling import running_agents, sweep_dangling
from jarvis_testkit import tamper
from jarvis_testkit.processes import jarvis_process, wait_for
from jarvis_testkit.trail import seal_and_verify

SLOW_PLAN = """\
cycles:
  - goals: ["work for a while"]
    steps:
      - decision: "wait for a slow exchange"
        tool: sleep
        input: {seconds: 60}
"""


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


def test_dangling_close_leaves_a_running_agents_work_alone(isolated_database_url: str, tmp_path: Path) -> None:
    # Issue #12 item 8: `--close` abandoned the live agent's tool call and cycle; the agent then crashed
    # recording their outcomes ("already has an outcome") and the trail said it had died.
    url = isolated_database_url
    (tmp_path / "slow.yaml").write_text(SLOW_PLAN)
    agent = jarvis_process("run", str(tmp_path / "slow.yaml"), "--agent", "busy", database_url=url)
    try:
        wait_for(
            lambda: any(r["tool_name"] == "sleep" for r in tamper.rows(url, "tool_calls")),
            what="the running agent's tool call",
            process=agent,
        )
        env = {"DATABASE_URL": url, "REDIS_URL": "", "COLUMNS": "250"}
        runner = CliRunner()
        closing = runner.invoke(app, ["audit", "dangling", "--older-than", "0", "--close"], env=env)
        assert closing.exit_code == 0, closing.output
        assert "0 closed as abandoned" in closing.output
        assert "skipped 2 start row(s) of running agent(s) busy" in closing.output
        statuses = [r["status"] for t in ("tool_calls", "planning_cycles") for r in tamper.rows(url, t)]
        assert statuses == ["started", "started"]  # nothing abandoned
        listing = runner.invoke(app, ["audit", "dangling", "--older-than", "0", "--json"], env=env)
        assert listing.exit_code == 0, listing.output
        assert sorted((d["table"], d["agent"], d["running"]) for d in json.loads(listing.stdout)) == [
            ("planning_cycles", "busy", True),
            ("tool_calls", "busy", True),
        ]
        agent.send_signal(signal.SIGTERM)  # the agent still owns its work: it records the cancellation itself
        _, stderr = agent.communicate(timeout=60)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.communicate()
    assert agent.returncode == 128 + signal.SIGTERM, stderr
    assert "already has an outcome" not in stderr and "Traceback" not in stderr
    assert [r["status"] for r in tamper.rows(url, "tool_calls")] == ["started", "cancelled"]
    assert [r["status"] for r in tamper.rows(url, "planning_cycles")] == ["started", "cancelled"]


def test_sweep_closes_dead_agents_and_loose_calls_and_skips_running_agents_unless_forced(
    isolated_database: Database, isolated_database_url: str, settings: Settings
) -> None:
    db = isolated_database
    live_cycle = PlanningLog(db, agent="sweep-live").open_cycle(["busy"])
    live_call = ToolCallLog(db).start("working", {}, cycle_id=live_cycle)
    dead_cycle = PlanningLog(db, agent="sweep-dead").open_cycle(["crashed"])
    dead_call = ToolCallLog(db).start("died", {}, cycle_id=dead_cycle)
    loose = ToolCallLog(db).start("loose", {})
    live_db = open_database(settings, url=isolated_database_url)
    live = Agent(live_db, name="sweep-live")
    live.take_instance_lock()  # exactly as a running agent holds it
    try:
        assert running_agents(db, ["sweep-dead", "sweep-live"]) == ["sweep-live"]
        sweep = sweep_dangling(db)
        assert {d.id for d in sweep.skipped} == {live_cycle, live_call.id}
        assert {d.id for d in sweep.closed} == {dead_cycle, dead_call.id, loose.id}
        assert sweep.running == ["sweep-live"]
        assert {d.id for d in find_dangling(db)} == {live_cycle, live_call.id}
        # The sweep's own hold on sweep-dead's lock ended with it: that agent can start again.
        assert running_agents(db, ["sweep-dead"]) == []
        forced = sweep_dangling(db, force=True)
        assert {d.id for d in forced.closed} == {live_cycle, live_call.id} and forced.skipped == []
        assert forced.running == ["sweep-live"]
    finally:
        live.shutdown()
    assert find_dangling(db) == []
    assert seal_and_verify(db).ok


def test_dangling_force_needs_close(isolated_database_url: str) -> None:
    result = CliRunner().invoke(
        app, ["audit", "dangling", "--force"], env={"DATABASE_URL": isolated_database_url, "REDIS_URL": ""}
    )
    assert result.exit_code == 2 and "--force only goes with --close" in result.output
