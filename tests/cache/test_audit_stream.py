"""The live audit stream: committed rows only, no payloads, and readers that resume without gaps."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from jarvis.cache import AuditStream, RedisLink, StreamReader, namespace_for
from jarvis.cli.main import app
from jarvis.db import Database
from jarvis.db.audit import PlanningLog, ToolCallAlreadyCompletedError, ToolCallLog


@pytest.fixture
def link(redis_url: str, isolated_database: Database) -> RedisLink:
    return RedisLink(redis_url, namespace=namespace_for(isolated_database.url))


@pytest.fixture
def tools(isolated_database: Database, link: RedisLink) -> ToolCallLog:
    return ToolCallLog(isolated_database, listeners=[AuditStream(link).publish])


def test_each_committed_append_is_published_without_payload(tools: ToolCallLog, link: RedisLink) -> None:
    reader = StreamReader(link, last_id="0-0")
    with tools.record("quote", {"secret": "api-key-123"}) as call:
        call.succeed({"usd": 1})
    events = reader.read(block_ms=100)
    assert [(e.fields["kind"], e.fields["tool_name"]) for e in events] == [
        ("tool_call.started", "quote"),
        ("tool_call.succeeded", "quote"),
    ]
    assert events[1].fields["parent_id"] == str(call.id)
    assert all("api-key-123" not in json.dumps(e.fields) for e in events)


def test_a_refused_append_is_never_published(tools: ToolCallLog, link: RedisLink) -> None:
    start = tools.start("once", {})
    tools.record_completion(start, "succeeded")
    reader = StreamReader(link)
    reader.start_from_latest()
    with pytest.raises(ToolCallAlreadyCompletedError):
        tools.record_completion(start, "failed")
    assert reader.read(block_ms=100) == []


def test_a_reader_resumes_from_its_last_id_without_gaps_or_repeats(tools: ToolCallLog, link: RedisLink) -> None:
    first_reader = StreamReader(link, last_id="0-0")
    for i in range(3):
        tools.start("batch", {"i": i})
    seen = [e.fields["row_id"] for e in first_reader.read(block_ms=100)]
    for i in range(3, 7):
        tools.start("batch", {"i": i})
    resumed = StreamReader(link, last_id=first_reader.last_id)  # e.g. after a reconnect
    seen += [e.fields["row_id"] for e in resumed.read(block_ms=100)]
    assert len(seen) == 7 and len(set(seen)) == 7


def test_a_reader_that_fell_behind_a_trimmed_stream_is_told(isolated_database: Database, link: RedisLink) -> None:
    tools = ToolCallLog(isolated_database, listeners=[AuditStream(link, maxlen=2).publish])
    reader = StreamReader(link, last_id="0-0")
    tools.start("old", {})
    reader.read(block_ms=100)
    link.client.xtrim(link.key("audit"), maxlen=0)
    for i in range(5):
        tools.start("new", {"i": i})
    link.client.xtrim(link.key("audit"), maxlen=2)
    assert reader.trimmed_past_position()


def test_cycle_events_are_published(isolated_database: Database, link: RedisLink) -> None:
    planning = PlanningLog(isolated_database, agent="streamed", listeners=[AuditStream(link).publish])
    reader = StreamReader(link, last_id="0-0")
    cycle = planning.open_cycle(["g"])
    planning.record_decision(cycle, "d", {})
    planning.close_cycle(cycle, "succeeded", {})
    assert [e.fields["kind"] for e in reader.read(block_ms=100)] == ["cycle.opened", "decision", "cycle.succeeded"]


def test_cli_tail_reads_the_stream(
    isolated_database_url: str, isolated_database: Database, redis_url: str, tools: ToolCallLog
) -> None:
    with tools.record("tailed", {}) as call:
        call.succeed(None)
    result = CliRunner().invoke(
        app,
        ["audit", "tail", "--no-follow", "--json", "--interval", "0.1"],
        env={"DATABASE_URL": isolated_database_url, "REDIS_URL": redis_url},
    )
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 0 and [e["kind"] for e in events] == ["tool_call.started", "tool_call.succeeded"]
