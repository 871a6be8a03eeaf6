"""Seal and sign: the chain head signed by a key the database never sees, into a witness log outside it.

The database's chain shows any edit that does not recompute it. A superuser who does recompute it
consistently is caught by a checkpoint: after a seal the head (position, hash) is signed with an
Ed25519 key and appended to a witness log on the file system, one file per trail.

Time comes from the signer, not the database. A checkpoint carries the database's seal time
(`sealed_at`) and the signer's own clock (`signed_at`); a superuser who makes `jarvis_seal()` report
an earlier time for one seal could otherwise move the bounds that expose a backdated row. So the
signer refuses a seal time that is not inside the window in which it watched the seal happen (give
or take `CLOCK_SKEW`), that is not later than the previous checkpoint's, or that precedes the
previous checkpoint's `signed_at`; and verify takes `signed_at` as each checkpoint's time.

The trail's identity is the database's own (`trail_info.trail_id`, signed into every checkpoint),
so the witness log is named by it, never by a name in DATABASE_URL that a pooler may alias. Every
checkpoint signed is also recorded in the database (`jarvis_record_checkpoint`, migration 0009): a
verify that finds the log missing, emptied or older than that record fails. Because a superuser can
change the trail id and delete those records, the signer also pins which trail each database is,
outside it (`jarvis.db.audit.trail_binding`), and refuses to sign for a database whose trail id
changed, for a copy of another database's trail, or into a new log for a trail it signed before.

This module is the database layer's (the background sealer of `jarvis.db.audit.autoseal` uses it);
`jarvis.agent.witnessing` re-exports it and adds verifying against the log.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import exc, text

from jarvis.config import Settings
from jarvis.db.audit.chain import SealerBusyError, SealResult, seal
from jarvis.db.audit.trail_binding import (
    REBIND,
    Binding,
    DatabaseIdentity,
    TrailBindingError,
    TrailBindings,
    changed_trail_message,
    copied_trail_message,
    database_identity,
)
from jarvis.db.engine import Database, NotMigratedError
from jarvis.witness import (
    SEAL_AGE_LIMIT,
    Checkpoint,
    PublicKey,
    WitnessError,
    WitnessLog,
    generate_key,
    load_signing_key,
    seal_time_problem,
    write_public_key,
)
from jarvis.witness.files import ensure_private_directory

log = logging.getLogger("jarvis.audit")

RECORD_CHECKPOINT_SQL = "SELECT public.jarvis_record_checkpoint(:checkpoint)"
RECORDED_PAGE_SQL = (
    "SELECT c.id, c.signed_at, c.checkpoint FROM ONLY public.audit_checkpoints c "
    "WHERE (c.signed_at, c.id) < (:signed_at, :id) ORDER BY c.signed_at DESC, c.id DESC LIMIT 500"
)
RECORD_WRITERS = (
    "the app role may call jarvis_record_checkpoint with any text it likes, and a superuser may write the table"
)


class CheckpointContradictedError(WitnessError):
    """The chain no longer holds the newest signed checkpoint: sealing or signing now would launder a rewrite."""


class ImplausibleSealTimeError(WitnessError):
    """The database reported a seal time no honest clock gives: nothing is signed with it."""


def trail_id(database: Database) -> str:
    """This trail's identity (trail_info): what the witness log and bundles are bound to."""
    with database.connect() as conn:
        found = conn.execute(text("SELECT trail_id FROM public.trail_info")).scalar()
    if found is None:
        raise NotMigratedError(
            "public.trail_info is empty, so this trail has no identity (its one row was deleted: only a "
            "superuser can do that); restore it from a backup"
        )
    return str(found)


def witness_log_path(settings: Settings, database: Database) -> Path:
    """JARVIS_WITNESS_LOG, or `<data dir>/witness/<trail id>.jsonl`.

    Named by the trail id stored in the database, so every way of reaching one database (directly,
    through a pooler whose pool has another name) finds the same log, and two databases never share
    one. A log of the old name (`<database name>.jsonl`, by the URL or the server's name for it) that
    holds this trail's checkpoints is still found until the next signing moves them (`adopt_legacy_log`).
    """
    if settings.witness_log is not None:
        return settings.witness_log
    return _log_path(settings, database, trail_id(database))


def _log_path(settings: Settings, database: Database, trail: str) -> Path:
    path = settings.data_dir / "witness" / f"{trail}.jsonl"
    if path.exists():
        return path
    return _legacy_log(settings, database, trail) or path


def _legacy_names(database: Database) -> list[str]:
    """The names a log was given before it was named by the trail: the URL's database and the server's."""
    names = [urlsplit(database.url).path.strip("/") or "jarvis"]
    try:
        with database.connect() as conn:
            names.append(str(conn.execute(text("SELECT pg_catalog.current_database()")).scalar()))
    except exc.SQLAlchemyError:
        pass
    return list(dict.fromkeys(re.sub(r"[^A-Za-z0-9_.-]", "_", name) for name in names))


