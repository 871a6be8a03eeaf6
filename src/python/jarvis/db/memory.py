"""`memory_facts` API: what the agent knows about a subject, and what no longer holds.

Facts are never rewritten; a fact that stops being true is marked stale so
the agent can still explain what it believed when it acted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from jarvis.db.base import JsonValue
from jarvis.db.engine import Database
from jarvis.db.jsonb import InvalidJsonError, check_text, ensure_jsonb
from jarvis.db.state import InvalidKeyError
from jarvis.db.steps import Statement, Steps


@dataclass(frozen=True)
class Fact:
    id: int
    subject: str
    body: JsonValue
    is_stale: bool
    created_at: datetime


_FACT = "id, subject, body, is_stale, created_at"
ADD_SQL = f"INSERT INTO public.memory_facts (subject, body) VALUES (%s, %s) RETURNING {_FACT}"
STALE_BY_ID_SQL = "UPDATE public.memory_facts SET is_stale = true WHERE NOT is_stale AND id = %s RETURNING id"
STALE_BY_SUBJECT_SQL = "UPDATE public.memory_facts SET is_stale = true WHERE NOT is_stale AND subject = %s RETURNING id"


def _fact(row: Sequence[Any]) -> Fact:
    return Fact(id=row[0], subject=row[1], body=row[2], is_stale=row[3], created_at=row[4])


def check_subject(subject: str) -> str:
    if not isinstance(subject, str) or not subject.strip():
        raise InvalidKeyError("fact subject must be a non-empty string")
    check_text(subject, "fact subject")
    return subject


# The rules of memory, without I/O: MemoryStore and AsyncMemoryStore (jarvis.db.aio) run these, each in one transaction.


def add_steps(subject: str, body: Any) -> Steps[Fact]:
    check_subject(subject)
    ensure_jsonb(body, what=f"fact about {subject!r}")
    row = yield Statement(ADD_SQL, (subject, Jsonb(body)))
    return _fact(row)


def newest_first_steps(
    *, subject: str | None = None, contains: Any = None, include_stale: bool = False, limit: int = 100
) -> Steps[list[Fact]]:
    """Facts about `subject` and/or whose body contains `contains` (JSONB @>, the GIN index), newest first."""
    where: list[str] = []
    params: list[Any] = []
    if contains is not None:
        if not isinstance(contains, dict):
            raise InvalidJsonError('a memory search takes a JSON object, e.g. {"city": "Paris"}')
        ensure_jsonb(contains, what="search")
        where.append("body @> %s")
        params.append(Jsonb(contains))
    if subject is not None:
        where.append("subject = %s")
        params.append(check_subject(subject))
    if not include_stale:
        where.append("NOT is_stale")
    condition = f"WHERE {' AND '.join(where)} " if where else ""
    sql = f"SELECT {_FACT} FROM public.memory_facts {condition}ORDER BY created_at DESC, id DESC LIMIT %s"
    rows = yield Statement(sql, (*params, limit), rows="all")
    return [_fact(row) for row in rows]


def mark_stale_steps(fact_id: int | None, subject: str | None) -> Steps[int]:
    """Mark one fact (by id) or every fact about a subject as stale: how many changed."""
    if (fact_id is None) == (subject is None):
        raise ValueError("mark_stale takes exactly one of fact_id or subject")
    if fact_id is not None:
        rows = yield Statement(STALE_BY_ID_SQL, (fact_id,), rows="all")
    else:
        rows = yield Statement(STALE_BY_SUBJECT_SQL, (check_subject(subject or ""),), rows="all")
    return len(rows)


class MemoryStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def add(self, subject: str, body: Any) -> Fact:
        return self.database.run(add_steps(subject, body))

    def about(self, subject: str, *, include_stale: bool = False, limit: int = 100) -> list[Fact]:
        """Facts about `subject`, newest first."""
        return self.database.run(newest_first_steps(subject=subject, include_stale=include_stale, limit=limit))

    def search(
        self, contains: dict[str, Any], *, subject: str | None = None, include_stale: bool = False, limit: int = 100
    ) -> list[Fact]:
        """Facts whose body contains `contains` (JSONB @>, served by the GIN index), newest first.

        With `subject`, only facts about it: filtered in the query, before the limit.
        """
        steps = newest_first_steps(subject=subject, contains=contains, include_stale=include_stale, limit=limit)
        return self.database.run(steps)

    def fresh(self, *, limit: int = 100) -> list[Fact]:
        """The newest facts that still hold."""
        return self.database.run(newest_first_steps(limit=limit))

    def mark_stale(self, *, fact_id: int | None = None, subject: str | None = None) -> int:
        """Mark one fact (by id) or every fact about a subject as stale; returns how many changed."""
        return self.database.run(mark_stale_steps(fact_id, subject))
