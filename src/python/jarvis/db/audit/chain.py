"""Sealing audit rows into the hash chain, and what verifying it reads and reports.

See `jarvis.db.models.audit_chain` for the design. Sealing is one call to the
database's `jarvis_seal()` (SECURITY DEFINER: the application role may cause
links but never write one). Verifying (`jarvis.db.audit.verifier`) reads as any
reader reads — `FROM ONLY`, row security off, in `verifying_snapshot` — and
reports a `VerifyReport`. The window between an append and its sealing is the
only time a superuser's edit goes unnoticed; every database handle's background
sealer (`jarvis.db.audit.autoseal`) closes it within JARVIS_SEAL_INTERVAL.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.string import TextLoader
from sqlalchemy import exc, text

from jarvis.config import ExitCode
from jarvis.db.audit.canonical import GENESIS
from jarvis.db.engine import Database, DatabaseError, RoleNotGrantedError, psycopg_connection

SEAL_BATCH = 5000
LOADABLE = (
    datetime(2000, 1, 1, tzinfo=UTC).timestamp(),
    datetime(9999, 1, 1, tzinfo=UTC).timestamp(),
)
"""created_at must lie in [2000, 9999): what the CHECK constraints allow and every client can load."""
BACKDATE_SLACK = timedelta(seconds=60)
"""How much later than its `created_at` a row may commit before a checkpoint calls it backdated."""
SEAL_BOUND = BACKDATE_SLACK
"""Longest a row may wait in the sealer's queue, or a link past the newest signed checkpoint, before verify
fails: the sealer was blocked (a session holding its lock) or could not sign (no key). The background
sealer seals and signs within JARVIS_SEAL_INTERVAL (at most 5 s); past the slack, a row is exposed longer
than any honest seal takes, and it would be flagged as backdated anyway."""


class SealerBusyError(DatabaseError):
    """Another session holds the sealer's lock; the message names it."""


class SealConflictError(DatabaseError):
    """The chain and its seal head disagree (tampering): the sealer refuses to link more."""


class SealPermissionError(DatabaseError):
    """This login may read the trail but not seal it (an auditor)."""

    exit_code = ExitCode.BAD_INPUT


@dataclass(frozen=True)
class SealResult:
    linked: int
    head_seq: int
    head_hash: bytes
    sealed_at: datetime
    """The database's clock when the last batch began: every row committed before it is linked."""
    flagged: int = 0
    """Rows this seal linked but does not vouch for (backdated, parent or cycle missing, outside their cycle,
    too large to render): each is in `audit_flags` with its reason, and every verify names it."""
    flagged_total: int = 0
    """Every flag the chain holds up to `head_seq`: what the signed checkpoint records (`Checkpoint.flagged`)."""


def seal(database: Database, *, wait: float = 0.0) -> SealResult:
    """Link every queued audit row into the chain.

    Waits at most `wait` seconds for another sealer, then raises
    SealerBusyError naming the session that holds the lock.
    """
    total = flagged = 0
    lock_timeout = f"{max(1, round(wait * 1000))}ms"
    while True:
        try:
            with database.begin() as conn:
                conn.execute(text("SELECT pg_catalog.set_config('lock_timeout', :t, true)"), {"t": lock_timeout})
                row = conn.execute(
                    text(
                        "SELECT linked, head_seq, head_hash, sealed_at, flagged, flagged_total "
                        "FROM public.jarvis_seal(:n)"
                    ),
                    {"n": SEAL_BATCH},
                ).one()
        except exc.IntegrityError as error:
            raise SealConflictError(
                f"sealing was refused: {str(error.orig).strip().splitlines()[0]}. The seal head (audit_seal_head) "
                "disagrees with the chain, which only a superuser can cause: run `jarvis audit verify`"
            ) from None
        except exc.OperationalError as error:
            if isinstance(error.orig, psycopg.errors.LockNotAvailable):
                raise SealerBusyError(
                    f"the audit sealer is busy: {sealer_holder(database)}; waited {wait:g} s (JARVIS_SEAL_WAIT)"
                ) from None
            raise
        except (exc.ProgrammingError, RoleNotGrantedError) as error:
            if isinstance(error, RoleNotGrantedError) or isinstance(error.orig, psycopg.errors.InsufficientPrivilege):
                raise SealPermissionError(
                    "this login may read the audit trail but not seal it. "
                    "Fix: seal with the agent's login (`jarvis audit verify --seal`), or verify without --seal"
                ) from None
            raise
        total += row.linked
        flagged += row.flagged
        if row.linked < SEAL_BATCH:
            return SealResult(total, row.head_seq, bytes(row.head_hash), row.sealed_at, flagged, int(row.flagged_total))


def sealer_holder(database: Database) -> str:
    """Who holds the sealer's lock right now, for a person to act on."""
    with database.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT a.pid, a.usename, a.application_name, "
                "extract(epoch FROM now() - a.xact_start) AS held_for FROM pg_catalog.pg_locks l "
                "JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'relation' AND l.relation = CAST('public.audit_seal_head' AS regclass) "
                "AND l.mode <> 'AccessShareLock' AND l.granted AND l.pid <> pg_catalog.pg_backend_pid()"
            )
        ).all()
    if not rows:
        return "held by a session that has finished since"
    return "; ".join(
        f"held by backend {r.pid} (role {r.usename}, application {r.application_name!r}, "
        f"for {float(r.held_for or 0):.0f} s; end it with SELECT pg_terminate_backend({r.pid}))"
        for r in rows
    )


