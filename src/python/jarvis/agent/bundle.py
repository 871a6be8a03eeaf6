"""Audit bundles: the whole sealed trail in one file that an auditor verifies without the database.

`export_bundle` reads, in one read-only snapshot, every chained row with the
exact bytes its link hashed (its canonical text), every link of the chain,
and every signed checkpoint of this database's witness log, and writes them
as JSON Lines:

    {"format": "jarvis-audit-bundle", "version": 1, "trail": ..., "exported_at": ...,
     "head_seq": ..., "head_hash": ..., "pending": ..., "checkpoints": ...}
    {"row": {"table": ..., "id": ..., "encoding": 1|2, "canonical": "<the hashed text>"}}   ... every row
    {"link": {"seq": ..., "table": ..., "row_id": ..., "row_hash": hex, "chain_hash": hex, "encoding": ...}}
    {"flag": {"seq": ..., "table": ..., "row_id": ..., "reason": ...}}     ... every row the sealer flagged
    {"checkpoint": {<the witness log's Checkpoint fields>}}

(The header also counts the flags, "flags"; bundles written before flags existed have neither.)

`verify_bundle` trusts nothing in the file. It checks that each row's text is
canonical (rendering it again gives the same bytes, for its own table and
id), hashes it, recomputes every link, and checks every checkpoint's
signature against a public key the caller trusts — never a key the bundle
names — and that the chain still holds each signed head at its position.
It names every flagged row (the sealer linked it without vouching for it),
checks the flags against the count each checkpoint signed (a bundle with
fewer flags than a checkpoint signed was trimmed), and recomputes from the
rows what the sealer flags that rows alone can show (a completion without
its start row, a row outside its planning cycle): a flag deleted in the
database before the next checkpoint was signed cannot hide such a row.
Whoever edits a row must recompute the chain, and whoever recomputes the
chain cannot re-sign its checkpoints without the private key.

The verifier needs no database: `verify_bundle` never connects to anything,
and this module's own top-level imports are neither psycopg nor SQLAlchemy
(the encodings, which live in `jarvis.db`, are imported when a bundle is
written or checked; the `jarvis.agent` package itself loads the runtime).
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import tempfile
import uuid
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from jarvis.config import ExitCode, JarvisError
from jarvis.witness import (
    Checkpoint,
    PublicKey,
    WitnessError,
    WitnessLog,
    load_public_key,
    plausible_seal_time,
    timeline_problems,
)
from jarvis.witness.files import fsync_directory

if TYPE_CHECKING:
    from jarvis.config import Settings
    from jarvis.db import Database
    from jarvis.db.audit.chain import ExpectedHead, Problem, TrustedHead

FORMAT = "jarvis-audit-bundle"
VERSION = 1
HASH_HEX = 64
_GENESIS = bytes(32)
_ID_BYTES = 17  # one byte for the table, sixteen for the row id
_FIX = "the bundle was edited or cut off; export it again or ask its sender for an intact copy"


class BundleError(JarvisError):
    """A bundle cannot be written or read (one line naming the file and the fix)."""

    exit_code = ExitCode.BAD_INPUT


class BundleExistsError(BundleError):
    """The output file exists and --force was not given."""


class BundleFormatError(BundleError):
    """A line of the bundle is not what the format allows; the message names its line number."""


@dataclass(frozen=True)
class BundleSummary:
    """What `export_bundle` wrote."""

    path: Path
    trail: str
    rows: int
    links: int
    checkpoints: int
    head_seq: int
    head_hash: str
    pending: int
    """Rows still waiting to be sealed: not in the chain yet, so not in the bundle."""
    unreadable: int
    """Rows whose canonical text could not be produced (written with a problem; the verifier reports them)."""
    signed_seq: int = 0
    """The newest chain position a checkpoint of this trail in the witness log names (0: none)."""

    @property
    def unsigned(self) -> int:
        """Links after the newest checkpoint: `verify --bundle` fails on them (no signature vouches for them)."""
        return max(0, self.head_seq - self.signed_seq)

    def __str__(self) -> str:
        return (
            f"{self.rows} rows, {self.links} links, {self.checkpoints} signed checkpoint(s) of trail {self.trail}; "
            f"head {self.head_seq}:{self.head_hash}"
        )


@dataclass
class BundleReport:
    """`VerifyReport` for a bundle: the same counts and problems, plus what the bundle is of."""

    trail: str = ""
    exported_at: str = ""
    key_id: str = ""
    """The trusted public key's id: the only key checkpoints were accepted from."""
    rows_checked: int = 0
    head_seq: int = 0
    head_hash: bytes = _GENESIS
    pending: int = 0
    checkpoints_checked: int = 0
    signed_seq: int | None = None
    """The newest chain position a valid checkpoint vouches for (None: no valid checkpoint)."""
    problems: list[Problem] = field(default_factory=list)
    expected_head_found: bool | None = None

    @property
    def ok(self) -> bool:
        """True when the bundle is intact and an expected head (if one was given) is in it."""
        return not self.problems and self.expected_head_found is not False

    @property
    def head_hex(self) -> str:
        """The bundle's head hash as it is published and passed back to `--expect`."""
        return self.head_hash.hex()

    @property
    def unsigned_links(self) -> int:
        """Links after the newest valid checkpoint: internally consistent, but vouched for by no signature."""
        return self.head_seq - (self.signed_seq or 0)

    def summary(self) -> str:
        """One line for people: what the bundle proves, or the first problem found."""
        if self.ok:  # never with an unsigned tail: that is a problem (issue 22, B3)
            extra = ""
            if self.pending:
                extra += f"; {self.pending} row(s) were waiting to be sealed at export and are not in the bundle"
            return (
                f"OK: {self.rows_checked} audit rows verified offline (trail {self.trail}, exported "
                f"{self.exported_at}); head {self.head_seq}:{self.head_hex}; {self.checkpoints_checked} "
                f"checkpoint(s) signed by key {self.key_id} matched{extra}"
            )
        first = self.problems[0] if self.problems else "the expected head hash is not in the chain (truncated?)"
        more = f" (+{len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return f"TAMPERED: {first}{more}; {self.rows_checked} rows checked"


