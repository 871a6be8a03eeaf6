"""Verifying the trail against its chain: every row, every link, the catalog and the signed checkpoints.

Read-only, in one REPEATABLE READ READ ONLY snapshot (`chain.verifying_snapshot`): rows `FROM ONLY`,
row security off, a search path without `public`. The catalog is checked first, and so are the
built-in functions, operators and types the bulk checks use and any native code a superuser
loaded (`verify_sql.builtin_problems`); then
PostgreSQL renders, hashes and compares every row and link and returns only what disagrees
(`verify_sql`), and Python names it.

Full or incremental. A full verify checks every link from genesis and every row of every table.
An incremental one starts at the newest signed checkpoint the chain still holds: it checks the
catalog, every checkpoint against the stored chain, then only the links and rows after the
checkpoint. What it does not re-read is named in docs/audit-trail.md: a row edited, deleted or
added below the checkpoint without touching the chain is found only by a full verify.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from jarvis.db.audit.canonical import AUDIT_COLUMNS, GENESIS, NotCanonicalError, canonical_python_from_json
from jarvis.db.audit.catalog import catalog_problems
from jarvis.db.audit.chain import (
    BACKDATE_SLACK,
    LOADABLE,
    SEAL_BOUND,
    ExpectedHead,
    Problem,
    TrustedHead,
    VerifyReport,
    row_uuid,
    rows_as_stored,
    sha256,
    verifying_snapshot,
)
from jarvis.db.audit.verify_sql import (
    LINK_CHECK_SQL,
    RELATIONS,
    TYPE_OIDS,
    builtin_problems,
    relation_check_sql,
    renderable_columns,
    row_check_sql,
    row_key,
    stored_columns,
)
from jarvis.db.base import CHAINED_TABLES
from jarvis.db.engine import Database, DatabaseError

UUID_KEYED = {"planning_cycles", "tool_calls", "decision_log"}
QUERY_FAILED = (psycopg.NotSupportedError, psycopg.InternalError, psycopg.ProgrammingError, psycopg.DataError)
"""What PostgreSQL raises when a query of verify's cannot be planned or run as written (an operator made
neither hash- nor merge-joinable, a support function or opfamily entry removed, ...): a one-line problem,
never a traceback (issue 22, round 3)."""
"""Tables keyed by uuid; schema_changes is keyed by a bigint that `jarvis_serial_uuid` maps into the chain."""

# Where a problem sorts among those at the same chain position (the order a reader meets them).
_GAP, _LINK, _ENCODING, _ROW, _FUTURE, _BACKDATED, _CHECKPOINT, _EXPECTED = range(8)


@dataclass(frozen=True)
class _Interval:
    """The checkpoints around a stretch of chain positions: rows there must be dated between them."""

    seqs: list[int]
    """Distinct checkpoint positions, ascending (PostgreSQL's width_bucket finds a link's place)."""
    latest: list[TrustedHead]
    """Per position, the checkpoint a later link must not be dated well before (the last one at it)."""
    upcoming: list[TrustedHead]
    """Per position, the checkpoint an earlier link must not be dated after (the first one at it)."""
    lower: list[float]
    upper: list[float]


def _intervals(trusted: Sequence[TrustedHead], slack: timedelta) -> _Interval:
    ordered = sorted(trusted, key=lambda h: h.seq)
    seqs: list[int] = []
    latest: list[TrustedHead] = []
    upcoming: list[TrustedHead] = []
    for head in ordered:
        if seqs and seqs[-1] == head.seq:
            latest[-1] = head
        else:
            seqs.append(head.seq)
            latest.append(head)
            upcoming.append(head)
    return _Interval(
        seqs,
        latest,
        upcoming,
        [shifted(h.sealed_at, -slack) for h in latest],
        [shifted(h.sealed_at, slack) for h in upcoming],
    )


class _Run:
    """One verify: the snapshot, what it covers, and the problems found, kept in reading order."""

    def __init__(self, raw: Any, report: VerifyReport, intervals: _Interval, after: int) -> None:
        self.raw = raw
        self.report = report
        self.intervals = intervals
        self.after = after
        self.at_positions: list[tuple[int, int, Problem]] = []
        self.unchained: list[Problem] = []
        self.unverified_links = 0
        self.unchecked_tables: set[str] = set()
        """Tables whose row check PostgreSQL could not run: none of their links counts as verified."""

    def at(self, seq: int, rank: int, problem: Problem) -> None:
        self.at_positions.append((seq, rank, problem))

    def params(self) -> dict[str, Any]:
        return {
            "after": self.after,
            "heads": self.intervals.seqs,
            "lower": self.intervals.lower,
            "upper": self.intervals.upper,
            "low": datetime.fromtimestamp(LOADABLE[0], UTC),
            "high": datetime.fromtimestamp(LOADABLE[1], UTC),
        }


def verify(
    database: Database,
    *,
    expect: ExpectedHead | None = None,
    trusted: Sequence[TrustedHead] = (),
    backdate_slack: timedelta = BACKDATE_SLACK,
    incremental: bool = False,
    progress: Callable[[int], None] | None = None,
    planned: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Check every row hash and chain link (or, `incremental`, those after the newest checkpoint) and the catalog.

    Never writes. `expect` is a head published earlier; `trusted` are signed checkpoints. A chain
    that does not hold them at their positions was truncated or rewritten after they were taken,
    and a row that entered the chain after a checkpoint although dated well before it was backdated.

    `incremental` starts from the newest of `trusted` whose hash the chain still holds at its
    position (none: a full verify, and the report says so). `planned` is called once with the work
    to do (rows plus links), `progress` with the work done after each step, for a progress bar.
    """
    report = VerifyReport()
    try:
        _verify(database, report, expect, trusted, backdate_slack, incremental, progress, planned)
    except QUERY_FAILED as error:  # the snapshot was rolled back; what was found so far stays in the report
        report.problems.append(_query_failed("verify", error))
    return report


