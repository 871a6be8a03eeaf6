"""The same behaviours, asserted against the sync API and its asyncio twin (jarvis.db.aio) alike."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from jarvis.db import (
    Database,
    InvalidJsonError,
    InvalidKeyError,
    RuntimeDDLError,
    StateConflictError,
    TableConflictError,
)
from jarvis.db.audit import CycleAlreadyOpenError, CycleClosedError, ToolCallAlreadyCompletedError
from jarvis_testkit.both_apis import Api, run

pytestmark = pytest.mark.anyio


def rows_of(database: Database, start_id: uuid.UUID) -> list[dict[str, object]]:
    with database.connect() as conn:
        result = conn.execute(
            text("SELECT * FROM tool_calls WHERE id = :id OR parent_id = :id ORDER BY created_at"), {"id": start_id}
        )
        return [dict(row) for row in result.mappings()]


async def test_start_commits_a_started_row_with_the_input(api: Api, database: Database) -> None:
    start = await run(api.tool_calls.start("probe", {"q": api.flavour}))
    [row] = rows_of(database, start.id)
    assert (row["status"], row["tool_name"], row["input"]) == ("started", "probe", {"q": api.flavour})


async def test_completion_appends_a_second_row_linked_to_the_start(api: Api, database: Database) -> None:
    start = await run(api.tool_calls.start("probe", {}))
    done_id = await run(api.tool_calls.record_completion(start, "succeeded", output={"answer": 42}))
    started, done = rows_of(database, start.id)
    assert started["status"] == "started"
    assert (done["id"], done["parent_id"], done["status"], done["output"]) == (
        done_id,
        start.id,
        "succeeded",
        {"answer": 42},
    )
    assert isinstance(done["duration_ms"], int) and done["duration_ms"] >= 0


async def test_a_second_completion_is_refused(api: Api) -> None:
    start = await run(api.tool_calls.start("once", {}))
    await run(api.tool_calls.record_completion(start, "succeeded", output=1))
    with pytest.raises(ToolCallAlreadyCompletedError, match="already has an outcome"):
        await run(api.tool_calls.record_completion(start, "failed", error="late"))


async def test_input_that_is_not_json_is_refused_before_any_row(api: Api, database: Database) -> None:
    with database.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM tool_calls")).scalar()
    with pytest.raises(InvalidJsonError, match="NUL"):
        await run(api.tool_calls.start("nul", {"text": "a\x00"}))
    with database.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM tool_calls")).scalar() == before


async def test_a_cycle_opens_takes_decisions_and_closes(api: Api, database: Database) -> None:
    cycle = await run(api.planning.open_cycle({"goal": api.flavour}))
    decision = await run(api.planning.record_decision(cycle, "look", {"why": "test"}))
    closed = await run(api.planning.close_cycle(cycle, "succeeded", {"done": True}))
    with database.connect() as conn:
        statuses = (
            conn.execute(
                text("SELECT status FROM planning_cycles WHERE id IN (:a, :b) ORDER BY created_at"),
                {"a": cycle, "b": closed},
            )
            .scalars()
            .all()
        )
        decided = conn.execute(text("SELECT cycle_id FROM decision_log WHERE id = :id"), {"id": decision}).scalar()
    assert statuses == ["started", "succeeded"] and decided == cycle


async def test_an_agent_has_one_open_cycle_at_a_time(api: Api) -> None:
    first = await run(api.planning.open_cycle({"n": 1}))
    with pytest.raises(CycleAlreadyOpenError, match=str(first)):
        await run(api.planning.open_cycle({"n": 2}))
    await run(api.planning.close_cycle(first))
    second = await run(api.planning.open_cycle({"n": 3}))
    await run(api.planning.close_cycle(second))


async def test_a_closed_cycle_refuses_decisions_and_a_second_close(api: Api) -> None:
    cycle = await run(api.planning.open_cycle(None))
    await run(api.planning.close_cycle(cycle))
    with pytest.raises(CycleClosedError):
        await run(api.planning.record_decision(cycle, "late", {}))
    with pytest.raises(CycleClosedError):
        await run(api.planning.close_cycle(cycle, "failed"))


async def test_state_set_and_get_round_trip_with_versions(api: Api) -> None:
    key = f"{api.flavour}.wallet"
    first = await run(api.state.set(key, {"usd": 1}))
    second = await run(api.state.set(key, {"usd": 2}))
    got = await run(api.state.get(key))
    assert (first.version, second.version) == (1, 2)
    assert (got.value, got.version) == ({"usd": 2}, 2)
    assert await run(api.state.get(f"{api.flavour}.missing")) is None


async def test_state_set_with_a_stale_expected_version_is_a_conflict(api: Api) -> None:
    key = f"{api.flavour}.cas"
    await run(api.state.set(key, 1, expected_version=0))
    await run(api.state.set(key, 2, expected_version=1))
    with pytest.raises(StateConflictError, match="expected version 1 but found version 2") as info:
        await run(api.state.set(key, 3, expected_version=1))
    assert (info.value.expected, info.value.actual) == (1, 2)
    assert (await run(api.state.get(key))).value == 2


async def test_state_create_only_refuses_an_existing_key(api: Api) -> None:
    key = f"{api.flavour}.once"
    await run(api.state.set(key, "a", expected_version=0))
    with pytest.raises(StateConflictError, match="found version 1"):
        await run(api.state.set(key, "b", expected_version=0))


async def test_state_delete_and_list(api: Api) -> None:
    prefix = f"{api.flavour}.list."
    for name in ("b", "a"):
        await run(api.state.set(prefix + name, name))
    assert [entry.key for entry in await run(api.state.list(prefix))] == [prefix + "a", prefix + "b"]
    assert await run(api.state.delete(prefix + "a")) is True
    assert await run(api.state.delete(prefix + "a")) is False
    with pytest.raises(StateConflictError):
        await run(api.state.delete(prefix + "b", expected_version=7))


async def test_state_refuses_an_empty_key(api: Api) -> None:
    with pytest.raises(InvalidKeyError):
        await run(api.state.set("", 1))


async def test_memory_remembers_searches_and_marks_stale(api: Api) -> None:
    subject = f"{api.flavour}-token"
    old = await run(api.memory.add(subject, {"chain": "ethereum", "price": 1}))
    new = await run(api.memory.add(subject, {"chain": "ethereum", "price": 2}))
    await run(api.memory.add(f"{api.flavour}-other", {"chain": "solana"}))
    found = await run(api.memory.search({"chain": "ethereum"}, subject=subject))
    assert [fact.id for fact in found] == [new.id, old.id]
    assert await run(api.memory.mark_stale(fact_id=old.id)) == 1
    assert [fact.id for fact in await run(api.memory.about(subject))] == [new.id]
    assert [fact.id for fact in await run(api.memory.about(subject, include_stale=True))] == [new.id, old.id]
    assert await run(api.memory.mark_stale(subject=subject)) == 1


async def test_memory_search_takes_a_json_object_only(api: Api) -> None:
    with pytest.raises(InvalidJsonError, match="JSON object"):
        await run(api.memory.search(["not", "an", "object"]))


async def test_runtime_ddl_creates_a_table_the_agent_can_fill_and_read(api: Api) -> None:
    table = f"{api.flavour}_trades"
    created = await run(api.schema.create_table(table, {"symbol": "text", "qty": "numeric", "meta": "jsonb"}))
    row_id = await run(api.schema.insert_row(table, {"symbol": "ETH", "qty": 2, "meta": {"venue": "dex"}}))
    rows = await run(api.schema.rows(table))
    assert created.created and table in await run(api.schema.tables())
    assert [(r["id"], r["symbol"], r["qty"], r["meta"]) for r in rows] == [(row_id, "ETH", 2, {"venue": "dex"})]
    assert (
        await run(api.schema.create_table(table, {"symbol": "text", "qty": "numeric", "meta": "jsonb"}))
    ).created is False


async def test_runtime_ddl_refuses_a_conflicting_definition(api: Api) -> None:
    table = f"{api.flavour}_prices"
    await run(api.schema.create_table(table, {"usd": "numeric"}))
    with pytest.raises(TableConflictError, match="already exists"):
        await run(api.schema.create_table(table, {"usd": "text"}))


async def test_runtime_ddl_refuses_a_hostile_name_and_an_unknown_column(api: Api) -> None:
    with pytest.raises(RuntimeDDLError):
        await run(api.schema.create_table("x; DROP TABLE tool_calls", {"v": "text"}))
    table = f"{api.flavour}_strict"
    await run(api.schema.create_table(table, {"v": "text"}))
    with pytest.raises(RuntimeDDLError, match="no column"):
        await run(api.schema.insert_row(table, {"w": "1"}))
