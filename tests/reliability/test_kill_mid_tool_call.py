"""kill -9 inside a slow tool: the start row survives, the next start-up closes it as abandoned, verify passes."""

from __future__ import annotations

import signal
from pathlib import Path

from jarvis.config import load_settings
from jarvis.db import open_database
from jarvis.db.liveness import running_agents
from jarvis_testkit import tamper
from jarvis_testkit.processes import jarvis_process, wait_for
from jarvis_testkit.trail import seal_and_verify

SLOW = """\
cycles:
  - goals: ["die mid-call"]
    steps:
      - decision: "remember before the slow call"
        tool: remember
        input: {subject: "before-kill", body: {n: 1}}
      - decision: "a slow exchange"
        tool: sleep
        input: {seconds: 60}
"""
QUICK = """\
cycles:
  - goals: ["carry on"]
    steps:
      - decision: "what time is it"
        tool: clock
"""


def test_kill_9_leaves_a_dangling_start_that_the_next_start_up_closes(
    isolated_database_url: str, tmp_path: Path
) -> None:
    url = isolated_database_url
    (tmp_path / "slow.yaml").write_text(SLOW)
    (tmp_path / "quick.yaml").write_text(QUICK)
    # A killed agent's name stays taken until its lease expires (JARVIS_LEASE_TTL): a short one here.
    victim = jarvis_process("run", str(tmp_path / "slow.yaml"), database_url=url, JARVIS_LEASE_TTL="2")
    wait_for(
        lambda: any(r["tool_name"] == "sleep" for r in tamper.rows(url, "tool_calls")),
        what="the slow tool's start row",
        process=victim,
    )
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=30)
    assert victim.returncode == -signal.SIGKILL

    calls = tamper.rows(url, "tool_calls")
    sleeping = [r for r in calls if r["tool_name"] == "sleep"]
    assert [r["status"] for r in sleeping] == ["started"]  # the intent survived, no outcome
    rows_before = {t: len(tamper.rows(url, t)) for t in ("tool_calls", "decision_log", "planning_cycles")}
    database = open_database(load_settings(database_url=url), url=url)
    try:
        wait_for(lambda: not running_agents(database, ["jarvis"]), what="the killed agent's lease to expire")
    finally:
        database.shutdown()

    successor = jarvis_process("run", str(tmp_path / "quick.yaml"), database_url=url)
    out, err = successor.communicate(timeout=120)
    assert successor.returncode == 0, err
    assert f"closed dangling tool_calls {sleeping[0]['id']}" in out
    assert "OK:" in out

    after = tamper.rows(url, "tool_calls")
    abandoned = [r for r in after if r["parent_id"] == sleeping[0]["id"]]
    assert [r["status"] for r in abandoned] == ["abandoned"]
    assert all(r in after for r in calls)  # no earlier row lost or changed
    assert len(tamper.rows(url, "decision_log")) >= rows_before["decision_log"]
    database = open_database(load_settings(database_url=url), url=url)
    try:
        report = seal_and_verify(database)
    finally:
        database.shutdown()
    assert report.ok, report.summary()
    print(f"RELIABILITY kill-9 kills=1 dangling_closed=2 rows={report.rows_checked} lost=0 duplicates=0")
