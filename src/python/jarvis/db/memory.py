"""`memory_facts` API: what the agent knows about a subject, and what no longer holds.

Facts are never rewritten; a fact that stops being true is marked stale so
the agent can still explain what it believed when it acted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, insert, select, update

from jarvis.db.base import JsonValue
from jarvis.db.engine import Database
from jarvis.db.jsonb import InvalidJsonError, check_text, ensure_jsonb
from jarvis.db.models import MemoryFact
from jarvis.db.state import InvalidKeyError


@dataclass(frozen=True)
class Fact:
    id: int
    subject: str
    body: JsonValue
    is_stale: bool
    created_at: datetime


_COLUMNS = (MemoryFact.id, MemoryFact.subject, MemoryFact.body, MemoryFact.is_stale, MemoryFact.created_at)


def _fact(row: Any) -> Fact:
    return Fact(id=row.id, subject=row.subject, body=row.body, is_stale=row.is_stale, created_at=row.created_at)


def check_subject(subject: str) -> str:
    if not isinstance(subject, str) or not subject.strip():
        raise InvalidKeyError("fact subject must be a non-empty string")
    check_text(subject, "fact subject")
    return subject


class MemoryStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def add(self, subject: str, body: Any) -> Fact:
        check_subject(subject)
        ensure_jsonb(body, what=f"fact about {subject!r}")
        with self.database.begin() as conn:
            row = conn.execute(insert(MemoryFact).values(subject=subject, body=body).returning(*_COLUMNS)).one()
        return _fact(row)

    def about(self, subject: str, *, include_stale: bool = False, limit: int = 100) -> list[Fact]:
        """Facts about `subject`, newest first."""
        stmt = select(*_COLUMNS).where(MemoryFact.subject == check_subject(subject))
        return self._newest_first(stmt, include_stale, limit)

    def search(
        self, contains: dict[str, Any], *, subject: str | None = None, include_stale: bool = False, limit: int = 100
    ) -> list[Fact]:
        """Facts whose body contains `contains` (JSONB @>, served by the GIN index), newest first.

        With `subject`, only facts about it: filtered in the query, before the limit.
        """
        if not isinstance(contains, dict):
            raise InvalidJsonError('a memory search takes a JSON object, e.g. {"city": "Paris"}')
        ensure_jsonb(contains, what="search")
        stmt = select(*_COLUMNS).where(MemoryFact.body.contains(contains))
        if subject is not None:
            stmt = stmt.where(MemoryFact.subject == check_subject(subject))
        return self._newest_first(stmt, include_stale, limit)

    def fresh(self, *, limit: int = 100) -> list[Fact]:
        """The newest facts that still hold."""
        return self._newest_first(select(*_COLUMNS), False, limit)

    def mark_stale(self, *, fact_id: int | None = None, subject: str | None = None) -> int:
        """Mark one fact (by id) or every fact about a subject as stale; returns how many changed."""
        if (fact_id is None) == (subject is None):
            raise ValueError("mark_stale takes exactly one of fact_id or subject")
        stmt = update(MemoryFact).where(~MemoryFact.is_stale).values(is_stale=True)
        if fact_id is not None:
            stmt = stmt.where(MemoryFact.id == fact_id)
        else:
            stmt = stmt.where(MemoryFact.subject == check_subject(subject or ""))
        with self.database.begin() as conn:
            return len(conn.execute(stmt.returning(MemoryFact.id)).all())

    def _newest_first(self, stmt: Select[int, str, Any, bool, datetime], include_stale: bool, limit: int) -> list[Fact]:
        if not include_stale:
            stmt = stmt.where(~MemoryFact.is_stale)
        stmt = stmt.order_by(MemoryFact.created_at.desc(), MemoryFact.id.desc()).limit(limit)
        with self.database.connect() as conn:
            return [_fact(row) for row in conn.execute(stmt)]
