"""The audited tool-call API: write-ahead start row, one outcome row, exceptions unchanged."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from jarvis.db import Database, InvalidJsonError
from jarvis.db.audit import AuditEvent, ToolCallAlreadyCompletedError, ToolCallLog, uuid7


@pytest.fixture
def events() -> list[AuditEvent]:
    return []


@pytest.fixture
def log(database: Database, events: list[AuditEvent]) -> ToolCallLog:
    return ToolCallLog(database, listeners=[events.append])


def rows_for(database: Database, start_id: uuid.UUID) -> list[dict[str, object]]:
    with database.connect() as conn:
        result = conn.execute(
            text("SELECT * FROM tool_calls WHERE id = :id OR parent_id = :id ORDER BY created_at"), {"id": start_id}
        )
        return [dict(row) for row in result.mappings()]


def test_start_row_is_committed_before_the_tool_body_runs(log: ToolCallLog, database: Database) -> None:
    with log.record("probe", {"q": 1}) as call:
        # Seen from another connection while the body is still running.
        assert [r["status"] for r in rows_for(database, call.id)] == ["started"]
        call.succeed({"answer": 42})


def test_success_appends_a_succeeded_row_with_output_and_duration(log: ToolCallLog, database: Database) -> None:
    with log.record("probe", {"q": 1}) as call:
        call.succeed({"answer": 42})
    start, done = rows_for(database, call.id)
    assert (start["status"], start["input"], start["output"]) == ("started", {"q": 1}, None)
    assert (done["status"], done["output"], done["parent_id"], done["input"]) == (
        "succeeded",
        {"answer": 42},
        call.id,
        None,
    )
    assert isinstance(done["duration_ms"], int) and done["duration_ms"] >= 0


def test_exception_appends_a_failed_row_and_propagates_unchanged(log: ToolCallLog, database: Database) -> None:
    original = ValueError("bad ticker 'XYZ'")
    with pytest.raises(ValueError) as info:
        with log.record("quote", {"ticker": "XYZ"}) as call:
            raise original
    assert info.value is original
    done = rows_for(database, call.id)[1]
    assert (done["status"], done["error"]) == ("failed", "ValueError: bad ticker 'XYZ'")


def test_keyboard_interrupt_appends_a_cancelled_row(log: ToolCallLog, database: Database) -> None:
    with pytest.raises(KeyboardInterrupt):
        with log.record("slow", {}) as call:
            raise KeyboardInterrupt
    assert rows_for(database, call.id)[1]["status"] == "cancelled"


def test_non_json_output_is_recorded_as_a_failure_not_lost(log: ToolCallLog, database: Database) -> None:
    with pytest.raises(InvalidJsonError):
        with log.record("weird", {}) as call:
            call.succeed({"value": float("nan")})
    done = rows_for(database, call.id)[1]
    assert done["status"] == "failed" and "not a JSON number" in str(done["error"])


def test_non_json_input_is_refused_before_anything_is_written(log: ToolCallLog, database: Database) -> None:
    with database.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM tool_calls")).scalar()
    with pytest.raises(InvalidJsonError, match="NUL"):
        with log.record("nul", {"text": "a\x00"}):
            pytest.fail("the body must not run")
    with database.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM tool_calls")).scalar() == before


def test_decorator_records_arguments_and_result(log: ToolCallLog, database: Database) -> None:
    @log.audited()
    def add(a: int, b: int) -> int:
        return a + b

    assert add(2, b=3) == 5
    with database.connect() as conn:
        start, done = conn.execute(
            text(
                "SELECT s.input, c.output FROM tool_calls s JOIN tool_calls c ON c.parent_id = s.id "
                "WHERE s.tool_name = 'add'"
            )
        ).one()
    assert start == {"args": [2], "kwargs": {"b": 3}} and done == 5


def test_decorator_refuses_an_async_tool_and_points_to_the_async_api(log: ToolCallLog) -> None:
    async def fetch(url: str) -> str:
        return url

    with pytest.raises(TypeError, match=r"fetch is asynchronous.*AsyncToolCallLog\.audited\(\)"):
        log.audited()(fetch)


def test_a_function_returning_a_coroutine_is_recorded_as_failed_not_succeeded(
    log: ToolCallLog, database: Database
) -> None:
    async def later() -> int:
        return 1

    @log.audited("returns_a_coroutine")
    def sneaky() -> object:
        return later()

    with pytest.raises(TypeError, match="asynchronous"):
        sneaky()
    with database.connect() as conn:
        statuses = conn.execute(
            text("SELECT status FROM tool_calls WHERE tool_name = 'returns_a_coroutine' ORDER BY created_at, status")
        ).scalars()
        assert sorted(statuses) == ["failed", "started"]


def test_second_completion_is_refused_with_a_clear_error(log: ToolCallLog) -> None:
    start = log.start("once", {})
    log.record_completion(start, "succeeded", output=1)
    with pytest.raises(ToolCallAlreadyCompletedError, match="already has an outcome"):
        log.record_completion(start, "failed", error="late")


def test_retrying_an_append_with_the_same_id_writes_one_row(log: ToolCallLog, database: Database) -> None:
    call_id = uuid7()
    first = log.start("idempotent", {"n": 1}, call_id=call_id)
    again = log.start("idempotent", {"n": 1}, call_id=call_id)
    assert first.id == again.id
    assert len(rows_for(database, call_id)) == 1


def test_events_are_announced_after_each_append(log: ToolCallLog, events: list[AuditEvent]) -> None:
    with log.record("announced", {}) as call:
        call.succeed(None)
    kinds = [(e.kind, e.tool_name) for e in events if e.tool_name == "announced"]
    assert kinds == [("tool_call.started", "announced"), ("tool_call.succeeded", "announced")]
    assert events[-1].parent_id == call.id


def test_uuid7_ids_are_time_ordered_and_version_7() -> None:
    ids = [uuid7() for _ in range(10_000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(i.version == 7 for i in ids)


def test_an_interruption_right_after_the_start_row_commits_still_records_cancelled(database: Database) -> None:
    """A signal between the start row's commit and the body (here: raised by a listener) is not 'abandoned'."""

    def interrupted(event: AuditEvent) -> None:
        if event.kind == "tool_call.started":
            raise KeyboardInterrupt

    log = ToolCallLog(database, listeners=[interrupted])
    with pytest.raises(KeyboardInterrupt), log.record("transfer", {"usd": 1}):
        pytest.fail("the body must not run")  # pragma: no cover
    with database.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT s.id, c.status FROM tool_calls s JOIN tool_calls c ON c.parent_id = s.id "
                "WHERE s.tool_name = 'transfer' AND s.input = '{\"usd\": 1}'::jsonb"
            )
        ).all()
    assert [row.status for row in rows] == ["cancelled"]
