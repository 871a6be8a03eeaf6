"""Sealing audit rows into the hash chain, and verifying the whole trail against it.

See `jarvis.db.models.audit_chain` for the design. Sealing is one call to the
database's `jarvis_seal()` (SECURITY DEFINER: the application role may cause
links but never write one). Verifying reads as any reader reads — `FROM ONLY`,
row security off — recomputes every hash in Python, checks the catalog of
every audit table, and checks heads published earlier (signed checkpoints,
`--expect`). The window between an append and its sealing is the only time a
superuser's edit goes unnoticed; the agent seals after every planning cycle.
"""

from __future__ import annotations

import gc
import hashlib
import math
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.string import TextLoader
from sqlalchemy import exc, text

from jarvis.config import ExitCode
from jarvis.db.audit.canonical import (
    AUDIT_COLUMNS,
    ENCODING_JSONB,
    ENCODING_PYTHON,
    GENESIS,
    NotCanonicalError,
    canonical_python_from_json,
    link_hash,
)
from jarvis.db.audit.catalog import catalog_problems
from jarvis.db.base import CHAINED_TABLES
from jarvis.db.engine import Database, DatabaseError, RoleNotGrantedError, psycopg_connection

SEAL_BATCH = 5000
LOADABLE = (
    datetime(2000, 1, 1, tzinfo=UTC).timestamp(),
    datetime(9999, 1, 1, tzinfo=UTC).timestamp(),
)
"""created_at must lie in [2000, 9999): what the CHECK constraints allow and every client can load."""
BACKDATE_SLACK = timedelta(seconds=60)
"""How much later than its `created_at` a row may commit before a checkpoint calls it backdated."""


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


