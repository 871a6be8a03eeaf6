"""Driving the sync API and its asyncio twin (jarvis.db.aio) from one test body."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any


@dataclass
class Api:
    """One flavour of the public API; every method may be awaited through `run`, whichever flavour it is."""

    flavour: str
    tool_calls: Any
    planning: Any
    state: Any
    memory: Any
    schema: Any


async def run(value: Any) -> Any:
    """The value of a sync call, or of an async call awaited: lets one test body drive both APIs."""
    return await value if inspect.isawaitable(value) else value