def _query_failed(what: str, error: Exception) -> Problem:
    first = (str(error).splitlines() or [""])[0]
    return Problem(
        what,
        None,
        None,
        f"PostgreSQL could not run verify's query ({type(error).__name__}: {first}): a built-in operator, "
        "function, type or operator family verify relies on was changed (the problems above name it); "
        "restore it, or verify an exported bundle offline",
    )


def _verify(
    database: Database,
    report: VerifyReport,
    expect: ExpectedHead | None,
    trusted: Sequence[TrustedHead],
    backdate_slack: timedelta,
    incremental: bool,
    progress: Callable[[int], None] | None,
    planned: Callable[[int], None] | None,
) -> None:
    intervals = _intervals(trusted, backdate_slack)
    with verifying_snapshot(database) as raw:
        for obj, why in catalog_problems(raw) + builtin_problems(raw):
            report.problems.append(Problem(obj, None, None, why))
        head = raw.execute(
            "SELECT l.seq, l.chain_hash FROM ONLY public.audit_chain l ORDER BY l.seq DESC LIMIT 1"
        ).fetchone()
        report.head_seq, report.head_hash = (int(head[0]), bytes(head[1])) if head else (0, GENESIS)
        stored = _stored_at(raw, [h.seq for h in trusted])
        start = _starting_point(trusted, stored, report.head_seq) if incremental else None
        if incremental and start is None:
            report.notes.append("no signed checkpoint the chain still holds to start from: verified in full")
        report.verified_from = start
        run = _Run(raw, report, intervals, start.seq if start else 0)
        previous = stored.get(run.after, GENESIS) if start else GENESIS
        bad_links = _start_link_check(database, raw, run.after, previous)
        links = _links_per_table(raw, run.after)
        total = sum(links.values())
        if planned is not None:
            planned(2 * total)
        done = 0
        pending = _pending(raw)
        requeued = _queued_but_linked(raw)
        for table in CHAINED_TABLES:
            queued = pending.get(table, set()) - requeued.get(table, {}).keys()
            # Incremental: a table whose rows do not add up to its links and queue entries is read in full.
            # (A full verify never counts: every link's row is looked up, `_check_rows`.)
            every_row = start is None or _rows_in(raw, table) != _links_of(raw, table) + len(queued)
            _check_rows(run, table, every_row=every_row, queued=queued)
            done += links.get(table, 0)
            if progress is not None:
                progress(done)
        _check_foreign_links(run, [table for table in links if table not in CHAINED_TABLES])
        _check_links(run, _finished(bad_links, raw, run.after, previous))
        if progress is not None:
            progress(2 * total)
        _check_checkpoints(run, trusted, stored)
        _check_expected(run, expect)
        run.unverified_links += sum(links.get(table, 0) for table in run.unchecked_tables)
        report.rows_checked = max(0, total - run.unverified_links)
        run.at_positions.sort(key=lambda item: (item[0], item[1]))
        report.problems.extend(problem for _, _, problem in run.at_positions)
        _check_cut(run, trusted)
        _check_seal_head(run)
        report.problems.extend(run.unchained)
        _check_queue(run, pending, requeued)
        _check_coverage(run, trusted)
        flagged = _check_flags(run, trusted)
        for table in RELATIONS:
            _check_relations(run, table, flagged)
        report.pending = sum(len(ids) for ids in pending.values())


