"""`jarvis audit verify` with no flags finds every edit, deletion and insertion a superuser makes (issue 22, A).

The attacks run as a superuser with the triggers off, on rows sealed and covered by a signed
checkpoint — the case where the old default (checkpoint to head only) printed OK. The opt-in
partial mode never prints a bare OK: it names the positions it did not re-read.
"""

from __future__ import annotations

import json
import uuid

import pytest
from typer.testing import CliRunner

from jarvis.agent.witnessing import seal_and_sign
from jarvis.config import Settings
from jarvis.db import Database
from jarvis_testkit import tamper
from jarvis_testkit.operator import audit
from jarvis_testkit.tamper import Trail

runner = CliRunner()


def verify_cli(settings: Settings, *args: str) -> tuple[int, str]:
    code, output = audit(settings, "verify", *args)
    return code, output.strip()


@pytest.mark.parametrize(
    ("table", "which", "column", "value"),
    [
        ("tool_calls", "completion", "output", '\'{"tx": "0xattacker"}\''),
        ("decision_log", "decision", "reasoning", '\'{"why": "the attacker said so"}\''),
        ("tool_calls", "completion", "status", "'failed'"),
    ],
    ids=["tool-call-output", "decision-reasoning", "completion-status"],
)
def test_default_verify_names_a_superuser_edit_of_a_checkpointed_row(
    isolated_database: Database, trail: Trail, witnessed: Settings, table: str, which: str, column: str, value: str
) -> None:
    seal_and_sign(isolated_database, witnessed)
    row_id = trail.completions[0] if which == "completion" else trail.decision
    tamper.edit(trail.url, table, row_id, column, value)

    code, output = verify_cli(witnessed)

    assert code == 1, output
    assert "TAMPERED" in output and str(row_id) in output
    assert "row content was changed after it was sealed" in output


def test_default_verify_names_a_deleted_checkpointed_row(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    seal_and_sign(isolated_database, witnessed)
    tamper.delete(trail.url, "tool_calls", trail.completions[1])

    code, output = verify_cli(witnessed)

    assert code == 1, output
    assert str(trail.completions[1]) in output and "row was deleted" in output


def test_default_verify_names_a_row_inserted_with_the_triggers_off(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    seal_and_sign(isolated_database, witnessed)
    forged = tamper.forge_tool_call(trail.url)

    code, output = verify_cli(witnessed)

    assert code == 1, output
    assert str(forged) in output and "not in the chain" in output


def test_default_verify_names_a_forged_row_hidden_by_deleting_a_linked_one(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    """One linked row deleted and one unlinked row forged in the same table: the counts still add up."""
    seal_and_sign(isolated_database, witnessed)
    tamper.delete(trail.url, "tool_calls", trail.completions[1])
    forged = tamper.forge_tool_call(trail.url)

    code, output = verify_cli(witnessed, "--json")

    assert code == 1, output
    report = json.loads(output)
    assert report["mode"] == "full"
    named = " ".join(report["problems"])
    assert str(trail.completions[1]) in named and str(forged) in named


def test_default_verify_of_an_untouched_trail_is_a_full_ok(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    seal_and_sign(isolated_database, witnessed)

    code, output = verify_cli(witnessed)

    assert code == 0, output
    assert output.startswith("OK: 7 audit rows verified (full)"), output


def test_since_checkpoint_never_prints_a_bare_ok_and_names_the_positions_not_re_read(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    checkpoint = seal_and_sign(isolated_database, witnessed)

    code, output = verify_cli(witnessed, "--since-checkpoint")

    assert code == 0, output
    assert not output.startswith("OK"), output
    assert output.startswith("PARTIAL OK")
    assert f"positions 1-{checkpoint.head_seq} NOT re-read" in output


def test_since_checkpoint_and_full_together_are_refused(witnessed: Settings, isolated_database: Database) -> None:
    code, output = verify_cli(witnessed, "--since-checkpoint", "--full")

    assert code == 2, output
    assert "contradict" in output


def test_doctor_style_library_verify_is_full_by_default(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    """The library's verify_trail (the agent's final check, the web view's verify) re-reads everything."""
    from jarvis.agent.witnessing import verify_trail

    seal_and_sign(isolated_database, witnessed)
    tamper.edit(trail.url, "decision_log", trail.decision, "decision", "'pay the attacker'")

    report = verify_trail(isolated_database, witnessed)

    assert not report.ok and report.verified_from is None
    assert {p.row_id for p in report.problems} >= {uuid.UUID(str(trail.decision))}
