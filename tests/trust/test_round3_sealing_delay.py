"""Round 3, B7: every audited row is sealed and covered by a signed checkpoint within JARVIS_SEAL_INTERVAL.

The attack: rows written through the library (`ToolCallLog.audited()`, the asyncio API) or an MCP
proxy stayed "waiting to be sealed" until something sealed (a session's end, `verify --seal`); 20 s
after a payment its rows were still open to a superuser's rewrite that no verify could see. Now the
database handle's background sealer seals and signs within the interval without the caller doing
anything. Each test writes rows the way a user does, then waits (with a deadline, polling) for the
witness log to hold a checkpoint at or beyond every one of those rows' chain positions.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import psycopg
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from jarvis.agent.witnessing import verify_trail
from jarvis.config import Settings, load_settings
from jarvis.db import Database, open_database
from jarvis.db.aio import AsyncToolCallLog, open_async_database
from jarvis.db.audit import ToolCallLog
from jarvis.witness import WitnessLog, generate_key
from jarvis_testkit import tamper
from jarvis_testkit.mcp_parties import CLIENT, jarvis_command, jarvis_environment, proxy_session, time_server
from jarvis_testkit.processes import wait_for

INTERVAL = 1.0
DEADLINE = INTERVAL + 30.0
"""Generous for a loaded 2-core machine; the sealer itself needs about INTERVAL plus one seal."""


@pytest.fixture
def sealing(tmp_path: Path, isolated_database_url: str) -> Settings:
    """Default behaviour apart from a short interval: a key and a witness log under tmp_path."""
    key = tmp_path / "keys" / "checkpoint.key"
    generate_key(key)
    return load_settings(
        database_url=isolated_database_url,
        data_dir=tmp_path,
        signing_key=key,
        witness_log=tmp_path / "witness" / "trail.jsonl",
        seal_interval=INTERVAL,
    )


@pytest.fixture
def library(sealing: Settings, isolated_database_url: str) -> Iterator[Database]:
    database = open_database(sealing, url=isolated_database_url)
    yield database
    database.shutdown()


def positions(url: str, ids: list[uuid.UUID]) -> list[int | None]:
    """Each row's chain position (None: not linked yet)."""
    with psycopg.connect(url) as conn:
        linked: dict[uuid.UUID, int] = dict(
            conn.execute("SELECT row_id, seq FROM public.audit_chain WHERE row_id = ANY(%s)", (ids,)).fetchall()
        )
    return [linked.get(row_id) for row_id in ids]


def covered(url: str, settings: Settings, ids: list[uuid.UUID]) -> bool:
    """Every row linked, and a signed checkpoint in the witness log at or beyond the last of them."""
    seqs = positions(url, ids)
    if not ids or any(seq is None for seq in seqs):
        return False
    signed = [entry.seq for entry in WitnessLog(settings.witness_log or Path("-")).entries()]
    return bool(signed) and max(signed) >= max(seq for seq in seqs if seq is not None)


def tool_call_ids(url: str, tool_name: str) -> list[uuid.UUID]:
    return [row["id"] for row in tamper.rows(url, "tool_calls") if row["tool_name"] == tool_name]


def test_rows_written_with_tool_call_log_audited_are_sealed_and_signed_within_the_interval(
    library: Database, sealing: Settings, isolated_database_url: str
) -> None:
    log = ToolCallLog(library)

    @log.audited()
    def transfer(to: str, usd: float) -> dict[str, str]:
        return {"tx": f"{to}:{usd}"}

    for i in range(3):
        transfer("landlord", 100 + i)
    ids = tool_call_ids(isolated_database_url, "transfer")
    assert len(ids) == 6

    wait_for(lambda: covered(isolated_database_url, sealing, ids), timeout=DEADLINE, what="a checkpoint over the rows")
    # Covered means caught: a superuser's consistent rewrite of one of them now contradicts a checkpoint.
    tamper.edit(isolated_database_url, "tool_calls", ids[0], "input", '\'{"args": ["attacker", 1]}\'')
    tamper.recompute_chain(isolated_database_url)
    assert not verify_trail(library, sealing).ok