@dataclass(frozen=True)
class ExpectedHead:
    """A head published earlier: `HASH` or `SEQ:HASH` as verify prints it."""

    hash: bytes
    seq: int | None = None

    @classmethod
    def parse(cls, value: str) -> ExpectedHead:
        """Read a head as `audit verify` printed it (SEQ:HASH, or HASH alone); ValueError says the form."""
        match = re.fullmatch(r"(?:(\d{1,18}):)?([0-9a-fA-F]{64})", value.strip())
        if not match:
            raise ValueError(
                f"--expect {value!r} is not a head: give SEQ:HASH or HASH (64 hex digits) as `jarvis audit verify` "
                "printed it"
            )
        return cls(bytes.fromhex(match.group(2)), int(match.group(1)) if match.group(1) else None)


@dataclass(frozen=True)
class TrustedHead:
    """A head the verifier trusts from outside the database (a signed checkpoint)."""

    seq: int
    hash: bytes
    sealed_at: datetime
    """The checkpoint's time: its `signed_at` (the signer's clock), never the database's word for it."""
    label: str
    flagged: int | None = None
    """How many flagged rows the chain held up to `seq` when it was signed (None: signed before flags existed)."""


@dataclass
class Problem:
    """Something found wrong, named so a person can look at it."""

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
    pending: int = 0
    checkpoints_checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    expected_head_found: bool | None = None
    notes: list[str] = field(default_factory=list)
    """What a person should know although nothing is wrong (e.g. no checkpoint was there to check)."""
    verified_from: TrustedHead | None = None
    """The checkpoint an incremental verify started from; None for a full verify (from genesis)."""

    @property
    def mode(self) -> str:
        """What was re-read: `full`, or `since checkpoint SEQ:HASH…` naming the positions not re-read."""
        if self.verified_from is None:
            return "full"
        seq = self.verified_from.seq
        return (
            f"since checkpoint {seq}:{self.verified_from.hash.hex()[:12]}…; positions 1-{seq} NOT re-read: "
            "a plain `jarvis audit verify` re-reads them"
        )

    @property
    def ok(self) -> bool:
        """True when nothing was tampered with and an expected head (if one was given) is still held."""
        return not self.problems and self.expected_head_found is not False

    @property
    def head_hex(self) -> str:
        """The head's hash as it is published and passed back to `--expect`."""
        return self.head_hash.hex()

    def summary(self) -> str:
        """One line for people: what was verified and the head, or the first problem found."""
        if self.ok:
            extra = f"; {self.pending} row(s) waiting to be sealed" if self.pending else ""
            extra += "".join(f"; {note}" for note in self.notes)
            verdict = "OK" if self.verified_from is None else "PARTIAL OK"
            return (
                f"{verdict}: {self.rows_checked} audit rows verified ({self.mode}); "
                f"head {self.head_seq}:{self.head_hex}; "
                f"{self.checkpoints_checked} signed checkpoint(s) matched{extra}"
            )
        first = self.problems[0] if self.problems else "the expected head hash is not in the chain (truncated?)"
        more = f" (+{len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return f"TAMPERED: {first}{more}; {self.rows_checked} rows checked ({self.mode})"


@contextmanager
def verifying_snapshot(database: Database, *, snapshot: str | None = None) -> Iterator[psycopg.Connection[Any]]:
    """One REPEATABLE READ READ ONLY transaction that reads rows as stored (verify, bundle export).

    `row_security = off` makes a query that a policy would filter fail instead; a
    search_path without `public` means no operator or function a superuser put there can
    stand in for PostgreSQL's own (pg_temp is never searched for either). `snapshot` (from
    `pg_export_snapshot()` in another such transaction) makes this one see exactly what that
    one sees, so verify can check links on a second connection while it checks rows.
    """
    with database.connect() as conn:
        raw = psycopg_connection(conn)
        if database.role_names is None:
            with raw.transaction():
                database.roles(raw)
        with raw.transaction():
            raw.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            if snapshot is not None:
                raw.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
            database.enter_role(raw, read_only=True)
            raw.execute("SET LOCAL TimeZone = 'UTC'")
            raw.execute("SET LOCAL row_security = off")
            raw.execute("SET LOCAL search_path = pg_catalog, pg_temp")
            yield raw


class _RawJsonb(TextLoader):
    """jsonb exactly as the server's output function wrote it: no cast, no parsing here."""


@contextmanager
def rows_as_stored(
    raw: Any, table: str, columns: str, *, order_by_id: bool = False, where_id_in: Sequence[uuid.UUID] = ()
) -> Iterator[Any]:
    """A server-side cursor over `SELECT x.id, <columns> FROM ONLY public.<table> x`, jsonb as the server's text.

    A random name, so a cursor a pooled neighbour left under the same name cannot collide;
    jsonb through a loader, never a `::text` cast someone may have replaced.
    """
    with raw.cursor(name=f"jarvis_{table}_{uuid.uuid4().hex}") as cursor:
        cursor.adapters.register_loader("jsonb", _RawJsonb)
        cursor.itersize = 5_000
        where = " WHERE x.id OPERATOR(pg_catalog.=) ANY(%s::pg_catalog.uuid[])" if where_id_in else ""
        cursor.execute(
            f"SELECT x.id, {columns} FROM ONLY public.{table} x{where}" + (" ORDER BY x.id" if order_by_id else ""),
            (list(where_id_in),) if where_id_in else None,
        )
        yield cursor


def row_uuid(key: Any) -> uuid.UUID:
    """A chained row's id: uuids as they are, schema_changes' bigints as `jarvis_serial_uuid` maps them."""
    return key if isinstance(key, uuid.UUID) else uuid.UUID(int=int(key) % 2**64)


def sha256(content: bytes) -> bytes:
    """The SHA-256 digest the chain's hashes are made of."""
    return hashlib.sha256(content).digest()