def _stored_at(raw: Any, seqs: list[int]) -> dict[int, bytes]:
    """The stored chain hash at each of `seqs` that exists."""
    if not seqs:
        return {}
    return {
        int(seq): bytes(chain_hash)
        for seq, chain_hash in raw.execute(
            "SELECT l.seq, l.chain_hash FROM ONLY public.audit_chain l "
            "WHERE l.seq OPERATOR(pg_catalog.=) ANY(%s::pg_catalog.int8[])",
            (sorted(set(seqs)),),
        )
    }


def _starting_point(trusted: Sequence[TrustedHead], stored: dict[int, bytes], head_seq: int) -> TrustedHead | None:
    """The newest checkpoint whose hash the chain still holds at its position (None: start from genesis)."""
    for head in sorted(trusted, key=lambda h: h.seq, reverse=True):
        if 0 < head.seq <= head_seq and stored.get(head.seq) == head.hash:
            return head
    return None


def _links_per_table(raw: Any, after: int) -> dict[str, int]:
    return {
        table: int(count)
        for table, count in raw.execute(
            "SELECT l.table_name, pg_catalog.count(*) FROM ONLY public.audit_chain l "
            "WHERE l.seq > %s::pg_catalog.int8 GROUP BY l.table_name",
            (after,),
        )
    }


def _pending(raw: Any) -> dict[str, set[uuid.UUID]]:
    queued: dict[str, set[uuid.UUID]] = {}
    for table, row_id in raw.execute("SELECT p.table_name, p.row_id FROM ONLY public.audit_pending p"):
        queued.setdefault(table, set()).add(row_id)
    return queued


def _queued_but_linked(raw: Any) -> dict[str, dict[uuid.UUID, int]]:
    """Queue entries whose row is already in the chain: {table: {row id: its chain position}}.

    The sealer deletes an entry in the transaction that links its row, so in one snapshot no row is
    both; only a superuser queuing by hand makes one, e.g. to balance an incremental verify's counts.
    """
    found: dict[str, dict[uuid.UUID, int]] = {}
    for table, row_id, seq in raw.execute(
        "SELECT p.table_name, p.row_id, l.seq FROM ONLY public.audit_pending p "
        "JOIN ONLY public.audit_chain l ON l.table_name = p.table_name AND l.row_id = p.row_id"
    ):
        found.setdefault(table, {})[row_id] = int(seq)
    return found


def _rows_in(raw: Any, table: str) -> int | None:
    """How many rows `table` holds (None: it cannot be read as stored, which the row check names)."""
    try:
        with raw.transaction():
            return int(raw.execute(f"SELECT pg_catalog.count(*) FROM ONLY public.{table} x").fetchone()[0])
    except psycopg.errors.InsufficientPrivilege:
        return None


def _links_of(raw: Any, table: str) -> int:
    return int(
        raw.execute(
            "SELECT pg_catalog.count(*) FROM ONLY public.audit_chain l WHERE l.table_name = %s::pg_catalog.text",
            (table,),
        ).fetchone()[0]
    )


