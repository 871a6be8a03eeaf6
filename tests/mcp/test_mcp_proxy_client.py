"""A client that tries to get a tool run past the proxy without a record: a call without an id, a batch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from jarvis_testkit import tamper
from jarvis_testkit.mcp_parties import jarvis_command, jarvis_environment

DEADLINE = 120.0
HOSTILE = [sys.executable, str(Path(__file__).with_name("hostile_mcp_server.py"))]
"""The upstream: it runs a tools/call sent without an id (and says so), as a lax server might."""

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def exchange(database_url: str, messages: list[Any]) -> list[Any]:
    """Send `messages` to a proxy in front of the hostile upstream, close its input, return everything it answered."""
    lines = "".join(json.dumps(message) + "\n" for message in messages)
    finished = subprocess.run(
        jarvis_command("mcp", "proxy", "--", *HOSTILE),
        input=lines,
        env=jarvis_environment(database_url),
        capture_output=True,
        text=True,
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
