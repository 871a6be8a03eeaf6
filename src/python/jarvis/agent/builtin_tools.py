"""Tools every Jarvis agent has: memory, state, runtime tables, a clock, and two for testing the trail."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from jarvis.agent.tools import ToolRegistry
from jarvis.cache import CachedStateStore
from jarvis.config import JarvisError
from jarvis.db import MemoryStore, RuntimeSchema, StateStore


class RememberInput(BaseModel):
    subject: str = Field(min_length=1, max_length=500)
    body: dict[str, Any]


class RecallInput(BaseModel):
    subject: str | None = None
    contains: dict[str, Any] | None = None
    limit: int = Field(default=10, ge=1, le=1000)


class MarkStaleInput(BaseModel):
    subject: str = Field(min_length=1)


class GetStateInput(BaseModel):
    key: str = Field(min_length=1)


class SetStateInput(BaseModel):
    key: str = Field(min_length=1)
    value: Any
    expected_version: int | None = Field(default=None, ge=0)


class CreateTableInput(BaseModel):
    name: str
    columns: dict[str, str]


class InsertRowInput(BaseModel):
    table: str
    values: dict[str, Any]


class ClockInput(BaseModel):
    pass


class FailInput(BaseModel):
    reason: str = "failing on purpose"


class SleepInput(BaseModel):
    seconds: float = Field(ge=0, le=3600)


class ToolFailedError(JarvisError, RuntimeError):
    """Raised by the `fail` tool: a tool failure the trail must record, not a crash."""


BUILTIN_TOOL_INPUTS: dict[str, type[BaseModel]] = {
    "remember": RememberInput,
    "recall": RecallInput,
    "mark_stale": MarkStaleInput,
    "get_state": GetStateInput,
    "set_state": SetStateInput,
    "create_table": CreateTableInput,
    "insert_row": InsertRowInput,
    "clock": ClockInput,
    "fail": FailInput,
    "sleep": SleepInput,
}
"""Every built-in tool and its input model, usable without a database (to check plan files)."""


def register_builtin_tools(
    registry: ToolRegistry, *, state: StateStore | CachedStateStore, memory: MemoryStore, schema: RuntimeSchema
) -> None:
    """Register the tools every agent has (state, memory, runtime tables, clock...) over these stores."""

    def remember(i: RememberInput) -> Any:
        """Store a fact about a subject."""
        fact = memory.add(i.subject, i.body)
        return {"fact_id": fact.id}

    def recall(i: RecallInput) -> Any:
        """Fresh facts by subject or JSON containment, newest first."""
        if i.contains is not None:
            facts = memory.search(i.contains, limit=i.limit)
        elif i.subject is not None:
            facts = memory.about(i.subject, limit=i.limit)
        else:
            facts = memory.fresh(limit=i.limit)
        return [{"id": f.id, "subject": f.subject, "body": f.body} for f in facts]

    def mark_stale(i: MarkStaleInput) -> Any:
        """Mark every fact about a subject as no longer true."""
        return {"marked_stale": memory.mark_stale(subject=i.subject)}

    def get_state(i: GetStateInput) -> Any:
        """Read a state value."""
        entry = state.get(i.key)
        return None if entry is None else {"value": entry.value, "version": entry.version}

    def set_state(i: SetStateInput) -> Any:
        """Write a state value (compare-and-set with expected_version)."""
        entry = state.set(i.key, i.value, expected_version=i.expected_version)
        return {"version": entry.version}

    def create_table(i: CreateTableInput) -> Any:
        """Create a table at run time (idempotent for an identical definition)."""
        created = schema.create_table(i.name, i.columns)
        return {"table": created.name, "created": created.created}

    def insert_row(i: InsertRowInput) -> Any:
        """Insert a row into a runtime-created table."""
        return {"id": schema.insert_row(i.table, i.values)}

    def clock(_: ClockInput) -> Any:
        """The current time in UTC."""
        return {"utc": datetime.now(UTC).isoformat()}

    def fail(i: FailInput) -> Any:
        """Always fails: shows how a failing tool is recorded."""
        raise ToolFailedError(i.reason)

    def sleep(i: SleepInput) -> Any:
        """Wait, like a slow network call."""
        time.sleep(i.seconds)
        return {"slept": i.seconds}

    functions: dict[str, Any] = {
        "remember": remember,
        "recall": recall,
        "mark_stale": mark_stale,
        "get_state": get_state,
        "set_state": set_state,
        "create_table": create_table,
        "insert_row": insert_row,
        "clock": clock,
        "fail": fail,
        "sleep": sleep,
    }
    for name, model in BUILTIN_TOOL_INPUTS.items():
        registry.register(name, model, functions[name])