def _check_rows(run: _Run, table: str, *, every_row: bool, queued: set[uuid.UUID]) -> None:
    """`table`'s rows against their links, in PostgreSQL; the disagreements named here.

    With `every_row`, every row and every link of the table are read, joined both ways (the result
    is streamed, not read through a cursor): a link whose row is gone comes back as such, found by
    looking it up, never by counting (a superuser can make `count` lie, issue 22 B1).
    """
    legacy: list[tuple[uuid.UUID, int, bytes, float | None, int]] = []
    id_is_uuid = table in UUID_KEYED
    try:
        with run.raw.transaction():  # a savepoint: a table that cannot be read leaves the snapshot usable
            columns = renderable_columns(run.raw, table)
            sql = row_check_sql(table, columns, every_row=every_row, id_is_uuid=id_is_uuid)
            if every_row:
                found = run.raw.cursor().stream(sql, run.params())
            else:
                cursor = run.raw.cursor(name=f"jarvis_verify_{uuid.uuid4().hex}")
                cursor.itersize = 10_000
                found = cursor.execute(sql, run.params())
            for row_id, link_row_id, seq, encoding, matches, epoch, interval, stored_hash in found:
                if link_row_id is None:
                    if row_id not in queued:
                        run.unchained.append(
                            Problem(table, row_id, None, "row is not in the chain (written with the triggers bypassed)")
                        )
                elif row_id is None:
                    run.at(seq, _ROW, Problem(table, link_row_id, seq, "row was deleted"))
                    run.unverified_links += 1
                elif encoding == 1:
                    legacy.append((link_row_id, seq, bytes(stored_hash), epoch, interval))
                else:
                    _judge(run, table, link_row_id, seq, epoch, interval, None if matches else "changed")
            if every_row:
                _check_duplicates(run, table)
            if legacy:
                _check_legacy(run, table, legacy)
    except psycopg.errors.ProgramLimitExceeded:  # a row over 1 GB as JSON text: the sealer flagged it
        run.report.problems.append(
            Problem(
                table,
                None,
                None,
                "a row is larger than PostgreSQL can render as JSON text (over 1 GB), so this table's rows could not "
                "all be checked; audit_flags names it (only a superuser, bypassing the size checks, can store one)",
            )
        )
    except psycopg.errors.InsufficientPrivilege as error:  # row security would filter it: never read partially
        run.report.problems.append(
            Problem(table, None, None, f"cannot be read as stored: {str(error).splitlines()[0]}")
        )
    except QUERY_FAILED as error:  # e.g. the FULL JOIN cannot be planned: the other tables are still checked
        run.report.problems.append(_query_failed(table, error))
        run.unchecked_tables.add(table)


def _check_foreign_links(run: _Run, tables: list[str]) -> None:
    """Links naming a table that is not chained (its CHECK dropped, which the catalog names): no such row exists."""
    for table in tables:
        for seq, row_id in run.raw.execute(
            "SELECT l.seq, l.row_id FROM ONLY public.audit_chain l "
            "WHERE l.table_name = %s::pg_catalog.text AND l.seq > %s::pg_catalog.int8",
            (table, run.after),
        ):
            run.at(seq, _ROW, Problem(table, row_id, seq, "row was deleted"))
            run.unverified_links += 1


def _judge(
    run: _Run, table: str, row_id: uuid.UUID, seq: int, epoch: float | None, interval: int, fault: str | None
) -> None:
    """Name what is wrong with one linked row: unloadable, changed, or dated outside its checkpoints."""
    when = float("nan") if epoch is None else float(epoch)
    if not math.isfinite(when) or not LOADABLE[0] <= when < LOADABLE[1]:
        fault = f"created_at {_when(when)} is outside what any client can load"
    if fault == "changed":
        run.at(seq, _ROW, Problem(table, row_id, seq, "row content was changed after it was sealed"))
        run.unverified_links += 1
    elif fault is not None:
        run.at(seq, _ROW, Problem(table, row_id, seq, f"row cannot be verified: {fault}"))
        run.unverified_links += 1
    heads = run.intervals
    if interval < len(heads.seqs) and math.isfinite(when) and when > heads.upper[interval]:
        upcoming = heads.upcoming[interval]
        run.at(
            seq,
            _FUTURE,
            Problem(
                table,
                row_id,
                seq,
                f"dated {_when(when)}, after {upcoming.label} that already holds it "
                f"(sealed at {upcoming.sealed_at.isoformat(timespec='seconds')}): dated in the future",
            ),
        )
    if interval >= 1 and when < heads.lower[interval - 1]:
        latest = heads.latest[interval - 1]
        run.at(
            seq,
            _BACKDATED,
            Problem(
                table,
                row_id,
                seq,
                f"dated {_when(when)} but entered the chain after {latest.label} (sealed at "
                f"{latest.sealed_at.isoformat(timespec='seconds')}): backdated, or held in an open "
                "transaction for longer than a minute",
            ),
        )


