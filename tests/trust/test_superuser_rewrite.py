"""A superuser edits a sealed row and recomputes the whole chain consistently: only signed checkpoints catch it."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from jarvis.agent.witnessing import seal_and_sign, verify_trail
from jarvis.cli.main import app
from jarvis.config import Settings
from jarvis.db import Database
from jarvis.db.audit import PlanningLog, ToolCallLog, verify
from jarvis_testkit import tamper
from jarvis_testkit.tamper import Trail, without_traceback

runner = CliRunner()


def signed_history(database: Database, settings: Settings) -> list[int]:
    """The trail fixture's rows plus a second cycle, each batch sealed and signed as the agent does it."""
    first = seal_and_sign(database, settings)
    planning = PlanningLog(database, agent="victim")
    cycle = planning.open_cycle(["pay the plumber"])
    ToolCallLog(database).start("transfer", {"to": "plumber", "usd": 80}, cycle_id=cycle)
    planning.close_cycle(cycle, "succeeded", {"paid": True})
    second = seal_and_sign(database, settings)
    assert verify_trail(database, settings).ok
    return [first.head_seq, second.head_seq]


def rewrite_history(trail: Trail) -> None:
    """The attack: change a sealed transfer's recipient, then relink every row with the database's own sealer."""
    tamper.edit(trail.url, "tool_calls", trail.starts[0], "input", '\'{"to": "attacker", "usd": 1500.25}\'')
    tamper.recompute_chain(trail.url)


def test_consistently_recomputed_chain_fails_against_the_signed_checkpoints(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    seqs = signed_history(isolated_database, witnessed)
    rewrite_history(trail)
    assert verify(isolated_database).ok  # the chain alone is consistent again...

    report = without_traceback(lambda: verify_trail(isolated_database, witnessed))

    assert not report.ok, report.summary()  # ...the checkpoints signed before the edit are not
    rewritten = [p for p in report.problems if "does not match the chain: history was rewritten" in p.reason]
    assert {p.seq for p in rewritten} == set(seqs), [str(p) for p in report.problems]
    assert all(f"checkpoint {p.seq}:" in p.reason for p in rewritten)


def test_cli_audit_verify_with_default_options_fails_naming_the_checkpoint(
    isolated_database: Database, trail: Trail, witnessed: Settings, tmp_path: Path
) -> None:
    seqs = signed_history(isolated_database, witnessed)
    rewrite_history(trail)
    env = {
        "DATABASE_URL": trail.url,
        "REDIS_URL": "",
        "COLUMNS": "500",
        "JARVIS_DATA_DIR": str(tmp_path),
        "JARVIS_SIGNING_KEY": str(witnessed.signing_key_path()),
        "JARVIS_WITNESS_LOG": str(witnessed.witness_log),
    }

    result = runner.invoke(app, ["audit", "verify"], env=env)

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "TAMPERED" in result.output and "history was rewritten" in result.output, result.output
    assert f"checkpoint {seqs[0]}:" in result.output, result.output
