"""Verified reads: every audit row a person is shown is re-hashed and checked against its chain link as it is read.

A full `jarvis audit verify` finds a superuser's edit, but nobody runs it before every look at
the trail: what `audit show`, `run --timeline`, `jarvis ui`, `mcp serve`'s show_cycle and the
exports display must not be a forged value presented as a fact. So every query that reads audit
rows for display also computes, in PostgreSQL and in the same statement (one snapshot), each
row's integrity:

- `verified`: the row's canonical encoding hashes to its link's `row_hash`, and that link's
  `chain_hash` follows from its stored predecessor (so the hash was not swapped in the link alone);
- `unsealed`: no link yet, but the row is queued for the sealer (written through the triggers,
  not yet vouched for by the chain);
- `flagged`: it matches its link, but the sealer flagged it when it linked it (`audit_flags`: dated
  before a checkpoint it came after, its cycle missing, ...): linked so the chain stays complete,
  not vouched for, and reported by every verify;
- `tampered`: anything else — the content changed, the link does not follow from its
  predecessor, the link's encoding is unknown, or the row is neither linked nor queued (written
  with the triggers bypassed).

The canonical rendering is the verifier's own (`verify_sql.canonical_sql`), so the rule lives in
one place; reads run in `chain.verifying_snapshot` (REPEATABLE READ READ ONLY, `FROM ONLY`, row
security off, UTC, a search path of pg_catalog only), as verify does. Links of encoding 1 (sealed
before migration 0003) cannot be rendered in SQL: they are settled here in Python from the row's
stored JSON, as the verifier does. A verified read checks one row and one link; the rest of the
chain and the signed checkpoints remain `jarvis audit verify`'s work (a superuser who recomputes
every later link is found there, not here).

Readers get the status and never the values of a tampered row (`withheld`): no surface can show
a forged value by forgetting to look at the status.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import psycopg
from psycopg.rows import namedtuple_row

from jarvis.db.audit.canonical import GENESIS, NotCanonicalError, canonical_python_from_json
from jarvis.db.audit.chain import rows_as_stored, sha256, verifying_snapshot
from jarvis.db.audit.verify_sql import canonical_sql, renderable_columns, row_key
from jarvis.db.engine import Database

VERIFIED: Final = "verified"
TAMPERED: Final = "tampered"
UNSEALED: Final = "unsealed"
FLAGGED: Final = "flagged"
INTEGRITY_STATES = (VERIFIED, UNSEALED, FLAGGED, TAMPERED)
"""From best to worst: a summary of several rows (a call's start and outcome) takes the worst."""
_LEGACY = "legacy"
"""An encoding-1 link whose chain hash follows: the row is settled in Python (`Reader.settle`)."""

_UUID_KEYED = frozenset({"planning_cycles", "tool_calls", "decision_log"})
_GENESIS_SQL = f"'\\x{GENESIS.hex()}'::pg_catalog.bytea"
_LINK_FOLLOWS = (
    "l.chain_hash = pg_catalog.sha256(CASE WHEN l.seq = 1::pg_catalog.int8 THEN "
    f"{_GENESIS_SQL} ELSE (SELECT p.chain_hash FROM ONLY public.audit_chain p "
    "WHERE p.seq = l.seq - 1::pg_catalog.int8 LIMIT 1) END "
    "|| pg_catalog.int8send(l.seq) || pg_catalog.convert_to(l.table_name, 'UTF8'::pg_catalog.name) "
    "|| '\\x00'::pg_catalog.bytea || pg_catalog.uuid_send(l.row_id) || l.row_hash)"
)
"""The link `l` recomputed from its stored predecessor, as `verify_sql.LINK_CHECK_SQL` recomputes every link."""


def worst(*states: str | None) -> str:
    """The worst of several rows' integrity (None: no such row, e.g. a call without an outcome yet)."""
    present = [state for state in states if state is not None]
    return max(present, key=INTEGRITY_STATES.index) if present else VERIFIED


def integrity_sql(table: str, columns: dict[str, str] | None, *, alias: str | None = None, flags: bool = False) -> str:
    """An expression for the integrity of row `x` of `table` (or of the row under `alias` in the outer query).

    `columns` as `verify_sql.renderable_columns` found them (None: the sealer's own
    `jarvis_canonical`); `flags`: the database has the sealer's `audit_flags`. Every function
    and operator it uses is one `builtin_problems` checks.
    """
    matched = (
        f"CASE WHEN EXISTS (SELECT FROM ONLY public.audit_flags f WHERE f.seq = l.seq) THEN '{FLAGGED}' "
        f"ELSE '{VERIFIED}' END"
        if flags
        else f"'{VERIFIED}'"
    )
    name = f"'{table}'::pg_catalog.text"
    key = row_key(table, table in _UUID_KEYED)
    rendered = canonical_sql(table, columns)
    expression = (
        "coalesce((SELECT CASE "
        "WHEN l.encoding <> 2::pg_catalog.int2 THEN CASE "
        f"WHEN l.encoding <> 1::pg_catalog.int2 OR ({_LINK_FOLLOWS}) IS NOT TRUE THEN '{TAMPERED}' "
        f"ELSE '{_LEGACY}' END "
        "WHEN l.row_hash = pg_catalog.sha256(pg_catalog.convert_to("
        f"{rendered}, 'UTF8'::pg_catalog.name)) AND {_LINK_FOLLOWS} THEN {matched} "
        f"ELSE '{TAMPERED}' END "
        f"FROM ONLY public.audit_chain l WHERE l.table_name = {name} AND l.row_id = {key} LIMIT 1), "
        f"CASE WHEN EXISTS (SELECT FROM ONLY public.audit_pending q WHERE q.table_name = {name} "
        f"AND q.row_id = {key}) THEN '{UNSEALED}' ELSE '{TAMPERED}' END)"
    )
    if alias is None:
        return expression
    return f"CASE WHEN {alias}.id IS NOT NULL THEN (SELECT {expression} FROM (SELECT {alias}.*) x) END"


class Reader:
    """One verifying snapshot: builds the integrity expressions for it and runs the queries that use them."""

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        self._columns: dict[str, dict[str, str] | None] = {}
        self._flags: bool | None = None

    def integrity(self, table: str, alias: str | None = None) -> str:
        """`integrity_sql` for `table` as it is stored now (its columns read once per snapshot)."""
        if table not in self._columns:
            self._columns[table] = renderable_columns(self.raw, table)
        if self._flags is None:
            row = self.raw.execute("SELECT pg_catalog.to_regclass('public.audit_flags') IS NOT NULL").fetchone()
            self._flags = bool(row and row[0])
        return integrity_sql(table, self._columns[table], alias=alias, flags=self._flags)

    def rows(self, query: str, params: dict[str, Any] | Sequence[Any] | None = None) -> list[Any]:
        """All rows of `query`, as named tuples."""
        with self.raw.cursor(row_factory=namedtuple_row) as cursor:
            return cursor.execute(query, params).fetchall()

    def stream(self, query: str, params: dict[str, Any] | None = None) -> Iterator[Any]:
        """The rows of `query` through a server-side cursor (an export of the whole trail), as named tuples."""
        with self.raw.cursor(name=f"jarvis_read_{uuid.uuid4().hex}", row_factory=namedtuple_row) as cursor:
            cursor.itersize = 1_000
            yield from cursor.execute(query, params)

    def settle(self, table: str, row_id: uuid.UUID | None, state: str | None) -> str | None:
        """The final state of a row whose SQL state is `state` (an encoding-1 row is re-hashed here in Python)."""
        if state != _LEGACY or row_id is None:
            return state
        with self.raw.cursor() as cursor:
            link = cursor.execute(
                "SELECT l.row_hash FROM ONLY public.audit_chain l "
                "WHERE l.table_name = %s::pg_catalog.text AND l.row_id = %s::pg_catalog.uuid LIMIT 1",
                (table, row_id),
            ).fetchone()
        documents = []
        with rows_as_stored(self.raw, table, "pg_catalog.to_jsonb(x)", where_id_in=[row_id]) as cursor:
            documents = [document for _, document in cursor]
        if link is None or len(documents) != 1:
            return TAMPERED
        try:
            matches = sha256(canonical_python_from_json(table, documents[0])) == bytes(link[0])
        except NotCanonicalError:
            return TAMPERED
        return VERIFIED if matches else TAMPERED


@contextmanager
def verified_reading(database: Database) -> Iterator[Reader]:
    """A read-only snapshot in which every audit row read can be checked against its link."""
    with verifying_snapshot(database) as raw:
        # The per-row checks make the planner's estimates large enough to JIT-compile the query, which
        # costs about 300 ms and saves nothing on a page of rows.
        raw.execute("SET LOCAL jit = off")
        yield Reader(raw)