def _check_duplicates(run: _Run, table: str) -> None:
    """Two rows with one id (only possible with the primary key's index bypassed) both match one link."""
    for (row_id,) in run.raw.execute(
        f"SELECT x.id FROM ONLY public.{table} x GROUP BY x.id HAVING pg_catalog.count(*) > 1::pg_catalog.int8"
    ):
        run.report.problems.append(Problem(table, row_uuid(row_id), None, "two rows share this id (a forged copy?)"))


def _check_legacy(run: _Run, table: str, legacy: list[tuple[uuid.UUID, int, bytes, float | None, int]]) -> None:
    """Encoding 1 (links sealed before migration 0003): the row re-encoded in Python from its JSON."""
    if table not in AUDIT_COLUMNS:  # schema_changes joined the chain with encoding 2
        for row_id, seq, _, epoch, interval in legacy:
            _judge(
                run,
                table,
                row_id,
                seq,
                epoch,
                interval,
                f"{table} was never sealed with encoding 1 (the link was relabelled)",
            )
        return
    documents: dict[uuid.UUID, str] = {}
    ids = [row_id for row_id, *_ in legacy]
    with rows_as_stored(run.raw, table, "pg_catalog.to_jsonb(x)", where_id_in=ids) as cursor:
        for key, row_json in cursor:
            documents[row_uuid(key)] = row_json
    for row_id, seq, stored_hash, epoch, interval in legacy:
        fault: str | None = None
        try:
            if sha256(canonical_python_from_json(table, documents[row_id])) != stored_hash:
                fault = "changed"
        except NotCanonicalError as error:
            fault = str(error)
        _judge(run, table, row_id, seq, epoch, interval, fault)


def _start_link_check(database: Database, raw: Any, after: int, previous: bytes) -> Future[list[tuple[Any, ...]]]:
    """Check the links on a second connection, in this transaction's snapshot, while this one checks rows.

    Only on a direct connection with a spare one in the pool: behind a transaction pooler the second
    transaction could wait for the server connection the first one holds. Otherwise the links are
    checked here, now.
    """
    result: Future[list[tuple[Any, ...]]] = Future()
    pool = database.engine.pool
    direct = raw.info.backend_pid == raw.execute("SELECT pg_catalog.pg_backend_pid()").fetchone()[0]
    if direct and pool.size() - pool.checkedout() >= 1:  # type: ignore[attr-defined]
        snapshot = str(raw.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()[0])
        background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jarvis-verify-links")
        result = background.submit(_link_problems, database, snapshot, after, previous)
        background.shutdown(wait=False)
        return result
    result.set_result(list(raw.execute(LINK_CHECK_SQL, {"after": after, "previous": previous})))
    return result


def _finished(bad_links: Future[list[tuple[Any, ...]]], raw: Any, after: int, previous: bytes) -> list[tuple[Any, ...]]:
    """The second connection's result; if it could not be had (no connection), the links checked here."""
    try:
        return bad_links.result()
    except (psycopg.OperationalError, DatabaseError):
        return list(raw.execute(LINK_CHECK_SQL, {"after": after, "previous": previous}))


def _link_problems(database: Database, snapshot: str, after: int, previous: bytes) -> list[tuple[Any, ...]]:
    """The links after `after` that do not follow from their stored predecessor (the first from `previous`).

    Runs on its own connection, in the verifying transaction's exported `snapshot`.
    """
    with verifying_snapshot(database, snapshot=snapshot) as raw:
        return list(raw.execute(LINK_CHECK_SQL, {"after": after, "previous": previous}))


def _check_links(run: _Run, bad_links: list[tuple[Any, ...]]) -> None:
    """Name the gaps, broken links and unknown encodings the link check found."""
    for seq, table, row_id, previous_seq, bad_link, encoding in bad_links:
        if seq != previous_seq + 1:
            missing = previous_seq + 1
            run.at(seq, _GAP, Problem(table, row_id, seq, f"chain position {missing} is missing (links deleted)"))
        if bad_link:
            run.at(seq, _LINK, Problem(table, row_id, seq, "chain link does not match its predecessor"))
        if encoding not in (1, 2):
            run.at(seq, _ENCODING, Problem(table, row_id, seq, f"unknown encoding {encoding}"))


