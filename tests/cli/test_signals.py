"""SIGTERM or SIGINT during `jarvis run`: the tool call is cancelled, the cycle closed, nothing dangles."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from jarvis.config import load_settings
from jarvis.db import open_database
from jarvis.db.audit import find_dangling
from jarvis_testkit import tamper
from jarvis_testkit.processes import jarvis_process, wait_for
from jarvis_testkit.trail import seal_and_verify

SLOW_PLAN = """\
cycles:
  - goals: ["be interrupted"]
    steps:
      - decision: "wait for a slow exchange"
        tool: sleep
        input: {seconds: 60}
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_a_tool_call_cancels_it_and_closes_the_cycle(
    isolated_database_url: str, tmp_path: Path, signum: signal.Signals
) -> None:
    plan = tmp_path / "slow.yaml"
    plan.write_text(SLOW_PLAN)
    url = isolated_database_url
    in_the_tool = tmp_path / "sleeping"
    process = jarvis_process("run", str(plan), database_url=url, sleep_marker=in_the_tool)

    def sleeping() -> bool:
        return any(r["tool_name"] == "sleep" for r in tamper.rows(url, "tool_calls"))

    try:
        wait_for(sleeping, what="the sleep tool's start row", process=process)
        # Not the start row alone: a signal landing between its commit and the tool leaves no outcome row.
        wait_for(in_the_tool.exists, what="the sleep tool to be running", process=process)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 128 + signum, stderr
    assert "cancelled" in stderr and "Traceback" not in stderr
    calls = tamper.rows(url, "tool_calls")
    assert [r["status"] for r in calls] == ["started", "cancelled"]
    assert signum.name in calls[1]["error"]
    cycles = tamper.rows(url, "planning_cycles")
    assert [r["status"] for r in cycles] == ["started", "cancelled"]
    assert cycles[1]["outcomes"]["interrupted"].endswith(signum.name)
    database = open_database(load_settings(database_url=url), url=url)
    try:
        assert find_dangling(database) == []
        assert seal_and_verify(database).ok
    finally:
        database.shutdown()
