"""A client that tries to get a tool run past the proxy without a record (a call without an id, a batch, a line the
proxy cannot read but a lax upstream can, keys that differ only by case), or to get an answer the trail does not hold
(a call it cancels, or that timed out, whose answer comes anyway)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from jarvis.mcp.proxy import MAX_NESTING
from jarvis_testkit import tamper
from jarvis_testkit.mcp_parties import (
    INITIALIZE,
    INITIALIZED,
    Conversation,
    call,
    cancel,
    completions_by_start,
    jarvis_command,
    jarvis_environment,
)

DEADLINE = 120.0
HOSTILE = [sys.executable, str(Path(__file__).with_name("hostile_mcp_server.py"))]
"""The upstream: it runs a tools/call sent without an id (and says so), as a lax server might."""


def exchange(database_url: str, messages: list[Any]) -> list[Any]:
    """Send `messages` to a proxy in front of the hostile upstream, close its input, return everything it answered."""
    lines = b"".join(
        message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n" for message in messages
    )
    finished = subprocess.run(
        jarvis_command("mcp", "proxy", "--", *HOSTILE),
        input=lines,
        env=jarvis_environment(database_url),
        capture_output=True,
        timeout=DEADLINE,
    )
    assert finished.returncode == 0, finished.stderr
    return [json.loads(line) for line in finished.stdout.splitlines()]


def test_a_tools_call_without_an_id_is_not_forwarded(isolated_database_url: str) -> None:
    url = isolated_database_url
    unnumbered = {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "echo", "arguments": {"n": 1}}}
    numbered = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"n": 2}}}
    answers = exchange(url, [INITIALIZE, INITIALIZED, unnumbered, numbered])
    assert [answer.get("id") for answer in answers] == [1, 2]  # no notification that the upstream ran it
    starts = [row for row in tamper.rows(url, "tool_calls") if row["parent_id"] is None]
    assert [row["input"] for row in starts] == [{"n": 2}]


def test_a_batch_is_refused_and_none_of_its_calls_is_forwarded(isolated_database_url: str) -> None:
    url = isolated_database_url
    batch = [{"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "echo", "arguments": {}}}]
    answers = exchange(url, [INITIALIZE, INITIALIZED, batch])
    (refusal,) = (answer for answer in answers if answer.get("id") is None)  # the other: initialize's result
    assert "batches" in refusal["error"]["message"]
    assert sorted(answer.get("id") or 0 for answer in answers) == [0, 1]
    assert tamper.rows(url, "tool_calls") == []


def test_a_tools_call_with_invalid_utf8_is_answered_with_a_parse_error_and_not_run(
    isolated_database_url: str, tmp_path: Path
) -> None:
    url, ran = isolated_database_url, tmp_path / "ran"
    ran.touch()
    prefix = json.dumps(call(2, "append", {"path": str(ran), "to": "attacker"}))[:-4].encode()
    line = prefix + b'\xff"}}}\n'  # "to": "attacker\xff": the lax upstream would decode it and run it
    conversation = Conversation(url, HOSTILE)
    conversation.send(INITIALIZE)
    conversation.answer_to(1)
    conversation.send(INITIALIZED)
    conversation.send(line)
    refusal = conversation.answer_to(None)
    conversation.close()
    assert refusal["error"]["code"] == -32700
    assert ran.read_text() == ""
    assert tamper.rows(url, "tool_calls") == []


def test_a_message_with_a_key_that_differs_only_by_case_is_refused(isolated_database_url: str, tmp_path: Path) -> None:
    url, ran = isolated_database_url, tmp_path / "ran"
    ran.touch()
    # A Go upstream matches "Method" to "method" (and keeps the last): it would run the tools/call.
    twofaced = {"jsonrpc": "2.0", "id": 2, "method": "ping", "Method": "tools/call"}
    twofaced["params"] = {"name": "append", "arguments": {"path": str(ran)}}
    answers = exchange(url, [INITIALIZE, INITIALIZED, twofaced])
    (refusal,) = (answer for answer in answers if answer.get("id") is None)
    assert refusal["error"]["code"] == -32600 and "'Method'" in refusal["error"]["message"]
    assert sorted(answer.get("id") or 0 for answer in answers) == [0, 1]  # the refusal and initialize's result
    assert ran.read_text() == ""
    assert tamper.rows(url, "tool_calls") == []


def test_the_upstream_receives_the_proxys_encoding_of_the_recorded_call(
    isolated_database_url: str, tmp_path: Path
) -> None:
    url, ran = isolated_database_url, tmp_path / "ran"
    spaced = (
        '{ "jsonrpc" : "2.0", "id" : 2, "method" : "tools/call", "params" : { "name" : "append", '
        '"arguments" : { "path" : %s, "to" : "\\u00e9v\\u0065", "usd" : 1.50 } } }\n'
    ) % json.dumps(str(ran))
    answers = exchange(url, [INITIALIZE, INITIALIZED, spaced.encode()])
    assert [answer.get("id") for answer in answers] == [1, 2]
    (start,) = (row for row in tamper.rows(url, "tool_calls") if row["parent_id"] is None)
    recorded = {"path": str(ran), "to": "éve", "usd": 1.5}
    assert start["input"] == recorded
    forwarded = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "append", "arguments": recorded}}
    assert ran.read_text(encoding="utf-8") == json.dumps(forwarded, ensure_ascii=False, separators=(",", ":")) + "\n"


def test_an_answer_after_the_client_cancelled_is_recorded_as_the_outcome(isolated_database_url: str) -> None:
    url = isolated_database_url
    conversation = Conversation(url, HOSTILE)
    conversation.send(INITIALIZE)
    conversation.answer_to(1)
    conversation.send(INITIALIZED)
    conversation.send(call(2, "after_cancel", {"n": 2}))
    conversation.send(cancel(2))  # the upstream answers once it sees this: the tool ran
    answer = conversation.answer_to(2)
    conversation.close()
    (start,) = (row for row in tamper.rows(url, "tool_calls") if row["parent_id"] is None)
    outcome = completions_by_start(tamper.rows(url, "tool_calls"))[start["id"]]
    assert outcome["status"] == "succeeded"
    assert outcome["output"] == answer["result"]
    assert "the client cancelled tools/call 'after_cancel': stop, but the upstream answered" in outcome["error"]


def test_a_call_recorded_cancelled_never_reaches_the_client_with_a_result(isolated_database_url: str) -> None:
    url = isolated_database_url
    conversation = Conversation(url, HOSTILE, JARVIS_MCP_CALL_TIMEOUT="1")
    conversation.send(INITIALIZE)
    conversation.answer_to(1)
    conversation.send(INITIALIZED)
    conversation.send(call(2, "hang", {"n": 2}))
    conversation.send(cancel(2))
    conversation.send(call(3, "echo", {"n": 3}))
    conversation.answer_to(3)
    deadline = time.monotonic() + DEADLINE
    while not any(row["status"] == "cancelled" for row in tamper.rows(url, "tool_calls")):  # the grace ends
        assert time.monotonic() < deadline, "the cancelled call was never recorded"
        time.sleep(0.05)
    conversation.close()
    assert [answer.get("id") for answer in conversation.received] == [1, 3]
    statuses = {row["tool_name"]: row["status"] for row in tamper.rows(url, "tool_calls") if row["parent_id"]}
    assert statuses == {"hang": "cancelled", "echo": "succeeded"}


def test_a_late_answer_to_a_call_that_timed_out_is_dropped(isolated_database_url: str) -> None:
    url = isolated_database_url
    conversation = Conversation(url, HOSTILE, JARVIS_MCP_CALL_TIMEOUT="1")
    conversation.send(INITIALIZE)
    conversation.answer_to(1)
    conversation.send(INITIALIZED)
    conversation.send(call(2, "after_cancel", {"n": 2}))  # answers when the proxy, giving up, cancels it
    gave_up = conversation.answer_to(2)
    conversation.send(call(3, "echo", {"n": 3}))  # the upstream answers it after the late answer to 2
    conversation.answer_to(3)
    conversation.close()
    assert "JARVIS_MCP_CALL_TIMEOUT" in gave_up["error"]["message"]
    assert [answer.get("id") for answer in conversation.received] == [1, 2, 3]
    outcomes = {row["tool_name"]: row for row in tamper.rows(url, "tool_calls") if row["parent_id"]}
    assert outcomes["after_cancel"]["status"] == "failed" and outcomes["after_cancel"]["output"] is None


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param('{"path": %s, "nested": ' + deep(MAX_NESTING) + "}", id="nested-too-deep"),
        pytest.param('{"path": %s, "usd": 1, "usd": 9999}', id="duplicate-key"),
        pytest.param('{"path": %s, "usd": NaN}', id="nan"),
        pytest.param('{"path": %s, "usd": 1e999}', id="infinity"),
        pytest.param('{"path": %s, "to": "\\ud800"}', id="lone-surrogate"),
    ],
)
def test_a_tools_call_a_parser_could_read_differently_is_refused_and_not_run(
    isolated_database_url: str, tmp_path: Path, arguments: str
) -> None:
    url, ran = isolated_database_url, tmp_path / "ran"
    ran.touch()
    line = '{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "append", "arguments": %s}}\n' % (
        arguments % json.dumps(str(ran))
    )
    answers = exchange(url, [INITIALIZE, INITIALIZED, line.encode()])
    (refusal,) = (answer for answer in answers if answer.get("id") is None)
    assert refusal["error"]["code"] in (-32700, -32600)
    assert ran.read_text() == ""
    assert tamper.rows(url, "tool_calls") == []


def test_a_tools_call_whose_id_is_a_float_is_refused(isolated_database_url: str, tmp_path: Path) -> None:
    url, ran = isolated_database_url, tmp_path / "ran"
    ran.touch()
    floating = {**call(2, "append", {"path": str(ran)}), "id": 2.0}  # an upstream may answer id 2: unmatched
    answers = exchange(url, [INITIALIZE, INITIALIZED, floating])
    (refusal,) = (answer for answer in answers if answer.get("id") is None)
    assert "string or an integer" in refusal["error"]["message"]
    assert ran.read_text() == ""
    assert tamper.rows(url, "tool_calls") == []
