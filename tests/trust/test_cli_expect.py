"""`jarvis audit verify --expect`: bad heads are one-line input errors; a cut-off tail fails against a real head."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from jarvis.cli.main import app
from jarvis.db import Database
from jarvis.db.audit import PlanningLog, ToolCallLog, seal
from jarvis_testkit import tamper
from jarvis_testkit.tamper import Trail

runner = CliRunner()


def verify_cli(url: str, data_dir: Path, *args: str) -> tuple[int, str]:
    env = {"DATABASE_URL": url, "REDIS_URL": "", "COLUMNS": "500", "JARVIS_DATA_DIR": str(data_dir)}
    result = runner.invoke(app, ["audit", "verify", *args], env=env)
    return result.exit_code, result.output


@pytest.mark.parametrize("head", ["", "36:", "zz", "1:" + "a" * 63], ids=["empty", "seq_only", "not_hex", "63_hex"])
def test_verify_with_a_malformed_expected_head_exits_2_with_one_line(
    isolated_database_url: str, tmp_path: Path, head: str
) -> None:
    code, output = verify_cli(isolated_database_url, tmp_path, "--expect", head)

    assert code == 2, output
    assert "Traceback" not in output
    assert len(output.strip().splitlines()) == 1 and "--expect" in output, output


@pytest.fixture
def later_head(isolated_database: Database, trail: Trail) -> str:
    """A second cycle after the trail's; returns the head after it (the trail's head is the earlier one)."""
    planning = PlanningLog(isolated_database, agent="victim")
    cycle = planning.open_cycle(["pay the plumber"])
    ToolCallLog(isolated_database).start("transfer", {"to": "plumber", "usd": 80}, cycle_id=cycle)
    planning.close_cycle(cycle, "succeeded", {"paid": True})
    result = seal(isolated_database)
    return f"{result.head_seq}:{result.head_hash.hex()}"


def test_verify_expecting_an_earlier_real_head_exits_0(trail: Trail, later_head: str, tmp_path: Path) -> None:
    for head in (trail.head, trail.head.split(":")[1], later_head):
        code, output = verify_cli(trail.url, tmp_path, "--expect", head)
        assert code == 0, output


def test_verify_expecting_a_head_after_the_tail_was_cut_exits_1(trail: Trail, later_head: str, tmp_path: Path) -> None:
    tamper.truncate_tail(trail.url, 3)  # the second cycle, rows and links, gone
    assert verify_cli(trail.url, tmp_path)[0] == 0  # a consistent, shorter trail...
    assert verify_cli(trail.url, tmp_path, "--expect", trail.head)[0] == 0

    code, output = verify_cli(trail.url, tmp_path, "--expect", later_head)

    assert code == 1, output  # ...that the published head contradicts
    assert "TAMPERED" in output and "expected head" in output and "Traceback" not in output, output


def test_a_real_head_given_with_the_wrong_position_names_where_it_is(trail: Trail, tmp_path: Path) -> None:
    seq, head = trail.head.split(":")
    code, output = verify_cli(trail.url, tmp_path, "--expect", f"{int(seq) + 1}:{head}")

    assert code == 1, output
    assert f"is at chain position {seq}, not {int(seq) + 1}" in output, output
