"""The audit proxy in front of a hostile upstream: whatever the upstream does, the trail says what happened
and the MCP SDK's client gets an answer or a clear error, never silence."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, MCPError, StdioServerParameters, stdio_client

from jarvis_testkit import tamper
from jarvis_testkit.mcp_parties import completions_by_start, proxy_session

pytestmark = pytest.mark.anyio
DEADLINE = 120.0
HOSTILE = [sys.executable, str(Path(__file__).with_name("hostile_mcp_server.py"))]
"""The hostile upstream, written for these tests (raw JSON-RPC, no SDK)."""


def wire(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def the_call(url: str, tool_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The one start row of `tool_name` and its completion."""
    calls = tamper.rows(url, "tool_calls")
    (start,) = (row for row in calls if row["parent_id"] is None and row["tool_name"] == tool_name)
    return start, completions_by_start(calls)[start["id"]]


async def test_resources_and_prompts_pass_through_unchanged_and_are_not_recorded(isolated_database_url: str) -> None:
    url = isolated_database_url
    with anyio.fail_after(DEADLINE):
        direct = StdioServerParameters(command=HOSTILE[0], args=HOSTILE[1:])
        async with stdio_client(direct) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            expected = (wire(await session.list_resources()), wire(await session.list_prompts()))
        async with proxy_session(url, HOSTILE) as session:
            through_proxy = (wire(await session.list_resources()), wire(await session.list_prompts()))
    assert through_proxy == expected
    assert expected[0]["resources"][0]["uri"] == "hostile://notes"
    assert tamper.rows(url, "tool_calls") == []


async def test_an_answer_over_the_size_cap_is_recorded_failed_and_not_passed_on(isolated_database_url: str) -> None:
    url = isolated_database_url
    with anyio.fail_after(DEADLINE):
        async with proxy_session(url, HOSTILE, JARVIS_MAX_VALUE_BYTES="4096") as session:
            with pytest.raises(MCPError) as refused:
                await session.call_tool("huge", {"size": 100_000})
            still_working = await session.call_tool("echo", {"after": "huge"})
    assert "JARVIS_MAX_VALUE_BYTES" in refused.value.message
    assert "\n" not in refused.value.message
    start, outcome = the_call(url, "huge")
    assert start["input"] == {"size": 100_000}
    assert outcome["status"] == "failed"
    assert outcome["output"] is None
    assert "was not passed on" in outcome["error"] and "JARVIS_MAX_VALUE_BYTES" in outcome["error"]
    assert not still_working.is_error


async def test_arguments_over_the_size_cap_are_not_forwarded(isolated_database_url: str) -> None:
    url = isolated_database_url
    with anyio.fail_after(DEADLINE):
        async with proxy_session(url, HOSTILE, JARVIS_MAX_VALUE_BYTES="4096") as session:
            with pytest.raises(MCPError) as refused:
                await session.call_tool("echo", {"blob": "y" * 10_000})
    assert "did not forward" in refused.value.message and "JARVIS_MAX_VALUE_BYTES" in refused.value.message
    assert tamper.rows(url, "tool_calls") == []


async def test_an_invalid_json_rpc_response_is_recorded_failed(isolated_database_url: str) -> None:
    url = isolated_database_url
    with anyio.fail_after(DEADLINE):
        async with proxy_session(url, HOSTILE) as session:
            with pytest.raises(MCPError) as refused:
                await session.call_tool("invalid", {})
    assert "invalid JSON-RPC response" in refused.value.message
    _, outcome = the_call(url, "invalid")
    assert outcome["status"] == "failed"
    assert "neither result nor error" in outcome["error"]


async def test_a_json_rpc_error_is_recorded_failed_and_passed_on(isolated_database_url: str) -> None:
    url = isolated_database_url
    with anyio.fail_after(DEADLINE):
        async with proxy_session(url, HOSTILE) as session:
            with pytest.raises(MCPError) as refused:
                await session.call_tool("no_such_tool", {"n": 1})
    assert refused.value.message == "unknown tool no_such_tool"
    start, outcome = the_call(url, "no_such_tool")
    assert start["input"] == {"n": 1}
    assert outcome["status"] == "failed"
    assert outcome["error"] == "JSON-RPC error -32602: unknown tool no_such_tool"