def test_rows_written_with_the_asyncio_api_are_sealed_and_signed_within_the_interval(
    sealing: Settings, isolated_database_url: str
) -> None:
    async def work() -> None:
        database = await open_async_database(sealing, url=isolated_database_url)
        try:
            log = AsyncToolCallLog(database)

            @log.audited()
            async def transfer(to: str, usd: float) -> dict[str, str]:
                return {"tx": f"{to}:{usd}"}

            for i in range(3):
                await transfer("landlord", 100 + i)
            ids = tool_call_ids(isolated_database_url, "transfer")
            assert len(ids) == 6
            deadline = asyncio.get_running_loop().time() + DEADLINE
            while not await asyncio.to_thread(covered, isolated_database_url, sealing, ids):
                assert asyncio.get_running_loop().time() < deadline, "no checkpoint over the rows in time"
                await asyncio.sleep(0.05)
        finally:
            await database.aclose()

    asyncio.run(work())


def test_rows_appended_just_before_shutdown_are_sealed_and_signed_by_it(
    sealing: Settings, isolated_database_url: str
) -> None:
    settings = sealing.model_copy(update={"seal_interval": 5.0})
    database = open_database(settings, url=isolated_database_url)
    ToolCallLog(database).start("transfer", {"to": "landlord", "usd": 10})
    ToolCallLog(database).start("transfer", {"to": "landlord", "usd": 20})
    database.shutdown()  # what the library user's process does at exit (atexit)

    ids = tool_call_ids(isolated_database_url, "transfer")
    assert covered(isolated_database_url, settings, ids), positions(isolated_database_url, ids)


@pytest.mark.anyio
async def test_a_call_through_mcp_proxy_is_sealed_and_signed_while_the_session_is_open(
    sealing: Settings, isolated_database_url: str
) -> None:
    env = {
        "JARVIS_SEAL_INTERVAL": str(INTERVAL),
        "JARVIS_SIGNING_KEY": str(sealing.signing_key_path()),
        "JARVIS_WITNESS_LOG": str(sealing.witness_log),
    }
    with anyio.fail_after(DEADLINE + 90):
        async with proxy_session(isolated_database_url, time_server(), **env) as session:
            result = await session.call_tool("get_current_time", {"timezone": "UTC"})
            assert not result.is_error
            ids = tool_call_ids(isolated_database_url, "get_current_time")
            assert len(ids) == 2
            deadline = anyio.current_time() + DEADLINE
            while not await anyio.to_thread.run_sync(covered, isolated_database_url, sealing, ids):
                assert anyio.current_time() < deadline, "the proxy's call is not covered while its session is open"
                await anyio.sleep(0.05)


@pytest.mark.anyio
async def test_a_call_to_mcp_serve_over_http_is_sealed_and_signed_while_the_server_runs(
    sealing: Settings, isolated_database_url: str
) -> None:
    env = {
        "JARVIS_SEAL_INTERVAL": str(INTERVAL),
        "JARVIS_SIGNING_KEY": str(sealing.signing_key_path()),
        "JARVIS_WITNESS_LOG": str(sealing.witness_log),
    }
    port = free_port()
    server = subprocess.Popen(
        jarvis_command("mcp", "serve", "--http", "--port", str(port)),
        env=jarvis_environment(isolated_database_url, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: accepts(port), what="the HTTP server to listen", process=server, timeout=DEADLINE + 60)
        with anyio.fail_after(DEADLINE + 60):
            async with (
                streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write),
                ClientSession(read, write, client_info=CLIENT) as session,
            ):
                await session.initialize()
                result = await session.call_tool("set_state", {"key": "paid", "value": True})
                assert not result.is_error
        ids = tool_call_ids(isolated_database_url, "set_state")
        assert len(ids) == 2
        wait_for(
            lambda: covered(isolated_database_url, sealing, ids),
            timeout=DEADLINE,
            what="a checkpoint over the call while the server runs",
            process=server,
        )
    finally:
        server.terminate()
        server.communicate(timeout=60)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