# --- export ------------------------------------------------------------------------------------------------


def export_bundle(database: Database, settings: Settings, path: Path, *, force: bool = False) -> BundleSummary:
    """Write the sealed trail, its chain and its signed checkpoints to `path`, atomically.

    Reads in one REPEATABLE READ READ ONLY transaction as `database`'s role
    (open it as the auditor). Refuses an existing `path` unless `force`.
    """
    from jarvis.agent.witnessing import witness_log_path

    path = Path(path)
    if path.exists() and not force:
        raise BundleExistsError(f"{path} exists; choose another file, or pass --force to replace it")
    # The witness log first: each checkpoint in it was signed after its seal committed, so the
    # snapshot taken below holds every head it names. (Read after, it could name a later head.)
    entries = WitnessLog(witness_log_path(settings, database)).entries()
    directory = path.absolute().parent
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=directory)
    except OSError as error:
        raise BundleError(f"cannot write {path}: {error.strerror}; choose a writable directory") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            summary = _write_bundle(database, entries, out, path)
            out.flush()
            os.fsync(out.fileno())
        _install(Path(temporary), path, force=force)
        fsync_directory(directory)
    except OSError as error:
        raise BundleError(f"cannot write {path}: {error.strerror}; free space or choose another directory") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return summary


def _install(temporary: Path, path: Path, *, force: bool) -> None:
    """Move the finished file into place: replacing only with `force`, never clobbering a file made meanwhile."""
    if force:
        os.replace(temporary, path)
        return
    try:
        os.link(temporary, path)  # fails, atomically, if the name exists
    except FileExistsError:
        raise BundleExistsError(f"{path} exists; choose another file, or pass --force to replace it") from None
    except OSError:  # a file system without hard links
        if path.exists():
            raise BundleExistsError(f"{path} exists; choose another file, or pass --force to replace it") from None
        os.replace(temporary, path)