def _legacy_log(settings: Settings, database: Database, trail: str) -> Path | None:
    for name in _legacy_names(database):
        candidate = settings.data_dir / "witness" / f"{name}.jsonl"
        try:
            if candidate.exists() and WitnessLog(candidate).newest(trail) is not None:
                return candidate
        except WitnessError as error:
            log.warning("witness log %s of the old name is unreadable, not adopted: %s", candidate, error)
    return None


def adopt_legacy_log(settings: Settings, database: Database, trail: str) -> Path:
    """The witness log to sign into, after moving this trail's checkpoints out of a log of the old name.

    A legacy log that holds only this trail's checkpoints is renamed; one shared with other trails (two
    databases of one name) keeps theirs, and this trail's are copied to the new file.
    """
    if settings.witness_log is not None:
        return settings.witness_log
    path = _log_path(settings, database, trail)
    wanted = settings.data_dir / "witness" / f"{trail}.jsonl"
    if path == wanted:
        return path
    entries = WitnessLog(path).entries()
    if all(entry.trail == trail for entry in entries):
        os.replace(path, wanted)
    else:
        target = WitnessLog(wanted)
        for entry in entries:
            if entry.trail == trail:
                target.append(entry)
    log.info("witness log %s moved to %s (logs are named by the trail id now)", path, wanted)
    return wanted


def refuse_to_contradict(database: Database, last: Checkpoint | None, trail: str) -> None:
    """Never sign a head the previous checkpoint contradicts: signing would launder a rewrite."""
    if last is None or last.trail != trail:
        return
    with database.connect() as conn:
        held = conn.execute(
            text("SELECT chain_hash FROM ONLY public.audit_chain WHERE seq = :seq"), {"seq": last.seq}
        ).scalar()
    if (last.seq == 0 and last.head_hash == bytes(32).hex()) or (
        held is not None and bytes(held).hex() == last.head_hash
    ):
        return
    raise CheckpointContradictedError(
        f"refusing to seal or sign: the chain no longer holds checkpoint {last.seq}:{last.head_hash[:12]}… signed "
        f"{last.signed_at} (history was rewritten or cut). Run `jarvis audit verify`"
    )


def ensure_signing_key(settings: Settings) -> None:
    """Make the checkpoint key on first use at its default place, then check it can sign.

    Only the default path is created on the fly, so the zero-config default is witnessed too;
    a JARVIS_SIGNING_KEY that names a missing file is a mistake to report, never a new key (which
    would sign this database's witness log with a key nobody trusts). A key that cannot be used
    (wrong mode, not a key) stops the agent before it does anything, not after its work.
    """
    path = settings.signing_key_path()
    if not path.exists():
        if settings.signing_key is not None:
            raise WitnessError(
                f"no signing key at {path} (JARVIS_SIGNING_KEY); correct the path, or run `jarvis keys init` "
                "to create a key there"
            )
        try:
            generate_key(path)
            log.info("created the checkpoint signing key at %s (public key %s)", path, settings.public_key_path())
        except WitnessError:
            if not path.exists():
                raise
    key = load_signing_key(path)
    public = settings.public_key_path()
    if not public.exists():  # another process made the key at the same moment and has not written this yet
        write_public_key(key, public)


SIGNER_LOCK_WAIT = 30.0
"""Seconds a signer waits for another one (in this process or another) signing into the same log."""


@contextmanager
def signer_lock(log_path: Path, wait: float) -> Iterator[None]:
    """One signer at a time per witness log, from reading its last checkpoint to appending the next.

    Two signers interleaving could append a later seal before an earlier one, and the log's seal
    times would go backwards; an flock on `<log>.lock` (per open file, so threads of one process
    exclude each other too) keeps seal, sign and append together.
    """
    lock_path = log_path.with_name(log_path.name + ".lock")
    try:
        ensure_private_directory(lock_path.parent)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as error:
        raise WitnessError(
            f"cannot open the signer's lock {lock_path}: {error.strerror}; make {lock_path.parent} writable "
            "(JARVIS_WITNESS_LOG)"
        ) from None
    try:
        deadline = time.monotonic() + max(wait, SIGNER_LOCK_WAIT)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SealerBusyError(
                        f"another signer has held {lock_path} for over {max(wait, SIGNER_LOCK_WAIT):g} s; "
                        "find the Jarvis process that signs into this witness log"
                    ) from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # releases the lock


