"""The audit proxy between the MCP SDK's own client and the unmodified reference server mcp-server-time."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from jarvis.config import load_settings
from jarvis.db import open_database
from jarvis_testkit import tamper
from jarvis_testkit.mcp_parties import CLIENT, completions_by_start, jarvis_parameters, proxy_session, time_server
from jarvis_testkit.trail import seal_and_verify

pytestmark = pytest.mark.anyio
DEADLINE = 120.0


def wire(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


async def test_the_upstream_s_tools_are_listed_unchanged(migrated_database_url: str) -> None:
    command = time_server()
    with anyio.fail_after(DEADLINE):
        direct = StdioServerParameters(command=command[0], args=command[1:])
        async with stdio_client(direct) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            expected = wire(await session.list_tools())
        async with proxy_session(migrated_database_url, command) as session:
            through_proxy = wire(await session.list_tools())
    assert through_proxy == expected
    assert {tool["name"] for tool in through_proxy["tools"]} >= {"get_current_time", "convert_time"}


async def test_the_upstream_s_handshake_passes_through_unchanged(migrated_database_url: str) -> None:
    command = time_server()
    with anyio.fail_after(DEADLINE):
        direct = StdioServerParameters(command=command[0], args=command[1:])
        async with stdio_client(direct) as (read, write), ClientSession(read, write, client_info=CLIENT) as session:
            expected = wire(await session.initialize())
        parameters = jarvis_parameters(migrated_database_url, "mcp", "proxy", "--", *command)
        async with stdio_client(parameters) as (read, write), ClientSession(read, write, client_info=CLIENT) as session:
            through_proxy = wire(await session.initialize())
    assert through_proxy == expected
    assert through_proxy["serverInfo"]["name"] == "mcp-time"


async def test_the_trail_holds_exactly_the_calls_with_their_arguments_and_results(migrated_database_url: str) -> None:
    url = migrated_database_url
    first_args = {"timezone": "Europe/Warsaw"}
    second_args = {"source_timezone": "UTC", "time": "12:30", "target_timezone": "Asia/Tokyo"}
    with anyio.fail_after(DEADLINE):
        async with proxy_session(url, time_server()) as session:
            await session.list_tools()
            first = await session.call_tool("get_current_time", first_args)
            second = await session.call_tool("convert_time", second_args)
    assert not first.is_error and not second.is_error

    calls = tamper.rows(url, "tool_calls")
    starts = [row for row in calls if row["parent_id"] is None]
    assert [(row["tool_name"], row["input"]) for row in starts] == [
        ("get_current_time", first_args),
        ("convert_time", second_args),
    ]
    outcomes = completions_by_start(calls)
    assert [outcomes[row["id"]]["status"] for row in starts] == ["succeeded", "succeeded"]
    assert [outcomes[row["id"]]["output"]["content"] for row in starts] == [
        wire(first)["content"],
        wire(second)["content"],
    ]
    assert all(outcomes[row["id"]]["duration_ms"] is not None for row in starts)

    cycles = tamper.rows(url, "planning_cycles")
    (cycle,) = (row for row in cycles if row["parent_id"] is None)
    assert {row["cycle_id"] for row in starts} == {cycle["id"]}
    assert cycle["goals"]["client"] == {"name": CLIENT.name, "version": CLIENT.version}
    assert completions_by_start(cycles)[cycle["id"]]["status"] == "succeeded"

    database = open_database(load_settings(database_url=url), url=url)
    try:
        report = seal_and_verify(database)
    finally:
        database.shutdown()
    assert report.ok, report.summary()
