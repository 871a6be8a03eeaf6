"""Verified reads: every audit row a person is shown is re-hashed and checked against its chain link as it is read.

A full `jarvis audit verify` finds a superuser's edit, but nobody runs it before every look at
the trail: what `audit show`, `run --timeline`, `jarvis ui`, `mcp serve`'s show_cycle and the
exports display must not be a forged value presented as a fact. So every query that reads audit
rows for display also computes, in PostgreSQL and in the same statement (one snapshot), each
row's integrity:

- `verified`: the row's canonical encoding hashes to its link's `row_hash`, and that link's
  `chain_hash` follows from its stored predecessor (so the hash was not swapped in the link alone);
- `unsealed`: no link yet, but the row is queued for the sealer (written through the triggers,
  not yet vouched for by the chain) and dated after the newest complete seal's sweep
  (`audit_seal_head.swept_at`) minus `chain.BACKDATE_SLACK`: an older row was committed before that
  seal began and should be linked already, so a queued one (its link deleted and the row queued
  again by hand, to show an edit as merely "unsealed") is `tampered`. An unsealed row's values are
  shown, marked unsealed: nothing vouches for them yet, and the surfaces say so;
- `flagged`: it matches its link, but the sealer flagged it when it linked it (`audit_flags`: dated
  before a checkpoint it came after, its cycle missing, ...): linked so the chain stays complete,
  not vouched for, and reported by every verify;
- `tampered`: anything else — the content changed, the link does not follow from its
  predecessor, the link's encoding is unknown, or the row is neither linked nor queued (written
  with the triggers bypassed), or queued long after it should have been sealed;
- `unverifiable`: the checks themselves cannot be trusted in this snapshot. Before the first row
  is read, the snapshot runs verify's own catalog and built-in checks (`catalog.catalog_problems`,
  `verify_sql.builtin_problems`: a `pg_catalog.sha256` redefined with an inlinable SQL body hashes
  a forged row as the original). If either finds anything, every row reads `unverifiable`, its
  values withheld as a tampered row's, and `Reader.why` says why in one line. Nothing is cached
  across snapshots: each read pays for the checks (docs/benchmarks.md, "Verified reads").

The canonical rendering is the verifier's own (`verify_sql.canonical_sql`), so the rule lives in
one place; reads run in `chain.verifying_snapshot` (REPEATABLE READ READ ONLY, `FROM ONLY`, row
security off, UTC, a search path of pg_catalog only), as verify does. Links of encoding 1 (sealed
before migration 0003) cannot be rendered in SQL: they are settled here in Python from the row's
stored JSON, as the verifier does. A verified read checks one row and one link; the rest of the
chain and the signed checkpoints remain `jarvis audit verify`'s work: "verified" means the row
matches its link and the link its stored predecessor, not that a signed checkpoint covers it (a
superuser who edits a row and recomputes every later link is found by verify, not here).

Readers get the status and never the values of a tampered or unverifiable row (`WITHHELD`): no
surface can show a forged value by forgetting to look at the status.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg.rows import namedtuple_row

from jarvis.db.audit.canonical import GENESIS, NotCanonicalError, canonical_python_from_json
from jarvis.db.audit.catalog import catalog_problems
from jarvis.db.audit.chain import BACKDATE_SLACK, rows_as_stored, sha256, verifying_snapshot
from jarvis.db.audit.verify_sql import RELATIONS, builtin_problems, canonical_sql, renderable_columns, row_key
from jarvis.db.engine import Database

VERIFIED: Final = "verified"
TAMPERED: Final = "tampered"
UNSEALED: Final = "unsealed"
FLAGGED: Final = "flagged"
UNVERIFIABLE: Final = "unverifiable"
INTEGRITY_STATES = (VERIFIED, UNSEALED, FLAGGED, TAMPERED, UNVERIFIABLE)
WITHHELD = frozenset({TAMPERED, UNVERIFIABLE})
"""The states whose values no reader is given: only the row's table, id, time and state."""
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


def integrity_sql(
    table: str,
    columns: dict[str, str] | None,
    *,
    alias: str | None = None,
    flags: bool = False,
    sealed_before: datetime | None = None,
) -> str:
    """An expression for the integrity of row `x` of `table` (or of the row under `alias` in the outer query).

    `columns` as `verify_sql.renderable_columns` found them (None: the sealer's own
    `jarvis_canonical`); `flags`: the database has the sealer's `audit_flags`; `sealed_before`:
    a queued row dated before it should have been linked already (it reads tampered, not
    unsealed). Every function and operator it uses is one `builtin_problems` checks.
    """
    suspect = _relation_violation_sql(table)
    if flags:
        suspect.append("EXISTS (SELECT FROM ONLY public.audit_flags f WHERE f.seq = l.seq)")
    matched = f"CASE WHEN {' OR '.join(suspect)} THEN '{FLAGGED}' ELSE '{VERIFIED}' END" if suspect else f"'{VERIFIED}'"
    name = f"'{table}'::pg_catalog.text"
    key = row_key(table, table in _UUID_KEYED)
    rendered = canonical_sql(table, columns)
    queued = f"'{UNSEALED}'"
    if sealed_before is not None:
        queued = (
            f"CASE WHEN x.created_at >= '{sealed_before.isoformat()}'::pg_catalog.timestamptz "
            f"THEN '{UNSEALED}' ELSE '{TAMPERED}' END"
        )
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
        f"AND q.row_id = {key}) THEN {queued} ELSE '{TAMPERED}' END)"
    )
    if alias is None:
        return expression
    return f"CASE WHEN {alias}.id IS NOT NULL THEN (SELECT {expression} FROM (SELECT {alias}.*) x) END"


