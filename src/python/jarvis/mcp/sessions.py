"""What `jarvis mcp serve` and `jarvis mcp proxy` share: one agent per process, one planning cycle per client session.

The database work is the synchronous library API (Agent, ToolCallLog, PlanningLog). The MCP side
runs on an event loop and calls everything here from worker threads (`anyio.to_thread.run_sync`),
so a slow PostgreSQL never blocks the loop that relays messages.

Names. Each process is an agent of its own, `mcp-<kind>:<label>#<12 hex digits>`, unique per
process: two proxies of the same server (two client windows) run side by side, and the database
still allows one live process per agent name and one open cycle per agent. A client session's cycle
is recorded under `<process agent>/<n>` (several sessions share one HTTP server). The process holds
its agent's lease while it runs (renewed by a heartbeat); so at start-up, the open cycles and tool
calls of MCP sessions whose process's lease has expired or was released are work of a dead process
(killed with -9, or its machine lost, at least JARVIS_LEASE_TTL ago): they are closed as `abandoned`
with the library's dangling-work machinery.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from typing import Any, Literal

from jarvis.agent.runtime import Agent
from jarvis.config import Settings
from jarvis.db import open_database
from jarvis.db.audit import (
    CycleClosedError,
    DanglingStart,
    PlanningLog,
    ToolCallAlreadyCompletedError,
    close_dangling,
    find_dangling,
    uuid7,
)
from jarvis.db.audit.dangling import running_agents
from jarvis.db.migrate import require_head

Kind = Literal["serve", "proxy"]

PROCESS_AGENT = re.compile(r"^mcp-(?:serve|proxy):.*#[0-9a-f]{12}$", re.DOTALL)
"""The agent name of one MCP process (see the module docstring)."""

MAX_LABEL = 150
"""Characters of the label kept in an agent name (the database allows 200 for the whole name)."""


def process_agent_name(kind: Kind, label: str) -> str:
    """A name no other process has: `mcp-<kind>:<label>#<12 hex digits>`."""
    label = " ".join(label.split())[:MAX_LABEL] or "-"
    return f"mcp-{kind}:{label}#{uuid7().hex[-12:]}"


def process_of(session_agent: str) -> str | None:
    """The process agent name of a session's agent name (`<process>/<n>`), or None if it is not an MCP session."""
    process, slash, number = session_agent.rpartition("/")
    if not slash or not number.isdigit() or not PROCESS_AGENT.match(process):
        return None
    return process


def start_agent(settings: Settings, kind: Kind, label: str) -> Agent:
    """This process's agent, ready: the database at head (never migrated here), its lease held,
    and the dangling work of dead MCP processes closed as abandoned.
    """
    checked = open_database(settings)
    try:
        require_head(checked)
    finally:
        checked.shutdown()
    agent = Agent.start(settings, name=process_agent_name(kind, label), migrate=False)
    try:
        agent.closed_at_start.extend(close_dead_sessions(agent))
    except BaseException:
        agent.shutdown()
        raise
    return agent


def close_dead_sessions(agent: Agent) -> list[DanglingStart]:
    """Close (as abandoned) the open cycles and tool calls of MCP sessions whose process is gone."""
    sessions = {d.agent for d in find_dangling(agent.database) if d.agent is not None}
    owners = {session: process_of(session) for session in sessions}
    processes = sorted({p for p in owners.values() if p is not None and p != agent.name})
    alive = set(running_agents(agent.database, processes))
    closed: list[DanglingStart] = []
    for session, process in sorted(owners.items()):
        if process is None or process == agent.name or process in alive:
            continue
        for _attempt in range(2):  # another process starting now may close some of them first
            try:
                closed.extend(close_dangling(agent.database, agent=session, listeners=agent.listeners))
                break
            except (ToolCallAlreadyCompletedError, CycleClosedError):
                continue
    return closed


class SessionCycle:
    """One client session's planning cycle: opened at the session's first tool call, with who the client
    is as its goals; closed when the session ends, with how many calls did not succeed.

    Thread-safe: its methods run in worker threads, possibly several at once.
    """

    def __init__(self, agent: Agent, number: int, goals: dict[str, Any]) -> None:
        self.agent = agent
        self.planning = PlanningLog(agent.database, agent=f"{agent.name}/{number}", listeners=agent.listeners)
        self.goals = {**goals, "pid": os.getpid()}
        self.client: dict[str, str | None] | None = None
        self.calls = 0
        self.unsuccessful = 0
        self._id: uuid.UUID | None = None
        self._closed = False
        self._lock = threading.Lock()

    def set_client(self, name: str | None, version: str | None) -> None:
        """Name the client in the goals of the cycle, if it is not open yet.

        Called on the event loop, so it takes no lock (`cycle_id` may hold it through a database write):
        one assignment, read when the cycle opens.
        """
        self.client = {"name": name, "version": version}

    def cycle_id(self) -> uuid.UUID:
        """The session's cycle, opened now if this is its first call."""
        with self._lock:
            if self._closed:
                raise CycleClosedError(f"the session of {self.planning.agent} has ended; its cycle is closed")
            if self._id is None:
                goals = self.goals if self.client is None else {**self.goals, "client": self.client}
                self._id = self.planning.open_cycle(goals)
            return self._id

    def count(self, ok: bool) -> None:
        with self._lock:
            self.calls += 1
            self.unsuccessful += not ok

    def close(self, ended: str, *, failed: bool = False) -> None:
        """Close the cycle (if one was opened): `failed` if asked or if a call did not succeed. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._id is None:
                return
            status: Literal["succeeded", "failed"] = "failed" if failed or self.unsuccessful else "succeeded"
            outcomes = {"calls": self.calls, "unsuccessful_calls": self.unsuccessful, "ended": ended}
            self.planning.close_cycle(self._id, status, outcomes)
        self.agent.seal()