def seal_and_sign(
    database: Database,
    settings: Settings,
    *,
    wait: float = 0.0,
    on_checkpoint: Callable[[Checkpoint], None] | None = None,
) -> SealResult:
    """Seal what is queued, then sign the head, append it to the witness log and record it in the database.

    Without a signing key, only seals. `on_checkpoint` is told each checkpoint signed (the agent
    publishes it to Redis); its failure costs only that copy.
    """
    key_path = settings.signing_key_path()
    if not key_path.exists():
        return seal(database, wait=wait)
    trail = trail_id(database)
    identity = database_identity(database)
    bindings = TrailBindings.of(settings)
    refuse_another_trail(bindings, identity, trail)  # before the log of a trail this database is not is touched
    path = adopt_legacy_log(settings, database, trail)
    witness = WitnessLog(path)
    key = load_signing_key(key_path)
    with signer_lock(path, wait):
        last = witness.last()
        refuse_to_contradict(database, last, trail)  # before linking anything onto a rewritten chain
        bound = refuse_a_new_log(bindings, identity, trail, witness, last)
        if last is not None and last.trail == trail and last.key_id != key.key_id:
            raise WitnessError(
                f"refusing to sign: {witness.path} was signed by key {last.key_id}, but JARVIS_SIGNING_KEY "
                f"({key_path}) is key {key.key_id}; point it at the key that signed this log"
            )
        previous = last if last is not None and last.trail == trail else None
        for _attempt in range(3):
            before = datetime.now(UTC)
            result = seal(database, wait=wait)
            after = datetime.now(UTC)
            problem = seal_time_problem(result.sealed_at, before, after, previous)
            if problem is not None:
                raise ImplausibleSealTimeError(
                    f"refusing to sign a head sealed at {result.sealed_at.isoformat()}: {problem}. The database's "
                    "clock (or its jarvis_seal function) is not to be trusted: run `jarvis audit verify`, and check "
                    "that both machines keep time (NTP)"
                )
            if after - result.sealed_at <= SEAL_AGE_LIMIT:
                break  # else the seal waited long for the lock: seal again, now quickly, for a fresh time
        # Signed even when the head has not moved: "nothing else existed at this time" is what lets a later
        # checkpoint expose a row backdated into the gap.
        checkpoint = key.sign(trail, result.head_seq, result.head_hash, result.sealed_at, flagged=result.flagged_total)
        witness.append(checkpoint)
        if bound is None or not bound.signed:
            if bound is None and previous is None and result.head_seq > 0:
                log.info(
                    "first checkpoint of trail %s (%s) at %s: the %d links already in its chain were signed by "
                    "nobody before; this checkpoint vouches for them as they are now",
                    trail,
                    identity,
                    path,
                    result.head_seq,
                )
            bindings.bind(identity, trail, path, signed=True, why="signed" if bound else "first signing")
    record_checkpoint(database, checkpoint)
    if on_checkpoint is not None:
        try:
            on_checkpoint(checkpoint)
        except Exception as error:  # a copy for watchers, never evidence
            log.warning("could not publish checkpoint %s:%s…: %s", checkpoint.seq, checkpoint.head_hash[:12], error)
    return result


def refuse_another_trail(bindings: TrailBindings, identity: DatabaseIdentity, trail: str) -> None:
    """Never sign for a database whose trail id is not the one it was bound to, nor for a copy of another's trail."""
    mine = bindings.of_database(identity)
    if mine is not None and mine.trail != trail:
        raise TrailBindingError(f"refusing to sign: {changed_trail_message(mine, trail, bindings.path)}")
    if mine is None:
        elsewhere = bindings.of_trail_elsewhere(trail, identity)
        if elsewhere is not None:
            raise TrailBindingError(
                f"refusing to sign: {copied_trail_message(elsewhere, identity, trail, bindings.path)}"
            )


def refuse_a_new_log(
    bindings: TrailBindings, identity: DatabaseIdentity, trail: str, witness: WitnessLog, last: Checkpoint | None
) -> Binding | None:
    """This database's binding; refuses to start a new log for a trail whose log held checkpoints before.

    A database that was never signed for may be (its first checkpoint vouches for the chain as it is);
    one that was, and whose log now holds none of its checkpoints, had its log deleted or replaced:
    signing into a new one would vouch for whatever the chain now says.
    """
    mine = bindings.of_database(identity)
    if mine is None or not mine.signed:
        return mine
    if (last is not None and last.trail == trail) or witness.newest(trail) is not None:
        return mine
    raise TrailBindingError(
        f"refusing to sign: {identity} was signed for into {mine.log} since {mine.bound_at}, but {witness.path} "
        f"holds no checkpoint of trail {trail}: the log was deleted, emptied or replaced, and a new one would "
        f"vouch for whatever the chain says now. Restore the log; if it is lost for good, `{REBIND}` starts a new "
        "one (recorded in " + str(bindings.path) + ")"
    )


