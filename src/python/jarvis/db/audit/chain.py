"""Sealing audit rows into the hash chain, and verifying the whole trail against it.

See `jarvis.db.models.audit_chain` for the design. The window between an
append and its sealing is the only time a superuser's edit goes unnoticed;
the agent seals after every planning cycle and `verify` seals before checking.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from psycopg.rows import dict_row
from sqlalchemy import text

from jarvis.db.audit.canonical import AUDIT_COLUMNS, GENESIS, link_hash, row_hash
from jarvis.db.base import AUDIT_TABLES
from jarvis.db.engine import Database

SEAL_LOCK_KEY = 0x4A415244  # one sealer at a time, across processes
SEAL_BATCH = 5000


def seal(database: Database, *, wait: bool = True) -> int:
    """Link every queued audit row into the chain; returns how many were sealed.

    With `wait=False` it returns 0 at once when another process is sealing.
    """
    total = 0
    while True:
        sealed = _seal_batch(database, wait=wait)
        total += sealed
        if sealed < SEAL_BATCH:
            return total


def _seal_batch(database: Database, *, wait: bool) -> int:
    with database.begin() as conn:
        if wait:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SEAL_LOCK_KEY})
        elif not conn.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": SEAL_LOCK_KEY}).scalar():
            return 0
        head = conn.execute(text("SELECT seq, chain_hash FROM audit_chain ORDER BY seq DESC LIMIT 1")).first()
        seq, previous = (head.seq, bytes(head.chain_hash)) if head else (0, GENESIS)
        pending = conn.execute(
            text("SELECT table_name, row_id FROM audit_pending ORDER BY queued_at, row_id LIMIT :n"), {"n": SEAL_BATCH}
        ).all()
        if not pending:
            return 0
        rows: list[tuple[str, dict[str, Any]]] = []
        for table in AUDIT_TABLES:
            ids = [p.row_id for p in pending if p.table_name == table]
            if ids:
                found = conn.execute(text(f"SELECT * FROM {table} WHERE id = ANY(:ids)"), {"ids": ids}).mappings()
                rows.extend((table, dict(row)) for row in found)
        # Queued rows whose row is gone were deleted by someone who bypassed the
        # triggers; they stay queued so `verify` reports them.
        rows.sort(key=lambda item: (item[1]["created_at"], AUDIT_TABLES.index(item[0]), item[1]["id"]))
        links = []
        for table, row in rows:
            seq += 1
            content = row_hash(table, row)
            previous = link_hash(previous, seq, table, row["id"], content)
            links.append({"seq": seq, "t": table, "id": row["id"], "rh": content, "ch": previous})
        if links:
            conn.execute(
                text(
                    "INSERT INTO audit_chain (seq, table_name, row_id, row_hash, chain_hash) "
                    "VALUES (:seq, :t, :id, :rh, :ch)"
                ),
                links,
            )
            conn.execute(
                text(
                    "DELETE FROM audit_pending WHERE (table_name, row_id) IN "
                    "(SELECT * FROM unnest(CAST(:t AS text[]), CAST(:ids AS uuid[])))"
                ),
                {"t": [link["t"] for link in links], "ids": [link["id"] for link in links]},
            )
        return len(pending)


@dataclass
class Problem:
    """The first thing found wrong, named so a person can look at it."""

    table: str
    row_id: uuid.UUID | None
    seq: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.table} row {self.row_id}" if self.row_id else self.table
        at = f" (chain position {self.seq})" if self.seq else ""
        return f"{where}{at}: {self.reason}"


@dataclass
class VerifyReport:
    rows_checked: int = 0
    head_seq: int = 0
    head_hash: bytes = GENESIS
    problems: list[Problem] = field(default_factory=list)
    expected_head_found: bool | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and self.expected_head_found is not False

    @property
    def head_hex(self) -> str:
        return self.head_hash.hex()

    def summary(self) -> str:
        if self.ok:
            return f"OK: {self.rows_checked} audit rows verified; head {self.head_seq}:{self.head_hex}"
        first = self.problems[0] if self.problems else "the expected head hash is not in the chain (truncated?)"
        more = f" (+{len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return f"TAMPERED: {first}{more}; {self.rows_checked} rows checked"


def verify(database: Database, *, expect: str | None = None, seal_first: bool = True) -> VerifyReport:
    """Recompute every row hash and chain link; report the first row that does not match.

    `expect` is a head hash published earlier (hex); if it is not in the chain,
    the chain was truncated or rewritten after it was published.
    """
    if seal_first:
        seal(database)
    report = VerifyReport()
    expected = bytes.fromhex(expect) if expect else None
    with database.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.transaction():
            raw.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            rows = {table: _load_rows(raw, table) for table in AUDIT_TABLES}
            pending = {(t, i) for t, i in raw.execute("SELECT table_name, row_id FROM audit_pending")}
            previous, expected_seen = GENESIS, False
            for seq, table, row_id, stored_row_hash, stored_chain_hash in _stream_chain(raw):
                report.head_seq += 1
                if seq != report.head_seq:
                    report.problems.append(
                        Problem(table, row_id, seq, f"chain position {report.head_seq} is missing (links deleted)")
                    )
                    report.head_seq = seq
                previous = link_hash(previous, seq, table, row_id, bytes(stored_row_hash))
                if previous != bytes(stored_chain_hash):
                    report.problems.append(Problem(table, row_id, seq, "chain link does not match its predecessor"))
                    previous = bytes(stored_chain_hash)
                actual = rows.get(table, {}).pop(row_id, None)
                if actual is None:
                    report.problems.append(Problem(table, row_id, seq, "row was deleted"))
                elif actual != bytes(stored_row_hash):
                    report.problems.append(Problem(table, row_id, seq, "row content was changed after it was sealed"))
                else:
                    report.rows_checked += 1
                if expected is not None and previous == expected:
                    expected_seen = True
            report.head_hash = previous
            for table, leftover in rows.items():
                for row_id in leftover:
                    if (table, row_id) not in pending:
                        report.problems.append(
                            Problem(table, row_id, None, "row is not in the chain (written with the triggers bypassed)")
                        )
            for table, row_id in pending:
                if row_id not in rows[table]:
                    report.problems.append(Problem(table, row_id, None, "queued row was deleted before it was sealed"))
    if expected is not None:
        report.expected_head_found = expected_seen
    return report


def _load_rows(raw: Any, table: str) -> dict[uuid.UUID, bytes]:
    columns = ", ".join(AUDIT_COLUMNS[table])
    hashes: dict[uuid.UUID, bytes] = {}
    with raw.cursor(name=f"verify_{table}", row_factory=dict_row, binary=True) as cursor:
        cursor.itersize = 10_000
        cursor.execute(f"SELECT {columns} FROM {table}")
        for row in cursor:
            hashes[row["id"]] = row_hash(table, row)
    return hashes


def _stream_chain(raw: Any) -> Iterator[tuple[int, str, uuid.UUID, bytes, bytes]]:
    with raw.cursor(name="verify_chain", binary=True) as cursor:
        cursor.itersize = 10_000
        cursor.execute("SELECT seq, table_name, row_id, row_hash, chain_hash FROM audit_chain ORDER BY seq")
        yield from cursor