def _check_checkpoints(run: _Run, trusted: Sequence[TrustedHead], stored: dict[int, bytes]) -> None:
    """Every signed checkpoint against the chain hash stored at its position (in either mode)."""
    for head in sorted(trusted, key=lambda h: h.seq):
        if head.seq in stored:
            run.report.checkpoints_checked += 1
            if stored[head.seq] != head.hash:
                run.at(
                    head.seq,
                    _CHECKPOINT,
                    Problem(
                        "audit_chain", None, head.seq, f"{head.label} does not match the chain: history was rewritten"
                    ),
                )


def _check_expected(run: _Run, expect: ExpectedHead | None) -> None:
    if expect is None:
        return
    if expect.seq == 0 and expect.hash == GENESIS:
        run.report.expected_head_found = True
        return
    found = [
        int(seq)
        for (seq,) in run.raw.execute(
            "SELECT l.seq FROM ONLY public.audit_chain l WHERE l.chain_hash = %s::pg_catalog.bytea", (expect.hash,)
        )
    ]
    run.report.expected_head_found = bool(found)
    for seq in sorted(found):
        if expect.seq is not None and expect.seq != seq:
            run.at(
                seq,
                _EXPECTED,
                Problem(
                    "audit_chain",
                    None,
                    seq,
                    f"the expected head {expect.hash.hex()[:12]}… is at chain position {seq}, not {expect.seq}",
                ),
            )


def _check_cut(run: _Run, trusted: Sequence[TrustedHead]) -> None:
    for head in sorted(trusted, key=lambda h: h.seq):
        if head.seq > run.report.head_seq:
            run.report.problems.append(
                Problem("audit_chain", None, head.seq, f"{head.label} is beyond the chain's head: the chain was cut")
            )
        elif head.seq == 0 and head.hash != GENESIS:
            run.report.problems.append(Problem("audit_chain", None, None, f"{head.label} has a bad genesis"))


def _check_seal_head(run: _Run) -> None:
    report = run.report
    seal_head = run.raw.execute("SELECT h.seq, h.chain_hash FROM ONLY public.audit_seal_head h").fetchone()
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


def _check_queue(run: _Run, pending: dict[str, set[uuid.UUID]], requeued: dict[str, dict[uuid.UUID, int]]) -> None:
    """Queue entries whose row is gone (deleted before it was sealed), already linked (queued twice), or
    below where the sealer starts reading (so never to be sealed)."""
    for table, linked in sorted(requeued.items()):
        for row_id, seq in sorted(linked.items(), key=lambda item: item[1]):
            run.report.problems.append(
                Problem(
                    table,
                    row_id,
                    seq,
                    "queued twice: the row is already in the chain (only a superuser can queue a row by hand)",
                )
            )
    for table in CHAINED_TABLES:
        if not pending.get(table):
            continue
        key = row_key(table, table in UUID_KEYED)
        try:
            with run.raw.transaction():
                found = run.raw.execute(
                    "SELECT p.row_id FROM ONLY public.audit_pending p WHERE p.table_name = %s::pg_catalog.text "
                    f"AND NOT EXISTS (SELECT FROM ONLY public.{table} x WHERE {key} = p.row_id)",
                    (table,),
                ).fetchall()
        except psycopg.errors.InsufficientPrivilege:
            continue  # already named: the table cannot be read as stored
        for (row_id,) in found:
            run.report.problems.append(Problem(table, row_id, None, "queued row was deleted before it was sealed"))
        # Every entry below the sealer's starting point was sealed when it moved there (jarvis_seal, 0007):
        # one still queued there, for a row that exists and is not linked, will never be read again.
        for (row_id,) in run.raw.execute(
            "SELECT p.row_id FROM ONLY public.audit_pending p, ONLY public.audit_seal_head h "
            "WHERE p.table_name = %s::pg_catalog.text AND p.queued_by < h.queue_scan_from "
            f"AND EXISTS (SELECT FROM ONLY public.{table} x WHERE {key} = p.row_id) "
            "AND NOT EXISTS (SELECT FROM ONLY public.audit_chain l WHERE l.table_name = p.table_name "
            "AND l.row_id = p.row_id)",
            (table,),
        ):
            run.report.problems.append(
                Problem(
                    table,
                    row_id,
                    None,
                    "queued below where the sealer starts reading (audit_seal_head.queue_scan_from was moved "
                    "forward): it would never be sealed",
                )
            )
    _check_waiting(run)


