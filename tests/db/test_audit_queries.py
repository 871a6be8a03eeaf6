"""AuditQueries: the trail as people read it (one cycle, pages of cycles and tool calls, a cycle's timeline)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import pytest

from jarvis.db import Database
from jarvis.db.audit import AuditQueries, Cursor, CycleSummary, PlanningLog, ToolCallLog, ToolCallSummary
from jarvis_testkit.tamper import superuser_without_triggers

SAME_INSTANT = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def closed_cycles(database: Database, agent: str, count: int) -> list[uuid.UUID]:
    planning = PlanningLog(database, agent=agent)
    cycles = []
    for n in range(count):
        cycle = planning.open_cycle([f"goal {n}"])
        planning.close_cycle(cycle, "succeeded", {"n": n})
        cycles.append(cycle)
    return cycles


def give_start_rows_one_timestamp(url: str, table: str, ids: list[uuid.UUID]) -> None:
    """As a superuser: every start row in `ids` gets the same created_at (as a busy server can write them)."""
    with superuser_without_triggers(url) as conn:
        changed = conn.execute(
            f"UPDATE ONLY public.{table} SET created_at = %s WHERE id = ANY(%s)", (SAME_INSTANT, ids)
        ).rowcount
    assert changed == len(ids)


def every_page(read: Callable[..., Sequence[CycleSummary | ToolCallSummary]], page_size: int) -> list[list[uuid.UUID]]:
    pages: list[list[uuid.UUID]] = []
    before: Cursor | None = None
    while True:
        page = read(before=before, limit=page_size)
        if not page:
            return pages
        pages.append([item.id for item in page])
        before = page[-1].cursor


def test_pages_of_cycles_with_equal_timestamps_hold_every_cycle_once(
    isolated_database: Database, isolated_database_url: str
) -> None:
    cycles = closed_cycles(isolated_database, "tied", 7)
    give_start_rows_one_timestamp(isolated_database_url, "planning_cycles", cycles)
    queries = AuditQueries(isolated_database)

    pages = every_page(lambda **page: queries.cycles(agent="tied", **page), page_size=3)

    assert [len(page) for page in pages] == [3, 3, 1]
    assert [cycle for page in pages for cycle in page] == sorted(cycles, reverse=True)  # ties: by id, descending


def test_pages_of_tool_calls_with_equal_timestamps_hold_every_call_once(
    isolated_database: Database, isolated_database_url: str
) -> None:
    tools = ToolCallLog(isolated_database)
    calls = []
    for n in range(5):
        with tools.record("tick", {"n": n}) as call:
            call.succeed(n)
        calls.append(call.id)
    give_start_rows_one_timestamp(isolated_database_url, "tool_calls", calls)
    queries = AuditQueries(isolated_database)

    pages = every_page(lambda **page: queries.tool_calls(tool_name="tick", **page), page_size=2)

    assert [len(page) for page in pages] == [2, 2, 1]
    assert [call for page in pages for call in page] == sorted(calls, reverse=True)


def test_a_cycle_appended_while_paging_does_not_shift_the_next_page(database: Database) -> None:
    _, middle, newer = closed_cycles(database, "paging-while-writing", 3)
    queries = AuditQueries(database)
    first = queries.cycles(agent="paging-while-writing", limit=1)

    closed_cycles(database, "paging-while-writing", 1)
    second = queries.cycles(agent="paging-while-writing", before=first[-1].cursor, limit=1)

    assert [c.id for c in first] == [newer]
    assert [c.id for c in second] == [middle]


def test_cycles_are_newest_first_with_their_status_and_outcomes(database: Database) -> None:
    planning = PlanningLog(database, agent="lister-q")
    first = planning.open_cycle(["1"])
    planning.close_cycle(first, "failed", {"why": "test"})
    second = planning.open_cycle(["2"])

    summaries = AuditQueries(database).cycles(agent="lister-q")

    assert [(s.id, s.status, s.outcomes) for s in summaries] == [
        (second, "started", None),
        (first, "failed", {"why": "test"}),
    ]


def test_cycles_of_one_agent_leave_out_other_agents(database: Database) -> None:
    mine = closed_cycles(database, "filter-mine", 2)
    closed_cycles(database, "filter-theirs", 2)

    listed = AuditQueries(database).cycles(agent="filter-mine")

    assert {c.id for c in listed} == set(mine)


def test_cycles_without_an_agent_are_every_agents(database: Database) -> None:
    one = closed_cycles(database, "everyone-1", 1)
    two = closed_cycles(database, "everyone-2", 1)

    listed = {c.id for c in AuditQueries(database).cycles(limit=10_000)}

    assert set(one + two) <= listed


def test_cycles_in_one_status_leave_out_the_others(database: Database) -> None:
    planning = PlanningLog(database, agent="by-status")
    failed = planning.open_cycle(["f"])
    planning.close_cycle(failed, "failed", {})
    succeeded = planning.open_cycle(["s"])
    planning.close_cycle(succeeded, "succeeded", {})
    still_open = planning.open_cycle(["o"])
    queries = AuditQueries(database)

    assert [c.id for c in queries.cycles(agent="by-status", status="failed")] == [failed]
    assert [c.id for c in queries.cycles(agent="by-status", status="succeeded")] == [succeeded]
    assert [c.id for c in queries.cycles(agent="by-status", status="started")] == [still_open]


def test_a_status_that_does_not_exist_is_refused(database: Database) -> None:
    with pytest.raises(ValueError, match="'finished' is not one of"):
        AuditQueries(database).cycles(status="finished")


@pytest.mark.parametrize("limit", [0, 10_001])
def test_a_page_size_outside_the_bounds_is_refused(database: Database, limit: int) -> None:
    with pytest.raises(ValueError, match="outside 1..10000"):
        AuditQueries(database).tool_calls(limit=limit)


def test_one_cycle_is_read_by_its_id_with_its_outcome(database: Database) -> None:
    planning = PlanningLog(database, agent="one-by-id")
    cycle = planning.open_cycle(["find me"])
    planning.close_cycle(cycle, "succeeded", {"found": True})

    summary = AuditQueries(database).cycle(cycle)

    assert summary is not None
    assert (summary.agent, summary.goals, summary.status, summary.outcomes) == (
        "one-by-id",
        ["find me"],
        "succeeded",
        {"found": True},
    )
    assert summary.closed_at is not None and summary.closed_at >= summary.started_at


def test_a_cycle_that_does_not_exist_is_none(database: Database) -> None:
    assert AuditQueries(database).cycle(uuid.uuid4()) is None


def test_the_timeline_of_a_cycle_that_does_not_exist_is_empty(database: Database) -> None:
    assert AuditQueries(database).timeline(uuid.uuid4()) == []


def test_the_id_of_a_completion_row_is_not_a_cycle(database: Database) -> None:
    planning = PlanningLog(database, agent="completion-id")
    completion = planning.close_cycle(planning.open_cycle(["g"]), "succeeded", {})

    assert AuditQueries(database).cycle(completion) is None


def test_the_timeline_lists_start_decisions_tool_calls_and_completion_in_order(database: Database) -> None:
    planning = PlanningLog(database, agent="timeline-q")
    cycle = planning.open_cycle(["buy low"])
    planning.record_decision(cycle, "check price", {"because": "need a quote"})
    with ToolCallLog(database).record("quote", {"symbol": "ETH"}, cycle_id=cycle) as call:
        call.succeed({"usd": 3000})
    planning.close_cycle(cycle, "succeeded", {"held": True})

    entries = AuditQueries(database).timeline(cycle)

    assert [(e.kind, e.name, e.detail) for e in entries] == [
        ("cycle.opened", "timeline-q", ["buy low"]),
        ("decision", "check price", {"because": "need a quote"}),
        ("tool.started", "quote", {"symbol": "ETH"}),
        ("tool.succeeded", "quote", {"usd": 3000}),
        ("cycle.closed", "timeline-q", {"held": True}),
    ]


def test_tool_calls_of_a_cycle_carry_their_outcome(database: Database) -> None:
    planning = PlanningLog(database, agent="calls-of-a-cycle")
    cycle = planning.open_cycle(["g"])
    tools = ToolCallLog(database)
    with tools.record("fetch", {"url": "x"}, cycle_id=cycle) as ok:
        ok.succeed({"bytes": 3})
    failing = tools.start("fetch", {"url": "y"}, cycle_id=cycle)
    tools.record_completion(failing, "failed", error="TimeoutError: slow")
    running = tools.start("fetch", {"url": "z"}, cycle_id=cycle)
    with tools.record("outside", {}) as elsewhere:  # no cycle: not listed
        elsewhere.succeed(None)

    calls = AuditQueries(database).tool_calls(cycle_id=cycle)

    assert [(c.id, c.status, c.input, c.output, c.error) for c in calls] == [
        (running.id, "started", {"url": "z"}, None, None),
        (failing.id, "failed", {"url": "y"}, None, "TimeoutError: slow"),
        (ok.id, "succeeded", {"url": "x"}, {"bytes": 3}, None),
    ]
    assert calls[-1].duration_ms is not None and calls[-1].ended_at is not None
    assert calls[0].ended_at is None


def test_tool_calls_in_one_status_leave_out_the_others(database: Database) -> None:
    tools = ToolCallLog(database)
    failed = tools.start("status-filtered", {})
    tools.record_completion(failed, "failed", error="boom")
    with tools.record("status-filtered", {}) as succeeded:
        succeeded.succeed(1)

    listed = AuditQueries(database).tool_calls(tool_name="status-filtered", status="failed")

    assert [c.id for c in listed] == [failed.id]


def test_a_cycle_copied_into_an_inheritance_child_is_not_read(
    isolated_database: Database, isolated_database_url: str
) -> None:
    [cycle] = closed_cycles(isolated_database, "inherited", 1)
    copy = uuid.uuid4()
    with superuser_without_triggers(isolated_database_url) as conn:
        conn.execute("CREATE TABLE public.planning_cycles_archive () INHERITS (public.planning_cycles)")
        conn.execute(
            "INSERT INTO public.planning_cycles_archive (id, agent, status, goals, created_at) "
            "SELECT %s, agent, status, goals, created_at + interval '1 second' FROM ONLY public.planning_cycles "
            "WHERE id = %s",
            (copy, cycle),
        )
        conn.execute(
            "INSERT INTO public.planning_cycles_archive (id, parent_id, agent, status, outcomes, created_at) "
            "VALUES (%s, %s, 'inherited', 'failed', '{\"forged\": true}', now())",
            (uuid.uuid4(), cycle),
        )
    queries = AuditQueries(isolated_database)

    assert [c.id for c in queries.cycles(agent="inherited")] == [cycle]
    assert queries.cycle(copy) is None
    summary = queries.cycle(cycle)
    # The copy is never read; the child itself (verify's catalog check names it) makes every read unverifiable.
    assert summary is not None and summary.outcomes is None and "planning_cycles_archive" in (summary.why or "")
    assert [e.integrity for e in queries.timeline(cycle)] == ["unverifiable", "unverifiable"]


def test_a_tool_call_copied_into_an_inheritance_child_is_not_read(
    isolated_database: Database, isolated_database_url: str
) -> None:
    with ToolCallLog(isolated_database).record("inherited-call", {}) as call:
        call.succeed(1)
    with superuser_without_triggers(isolated_database_url) as conn:
        conn.execute("CREATE TABLE public.tool_calls_archive () INHERITS (public.tool_calls)")
        conn.execute(
            "INSERT INTO public.tool_calls_archive (id, tool_name, status, input, created_at) "
            "VALUES (%s, 'inherited-call', 'started', '{}', now())",
            (uuid.uuid4(),),
        )

    listed = AuditQueries(isolated_database).tool_calls(tool_name="inherited-call")

    assert [(c.id, c.integrity) for c in listed] == [(call.id, "unverifiable")]  # the child makes reads unverifiable
    assert "tool_calls_archive" in (listed[0].why or "")


def test_a_cursor_read_back_from_its_text_is_the_same_cursor() -> None:
    cursor = Cursor(SAME_INSTANT, uuid.uuid4())

    assert Cursor.parse(str(cursor)) == cursor


@pytest.mark.parametrize(
    "text",
    ["", "not a cursor", "2026-01-02T03:04:05~00000000-0000-0000-0000-000000000001", "2026-01-02T03:04:05Z~x"],
    ids=["empty", "no-separator", "no-time-zone", "not-a-uuid"],
)
def test_a_cursor_text_that_was_not_made_by_a_cursor_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Cursor.parse(text)