def rebind(settings: Settings, database: Database) -> str:
    """Bind this database to its current trail id in the signer's index, and say what was decided.

    For a change made on purpose: a database restored or moved (a new oid or server), or given a new
    trail id. Any other database's binding of this trail is dropped, and the decision is kept in the
    index's history. If this trail's witness log holds checkpoints, the next signing must extend it;
    if it holds none, the next signing starts a new log.
    """
    trail = trail_id(database)
    identity = database_identity(database)
    bindings = TrailBindings.of(settings)
    before = bindings.of_database(identity)
    elsewhere = bindings.of_trail_elsewhere(trail, identity)
    path = witness_log_path(settings, database)
    held = WitnessLog(path).newest(trail) is not None
    bindings.bind(identity, trail, path, signed=held, why=f"`{REBIND}`")
    parts = [f"bound {identity} to trail {trail} in {bindings.path}"]
    if before is not None and before.trail != trail:
        parts.append(f"it was trail {before.trail}, whose log {before.log} stays as it is")
    if elsewhere is not None:
        parts.append(f"the trail is no longer bound to {elsewhere.where}")
    parts.append(f"signing goes on in {path}" if held else f"the next checkpoint starts {path}")
    log.warning("%s", "; ".join(parts))
    return "; ".join(parts)


def record_checkpoint(database: Database, checkpoint: Checkpoint) -> None:
    """Tell the database a checkpoint was signed, so a verify that finds the witness log missing or older fails.

    After the append to the log (a record never names a checkpoint the log did not get first). A
    database that cannot take it (not migrated to 0009, or down) costs only that record: logged.
    """
    try:
        with database.begin() as conn:
            conn.execute(text(RECORD_CHECKPOINT_SQL), {"checkpoint": checkpoint.to_json()})
    except exc.SQLAlchemyError as error:
        log.warning(
            "checkpoint %s:%s… is in the witness log but could not be recorded in the database: %s",
            checkpoint.seq,
            checkpoint.head_hash[:12],
            str(getattr(error, "orig", error)).strip().splitlines()[0],
        )


def any_recorded(database: Database) -> bool:
    """Whether the database records any signed checkpoint (False before migration 0009)."""
    with database.connect() as conn:
        if conn.execute(text("SELECT pg_catalog.to_regclass('public.audit_checkpoints')")).scalar() is None:
            return False
        return bool(conn.execute(text("SELECT EXISTS (SELECT FROM ONLY public.audit_checkpoints)")).scalar())


def newest_recorded_checkpoint(database: Database, key: PublicKey) -> tuple[Checkpoint | None, str | None]:
    """The newest checkpoint recorded in the database that `key` signed, and a note on newer records it did not.

    The app role may record any text (the function checks what it can, but holds no key), so a record
    counts only once its signature verifies; records are taken newest first by the checkpoint's own
    `signed_at` (the function derives the column from it). What is skipped is reported, never as
    tampering: it says who could have written it.
    """
    with database.connect() as conn:
        if conn.execute(text("SELECT pg_catalog.to_regclass('public.audit_checkpoints')")).scalar() is None:
            return None, None  # not migrated to 0009: nothing recorded
        skipped: list[str] = []
        cursor: dict[str, object] = {"signed_at": datetime(9999, 12, 31, tzinfo=UTC), "id": 2**63 - 1}
        while True:
            page = conn.execute(text(RECORDED_PAGE_SQL), cursor).all()
            for record_id, _signed_at, line in page:
                why = _unsigned_record(str(line), key)
                if why is None:
                    checkpoint = Checkpoint.from_json(str(line))
                    return checkpoint, _skipped_note(skipped, checkpoint)
                skipped.append(f"record {record_id} {why}")
            if not page:
                return None, _skipped_note(skipped, None)
            cursor = {"signed_at": page[-1][1], "id": page[-1][0]}


def _unsigned_record(line: str, key: PublicKey) -> str | None:
    """Why a recorded line is not a checkpoint the trusted key signed, or None."""
    try:
        checkpoint = Checkpoint.from_json(line)
    except WitnessError:
        return "is not a checkpoint"
    if checkpoint.key_id != key.key_id:
        return f"was signed by key {checkpoint.key_id}, not the trusted key {key.key_id}"
    if not checkpoint.verify(key):
        return "does not carry the trusted key's signature"
    return None


def _skipped_note(skipped: list[str], newest: Checkpoint | None) -> str | None:
    if not skipped:
        return None
    shown = "; ".join(skipped[:3]) + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else "")
    after = "" if newest is None else f" newer than the newest signed one ({newest.seq}, {newest.signed_at})"
    return (
        f"{len(skipped)} record(s) in audit_checkpoints{after} were ignored: {shown}. Not evidence against the "
        f"trail ({RECORD_WRITERS}); another signer with another JARVIS_SIGNING_KEY would leave such records too"
    )
