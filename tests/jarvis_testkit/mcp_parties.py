"""The parties of the MCP tests (tests/mcp): `jarvis mcp …` started as an MCP client starts a server.

The subprocess finds the code under Pants too: `sys.executable -m jarvis.cli.main` with PYTHONPATH from sys.path.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp_types import Implementation

CLIENT = Implementation(name="jarvis-tests", version="9.9")
RAW_DEADLINE = 120.0
"""Seconds a raw `Conversation` waits for an answer."""
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def jarvis_environment(database_url: str, **extra: str) -> dict[str, str]:
    return {
        "PYTHONPATH": os.pathsep.join(sys.path),
        "DATABASE_URL": database_url,
        "REDIS_URL": "",
        "JARVIS_DATA_DIR": os.environ["JARVIS_DATA_DIR"],
        **extra,
    }


def jarvis_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "jarvis.cli.main", *args]


def jarvis_parameters(database_url: str, *args: str, **env: str) -> StdioServerParameters:
    command = jarvis_command(*args)
    return StdioServerParameters(command=command[0], args=command[1:], env=jarvis_environment(database_url, **env))


def time_server() -> list[str]:
    return [sys.executable, "-m", "mcp_server_time", "--local-timezone", "UTC"]


@asynccontextmanager
async def proxy_session(database_url: str, upstream: list[str], **env: str) -> AsyncIterator[ClientSession]:
    """An initialized MCP client session with `jarvis mcp proxy -- UPSTREAM`."""
    parameters = jarvis_parameters(database_url, "mcp", "proxy", "--", *upstream, **env)
    async with stdio_client(parameters) as (read, write), ClientSession(read, write, client_info=CLIENT) as session:
        await session.initialize()
        yield session


@asynccontextmanager
async def serve_session(database_url: str) -> AsyncIterator[ClientSession]:
    """An initialized MCP client session with `jarvis mcp serve` over stdio."""
    parameters = jarvis_parameters(database_url, "mcp", "serve")
    async with stdio_client(parameters) as (read, write), ClientSession(read, write, client_info=CLIENT) as session:
        await session.initialize()
        yield session


def completions_by_start(rows: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """Each completion row of tool_calls or planning_cycles, by the id of its start row."""
    return {row["parent_id"]: row for row in rows if row["parent_id"] is not None}


class Conversation:
    """A raw client of `jarvis mcp proxy -- UPSTREAM`: it writes lines and reads answers as they come."""

    def __init__(self, database_url: str, upstream: list[str], **env: str) -> None:
        self.process = subprocess.Popen(
            jarvis_command("mcp", "proxy", "--", *upstream),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=jarvis_environment(database_url, **env),
        )
        self.received: list[Any] = []

    def send(self, message: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n")
        self.process.stdin.flush()

    def answer_to(self, request_id: Any) -> Any:
        """Read answers until the one to `request_id` (all of them are kept in `received`)."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + RAW_DEADLINE
        while True:
            ready, _, _ = select.select([self.process.stdout], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"no answer to request {request_id} within {RAW_DEADLINE} s; received {self.received}"
            line = self.process.stdout.readline()
            assert line, f"the proxy closed its output before answering request {request_id}"
            self.received.append(json.loads(line))
            if isinstance(self.received[-1], dict) and self.received[-1].get("id") == request_id:
                return self.received[-1]

    def close(self) -> None:
        """Close the proxy's input and keep what it still wrote."""
        stdout, _ = self.process.communicate(timeout=RAW_DEADLINE)
        assert self.process.returncode == 0
        self.received += [json.loads(line) for line in stdout.splitlines()]


def call(request_id: int, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }


def cancel(request_id: int) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": {"requestId": request_id, "reason": "stop"},
    }