def _line(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n"


def _write_bundle(database: Database, entries: list[Checkpoint], out: IO[str], path: Path) -> BundleSummary:
    from jarvis.db.audit.canonical import (
        AUDIT_COLUMNS,
        ENCODING_JSONB,
        ENCODING_PYTHON,
        NotCanonicalError,
        canonical_jsonb,
        canonical_python_from_json,
    )
    from jarvis.db.audit.chain import row_uuid, rows_as_stored, verifying_snapshot
    from jarvis.db.base import CHAINED_TABLES

    rows = links = unreadable = 0
    # Read exactly as verify reads (as stored: no row-security filter, no foreign cast or operator).
    with verifying_snapshot(database) as raw:
        info = raw.execute("SELECT trail_id FROM public.trail_info").fetchone()
        assert (
            info is not None
        ), "public.trail_info has its one row (migration 0003 inserts it; only a superuser deletes)"
        trail = str(info[0])
        head = raw.execute("SELECT seq, chain_hash FROM ONLY public.audit_chain ORDER BY seq DESC LIMIT 1").fetchone()
        head_seq, head_hash = (int(head[0]), bytes(head[1])) if head else (0, _GENESIS)
        legacy = {
            (t, i)
            for t, i in raw.execute(
                "SELECT table_name, row_id FROM ONLY public.audit_chain WHERE encoding = %s", (ENCODING_PYTHON,)
            )
        }
        pending = {(t, i) for t, i in raw.execute("SELECT table_name, row_id FROM ONLY public.audit_pending")}
        flags = _flags(raw)
        out.write(
            _line(
                {
                    "format": FORMAT,
                    "version": VERSION,
                    "trail": trail,
                    "exported_at": datetime.now(UTC).isoformat(timespec="microseconds"),
                    "head_seq": head_seq,
                    "head_hash": head_hash.hex(),
                    "pending": len(pending),
                    "checkpoints": len(entries),
                    "flags": len(flags),
                }
            )
        )
        for table in CHAINED_TABLES:
            with rows_as_stored(raw, table, "pg_catalog.to_jsonb(x)", order_by_id=True) as cursor:
                for key, row_json in cursor:
                    row_id = row_uuid(key)
                    if (table, row_id) in pending:
                        continue  # not sealed yet: nothing vouches for it
                    encoding = ENCODING_PYTHON if (table, row_id) in legacy else ENCODING_JSONB
                    row: dict[str, Any] = {"table": table, "id": str(row_id), "encoding": encoding}
                    try:
                        if encoding == ENCODING_JSONB:
                            content = canonical_jsonb(table, row_json)
                        elif table in AUDIT_COLUMNS:
                            content = canonical_python_from_json(table, row_json)
                        else:
                            raise NotCanonicalError(f"encoding {encoding} is not defined for {table}")
                        row["canonical"] = content.decode("utf-8")
                    except NotCanonicalError as error:
                        row["canonical"] = None
                        row["problem"] = str(error)
                        unreadable += 1
                    out.write(_line({"row": row}))
                    rows += 1
        with raw.cursor(name=f"bundle_chain_{uuid.uuid4().hex}", binary=True) as cursor:
            cursor.itersize = 10_000
            cursor.execute(
                "SELECT seq, table_name, row_id, row_hash, chain_hash, encoding "
                "FROM ONLY public.audit_chain ORDER BY seq"
            )
            for seq, table, row_id, row_hash, chain_hash, encoding in cursor:
                link = {
                    "seq": int(seq),
                    "table": table,
                    "row_id": str(row_id),
                    "row_hash": bytes(row_hash).hex(),
                    "chain_hash": bytes(chain_hash).hex(),
                    "encoding": int(encoding),
                }
                out.write(_line({"link": link}))
                links += 1
    for seq, table, row_id, reason in flags:
        out.write(_line({"flag": {"seq": int(seq), "table": table, "row_id": str(row_id), "reason": reason}}))
    for checkpoint in entries:
        out.write(_line({"checkpoint": dataclasses.asdict(checkpoint)}))
    signed_seq = max((c.seq for c in entries if c.trail == trail and c.seq <= head_seq), default=0)
    return BundleSummary(
        path, trail, rows, links, len(entries), head_seq, head_hash.hex(), len(pending), unreadable, signed_seq
    )


def _flags(raw: Any) -> list[tuple[int, str, uuid.UUID, str]]:
    """Every row the sealer linked without vouching for it (audit_flags, migration 0008), in chain order."""
    import psycopg

    try:
        with raw.transaction():
            return list(raw.execute("SELECT seq, table_name, row_id, reason FROM ONLY public.audit_flags ORDER BY seq"))
    except psycopg.errors.UndefinedTable:  # a database from before 0008 (verify names the missing table)
        return []


# --- verify ------------------------------------------------------------------------------------------------


def verify_bundle(
    path: Path,
    public_key_path: Path,
    *,
    expect: ExpectedHead | None = None,
    backdate_slack: timedelta | None = None,
    witness_log: Path | None = None,
) -> BundleReport:
    """Verify a bundle offline against the trusted public key at `public_key_path`.

    Every link must be vouched for by a signed checkpoint: links after the newest one the bundle holds
    are a problem (whoever holds a bundle can drop its newer checkpoints and rewrite what followed).
    `witness_log` is the signer's own log (a copy the auditor got from the signer, not from the bundle's
    sender): its checkpoints of this trail are checked against the chain too, so the bundle must reach
    the newest of them. Raises BundleFormatError (naming the line) for a file that is not a bundle,
    WitnessError for an unreadable public key or witness log; anything that was changed is a Problem.
    """
    from jarvis.db.audit.chain import BACKDATE_SLACK

    public_key = load_public_key(public_key_path)
    logged = None if witness_log is None else (Path(witness_log), _logged_checkpoints(Path(witness_log)))
    checker = _Checker(
        Path(path), public_key.key_id, expect, BACKDATE_SLACK if backdate_slack is None else backdate_slack
    )
    for number, kind, body in _read_lines(checker.path):
        checker.take(number, kind, body)
    checker.finish(public_key, logged)
    return checker.report


def _logged_checkpoints(path: Path) -> list[Checkpoint]:
    """The checkpoints of the signer's witness log at `path`; a missing file is an error, not an empty log."""
    if not path.is_file():
        raise BundleError(
            f"--witness-log {path} is not a file; give the signer's witness log (JARVIS_WITNESS_LOG on the "
            "agent's host, by default <data dir>/witness/<database>.jsonl)"
        )
    return WitnessLog(path).entries()


_KINDS = ("header", "row", "link", "flag", "checkpoint")


def _read_lines(path: Path) -> Iterator[tuple[int, str, dict[str, Any]]]:
    try:
        file = path.open("rb")
    except OSError as error:
        raise BundleError(f"cannot read the bundle {path}: {error.strerror}") from None
    with file:
        number = 0
        for number, raw in enumerate(file, start=1):
            where = f"{path} line {number}"
            if not raw.endswith(b"\n"):
                raise BundleFormatError(f"{where} is incomplete (no line end): {_FIX}")
            try:
                document = json.loads(raw)
            except UnicodeDecodeError:
                raise BundleFormatError(f"{where} is not UTF-8 text: {_FIX}") from None
            except (ValueError, RecursionError) as error:
                detail = error.msg if isinstance(error, json.JSONDecodeError) else type(error).__name__
                raise BundleFormatError(f"{where} is not JSON ({detail}): {_FIX}") from None
            if not isinstance(document, dict):
                raise BundleFormatError(f"{where} is not a JSON object: {_FIX}")
            if number == 1:
                yield number, "header", document
                continue
            if len(document) != 1 or next(iter(document)) not in _KINDS[1:]:
                raise BundleFormatError(
                    f'{where} is not a {{"row"}}, {{"link"}}, {{"flag"}} or {{"checkpoint"}} line: {_FIX}'
                )
            kind, body = next(iter(document.items()))
            if not isinstance(body, dict):
                raise BundleFormatError(f"{where}: {kind} must be a JSON object: {_FIX}")
            yield number, kind, body
        if number == 0:
            raise BundleFormatError(f"{path} line 1: the file is empty, not an audit bundle: {_FIX}")


def _field(body: dict[str, Any], name: str, kind: type, where: str) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        what = {int: "an integer", str: "a string"}.get(kind, kind.__name__)
        raise BundleFormatError(f"{where}: field {name} must be {what}, got {_shown(value)}: {_FIX}")
    return value


def _uuid_field(body: dict[str, Any], name: str, where: str) -> uuid.UUID:
    value = _field(body, name, str, where)
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        parsed = None
    if parsed is None or str(parsed) != value:
        raise BundleFormatError(
            f"{where}: field {name} must be a lowercase hyphenated UUID, got {_shown(value)}: {_FIX}"
        )
    return parsed


def _hex_field(body: dict[str, Any], name: str, where: str) -> bytes:
    value = _field(body, name, str, where)
    if len(value) != HASH_HEX or value.strip("0123456789abcdef"):
        raise BundleFormatError(f"{where}: field {name} must be {HASH_HEX} lowercase hex digits: {_FIX}")
    return bytes.fromhex(value)


def _exact_keys(body: dict[str, Any], required: set[str], optional: set[str], where: str) -> None:
    missing = sorted(required - set(body))
    unknown = sorted(set(body) - required - optional)
    if missing or unknown:
        detail = "; ".join(
            part
            for part in (
                f"missing field(s) {', '.join(missing)}" if missing else "",
                f"unknown field(s) {', '.join(unknown)}" if unknown else "",
            )
            if part
        )
        raise BundleFormatError(f"{where}: {detail}: {_FIX}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(slots=True)
class _Row:
    """What is kept of a row until its link comes: its hash, not its text."""

    hash: bytes | None
    encoding: int
    created_at: float
    problem: str | None


class _Checker:
    """Reads a bundle line by line: rows (kept as hashes), then links (checked as they come), then checkpoints."""

    def __init__(self, path: Path, key_id: str, expect: ExpectedHead | None, slack: timedelta) -> None:
        from jarvis.db.audit.canonical import (
            AUDIT_COLUMNS,
            ENCODING_JSONB,
            ENCODING_PYTHON,
            NotCanonicalError,
            canonical_jsonb,
            canonical_python_from_json,
            link_hash,
        )
        from jarvis.db.audit.chain import BACKDATE_SLACK, Problem
        from jarvis.db.base import CHAINED_TABLES

        # The encodings are the sealer's and the database verifier's own, resolved once (not per row).
        self.canonical_jsonb = canonical_jsonb
        self.canonical_python_from_json = canonical_python_from_json
        self.link_hash = link_hash
        self.not_canonical = NotCanonicalError
        self.legacy_tables = frozenset(AUDIT_COLUMNS)
        self.encodings = (ENCODING_PYTHON, ENCODING_JSONB)
        self.problem_type = Problem
        self.path = path
        self.report = BundleReport(key_id=key_id)
        self.expect = expect
        self.expected_seen = False
        self.slack = slack
        self.tables = CHAINED_TABLES
        self.phase = 0
        self.header: dict[str, Any] = {}
        self.rows: dict[bytes, _Row] = {}
        self.previous = _GENESIS
        # Per link, in file order: the chain hash after it, its row's created_at, its table and row id.
        self.chain = bytearray()
        self.created = array("d")
        self.names = bytearray()
        self.runs: list[tuple[int, int]] = []  # (first seq, first index) of each run of consecutive positions
        self.checkpoints: list[tuple[int, Checkpoint]] = []
        self.flags: list[tuple[int, str, uuid.UUID, str]] = []
        self.relations = _Relations(BACKDATE_SLACK)

    def take(self, number: int, kind: str, body: dict[str, Any]) -> None:
        where = f"{self.path} line {number}"
        phase = _KINDS.index(kind)
        if phase < self.phase:
            raise BundleFormatError(
                f"{where}: a {kind} line after the {_KINDS[self.phase]} lines; a bundle holds its header, then "
                f"rows, then links, then checkpoints: {_FIX}"
            )
        self.phase = phase
        if kind == "header":
            self._header(body, where)
        elif kind == "row":
            self._row(body, where)
        elif kind == "link":
            self._link(body, where)
        elif kind == "flag":
            self._flag(body, where)
        else:
            self._checkpoint(body, where, number)

    def _problem(self, table: str, row_id: uuid.UUID | None, seq: int | None, reason: str) -> None:
        self.report.problems.append(self.problem_type(table, row_id, seq, reason))

    def _header(self, body: dict[str, Any], where: str) -> None:
        if body.get("format") != FORMAT:
            raise BundleFormatError(
                f'{where}: not a Jarvis audit bundle (no "format": {json.dumps(FORMAT)}); '
                "give a file written by `jarvis audit export --format bundle`"
            )
        if body.get("version") != VERSION:
            raise BundleFormatError(
                f"{where}: bundle version {_shown(body.get('version'))} is not supported (this Jarvis reads "
                f"version {VERSION}); verify it with the Jarvis release that wrote it"
            )
        _exact_keys(
            body,
            {"format", "version", "trail", "exported_at", "head_seq", "head_hash", "pending", "checkpoints"},
            {"flags"},
            where,
        )
        if "flags" in body and _field(body, "flags", int, where) < 0:
            raise BundleFormatError(f"{where}: field flags must not be negative: {_FIX}")
        self.report.trail = str(_uuid_field(body, "trail", where))
        self.report.exported_at = _field(body, "exported_at", str, where)
        for name in ("head_seq", "pending", "checkpoints"):
            if _field(body, name, int, where) < 0:
                raise BundleFormatError(f"{where}: field {name} must not be negative: {_FIX}")
        _hex_field(body, "head_hash", where)
        self.report.pending = body["pending"]
        self.header = body

    def _row(self, body: dict[str, Any], where: str) -> None:
        _exact_keys(body, {"table", "id", "encoding", "canonical"}, {"problem"}, where)
        table = _field(body, "table", str, where)
        if table not in self.tables:
            raise BundleFormatError(
                f"{where}: {_shown(table)} is not a chained table ({', '.join(self.tables)}): {_FIX}"
            )
        row_id = _uuid_field(body, "id", where)
        encoding = _field(body, "encoding", int, where)
        text = body["canonical"]
        if text is not None and not isinstance(text, str):
            raise BundleFormatError(f"{where}: field canonical must be a string, got {_shown(text)}: {_FIX}")
        key = bytes([self.tables.index(table)]) + row_id.bytes
        entry = _Row(None, encoding, math.nan, None)
        if text is None:
            entry.problem = f"the exporter could not encode it: {body.get('problem') or 'no reason given'}"
        else:
            content = text.encode("utf-8")
            python, jsonb = self.encodings
            try:
                if encoding == jsonb:
                    again = self.canonical_jsonb(table, text)
                elif encoding == python and table in self.legacy_tables:
                    again = self.canonical_python_from_json(table, text)
                else:
                    raise self.not_canonical(f"encoding {encoding} is not defined for {table}")
                if again != content:
                    raise self.not_canonical(
                        "its text is not in canonical form (rendering it again gives different bytes), "
                        f'or its "$table" is not {table}'
                    )
                document = json.loads(text)
                entry.created_at = _identify(table, row_id, document)
                entry.hash = hashlib.sha256(content).digest()
                self.relations.take(table, row_id, document, entry.created_at)
            except ValueError as error:  # NotCanonicalError, or the id/created_at check below
                entry.problem = str(error)
        if key in self.rows:
            self._problem(table, row_id, None, "two rows share this id (a forged copy?)")
            entry.problem = entry.problem or "two rows share this id"
        self.rows[key] = entry

    def _link(self, body: dict[str, Any], where: str) -> None:
        _exact_keys(body, {"seq", "table", "row_id", "row_hash", "chain_hash", "encoding"}, set(), where)
        seq = _field(body, "seq", int, where)
        if not 1 <= seq < 2**63:
            raise BundleFormatError(f"{where}: chain position {_shown(seq)} is outside 1 … 2^63-1: {_FIX}")
        table = _field(body, "table", str, where)
        if table not in self.tables:
            raise BundleFormatError(
                f"{where}: {_shown(table)} is not a chained table ({', '.join(self.tables)}): {_FIX}"
            )
        row_id = _uuid_field(body, "row_id", where)
        stored_row_hash = _hex_field(body, "row_hash", where)
        stored_chain_hash = _hex_field(body, "chain_hash", where)
        encoding = _field(body, "encoding", int, where)
        report = self.report
        if seq <= report.head_seq:
            self._problem(
                table, row_id, seq, f"link out of order: chain position {seq} after {report.head_seq} (links moved?)"
            )
            return
        if seq != report.head_seq + 1:
            self._problem(table, row_id, seq, f"chain position {report.head_seq + 1} is missing (links deleted)")
        if not self.runs or seq != report.head_seq + 1:
            self.runs.append((seq, len(self.created)))
        report.head_seq = seq
        self.previous = self.link_hash(self.previous, seq, table, row_id, stored_row_hash)
        if self.previous != stored_chain_hash:
            self._problem(table, row_id, seq, "chain link does not match its predecessor")
            self.previous = stored_chain_hash
        if encoding not in self.encodings:
            self._problem(table, row_id, seq, f"unknown encoding {encoding}")
        key = bytes([self.tables.index(table)]) + row_id.bytes
        actual = self.rows.pop(key, None)
        if actual is None:
            self._problem(table, row_id, seq, "row was deleted (it is not in the bundle)")
        elif actual.problem is not None:
            self._problem(table, row_id, seq, f"row cannot be verified: {actual.problem}")
        elif actual.encoding != encoding:
            self._problem(
                table,
                row_id,
                seq,
                f"row is given in encoding {actual.encoding} but its link was sealed with {encoding}",
            )
        elif actual.hash != stored_row_hash:
            self._problem(table, row_id, seq, "row content was changed after it was sealed")
        else:
            report.rows_checked += 1
        self.chain += self.previous
        self.created.append(actual.created_at if actual is not None else math.nan)
        self.names += key
        if (
            self.expect is not None
            and self.previous == self.expect.hash
            and (self.expect.seq is None or self.expect.seq == seq)
        ):
            self.expected_seen = True

    def _flag(self, body: dict[str, Any], where: str) -> None:
        _exact_keys(body, {"seq", "table", "row_id", "reason"}, set(), where)
        seq = _field(body, "seq", int, where)
        if not 1 <= seq < 2**63:
            raise BundleFormatError(f"{where}: chain position {_shown(seq)} is outside 1 … 2^63-1: {_FIX}")
        table = _field(body, "table", str, where)
        if table not in self.tables:
            raise BundleFormatError(
                f"{where}: {_shown(table)} is not a chained table ({', '.join(self.tables)}): {_FIX}"
            )
        self.flags.append((seq, table, _uuid_field(body, "row_id", where), _field(body, "reason", str, where)))

    def _checkpoint(self, body: dict[str, Any], where: str, number: int) -> None:
        try:
            checkpoint = Checkpoint.from_json(json.dumps(body), where=where)
        except WitnessError as error:
            raise BundleFormatError(str(error)) from None
        self.checkpoints.append((number, checkpoint))

    def _index(self, seq: int) -> int | None:
        """Where the link at chain position `seq` is in the per-link arrays (None: no such link)."""
        run = bisect.bisect_right(self.runs, (seq, len(self.created))) - 1
        if run < 0:
            return None
        first_seq, first_index = self.runs[run]
        end = self.runs[run + 1][1] if run + 1 < len(self.runs) else len(self.created)
        index = first_index + seq - first_seq
        return index if index < end else None

    def _name(self, index: int) -> tuple[str, uuid.UUID]:
        key = bytes(self.names[index * _ID_BYTES : (index + 1) * _ID_BYTES])
        return self.tables[key[0]], uuid.UUID(bytes=key[1:])

    def finish(self, public_key: PublicKey, logged: tuple[Path, list[Checkpoint]] | None = None) -> None:
        from jarvis.db.audit.chain import TrustedHead

        report = self.report
        if not self.header:
            raise BundleFormatError(f"{self.path} line 1: no header: {_FIX}")
        report.head_hash = self.previous
        header_seq, header_hash = self.header["head_seq"], self.header["head_hash"]
        if (header_seq, header_hash) != (report.head_seq, report.head_hex):
            self._problem(
                "audit_chain",
                None,
                None,
                f"the bundle's header says the chain ends at {header_seq}:{header_hash[:12]}…, but its links end "
                f"at {report.head_seq}:{report.head_hex[:12]}…: links were removed or added after export",
            )
        if self.header["checkpoints"] != len(self.checkpoints):
            self._problem(
                "witness log",
                None,
                None,
                f"the bundle's header lists {self.header['checkpoints']} checkpoint(s), but it holds "
                f"{len(self.checkpoints)}: checkpoints were removed or added after export",
            )
        trusted: list[TrustedHead] = []
        for number, checkpoint in self.checkpoints:
            label = f"checkpoint {checkpoint.seq}:{checkpoint.head_hash[:12]}… signed {checkpoint.signed_at}"
            if not checkpoint.verify(public_key):
                self._problem(
                    "witness log",
                    None,
                    None,
                    f"bundle line {number}: bad signature ({label}, key {checkpoint.key_id}): not signed by the "
                    f"trusted key {report.key_id}",
                )
            elif checkpoint.trail != report.trail:
                self._problem(
                    "witness log",
                    None,
                    None,
                    f"bundle line {number} is for trail {checkpoint.trail}, but the bundle is of trail {report.trail}",
                )
            elif not plausible_seal_time(datetime.fromisoformat(checkpoint.sealed_at)):
                self._problem(
                    "witness log",
                    None,
                    None,
                    f"bundle line {number}: sealed at {checkpoint.sealed_at}, a time no database clock should "
                    f"give ({label}): the database's clock or its jarvis_seal was tampered with",
                )
            else:  # its time is the signer's clock, never the database's word (B2)
                signed_at = datetime.fromisoformat(checkpoint.signed_at)
                trusted.append(
                    TrustedHead(
                        checkpoint.seq, bytes.fromhex(checkpoint.head_hash), signed_at, label, checkpoint.flagged
                    )
                )
        own = [(n, c) for n, c in self.checkpoints if c.trail == report.trail and c.verify(public_key)]
        for number, why in timeline_problems(own):
            self._problem("witness log", None, None, f"bundle line {number}: {why}")
        if logged is not None:
            trusted += self._from_log(public_key, *logged, {c for _, c in self.checkpoints})
        trusted.sort(key=lambda head: head.seq)
        for head in trusted:
            if head.seq > report.head_seq:
                self._problem(
                    "audit_chain", None, head.seq, f"{head.label} is beyond the chain's head: the chain was cut"
                )
                continue
            index = self._index(head.seq) if head.seq else None
            if head.seq == 0:
                held = _GENESIS
            elif index is None:
                self._problem("audit_chain", None, head.seq, f"{head.label} names a chain position that is missing")
                continue
            else:
                held = bytes(self.chain[index * 32 : (index + 1) * 32])
            if held != head.hash:
                self._problem(
                    "audit_chain", None, head.seq, f"{head.label} does not match the chain: history was rewritten"
                )
                continue
            report.checkpoints_checked += 1
            report.signed_seq = max(report.signed_seq or 0, head.seq)
        self._backdated(trusted)
        self._check_flags(trusted)
        flagged = {(table, row_id) for _, table, row_id, _ in self.flags}
        unflagged = [(t, i, why) for t, i, why in self.relations.problems() if (t, i) not in flagged]
        positions = self._positions({(t, i) for t, i, _ in unflagged}) if unflagged else {}
        for table, row_id, why in unflagged:
            if (table, row_id) not in positions:
                continue  # not in the chain: named as such below
            self._problem(
                table,
                row_id,
                positions[(table, row_id)],
                f"{why}: the sealer does not vouch for such a row, yet the bundle holds no flag for it "
                "(deleted before the checkpoint was signed, or the row linked with the sealer bypassed)",
            )
        if not trusted:
            self._problem(
                "witness log",
                None,
                None,
                f"no checkpoint signed by the trusted key {report.key_id}: nothing ties this bundle to the signer "
                "(check --public-key, or export from a database whose agent signs checkpoints)",
            )
        vouched = report.signed_seq or 0
        if report.head_seq > vouched:
            self._problem(
                "audit_chain",
                None,
                vouched + 1,
                f"chain positions {vouched + 1}…{report.head_seq} ({report.head_seq - vouched} link(s)) come after "
                f"the newest checkpoint signed by key {report.key_id}: no signature vouches for them (a bundle cut "
                "back to an older checkpoint and rewritten after it looks exactly like this); export again with "
                "the agent's login (it seals and signs first), or check it against --witness-log or --expect",
            )
        for key, row in self.rows.items():
            table, row_id = self.tables[key[0]], uuid.UUID(bytes=key[1:])
            if row.problem is not None:
                self._problem(table, row_id, None, f"row is not in the chain and cannot be verified: {row.problem}")
            else:
                self._problem(
                    table, row_id, None, "row is not in the chain (written with the triggers bypassed, or added)"
                )
        if self.expect is not None:
            if self.expect.seq == 0 and self.expect.hash == _GENESIS:
                self.expected_seen = True
            report.expected_head_found = self.expected_seen

    def _from_log(
        self, public_key: PublicKey, path: Path, entries: list[Checkpoint], in_bundle: set[Checkpoint]
    ) -> list[TrustedHead]:
        """The signer's own checkpoints of this trail: the bundle must hold each, its newest included."""
        from jarvis.db.audit.chain import TrustedHead

        own = [c for c in entries if c.trail == self.report.trail and c.verify(public_key)]
        if not own:
            self._problem(
                "witness log",
                None,
                None,
                f"{path} holds no checkpoint of trail {self.report.trail} signed by key {self.report.key_id}: "
                "give the witness log of the agent that wrote this trail",
            )
        return [
            TrustedHead(
                c.seq,
                bytes.fromhex(c.head_hash),
                datetime.fromisoformat(c.signed_at),
                f"checkpoint {c.seq}:{c.head_hash[:12]}… signed {c.signed_at} (witness log {path})",
                c.flagged,
            )
            for c in own
            if c not in in_bundle
        ]

    def _positions(self, wanted: set[tuple[str, uuid.UUID]]) -> dict[tuple[str, uuid.UUID], int]:
        """The chain positions of the links naming `wanted` rows (one pass over the links; only for problems)."""
        found: dict[tuple[str, uuid.UUID], int] = {}
        for run, (first_seq, first_index) in enumerate(self.runs):
            end = self.runs[run + 1][1] if run + 1 < len(self.runs) else len(self.created)
            for index in range(first_index, end):
                name = self._name(index)
                if name in wanted:
                    found[name] = first_seq + index - first_index
        return found

    def _check_flags(self, trusted: list[TrustedHead]) -> None:
        """Name every flag; a flag naming no such link, and fewer (or more) flags than a checkpoint signed."""
        declared = self.header.get("flags")
        if declared is not None and declared != len(self.flags):
            self._problem(
                "audit_flags",
                None,
                None,
                f"the bundle's header lists {declared} flag(s), but it holds {len(self.flags)}: flags were removed "
                "or added after export",
            )
        for seq, table, row_id, reason in self.flags:
            index = self._index(seq)
            if index is None or self._name(index) != (table, row_id):
                self._problem(
                    table,
                    row_id,
                    seq,
                    f"a flag names this row at chain position {seq}, where the chain does not hold it",
                )
            self._problem(table, row_id, seq, f"the sealer linked this row without vouching for it: {reason}")
        for head in trusted:
            if head.flagged is None:
                continue
            held = sum(1 for seq, *_ in self.flags if seq <= head.seq)
            if held < head.flagged:
                self._problem(
                    "audit_flags",
                    None,
                    head.seq,
                    f"{head.label} records {head.flagged} flagged row(s) up to it, but the bundle holds {held}: "
                    "flags were removed from the bundle (trimmed) or deleted from the database",
                )
            elif held > head.flagged:
                self._problem(
                    "audit_flags",
                    None,
                    head.seq,
                    f"{head.label} records {head.flagged} flagged row(s) up to it, but the bundle holds {held}: "
                    "flags were added",
                )

    def _backdated(self, trusted: list[TrustedHead]) -> None:
        """A row that entered the chain after a checkpoint although dated well before it was backdated."""
        if not trusted:
            return
        upcoming = iter(trusted)
        latest, following = None, next(upcoming, None)
        for run, (first_seq, first_index) in enumerate(self.runs):
            end = self.runs[run + 1][1] if run + 1 < len(self.runs) else len(self.created)
            for index in range(first_index, end):
                seq = first_seq + index - first_index
                while following is not None and following.seq < seq:
                    latest, following = following, next(upcoming, None)
                if latest is None:
                    continue
                created = self.created[index]
                try:
                    limit = (latest.sealed_at - self.slack).timestamp()
                except OverflowError:  # a checkpoint dated at the calendar's start: nothing is before it
                    continue
                if not math.isnan(created) and created < limit:
                    table, row_id = self._name(index)
                    dated = datetime.fromtimestamp(created, UTC).isoformat(timespec="seconds")
                    self._problem(
                        table,
                        row_id,
                        seq,
                        f"dated {dated} but entered the chain after {latest.label} (sealed at "
                        f"{latest.sealed_at.isoformat(timespec='seconds')}): backdated, or held in an open "
                        "transaction for longer than a minute",
                    )


class _Relations:
    """The sealer's checks that rows alone can show (migration 0008), recomputed from a bundle's rows.

    A completion whose start row is missing or dated after it; a start row or decision whose planning
    cycle is missing, dated before it began, or more than the sealer's slack after it closed. Completions
    carry no cycle, so an `abandoned` outcome appended long after its cycle closed is honest. Kept compact:
    each row's time by id for the tables rows point into, and each reference once.
    """

    def __init__(self, slack: timedelta) -> None:
        self.slack = slack.total_seconds()
        self.born: dict[tuple[str, bytes], tuple[float, str]] = {}
        """(table, id) -> (created_at epoch, as written) of planning cycles and tool calls."""
        self.closed: dict[bytes, tuple[float, str]] = {}
        """Planning cycle id -> its close row's created_at."""
        self.references: list[tuple[str, bytes, float, bytes | None, bytes | None]] = []

    def take(self, table: str, row_id: uuid.UUID, document: Any, created_at: float) -> None:
        if table not in ("planning_cycles", "tool_calls", "decision_log"):
            return
        written = str(document.get("created_at"))
        if table != "decision_log":
            self.born[(table, row_id.bytes)] = (created_at, written)
        parent = _reference(document.get("parent_id")) if table != "decision_log" else None
        cycle = _reference(document.get("cycle_id")) if table != "planning_cycles" else None
        if table == "planning_cycles" and parent is not None:
            self.closed[parent] = (created_at, written)
        if parent is not None or cycle is not None:
            self.references.append((table, row_id.bytes, created_at, parent, cycle))

    def problems(self) -> Iterator[tuple[str, uuid.UUID, str]]:
        for table, key, at, parent, cycle in self.references:
            why: list[str] = []
            if parent is not None:
                start = self.born.get((table, parent))
                if start is None:
                    why.append(f"its start row {uuid.UUID(bytes=parent)} does not exist")
                elif at < start[0]:
                    why.append(f"dated before its start row ({start[1]})")
            if cycle is not None:
                began = self.born.get(("planning_cycles", cycle))
                ended = self.closed.get(cycle)
                if began is None:
                    why.append(f"its planning cycle {uuid.UUID(bytes=cycle)} does not exist")
                elif at < began[0]:
                    why.append(f"dated before its planning cycle began ({began[1]})")
                elif ended is not None and at > ended[0] + self.slack:
                    why.append(f"dated after its planning cycle closed ({ended[1]})")
            if why:
                yield table, uuid.UUID(bytes=key), "; ".join(why)


def _reference(value: Any) -> bytes | None:
    """A row's parent_id or cycle_id as 16 bytes (None: absent, or not a UUID, which canonical text cannot hold)."""
    try:
        return None if value is None else uuid.UUID(str(value)).bytes
    except ValueError:
        return None


def _identify(table: str, row_id: uuid.UUID, document: Any) -> float:
    """Check the canonical text is of this row (its id); return its created_at as epoch seconds (NaN if none)."""
    key = document.get("id") if isinstance(document, dict) else None
    try:
        found = uuid.UUID(int=key) if isinstance(key, int) and not isinstance(key, bool) else uuid.UUID(str(key))
    except (ValueError, TypeError):
        found = None
    if found != row_id:
        raise ValueError(f"its text is of row {_shown(key)}, not of {row_id}")
    created_at = document.get("created_at")
    if not isinstance(created_at, str):
        return math.nan
    try:
        return datetime.fromisoformat(created_at).timestamp()
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"created_at {_shown(created_at)} is not a timestamp") from None
