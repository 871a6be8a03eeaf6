"""Live audit events for Server-Sent Events: from the Redis stream when configured, else by polling PostgreSQL.

A reader belongs to one browser connection. Its position (an SSE event id) is the stream entry id
or the (created_at, id) cursor of the last row shown, so a reconnecting EventSource resumes where it
left off (Last-Event-ID). Polling re-reads a short overlap, because a row's created_at is taken before
its commit and a concurrent append can land just behind the newest row already shown.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from jarvis.cache import RedisLink, StreamReader
from jarvis.db.audit import AuditQueries, Cursor
from jarvis.db.audit.queries import MAX_LIMIT
from jarvis.ui.display import cut, visible

OVERLAP = timedelta(seconds=5)
STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
NAME_LIMIT = 200
"""Longest name an event carries to the page (the trail is attacker-controlled)."""


@dataclass(frozen=True)
class LiveEvent:
    position: str
    data: dict[str, Any]


class LiveReader(Protocol):
    def read(self, wait: float) -> list[LiveEvent]:
        """The next events, waiting up to `wait` seconds for one; blocking (run it in a thread)."""
        ...


def _event(position: str, **fields: Any) -> LiveEvent:
    return LiveEvent(
        position,
        {key: visible(cut(str(value), NAME_LIMIT)) for key, value in fields.items() if value not in (None, "")},
    )


class PollingReader:
    """Polls PostgreSQL (AuditQueries.events_after) every `interval` seconds."""

    def __init__(self, queries: AuditQueries, *, resume_from: str | None, interval: float = 1.0) -> None:
        self.queries = queries
        self.interval = interval
        self.after: Cursor | None = None
        self.shown: dict[uuid.UUID, Cursor] = {}
        if resume_from:
            try:
                self.after = Cursor.parse(resume_from)
            except ValueError:
                self.after = None
        if self.after is None:  # from now on: what is already there (within the overlap) counts as shown
            newest = queries.events_after(None, limit=1)
            if newest:
                self.after = newest[-1].cursor
                window = Cursor(self.after.created_at - OVERLAP, uuid.UUID(int=0))
                self.shown = {event.id: event.cursor for event in queries.events_after(window, limit=MAX_LIMIT)}

    def read(self, wait: float) -> list[LiveEvent]:
        overlap = None if self.after is None else Cursor(self.after.created_at - OVERLAP, uuid.UUID(int=0))
        fresh = [event for event in self.queries.events_after(overlap, limit=500) if event.id not in self.shown]
        if not fresh:
            time.sleep(min(wait, self.interval))
            return []
        for event in fresh:
            self.shown[event.id] = event.cursor
        newest = max(self.shown.values(), key=lambda cursor: (cursor.created_at, cursor.id))
        self.after = newest
        self.shown = {key: c for key, c in self.shown.items() if c.created_at >= newest.created_at - OVERLAP}
        return [
            _event(
                str(event.cursor),
                at=event.at.isoformat(),
                table=event.table,
                kind=event.kind,
                name=event.name,
                status=event.status,
                cycle=event.cycle_id,
                row=event.id,
            )
            for event in fresh
        ]


class StreamingReader:
    """Blocking reads of the Redis stream (signed events only; forged ones are dropped by StreamReader)."""

    def __init__(self, link: RedisLink, *, resume_from: str | None) -> None:
        valid = resume_from is not None and STREAM_ID.fullmatch(resume_from) is not None
        self.reader = StreamReader(link, last_id=resume_from if valid and resume_from else "$")
        self.reader.start_from_latest()

    def read(self, wait: float) -> list[LiveEvent]:
        return [
            _event(
                event.id,
                at=event.fields.get("created_at"),
                table=event.fields.get("table"),
                kind=event.fields.get("kind"),
                name=event.fields.get("tool_name"),
                status=event.fields.get("status"),
                cycle=event.fields.get("cycle_id"),
                row=event.fields.get("row_id"),
            )
            for event in self.reader.read(block_ms=max(1, int(wait * 1000)))
        ]