UNCOVERED = (
    f"not covered by a signed checkpoint within {SEAL_BOUND.total_seconds():g} s: the sealer was blocked or could "
    "not sign, and until a checkpoint covers it a superuser's edit of it leaves no trace"
)
LISTED = 10
"""Rows named one by one per table; the rest are counted in one more problem."""


def _check_waiting(run: _Run) -> None:
    """Rows queued longer than SEAL_BOUND (by the database's clock): never an OK over them.

    Every process that appends seals and signs within JARVIS_SEAL_INTERVAL; a row still queued after
    SEAL_BOUND means no sealer runs, one is blocked (a session holding the sealer's lock) or failing.
    An entry already named (its row gone, already linked, stranded) is not named twice.
    """
    named = {(problem.table, problem.row_id) for problem in run.report.problems if problem.row_id is not None}
    now = run.raw.execute("SELECT pg_catalog.clock_timestamp()").fetchone()[0]
    waiting: dict[str, list[tuple[uuid.UUID, datetime]]] = {}
    for table, row_id, queued_at in run.raw.execute(
        "SELECT p.table_name, p.row_id, p.queued_at FROM ONLY public.audit_pending p "
        "WHERE p.queued_at < %s::pg_catalog.timestamptz ORDER BY p.queued_at, p.row_id",
        (now - SEAL_BOUND,),
    ):
        if (str(table), row_id) not in named:
            waiting.setdefault(str(table), []).append((row_id, queued_at))
    for table, rows in sorted(waiting.items()):
        for row_id, queued_at in rows[:LISTED]:
            age = (now - queued_at).total_seconds()
            run.report.problems.append(Problem(table, row_id, None, f"queued {age:.0f} s ago and still {UNCOVERED}"))
        if len(rows) > LISTED:
            run.report.problems.append(
                Problem(table, None, None, f"{len(rows) - LISTED} more queued row(s) still {UNCOVERED}")
            )


def _check_coverage(run: _Run, trusted: Sequence[TrustedHead]) -> None:
    """Links past the newest signed checkpoint, sealed longer than SEAL_BOUND ago: sealed, never signed.

    Only when there is a witness log to speak of (`trusted` checkpoints): a sealer without its signing
    key (JARVIS_SIGNING_KEY naming a missing file) still links rows, and without this check a verify
    with the real key would say OK over a tail nothing vouches for.
    """
    if not trusted:
        return
    newest = max(trusted, key=lambda head: (head.seq, head.sealed_at))
    now = run.raw.execute("SELECT pg_catalog.clock_timestamp()").fetchone()[0]
    late = [
        int(seq)
        for (seq,) in run.raw.execute(
            "SELECT l.seq FROM ONLY public.audit_chain l WHERE l.seq > %s::pg_catalog.int8 "
            "AND l.sealed_at < %s::pg_catalog.timestamptz ORDER BY l.seq",
            (newest.seq, now - SEAL_BOUND),
        )
    ]
    if late:
        positions = f"chain position {late[0]}" if len(late) == 1 else f"chain positions {late[0]}-{late[-1]}"
        run.report.problems.append(
            Problem(
                "audit_chain",
                None,
                late[0],
                f"{positions} ({len(late)} link(s)) sealed over {SEAL_BOUND.total_seconds():g} s ago, past the newest "
                f"signed checkpoint ({newest.label}), {UNCOVERED}",
            )
        )


def _check_flags(run: _Run, trusted: Sequence[TrustedHead]) -> set[tuple[str, uuid.UUID]]:
    """Every row the sealer linked but flagged (audit_flags, migration 0008), and flags gone since a checkpoint.

    A flagged row stays in the chain (it was queued, and the chain is complete) but the sealer did not
    vouch for it: backdated, its parent or cycle missing, outside its cycle, or too large to render. A
    signed checkpoint records how many flags the chain held up to it: fewer now means flags were deleted.
    """
    try:
        with run.raw.transaction():
            flags = run.raw.execute(
                "SELECT f.seq, f.table_name, f.row_id, f.reason FROM ONLY public.audit_flags f ORDER BY f.seq"
            ).fetchall()
    except psycopg.errors.UndefinedTable:
        return set()  # a database from before 0008: the catalog check names a missing table
    for seq, table, row_id, reason in flags:
        run.report.problems.append(
            Problem(table, row_id, int(seq), f"the sealer linked this row without vouching for it: {reason}")
        )
    for head in sorted(trusted, key=lambda h: h.seq):
        held = sum(1 for seq, *_ in flags if int(seq) <= head.seq)
        if head.flagged is not None and held != head.flagged:
            run.report.problems.append(
                Problem(
                    "audit_flags",
                    None,
                    head.seq,
                    f"{head.label} records {head.flagged} flagged row(s) up to it, but audit_flags holds {held} "
                    "(flags were deleted or forged)",
                )
            )
    return {(str(table), row_uuid(row_id)) for _, table, row_id, _ in flags}


