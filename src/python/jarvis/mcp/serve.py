"""`jarvis mcp serve`: the agent's state, memory and read-only audit queries as MCP tools.

Built on the MCP SDK's low-level `Server` (stdio, or streamable HTTP bound to 127.0.0.1 unless a
non-loopback address is asked for explicitly). The tools are the agent's own registry entries, so
their inputs are validated by the library's pydantic models and every call goes through
`Agent.run_tool`: the start row is committed before the tool runs, the outcome after. Input that
fails validation is refused before anything is recorded, exactly as for a plan step (a malformed
request never enters the trail as if the tool had been attempted). Each client session is one
planning cycle (sessions.py), opened at its first tool call: over stdio it is closed when the client
disconnects; over HTTP (sessions told apart by their `Mcp-Session-Id`), when the server stops.
An error reaches the client as an MCP tool error (`isError`) with the one-line message; never a
traceback.

The library API is synchronous; every call runs in a worker thread (`anyio.to_thread.run_sync`),
so the server's event loop is never blocked on PostgreSQL.
"""

from __future__ import annotations

import itertools
import json
import logging
import socket
import threading
import uuid
from typing import Any, Literal

import anyio.to_thread
import mcp_types as types
import uvicorn
from pydantic import BaseModel

from jarvis.agent.runtime import Agent
from jarvis.agent.witnessing import verify_trail
from jarvis.config import JarvisError
from jarvis.db.audit import AuditQueries
from jarvis.mcp.proxy import one_line
from jarvis.mcp.sessions import SessionCycle
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.stdio import stdio_server

log = logging.getLogger("jarvis.mcp.serve")

SERVED_TOOLS = ("get_state", "set_state", "remember", "recall", "mark_stale", "show_cycle", "verify")
"""The agent's tools offered over MCP: state, memory (recall is the search), and two read-only audit queries."""


class ShowCycleInput(BaseModel):
    cycle: Literal["last"] | uuid.UUID = "last"


class VerifyInput(BaseModel):
    pass


def register_audit_tools(agent: Agent) -> None:
    """Add the read-only audit queries to the agent's tool registry (they are recorded like every tool)."""
    queries = AuditQueries(agent.database)

    def show_cycle(i: ShowCycleInput) -> Any:
        """A planning cycle ('last' or its id) with its timeline: decisions and tool calls in order.

        Each row is a verified read: its "integrity" is "verified", "unsealed", "flagged", "tampered"
        (re-hashed against its chain link as it was read) or "unverifiable" (the server's catalog or
        built-ins were changed; "why" says how); a tampered or unverifiable row carries no values.
        """
        if i.cycle == "last":
            chosen = next(iter(queries.cycles(limit=1)), None)
        else:
            chosen = queries.cycle(i.cycle)
        if chosen is None:
            raise LookupError(f"no planning cycle {i.cycle}")
        entries = queries.timeline(chosen.id)
        return as_json({"cycle": vars(chosen), "timeline": [vars(e) for e in entries]})

    def verify(_: VerifyInput) -> Any:
        """Recompute every hash of the audit trail and check the signed checkpoints (read-only)."""
        report = verify_trail(agent.database, agent.database.settings)
        return {"ok": report.ok, "summary": report.summary(), "rows_checked": report.rows_checked}

    agent.tools.register("show_cycle", ShowCycleInput, show_cycle)
    agent.tools.register("verify", VerifyInput, verify)


def as_json(value: Any) -> Any:
    """Datetimes and UUIDs as strings: what a tool output and an MCP result can hold."""
    return json.loads(json.dumps(value, default=str))


def tool_error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=one_line(message))], is_error=True)


class Sessions:
    """The session cycles of this server, by transport session (one for stdio; one per HTTP session)."""

    def __init__(self, agent: Agent, transport: str) -> None:
        self.agent = agent
        self.transport = transport
        self.by_key: dict[str, SessionCycle] = {}
        self.numbers = itertools.count(1)
        self.lock = threading.Lock()

    def of(self, ctx: ServerRequestContext[Any, Any]) -> SessionCycle:
        headers = getattr(ctx.request, "headers", None)
        # stdio has one session; an HTTP request without a session id (stateless) shares one cycle.
        key = (headers.get("mcp-session-id") if headers is not None else None) or "default"
        with self.lock:
            session = self.by_key.get(key)
            if session is None:
                session = SessionCycle(self.agent, next(self.numbers), {"mcp": "serve", "transport": self.transport})
                self.by_key[key] = session
        params = ctx.session.client_params
        if params is not None:
            session.set_client(params.client_info.name, params.client_info.version)
        return session

    def close_all(self, ended: str) -> None:
        with self.lock:
            sessions = list(self.by_key.values())
        for session in sessions:
            session.close(ended)


def build_server(agent: Agent, sessions: Sessions) -> Server[Any]:
    """The MCP server over `agent`'s tools; `sessions` gives each client session its cycle."""
    register_audit_tools(agent)
    tools = [agent.tools.get(name) for name in SERVED_TOOLS]

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(name=t.name, description=t.description, input_schema=t.input_model.model_json_schema())
                for t in tools
            ]
        )

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        if params.name not in SERVED_TOOLS:
            return tool_error(f"unknown tool {params.name!r}; known tools: {', '.join(SERVED_TOOLS)}")
        session = sessions.of(ctx)

        def run() -> Any:
            return agent.run_tool(params.name, params.arguments, cycle_id=session.cycle_id())

        try:
            step = await anyio.to_thread.run_sync(run)
        except JarvisError as error:  # the trail itself (PostgreSQL unreachable, a refused row)
            return tool_error(str(error))
        except Exception as error:
            log.exception("tool %s failed inside Jarvis", params.name)
            return tool_error(f"{type(error).__name__}: {error}")
        if step.tool_call_id is not None:
            session.count(step.ok)
        if not step.ok:
            return tool_error(step.error or "the tool failed")
        return types.CallToolResult(content=[types.TextContent(text=json.dumps(step.output, ensure_ascii=False))])

    return Server(
        "jarvis",
        instructions="Jarvis: the agent's state, memory and audit trail. Every tool call is recorded, write-ahead.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


async def serve_stdio(agent: Agent) -> None:
    """Serve one client on stdin/stdout until it closes the connection; then close its cycle."""
    sessions = Sessions(agent, "stdio")
    server = build_server(agent, sessions)
    try:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
    finally:
        await anyio.to_thread.run_sync(sessions.close_all, "the client closed the connection")


async def serve_http(agent: Agent, host: str, listener: socket.socket) -> None:
    """Serve streamable HTTP on `listener`, bound to host (path /mcp), until SIGINT/SIGTERM; then close every
    session's cycle. The caller binds it, so a busy port is reported before anything starts.

    On a loopback host the SDK also refuses requests whose Host or Origin is not local (DNS rebinding).
    """
    sessions = Sessions(agent, "http")
    server = build_server(agent, sessions)
    app = server.streamable_http_app(host=host)
    config = uvicorn.Config(app, host=host, port=listener.getsockname()[1], log_level="warning", lifespan="on")
    try:
        await uvicorn.Server(config).serve(sockets=[listener])
    finally:
        await anyio.to_thread.run_sync(sessions.close_all, "the server stopped")