def seal(database: Database, *, wait: float = 0.0) -> SealResult:
    """Link every queued audit row into the chain.

    Waits at most `wait` seconds for another sealer, then raises
    SealerBusyError naming the session that holds the lock.
    """
    total = 0
    lock_timeout = f"{max(1, round(wait * 1000))}ms"
    while True:
        try:
            with database.begin() as conn:
                conn.execute(text("SELECT pg_catalog.set_config('lock_timeout', :t, true)"), {"t": lock_timeout})
                row = conn.execute(
                    text("SELECT linked, head_seq, head_hash, sealed_at FROM public.jarvis_seal(:n)"),
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
        if row.linked < SEAL_BATCH:
            return SealResult(total, row.head_seq, bytes(row.head_hash), row.sealed_at)


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
    label: str


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
            return (
                f"OK: {self.rows_checked} audit rows verified; head {self.head_seq}:{self.head_hex}; "
                f"{self.checkpoints_checked} signed checkpoint(s) matched{extra}"
            )
        first = self.problems[0] if self.problems else "the expected head hash is not in the chain (truncated?)"
        more = f" (+{len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return f"TAMPERED: {first}{more}; {self.rows_checked} rows checked"


@dataclass
class _Row:
    hash: bytes | None
    created_at: float
    problem: str | None = None


def verify(
    database: Database,
    *,
    expect: ExpectedHead | None = None,
    trusted: Sequence[TrustedHead] = (),
    backdate_slack: timedelta = BACKDATE_SLACK,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Recompute every row hash and chain link and check the catalog; never writes.

    `progress` (for a progress bar) is called with the number of rows read plus links checked so far,
    every `PROGRESS_EVERY` of them: the whole job is about the chain's length + the queued rows, twice.

    `expect` is a head published earlier; `trusted` are signed checkpoints. A
    chain that does not contain them was truncated or rewritten after they
    were taken, and a row that entered the chain after a checkpoint although
    dated well before it was backdated.
    """
    report = VerifyReport()
    tick = None if progress is None else _Ticker(progress)
    with _collector_paused(), verifying_snapshot(database) as raw:
        problems = catalog_problems(raw)
        report.problems.extend(Problem(obj, None, None, why) for obj, why in problems)
        legacy = {
            (t, i) for t, i in raw.execute("SELECT table_name, row_id FROM ONLY public.audit_chain WHERE encoding = 1")
        }
        rows: dict[str, dict[uuid.UUID, _Row]] = {}
        for table in CHAINED_TABLES:
            rows[table] = _load_rows(raw, table, legacy, report, tick)
        pending = {(t, i) for t, i in raw.execute("SELECT table_name, row_id FROM ONLY public.audit_pending")}
        _check_chain(raw, rows, report, expect, sorted(trusted, key=lambda h: h.seq), backdate_slack, tick)
        seal_head = raw.execute("SELECT seq, chain_hash FROM ONLY public.audit_seal_head").fetchone()
        if seal_head is None or (int(seal_head[0]), bytes(seal_head[1])) != (report.head_seq, report.head_hash):
            shown = f"{seal_head[0]}:{bytes(seal_head[1]).hex()[:12]}…" if seal_head else "missing"
            report.problems.append(
                Problem(
                    "audit_seal_head",
                    None,
                    None,
                    f"is {shown}, but the chain's head is {report.head_seq}:{report.head_hex[:12]}… "
                    "(rewound or edited: sealing fails until it matches)",
                )
            )
        for table, leftover in rows.items():
            for row_id in leftover:
                if (table, row_id) not in pending:
                    report.problems.append(
                        Problem(table, row_id, None, "row is not in the chain (written with the triggers bypassed)")
                    )
        for table, row_id in pending:
            if table in rows and row_id not in rows[table]:
                report.problems.append(Problem(table, row_id, None, "queued row was deleted before it was sealed"))
        report.pending = len(pending)
    return report


PROGRESS_EVERY = 10_000
"""How many rows or links `verify` reads between two calls of its `progress` callback."""


class _Ticker:
    """Counts rows and links and reports every PROGRESS_EVERY of them to `verify`'s progress callback."""

    def __init__(self, report_to: Callable[[int], None]) -> None:
        self.report_to = report_to
        self.done = 0

    def __call__(self) -> None:
        self.done += 1
        if self.done % PROGRESS_EVERY == 0:
            self.report_to(self.done)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Verify holds a small object per row and frees none until it ends: the cyclic garbage
    collector would rescan them all again and again (half the time at a million rows)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextmanager
def verifying_snapshot(database: Database) -> Iterator[psycopg.Connection[Any]]:
    """One REPEATABLE READ READ ONLY transaction that reads rows as stored (verify, bundle export).

    `row_security = off` makes a query that a policy would filter fail instead; a
    search_path without `public` means no operator or function a superuser put there can
    stand in for PostgreSQL's own (pg_temp is never searched for either).
    """
    with database.connect() as conn:
        raw = psycopg_connection(conn)
        if database.role_names is None:
            with raw.transaction():
                database.roles(raw)
        with raw.transaction():
            raw.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
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


def _load_rows(
    raw: Any, table: str, legacy: set[tuple[str, uuid.UUID]], report: VerifyReport, tick: _Ticker | None = None
) -> dict[uuid.UUID, _Row]:
    """Every row of `table` with the hash of its canonical encoding, as the database stores it now.

    Encoding 2 is the row's JSONB text with top-level nulls dropped and `$table` added: the
    database renders it (`public.jarvis_canonical`, the function the sealer hashed, whose body
    the catalog check compares with the migration's) and only the hashing happens here, so
    no row is parsed in Python. Rows sealed with encoding 1 (before migration 0003) are
    re-encoded here from their JSON.
    """
    found: dict[uuid.UUID, _Row] = {}
    old = [row_id for t, row_id in legacy if t == table]
    try:
        columns = (
            "pg_catalog.date_part('epoch', x.created_at), "
            f"public.jarvis_canonical('{table}'::pg_catalog.text, pg_catalog.to_jsonb(x))"
        )
        with raw.transaction(), rows_as_stored(raw, table, columns) as cursor:
            for key, created_at, canonical in cursor:
                row_id = row_uuid(key)
                entry = _Row(_sha256(canonical.encode("utf-8")), created_at)
                found[row_id] = _checked(table, row_id, entry, found, report)
                if tick is not None:
                    tick()
        if old and table not in AUDIT_COLUMNS:  # schema_changes joined the chain with encoding 2
            for row_id in old:
                if row_id in found:
                    found[row_id].hash = None
                    found[row_id].problem = f"{table} was never sealed with encoding 1 (the link was relabelled)"
        elif old:
            with raw.transaction(), rows_as_stored(raw, table, "pg_catalog.to_jsonb(x)", where_id_in=old) as cursor:
                for key, row_json in cursor:
                    _reencode_legacy(table, found[row_uuid(key)], row_json)
    except psycopg.errors.InsufficientPrivilege as error:  # row security would filter it: never read partially
        report.problems.append(Problem(table, None, None, f"cannot be read as stored: {str(error).splitlines()[0]}"))
        return {}
    return found


def _reencode_legacy(table: str, entry: _Row, row_json: str) -> None:
    """Encoding 1: the row as Python encoded it before migration 0003."""
    try:
        entry.hash = _sha256(canonical_python_from_json(table, row_json))
    except NotCanonicalError as error:
        entry.hash = None
        entry.problem = entry.problem or str(error)


def _checked(table: str, row_id: uuid.UUID, entry: _Row, found: dict[uuid.UUID, _Row], report: VerifyReport) -> _Row:
    created_at = entry.created_at
    if not math.isfinite(created_at) or not LOADABLE[0] <= created_at < LOADABLE[1]:
        entry.problem = f"created_at {_when(created_at)} is outside what any client can load"
    if row_id in found:
        report.problems.append(Problem(table, row_id, None, "two rows share this id (a forged copy?)"))
        entry.problem = entry.problem or "two rows share this id"
    return entry


def _sha256(content: bytes) -> bytes:
    return hashlib.sha256(content).digest()


def _check_chain(
    raw: Any,
    rows: dict[str, dict[uuid.UUID, _Row]],
    report: VerifyReport,
    expect: ExpectedHead | None,
    trusted: list[TrustedHead],
    slack: timedelta,
    tick: _Ticker | None = None,
) -> None:
    previous = GENESIS
    expected_seen = False
    by_seq: dict[int, list[TrustedHead]] = {}
    for head in trusted:  # every one: a later checkpoint at the same position must not launder an earlier
        by_seq.setdefault(head.seq, []).append(head)
    latest: TrustedHead | None = None  # the newest checkpoint before the current link
    upcoming = iter(trusted)
    next_head = next(upcoming, None)
    for seq, table, row_id, stored_row_hash, stored_chain_hash, encoding in _stream_chain(raw):
        if tick is not None:
            tick()
        report.head_seq += 1
        if seq != report.head_seq:
            report.problems.append(
                Problem(table, row_id, seq, f"chain position {report.head_seq} is missing (links deleted)")
            )
            report.head_seq = seq
        while next_head is not None and next_head.seq < seq:
            latest, next_head = next_head, next(upcoming, None)
        previous = link_hash(previous, seq, table, row_id, bytes(stored_row_hash))
        if previous != bytes(stored_chain_hash):
            report.problems.append(Problem(table, row_id, seq, "chain link does not match its predecessor"))
            previous = bytes(stored_chain_hash)
        if encoding not in (ENCODING_PYTHON, ENCODING_JSONB):
            report.problems.append(Problem(table, row_id, seq, f"unknown encoding {encoding}"))
        actual = rows.get(table, {}).pop(row_id, None)
        if actual is None:
            report.problems.append(Problem(table, row_id, seq, "row was deleted"))
        elif actual.problem is not None:
            report.problems.append(Problem(table, row_id, seq, f"row cannot be verified: {actual.problem}"))
        elif actual.hash != bytes(stored_row_hash):
            report.problems.append(Problem(table, row_id, seq, "row content was changed after it was sealed"))
        else:
            report.rows_checked += 1
        if actual is not None and next_head is not None and math.isfinite(actual.created_at):
            if actual.created_at > _shifted(next_head.sealed_at, slack):
                report.problems.append(
                    Problem(
                        table,
                        row_id,
                        seq,
                        f"dated {_when(actual.created_at)}, after {next_head.label} that already holds it "
                        f"(sealed at {next_head.sealed_at.isoformat(timespec='seconds')}): dated in the future",
                    )
                )
        if actual is not None and latest is not None:
            limit = _shifted(latest.sealed_at, -slack)
            if actual.created_at < limit:
                dated = _when(actual.created_at)
                report.problems.append(
                    Problem(
                        table,
                        row_id,
                        seq,
                        f"dated {dated} but entered the chain after {latest.label} (sealed at "
                        f"{latest.sealed_at.isoformat(timespec='seconds')}): backdated, or held in an open "
                        "transaction for longer than a minute",
                    )
                )
        for head in by_seq.get(seq, ()):
            report.checkpoints_checked += 1
            if head.hash != previous:
                report.problems.append(
                    Problem("audit_chain", None, seq, f"{head.label} does not match the chain: history was rewritten")
                )
        if expect is not None and previous == expect.hash:
            if expect.seq is None or expect.seq == seq:
                expected_seen = True
            else:
                report.problems.append(
                    Problem(
                        "audit_chain",
                        None,
                        seq,
                        f"the expected head {expect.hash.hex()[:12]}… is at chain position {seq}, not {expect.seq}",
                    )
                )
                expected_seen = True  # found: the position is the problem, named above
    report.head_hash = previous
    for head in trusted:
        if head.seq > report.head_seq:
            report.problems.append(
                Problem("audit_chain", None, head.seq, f"{head.label} is beyond the chain's head: the chain was cut")
            )
        elif head.seq == 0 and head.hash != GENESIS:
            report.problems.append(Problem("audit_chain", None, None, f"{head.label} has a bad genesis"))
    if expect is not None:
        if expect.seq == 0 and expect.hash == GENESIS:
            expected_seen = True
        report.expected_head_found = expected_seen


def _shifted(moment: datetime, delta: timedelta) -> float:
    """`moment + delta` as epoch seconds, saturating instead of overflowing at the calendar's ends."""
    try:
        return (moment + delta).timestamp()
    except OverflowError:
        return math.inf if delta > timedelta(0) else -math.inf


def _when(epoch: float) -> str:
    try:
        return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
    except (OverflowError, ValueError, OSError):
        return str(epoch)


def _stream_chain(raw: Any) -> Iterator[tuple[int, str, uuid.UUID, bytes, bytes, int]]:
    with raw.cursor(name=f"verify_chain_{uuid.uuid4().hex}", binary=True) as cursor:
        cursor.itersize = 10_000
        cursor.execute(
            "SELECT seq, table_name, row_id, row_hash, chain_hash, encoding FROM ONLY public.audit_chain ORDER BY seq"
        )
        yield from cursor
