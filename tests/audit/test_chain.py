"""Tamper evidence: verify catches what a superuser with triggers disabled does to the trail."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from jarvis.db import Database
from jarvis.db.audit import PlanningLog, ToolCallLog, seal
from jarvis.db.base import CHAINED_TABLES
from jarvis_testkit import tamper
from jarvis_testkit.trail import seal_and_verify


@dataclass
class Trail:
    url: str
    cycle: uuid.UUID
    starts: list[uuid.UUID]
    completions: list[uuid.UUID]
    head: str


@pytest.fixture
def trail(isolated_database: Database, isolated_database_url: str) -> Trail:
    """A small sealed trail: one closed cycle with a decision and five tool calls."""
    planning = PlanningLog(isolated_database, agent="victim")
    tools = ToolCallLog(isolated_database)
    cycle = planning.open_cycle(["pay rent"])
    planning.record_decision(cycle, "pay", {"amount": 1200})
    starts, completions = [], []
    for i in range(5):
        start = tools.start("transfer", {"to": f"landlord-{i}", "usd": 100 * i}, cycle_id=cycle)
        starts.append(start.id)
        completions.append(tools.record_completion(start, "succeeded", output={"tx": f"0x{i:04x}"}))
    planning.close_cycle(cycle, "succeeded", {"paid": True})
    report = seal_and_verify(isolated_database)
    assert report.ok, report.summary()
    return Trail(isolated_database_url, cycle, starts, completions, report.head_hex)


def assert_tampered(database: Database, row_id: uuid.UUID | None, reason: str) -> None:
    report = seal_and_verify(database)
    assert not report.ok
    assert reason in str(report.problems[0]), report.summary()
    if row_id is not None:
        assert report.problems[0].row_id == row_id


def count_chained_rows(url: str) -> int:
    """Rows of every chained table, counted by PostgreSQL rather than by verify."""
    return sum(len(tamper.rows(url, table)) for table in CHAINED_TABLES)


def test_untouched_trail_verifies_with_every_row_counted(isolated_database: Database, trail: Trail) -> None:
    report = seal_and_verify(isolated_database)
    cycle_rows, tool_call_rows, decision_rows = 2, 2 * 5, 1  # open + close; five starts + five completions
    assert report.ok and report.rows_checked == cycle_rows + tool_call_rows + decision_rows == 13
    assert report.rows_checked == count_chained_rows(trail.url)  # every row there is, none twice
    assert report.summary().startswith("OK: 13 audit rows verified")


@pytest.mark.parametrize(
    ("table", "column", "value"),
    [
        ("tool_calls", "input", '\'{"to": "attacker", "usd": 100}\''),
        ("tool_calls", "tool_name", "'refund'"),
        ("tool_calls", "created_at", "created_at - interval '1 day'"),
        ("tool_calls", "cycle_id", "NULL"),
    ],
)
def test_changed_value_in_a_start_row_is_detected(
    isolated_database: Database, trail: Trail, table: str, column: str, value: str
) -> None:
    tamper.edit(trail.url, table, trail.starts[1], column, value)
    assert_tampered(isolated_database, trail.starts[1], "content was changed")


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("output", '\'{"tx": "0xdead"}\''),
        ("status", "'failed'"),
        ("duration_ms", "coalesce(duration_ms, 0) + 1"),
        ("error", "'oops'"),
    ],
)
def test_changed_value_in_a_completion_row_is_detected(
    isolated_database: Database, trail: Trail, column: str, value: str
) -> None:
    tamper.edit(trail.url, "tool_calls", trail.completions[2], column, value)
    assert_tampered(isolated_database, trail.completions[2], "content was changed")


def test_changed_decision_reasoning_is_detected(isolated_database: Database, trail: Trail) -> None:
    decision = tamper.rows(trail.url, "decision_log")[0]["id"]
    tamper.edit(trail.url, "decision_log", decision, "reasoning", "'{\"amount\": 9999}'")
    assert_tampered(isolated_database, decision, "content was changed")


def test_changed_cycle_goals_are_detected(isolated_database: Database, trail: Trail) -> None:
    tamper.edit(trail.url, "planning_cycles", trail.cycle, "goals", "'[\"steal\"]'")
    assert_tampered(isolated_database, trail.cycle, "content was changed")


@pytest.mark.parametrize("which", ["first_start", "middle_completion", "last_completion"])
def test_deleted_row_is_detected(isolated_database: Database, trail: Trail, which: str) -> None:
    row_id = {
        "first_start": trail.starts[0],
        "middle_completion": trail.completions[2],
        "last_completion": trail.completions[-1],
    }[which]
    if which == "first_start":  # its completion references it: remove both, report the first
        tamper.delete(trail.url, "tool_calls", trail.completions[0])
    tamper.delete(trail.url, "tool_calls", row_id)
    report = seal_and_verify(isolated_database)
    assert not report.ok
    assert any(p.row_id == row_id and "deleted" in p.reason for p in report.problems), report.summary()


def test_deleted_cycle_completion_at_the_head_is_detected(isolated_database: Database, trail: Trail) -> None:
    closing = [r["id"] for r in tamper.rows(trail.url, "planning_cycles") if r["parent_id"] == trail.cycle][0]
    tamper.delete(trail.url, "planning_cycles", closing)
    assert_tampered(isolated_database, closing, "row was deleted")


def test_row_inserted_in_the_middle_is_detected(isolated_database: Database, trail: Trail) -> None:
    forged = tamper.forge_tool_call(
        trail.url,
        created_at_sql="(SELECT created_at FROM tool_calls ORDER BY created_at LIMIT 1) + interval '1 microsecond'",
    )
    assert_tampered(isolated_database, forged, "not in the chain")


def test_forged_row_appended_without_the_chain_is_detected(isolated_database: Database, trail: Trail) -> None:
    forged = tamper.forge_tool_call(trail.url)
    seal(isolated_database)  # an honest sealer runs in between: it must not launder the forged row
    assert_tampered(isolated_database, forged, "not in the chain")


def test_swapped_rows_are_detected(isolated_database: Database, trail: Trail) -> None:
    tamper.swap_contents(trail.url, "tool_calls", trail.completions[1], trail.completions[3], "output")
    assert_tampered(isolated_database, trail.completions[1], "content was changed")


def test_deleted_chain_link_in_the_middle_is_detected(isolated_database: Database, trail: Trail) -> None:
    assert tamper.delete_chain_links(trail.url, "seq = 5") == 1
    report = seal_and_verify(isolated_database)
    assert not report.ok and "missing" in str(report.problems[0])


def test_truncated_tail_is_caught_by_the_published_head(isolated_database: Database, trail: Trail) -> None:
    closing = [r["id"] for r in tamper.rows(trail.url, "planning_cycles") if r["parent_id"] == trail.cycle][0]
    tamper.delete(trail.url, "planning_cycles", closing)
    tamper.delete_chain_links(trail.url, "seq = (SELECT max(seq) FROM audit_chain)")
    shorter = seal_and_verify(isolated_database)  # a consistent shorter trail is caught by the seal head...
    assert not shorter.ok and "audit_seal_head" in str(shorter.problems[0])
    tamper.rewind_seal_head(trail.url)  # ...and once that is rewound too, by the head published before
    assert seal_and_verify(isolated_database).ok
    report = seal_and_verify(isolated_database, expect=trail.head)
    assert not report.ok and report.expected_head_found is False


def test_published_head_is_found_after_more_appends(isolated_database: Database, trail: Trail) -> None:
    ToolCallLog(isolated_database).start("later", {})
    report = seal_and_verify(isolated_database, expect=trail.head)
    assert report.ok and report.head_hex != trail.head