def _relation_violation_sql(table: str) -> list[str]:
    """What the sealer flags that the row and its references alone show (`verify_sql.relation_check_sql`'s rule).

    Recomputed on every read, so a superuser who deletes the row's `audit_flags` entry does not make
    it read as verified: a completion whose start row is missing or dated after it; a start row or
    decision whose cycle is missing, dated after the row, or closed more than the slack before it.
    """
    parent, cycle = RELATIONS.get(table, (False, False))
    epoch = "pg_catalog.date_part('epoch'::pg_catalog.text, {})"
    slack = f"{BACKDATE_SLACK.total_seconds()!r}::pg_catalog.float8"
    found: list[str] = []
    if parent:
        found.append(
            f"(x.parent_id IS NOT NULL AND NOT EXISTS (SELECT FROM ONLY public.{table} s "
            "WHERE s.id = x.parent_id AND NOT x.created_at < s.created_at))"
        )
    if cycle:
        found.append(
            "(x.cycle_id IS NOT NULL AND (NOT EXISTS (SELECT FROM ONLY public.planning_cycles c "
            "WHERE c.id = x.cycle_id AND NOT x.created_at < c.created_at) "
            "OR EXISTS (SELECT FROM ONLY public.planning_cycles e WHERE e.parent_id = x.cycle_id "
            f"AND {epoch.format('e.created_at')} + {slack} < {epoch.format('x.created_at')})))"
        )
    return found


class Reader:
    """One verifying snapshot: builds the integrity expressions for it and runs the queries that use them.

    `problems`: what verify's catalog and built-in checks found in this snapshot; if any, every row
    reads `unverifiable` (no check is run on a server that may answer it falsely) and `why` says why.
    """

    def __init__(self, raw: psycopg.Connection[Any], problems: Sequence[tuple[str, str]] = ()) -> None:
        self.raw = raw
        self.problems = list(problems)
        self._columns: dict[str, dict[str, str] | None] = {}
        self._flags: bool | None = None
        self._sealed_before: datetime | None = None

    @property
    def why(self) -> str | None:
        """One line on why every row of this snapshot reads unverifiable (None: the checks can be trusted)."""
        if not self.problems:
            return None
        thing, what = self.problems[0]
        more = f" (+{len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return (
            f"UNVERIFIABLE: {thing} {what}{more}; no row can be checked against its chain link on this server "
            "until it is restored (`jarvis audit verify` names every problem)"
        )

    def integrity(self, table: str, alias: str | None = None) -> str:
        """`integrity_sql` for `table` as it is stored now (its columns read once per snapshot)."""
        if self.problems:
            return (
                f"'{UNVERIFIABLE}'" if alias is None else f"CASE WHEN {alias}.id IS NOT NULL THEN '{UNVERIFIABLE}' END"
            )
        if table not in self._columns:
            self._columns[table] = renderable_columns(self.raw, table)
        if self._flags is None:
            row = self.raw.execute("SELECT pg_catalog.to_regclass('public.audit_flags') IS NOT NULL").fetchone()
            self._flags = bool(row and row[0])
            if self._flags:  # migration 0008 added both: the newest complete seal's sweep time
                swept = self.raw.execute("SELECT h.swept_at FROM ONLY public.audit_seal_head h LIMIT 1").fetchone()
                if swept is not None and swept[0] is not None:
                    self._sealed_before = swept[0] - BACKDATE_SLACK
        return integrity_sql(
            table, self._columns[table], alias=alias, flags=self._flags, sealed_before=self._sealed_before
        )

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
        if self.problems and state is not None:
            return UNVERIFIABLE
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
    """A read-only snapshot in which every audit row read can be checked against its link.

    Verify's catalog and built-in checks run first, in this snapshot, before any row is read: the
    per-row checks are PostgreSQL expressions, only as honest as the functions, operators and types
    they call (`Reader.problems`).
    """
    with verifying_snapshot(database) as raw:
        # The per-row checks make the planner's estimates large enough to JIT-compile the query, which
        # costs about 300 ms and saves nothing on a page of rows.
        raw.execute("SET LOCAL jit = off")
        problems = catalog_problems(raw) + builtin_problems(raw)
        yield Reader(raw, problems)
