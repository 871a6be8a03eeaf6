"""A proxy killed with -9 in the middle of a call leaves its start row; the next proxy closes it as abandoned."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio

from jarvis.config import load_settings
from jarvis.db import open_database
from jarvis.db.audit.dangling import ABANDONED_REASON, running_agents
from jarvis.mcp.sessions import process_of
from jarvis_testkit import tamper
from jarvis_testkit.mcp_parties import completions_by_start, jarvis_command, jarvis_environment, proxy_session
from jarvis_testkit.processes import wait_for
from jarvis_testkit.trail import seal_and_verify

DEADLINE = 120.0
HOSTILE = [sys.executable, str(Path(__file__).with_name("hostile_mcp_server.py"))]
"""The hostile upstream, written for these tests (raw JSON-RPC, no SDK)."""


def send(process: subprocess.Popen[bytes], message: dict[str, Any]) -> None:
    assert process.stdin is not None
    process.stdin.write(json.dumps(message).encode() + b"\n")
    process.stdin.flush()


def started_hang_call(url: str) -> dict[str, Any] | None:
    return next((r for r in tamper.rows(url, "tool_calls") if r["tool_name"] == "hang"), None)


def test_a_start_left_by_a_proxy_killed_mid_call_is_closed_as_abandoned_at_the_next_start(
    isolated_database_url: str,
) -> None:
    url = isolated_database_url
    victim = subprocess.Popen(
        jarvis_command("mcp", "proxy", "--", *HOSTILE),
        env=jarvis_environment(url, JARVIS_LEASE_TTL="3"),  # its lease outlives the kill by 3 s at most
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        initialize = {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"},
        }
        send(victim, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": initialize})
        send(victim, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        send(victim, {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "hang", "arguments": {}}})
        wait_for(lambda: started_hang_call(url) is not None, what="the hang call's start row", timeout=DEADLINE)
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    start = started_hang_call(url)
    assert start is not None
    assert completions_by_start(tamper.rows(url, "tool_calls")).get(start["id"]) is None  # dangling
    (cycle,) = (row for row in tamper.rows(url, "planning_cycles") if row["parent_id"] is None)
    dead = process_of(cycle["agent"])
    assert dead is not None

    database = open_database(load_settings(database_url=url), url=url)
    try:
        # Nobody renews the killed proxy's lease: it expires JARVIS_LEASE_TTL after its last heartbeat.
        wait_for(
            lambda: not running_agents(database, [dead]), what="the killed proxy's lease to expire", timeout=DEADLINE
        )

        async def next_proxy() -> None:
            with anyio.fail_after(DEADLINE):
                async with proxy_session(url, HOSTILE) as session:
                    await session.list_tools()

        anyio.run(next_proxy)
        abandoned = completions_by_start(tamper.rows(url, "tool_calls"))[start["id"]]
        assert (abandoned["status"], abandoned["error"]) == ("abandoned", ABANDONED_REASON)
        assert completions_by_start(tamper.rows(url, "planning_cycles"))[cycle["id"]]["status"] == "abandoned"
        report = seal_and_verify(database)
    finally:
        database.shutdown()
    assert report.ok, report.summary()
