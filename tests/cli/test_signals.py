"""SIGTERM or SIGINT during `jarvis run`: the tool call is cancelled, the cycle closed, nothing dangles."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from jarvis.cli import main as main_module
from jarvis.config import load_settings
from jarvis.db import Database, open_database
from jarvis.db.audit import PlanningLog, find_dangling
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


def test_any_other_command_exits_128_plus_the_signal(isolated_database_url: str, isolated_database: Database) -> None:
    # README says 128 + the signal; cli/session.py said 130 for SIGTERM too. main() turns SIGTERM into
    # SystemExit(143) for every command (finally blocks run); Ctrl-C is reported as "interrupted", exit 130.
    PlanningLog(isolated_database, agent="tailed").open_cycle(["be tailed"])
    outcomes: dict[signal.Signals, tuple[int, str]] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        process = jarvis_process("audit", "tail", "--from-db", "--json", database_url=isolated_database_url)
        try:
            assert process.stdout is not None
            first = process.stdout.readline()  # the cycle's row: the command is now following the trail
            assert "be tailed" in first, first
            process.send_signal(signum)
            _, stderr = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert "Traceback" not in stderr
        outcomes[signum] = (process.returncode, stderr)
    assert outcomes[signal.SIGINT][0] == 128 + signal.SIGINT == 130
    assert "interrupted" in outcomes[signal.SIGINT][1]
    assert outcomes[signal.SIGTERM][0] == 128 + signal.SIGTERM == 143


def _broken_clean_up(stop: BaseException) -> None:
    """A command stopped by `stop`, whose library clean-up then fails while unwinding (SQLAlchemy closing a
    transaction the signal interrupted raises AssertionError)."""
    try:
        raise stop
    finally:
        raise AssertionError("a transaction interrupted half-way")


@pytest.mark.parametrize(
    ("stop", "code", "said"),
    [(main_module._Terminated(128 + signal.SIGTERM), 143, ""), (KeyboardInterrupt(), 130, "interrupted")],
)
def test_a_clean_up_that_breaks_while_a_signal_unwinds_exits_with_the_signal_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], stop: BaseException, code: int, said: str
) -> None:
    monkeypatch.setattr(main_module, "app", lambda **_: _broken_clean_up(stop))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as exited:
            main_module.main()
    finally:
        signal.signal(signal.SIGTERM, previous)

    assert exited.value.code == code
    assert exited.value.__cause__ is None and exited.value.__suppress_context__
    assert said in capsys.readouterr().err


def test_a_failure_with_no_signal_behind_it_is_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    def fails(**_: object) -> None:
        raise AssertionError("a real bug")

    monkeypatch.setattr(main_module, "app", fails)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(AssertionError, match="a real bug"):
            main_module.main()
    finally:
        signal.signal(signal.SIGTERM, previous)
