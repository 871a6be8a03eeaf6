"""`jarvis mcp serve`: the agent's tools over MCP, reached by the MCP SDK's own client; every call recorded."""

from __future__ import annotations

import json
import socket
import subprocess
from typing import Any

import anyio
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from jarvis_testkit import tamper
from jarvis_testkit.mcp_parties import CLIENT, completions_by_start, jarvis_command, jarvis_environment, serve_session
from jarvis_testkit.processes import wait_for

pytestmark = pytest.mark.anyio
DEADLINE = 120.0


def answer(result: Any) -> Any:
    assert not result.is_error, result.content
    (block,) = result.content
    return json.loads(block.text)


def error_text(result: Any) -> str:
    assert result.is_error
    (block,) = result.content
    text: str = block.text
    return text


async def test_every_tool_answers_and_every_call_is_recorded_in_the_session_s_cycle(
    isolated_database_url: str,
) -> None:
    url = isolated_database_url
    with anyio.fail_after(DEADLINE):
        async with serve_session(url) as session:
            listed = {tool.name for tool in (await session.list_tools()).tools}
            first = answer(await session.call_tool("set_state", {"key": "wallet.usd", "value": 12.5}))
            second = answer(
                await session.call_tool("set_state", {"key": "wallet.usd", "value": 13, "expected_version": 1})
            )
            read = answer(await session.call_tool("get_state", {"key": "wallet.usd"}))
            fact = answer(await session.call_tool("remember", {"subject": "chain", "body": {"chain": "ethereum"}}))
            found = answer(await session.call_tool("recall", {"contains": {"chain": "ethereum"}}))
            stale = answer(await session.call_tool("mark_stale", {"subject": "chain"}))
            after = answer(await session.call_tool("recall", {"subject": "chain"}))
            shown = answer(await session.call_tool("show_cycle", {"cycle": "last"}))
            verified = answer(await session.call_tool("verify", {}))
    assert listed == {"get_state", "set_state", "remember", "recall", "mark_stale", "show_cycle", "verify"}
    assert (first, second, read) == ({"version": 1}, {"version": 2}, {"value": 13, "version": 2})
    assert [f["id"] for f in found] == [fact["fact_id"]]
    assert (stale, after) == ({"marked_stale": 1}, [])
    assert shown["cycle"]["goals"]["client"] == {"name": CLIENT.name, "version": CLIENT.version}
    assert [e["name"] for e in shown["timeline"] if e["kind"] == "tool.started"][:2] == ["set_state", "set_state"]
    assert verified["ok"] is True, verified

    calls = tamper.rows(url, "tool_calls")
    starts = [row for row in calls if row["parent_id"] is None]
    assert [row["tool_name"] for row in starts] == [
        "set_state",
        "set_state",
        "get_state",
        "remember",
        "recall",
        "mark_stale",
        "recall",
        "show_cycle",
        "verify",
    ]
    assert starts[1]["input"] == {"key": "wallet.usd", "value": 13, "expected_version": 1}
    outcomes = completions_by_start(calls)
    assert {outcomes[row["id"]]["status"] for row in starts} == {"succeeded"}
    (cycle,) = (row for row in tamper.rows(url, "planning_cycles") if row["parent_id"] is None)
    assert {row["cycle_id"] for row in starts} == {cycle["id"]}
    closed = completions_by_start(tamper.rows(url, "planning_cycles"))[cycle["id"]]
    assert (closed["status"], closed["outcomes"]["calls"]) == ("succeeded", 9)


async def test_bad_input_is_a_one_line_tool_error_and_nothing_is_recorded(isolated_database_url: str) -> None:
    url = isolated_database_url
    with anyio.fail_after(DEADLINE):
        async with serve_session(url) as session:
            result = await session.call_tool("set_state", {"key": "", "value": 1, "expected_version": -1})
    text = error_text(result)
    assert "\n" not in text and "Traceback" not in text
    assert "key" in text and "expected_version" in text
    assert tamper.rows(url, "tool_calls") == []


async def test_a_version_conflict_is_a_one_line_tool_error_and_a_failed_call(isolated_database_url: str) -> None:
    url = isolated_database_url
    with anyio.fail_after(DEADLINE):
        async with serve_session(url) as session:
            answer(await session.call_tool("set_state", {"key": "k", "value": 1}))
            result = await session.call_tool("set_state", {"key": "k", "value": 2, "expected_version": 7})
    text = error_text(result)
    assert "\n" not in text and "Traceback" not in text and "version" in text
    calls = tamper.rows(url, "tool_calls")
    statuses = [row["status"] for row in calls if row["parent_id"] is not None]
    assert statuses == ["succeeded", "failed"]


async def test_an_unknown_cycle_is_a_one_line_tool_error(isolated_database_url: str) -> None:
    with anyio.fail_after(DEADLINE):
        async with serve_session(isolated_database_url) as session:
            result = await session.call_tool("show_cycle", {"cycle": "not-a-uuid"})
    text = error_text(result)
    assert "\n" not in text and "cycle" in text


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def test_streamable_http_on_loopback_serves_and_records_the_session(isolated_database_url: str) -> None:
    url = isolated_database_url
    port = free_port()
    server = subprocess.Popen(
        jarvis_command("mcp", "serve", "--http", "--port", str(port)),
        env=jarvis_environment(url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: accepts(port), what="the HTTP server to listen", process=server, timeout=DEADLINE)
        with anyio.fail_after(DEADLINE):
            async with (
                streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write),
                ClientSession(read, write, client_info=CLIENT) as session,
            ):
                await session.initialize()
                written = answer(await session.call_tool("set_state", {"key": "over-http", "value": True}))
    finally:
        server.terminate()
        out, err = server.communicate(timeout=60)
    assert written == {"version": 1}
    assert server.returncode in (0, 143), err
    (start,) = (row for row in tamper.rows(url, "tool_calls") if row["parent_id"] is None)
    assert start["tool_name"] == "set_state"
    (cycle,) = (row for row in tamper.rows(url, "planning_cycles") if row["parent_id"] is None)
    assert cycle["goals"]["transport"] == "http" and cycle["goals"]["client"]["name"] == CLIENT.name
    assert completions_by_start(tamper.rows(url, "planning_cycles"))[cycle["id"]]["status"] == "succeeded"
