"""The opt-in partial verify (`--since-checkpoint`, the library's `incremental=True`): what it re-reads
after the newest signed checkpoint, and what only a full verify (the default) finds.

It checks the catalog, every signed checkpoint against the stored chain, and then only the links and
rows after the newest checkpoint. The limit is tested here as honestly as the strength: an edit below
the checkpoint that leaves the chain alone is not found by it, and is found by the default verify.
"""

from __future__ import annotations

import json
import uuid

from typer.testing import CliRunner

from jarvis.agent.witnessing import seal_and_sign, verify_trail
from jarvis.config import Settings
from jarvis.db import Database
from jarvis.db.audit import ToolCallLog, VerifyReport, seal
from jarvis_testkit import tamper
from jarvis_testkit.operator import audit
from jarvis_testkit.tamper import Trail

runner = CliRunner()


def more_calls(database: Database, count: int) -> list[uuid.UUID]:
    """`count` start rows after the trail (not yet sealed)."""
    tools = ToolCallLog(database)
    return [tools.start("lookup", {"n": i}).id for i in range(count)]


def named(report: VerifyReport) -> set[uuid.UUID]:
    return {p.row_id for p in report.problems if p.row_id is not None}


def test_incremental_verify_reads_only_the_rows_linked_after_the_newest_checkpoint(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    first = seal_and_sign(isolated_database, witnessed)
    more_calls(isolated_database, 3)
    seal_and_sign(isolated_database, witnessed)
    more_calls(isolated_database, 4)
    newest = seal_and_sign(isolated_database, witnessed)

    report = verify_trail(isolated_database, witnessed, incremental=True)

    assert report.ok, report.summary()
    assert report.verified_from is not None and report.verified_from.seq == newest.head_seq
    assert report.rows_checked == 0 and report.checkpoints_checked == 3
    assert f"since checkpoint {newest.head_seq}:" in report.summary()
    assert report.summary().startswith("PARTIAL OK")
    assert first.head_seq < newest.head_seq


def test_an_edit_after_the_checkpoint_is_found_incrementally(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    checkpoint = seal_and_sign(isolated_database, witnessed)
    later = more_calls(isolated_database, 3)
    seal(isolated_database)  # sealed, but not signed: the newest checkpoint is still `checkpoint`
    tamper.edit(trail.url, "tool_calls", later[0], "input", "'{\"n\": 42}'")

    report = verify_trail(isolated_database, witnessed, incremental=True)

    assert report.verified_from is not None and report.verified_from.seq == checkpoint.head_seq
    assert named(report) == {later[0]}, report.summary()
    assert "row content was changed after it was sealed" in str(report.problems[0])


def test_an_edit_below_the_checkpoint_is_not_found_incrementally_but_is_found_by_full(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    """The documented limit: the chain is left alone, so only re-reading the old rows shows the edit."""
    seal_and_sign(isolated_database, witnessed)
    tamper.edit(trail.url, "decision_log", trail.decision, "decision", "'pay the attacker'")

    incremental = verify_trail(isolated_database, witnessed, incremental=True)
    full = verify_trail(isolated_database, witnessed)

    assert incremental.ok, "incremental verify re-read a row below its checkpoint; update docs/audit-trail.md"
    assert not full.ok and named(full) == {trail.decision}, full.summary()
    assert full.verified_from is None and "(full)" in full.summary()


def test_a_row_deleted_below_the_checkpoint_is_found_incrementally_by_counting(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    """The table then holds fewer rows than links: it is read in full and the row named."""
    seal_and_sign(isolated_database, witnessed)
    tamper.delete(trail.url, "tool_calls", trail.completions[0])

    report = verify_trail(isolated_database, witnessed, incremental=True)

    assert not report.ok and named(report) == {trail.completions[0]}, report.summary()
    assert "row was deleted" in str(report.problems[0])


def test_a_row_forged_with_the_triggers_off_is_found_incrementally_by_counting(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    seal_and_sign(isolated_database, witnessed)
    forged = tamper.forge_tool_call(trail.url, created_at_sql="now() - interval '1 day'")

    report = verify_trail(isolated_database, witnessed, incremental=True)

    assert not report.ok and named(report) == {forged}, report.summary()
    assert "not in the chain" in str(report.problems[0])


def test_a_forged_row_hidden_behind_a_linked_row_queued_again_is_found_incrementally(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    """Queuing an already-linked row by hand would balance the counts; it counts as no queued row, and is named."""
    seal_and_sign(isolated_database, witnessed)
    forged = tamper.forge_tool_call(trail.url, created_at_sql="now() - interval '1 day'")
    tamper.queue_by_hand(trail.url, "tool_calls", trail.starts[0])

    report = verify_trail(isolated_database, witnessed, incremental=True)

    assert not report.ok and forged in named(report), report.summary()
    assert any(p.row_id == trail.starts[0] and "queued twice" in p.reason for p in report.problems), report.problems


def test_rows_stranded_below_a_sealer_start_moved_forward_are_named_and_stay_unsealed(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    """A superuser moves audit_seal_head.queue_scan_from past queued rows: no seal would ever link them."""
    seal_and_sign(isolated_database, witnessed)
    stranded = set(more_calls(isolated_database, 3))
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute("UPDATE public.audit_seal_head SET queue_scan_from = pg_catalog.txid_current() + 1000")

    assert seal(isolated_database).linked == 0
    report = verify_trail(isolated_database, witnessed, incremental=True)

    assert not report.ok, report.summary()
    assert {p.row_id for p in report.problems if "queue_scan_from was moved" in p.reason} == stranded, report.problems


def test_rows_queued_and_not_yet_sealed_are_not_a_problem(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    seal_and_sign(isolated_database, witnessed)
    more_calls(isolated_database, 3)

    report = verify_trail(isolated_database, witnessed, incremental=True)

    assert report.ok and report.pending == 3, report.summary()


def test_a_rewritten_chain_contradicts_its_checkpoint_incrementally_and_in_full(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    seal_and_sign(isolated_database, witnessed)
    tamper.edit(trail.url, "decision_log", trail.decision, "decision", "'pay the attacker'")
    tamper.recompute_chain(trail.url)

    reports = [verify_trail(isolated_database, witnessed, incremental=True), verify_trail(isolated_database, witnessed)]

    for report in reports:
        assert not report.ok
        assert any(
            "does not match the chain: history was rewritten" in str(p) for p in report.problems
        ), report.summary()


def test_without_a_checkpoint_incremental_verify_falls_back_to_full_and_says_so(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    tamper.edit(trail.url, "decision_log", trail.decision, "decision", "'pay the attacker'")

    report = verify_trail(isolated_database, witnessed, incremental=True)

    assert report.verified_from is None
    assert named(report) == {trail.decision}, report.summary()
    assert "(full)" in report.summary()
    assert any("verified in full" in note for note in report.notes), report.notes


def verify_cli(settings: Settings, *args: str) -> tuple[int, str]:
    return audit(settings, "verify", *args)


def test_cli_verify_since_checkpoint_misses_an_edit_below_it_that_the_default_finds(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    checkpoint = seal_and_sign(isolated_database, witnessed)
    tamper.edit(trail.url, "decision_log", trail.decision, "decision", "'pay the attacker'")

    code, output = verify_cli(witnessed, "--json", "--since-checkpoint")
    default_code, default_output = verify_cli(witnessed, "--json")

    assert code == 0, output
    assert json.loads(output)["mode"] == "since-checkpoint"
    assert json.loads(output)["verified_from"] == checkpoint.head_seq
    assert default_code == 1, default_output
    assert json.loads(default_output)["mode"] == "full" and str(trail.decision) in default_output
