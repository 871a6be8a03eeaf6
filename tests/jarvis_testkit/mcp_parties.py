"""The parties of the MCP tests (tests/mcp): `jarvis mcp …` started as an MCP client starts a server.

The subprocess finds the code under Pants too: `sys.executable -m jarvis.cli.main` with PYTHONPATH from sys.path.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp_types import Implementation

CLIENT = Implementation(name="jarvis-tests", version="9.9")


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