def _check_relations(run: _Run, table: str, flagged: set[tuple[str, uuid.UUID]]) -> None:
    """Recompute, from the rows themselves, what the sealer flags that rows alone can show (migration 0008).

    A flag is a row a superuser can delete before the agent signs its next checkpoint (which then counts
    without it): the rows cannot be made to lie that way. A completion whose start row is missing or dated
    after it; a start row or decision whose cycle is missing, dated before it began, or more than the
    sealer's slack (`BACKDATE_SLACK`, its constant, not this verify's) after it closed. Completions carry
    no cycle (a CHECK constraint): an `abandoned` outcome appended long after its cycle closed is honest.
    audit_flags still matters for what rows cannot show (backdated against the sealer's sweep, unrenderable).
    """
    parent, cycle = RELATIONS[table]
    needed = {"id": TYPE_OIDS["uuid"], "created_at": TYPE_OIDS["timestamp with time zone"]}
    needed |= {"parent_id": TYPE_OIDS["uuid"]} if parent else {}
    needed |= {"cycle_id": TYPE_OIDS["uuid"]} if cycle else {}
    columns = stored_columns(run.raw, table)
    if any(columns.get(name) != kind for name, kind in needed.items()) or (
        cycle and stored_columns(run.raw, "planning_cycles").get("parent_id") != TYPE_OIDS["uuid"]
    ):
        return  # a retyped or dropped column: the catalog check names it
    found: dict[uuid.UUID, list[str]] = {}
    slack = BACKDATE_SLACK.total_seconds()
    try:
        with run.raw.transaction():
            rows = run.raw.execute(relation_check_sql(table)).fetchall()
    except psycopg.errors.InsufficientPrivilege:
        return  # already named: the table cannot be read as stored
    except QUERY_FAILED as error:
        run.report.problems.append(_query_failed(table, error))
        return
    for row_id, at, parent_id, parent_found, before_parent, parent_at, *rest in rows:
        cycle_id, cycle_found, before_cycle, ended, began_at, ended_at = rest
        why = found.setdefault(row_id, [])
        if parent_id is not None and not parent_found:
            why.append(f"its start row {parent_id} does not exist")
        elif parent_id is not None and before_parent:
            why.append(f"dated before its start row ({parent_at})")
        if cycle_id is not None and not cycle_found:
            why.append(f"its planning cycle {cycle_id} does not exist")
        elif cycle_id is not None and before_cycle:
            why.append(f"dated before its planning cycle began ({began_at})")
        elif cycle_id is not None and at is not None and ended is not None and float(at) > float(ended) + slack:
            why.append(f"dated after its planning cycle closed ({ended_at})")
    found = {row_id: sorted(set(why)) for row_id, why in found.items() if why and (table, row_id) not in flagged}
    if not found:
        return
    linked = {
        row_id: int(seq)
        for row_id, seq in run.raw.execute(
            "SELECT l.row_id, l.seq FROM ONLY public.audit_chain l WHERE l.table_name = %s::pg_catalog.text "
            "AND l.row_id OPERATOR(pg_catalog.=) ANY(%s::pg_catalog.uuid[])",
            (table, list(found)),
        )
    }
    # Only linked rows: one not in the chain is named as such already, and one still queued is flagged when sealed.
    for row_id, seq in sorted(linked.items(), key=lambda item: item[1]):
        run.report.problems.append(
            Problem(
                table,
                row_id,
                seq,
                f"{'; '.join(found[row_id])}: the sealer does not vouch for such a row, yet audit_flags holds no "
                "flag for it (deleted, or the row linked with the sealer bypassed)",
            )
        )


def shifted(moment: datetime, delta: timedelta) -> float:
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