async def test_a_line_that_is_not_json_is_dropped_and_the_answer_after_it_arrives(isolated_database_url: str) -> None:
    url = isolated_database_url
    with anyio.fail_after(DEADLINE):
        async with proxy_session(url, HOSTILE) as session:
            result = await session.call_tool("garbage", {})
    assert not result.is_error
    assert [block.model_dump(exclude_none=True) for block in result.content] == [
        {"type": "text", "text": "after the garbage"}
    ]
    assert the_call(url, "garbage")[1]["status"] == "succeeded"


async def test_an_is_error_result_is_recorded_failed_and_passed_on(isolated_database_url: str) -> None:
    url = isolated_database_url
    with anyio.fail_after(DEADLINE):
        async with proxy_session(url, HOSTILE) as session:
            result = await session.call_tool("fail", {"why": "on purpose"})
    assert result.is_error
    _, outcome = the_call(url, "fail")
    assert outcome["status"] == "failed"
    assert outcome["error"] == "the tool failed on purpose"
    assert outcome["output"]["isError"] is True


async def test_no_answer_within_the_call_timeout_is_recorded_failed_naming_the_setting(
    isolated_database_url: str,
) -> None:
    url = isolated_database_url
    with anyio.fail_after(DEADLINE):
        async with proxy_session(url, HOSTILE, JARVIS_MCP_CALL_TIMEOUT="5") as session:
            with pytest.raises(MCPError) as gave_up:
                await session.call_tool("hang", {"forever": True})
            still_working = await session.call_tool("echo", {"after": "hang"})
    assert "JARVIS_MCP_CALL_TIMEOUT" in gave_up.value.message
    start, outcome = the_call(url, "hang")
    assert start["input"] == {"forever": True}
    assert outcome["status"] == "failed"
    assert "within 5 s" in outcome["error"] and "JARVIS_MCP_CALL_TIMEOUT" in outcome["error"]
    assert not still_working.is_error


async def test_a_call_the_client_gives_up_on_is_recorded_cancelled(isolated_database_url: str) -> None:
    url = isolated_database_url
    with anyio.fail_after(DEADLINE):
        async with proxy_session(url, HOSTILE) as session:
            with anyio.move_on_after(2) as gave_up:  # the SDK sends notifications/cancelled when a call is abandoned
                await session.call_tool("hang", {"until": "cancelled"})
            still_working = await session.call_tool("echo", {"after": "cancel"})
    assert gave_up.cancelled_caught
    assert not still_working.is_error
    _, outcome = the_call(url, "hang")
    assert outcome["status"] == "cancelled"
    assert outcome["error"].startswith("the client cancelled tools/call 'hang'")


async def test_an_upstream_that_exits_mid_call_is_recorded_abandoned_and_the_client_told(
    isolated_database_url: str,
) -> None:
    url = isolated_database_url
    with anyio.fail_after(DEADLINE):
        async with proxy_session(url, HOSTILE) as session:
            with pytest.raises(MCPError) as lost:
                await session.call_tool("exit", {"code": 3})
    assert "exited (code 3) before answering" in lost.value.message
    _, outcome = the_call(url, "exit")
    assert outcome["status"] == "abandoned"
    assert "exited (code 3)" in outcome["error"]
    cycles = tamper.rows(url, "planning_cycles")
    (closed,) = (row for row in cycles if row["parent_id"] is not None)
    assert closed["status"] == "failed"
    assert "exited (code 3)" in closed["outcomes"]["ended"]


async def test_the_recorded_upstream_command_masks_a_password_in_a_url(isolated_database_url: str) -> None:
    url = isolated_database_url
    with anyio.fail_after(DEADLINE):
        async with proxy_session(url, [*HOSTILE, "postgresql://app:s3cret-pw@db:5432/x"]) as session:
            await session.call_tool("echo", {})
    (cycle,) = (row for row in tamper.rows(url, "planning_cycles") if row["parent_id"] is None)
    assert cycle["goals"]["upstream"][:2] == HOSTILE
    assert "s3cret-pw" not in str(cycle["goals"]) and "s3cret-pw" not in cycle["agent"]
    assert "postgresql://app:" in cycle["goals"]["upstream"][2]
