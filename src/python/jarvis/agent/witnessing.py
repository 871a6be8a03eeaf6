"""Seal, sign, and verify against what was signed: the audit chain plus checkpoints kept outside PostgreSQL.

The database's chain shows any edit that does not recompute it. A superuser
who does recompute it consistently is caught by a checkpoint: after every seal
the head (position, hash, the database's clock) is signed with an Ed25519 key
the database never sees and appended to a witness log on the file system (one
file per database). `verify_trail` checks every checkpoint in that log: the
chain must still hold each head at its position, and nothing dated before a
checkpoint may enter the chain after it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import text

from jarvis.cache import RedisLink
from jarvis.config import Settings
from jarvis.db import Database, NotMigratedError
from jarvis.db.audit import ExpectedHead, Problem, SealResult, TrustedHead, VerifyReport, seal, verify
from jarvis.witness import (
    Checkpoint,
    WitnessError,
    WitnessLog,
    generate_key,
    load_public_key,
    load_signing_key,
    plausible_seal_time,
    write_public_key,
)

log = logging.getLogger("jarvis.audit")


class CheckpointContradictedError(WitnessError):
    """The chain no longer holds the newest signed checkpoint: sealing or signing now would launder a rewrite."""


class ImplausibleSealTimeError(WitnessError):
    """The database reported a seal time no honest clock gives: nothing is signed with it."""


def witness_log_path(settings: Settings, database: Database) -> Path:
    """JARVIS_WITNESS_LOG, or `<data dir>/witness/<database name>.jsonl`.

    Named by the database, not the URL, so a direct connection and one through a pooler share
    it. Two databases of one name on two servers would share it too: verify then reports the
    other trail's checkpoints loudly ("is for trail ..."), and JARVIS_WITNESS_LOG separates them.
    """
    if settings.witness_log is not None:
        return settings.witness_log
    name = urlsplit(database.url).path.strip("/") or "jarvis"
    return settings.data_dir / "witness" / (re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".jsonl")


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


CHECKPOINT_STREAM = "checkpoints"
"""The Redis stream (under the database's namespace) checkpoints are also published to: a copy for
watchers, never evidence — verify reads the witness log and checks every signature itself."""


def seal_and_sign(
    database: Database, settings: Settings, *, wait: float = 0.0, redis_link: RedisLink | None = None
) -> SealResult:
    """Seal what is queued, then sign the head and append it to the witness log (when a key exists).

    With `redis_link`, the signed checkpoint is also published to Redis; a Redis that is down
    costs only that copy.
    """
    key_path = settings.signing_key_path()
    witness = WitnessLog(witness_log_path(settings, database))
    trail = trail_id(database)
    if key_path.exists():
        last = witness.last()
        refuse_to_contradict(database, last, trail)  # before linking anything onto a rewritten chain
        key = load_signing_key(key_path)
        if last is not None and last.trail == trail and last.key_id != key.key_id:
            raise WitnessError(
                f"refusing to sign: {witness.path} was signed by key {last.key_id}, but JARVIS_SIGNING_KEY "
                f"({key_path}) is key {key.key_id}; point it at the key that signed this log"
            )
    result = seal(database, wait=wait)
    if key_path.exists():
        if not plausible_seal_time(result.sealed_at):
            raise ImplausibleSealTimeError(
                f"refusing to sign a head sealed at {result.sealed_at.isoformat()}: the database's clock (or its "
                "jarvis_seal function) is not to be trusted. Run `jarvis audit verify`"
            )
        # Signed even when the head has not moved: "nothing else existed at this time" is what lets a later
        # checkpoint expose a row backdated into the gap.
        checkpoint = key.sign(trail, result.head_seq, result.head_hash, result.sealed_at)
        witness.append(checkpoint)
        if redis_link is not None:
            stream = redis_link.key(CHECKPOINT_STREAM)
            redis_link.run(
                lambda r: r.xadd(stream, {"checkpoint": checkpoint.to_json()}, maxlen=10_000, approximate=True),
                None,
            )
    return result


def checkpoints(settings: Settings, database: Database) -> list[Checkpoint]:
    """The signed checkpoints of this database's witness log, oldest first."""
    return WitnessLog(witness_log_path(settings, database)).entries()


def trusted_heads(
    settings: Settings, database: Database, public_key: Path | None = None
) -> tuple[list[TrustedHead], list[Problem]]:
    """The witness log's checkpoints whose signature holds, and a problem for each one that does not."""
    where = witness_log_path(settings, database)
    problems: list[Problem] = []
    try:
        entries = WitnessLog(where).entries()
    except WitnessError as error:
        return [], [Problem("witness log", None, None, str(error))]
    if not entries:
        return [], []
    # A missing or unreadable public key is a setting to fix (exit 2), not evidence of tampering.
    trusted_key = load_public_key(public_key or settings.public_key_path())
    trail = trail_id(database)
    heads: list[TrustedHead] = []
    for number, checkpoint in enumerate(entries, start=1):
        label = f"checkpoint {checkpoint.seq}:{checkpoint.head_hash[:12]}… signed {checkpoint.signed_at}"
        if not checkpoint.verify(trusted_key):
            problems.append(Problem("witness log", None, None, f"{where} entry {number}: bad signature ({label})"))
        elif checkpoint.trail != trail:
            problems.append(
                Problem(
                    "witness log",
                    None,
                    None,
                    f"{where} entry {number} is for trail {checkpoint.trail}, but this database is trail {trail}: "
                    "the database was replaced, or this log belongs to another database of the same name "
                    "(then give each its own JARVIS_WITNESS_LOG)",
                )
            )
        elif not plausible_seal_time(sealed_at := datetime.fromisoformat(checkpoint.sealed_at)):
            problems.append(
                Problem(
                    "witness log",
                    None,
                    None,
                    f"{where} entry {number}: sealed at {checkpoint.sealed_at}, a time no database clock "
                    f"should give ({label}): the database's clock or its jarvis_seal was tampered with",
                )
            )
        else:
            heads.append(TrustedHead(checkpoint.seq, bytes.fromhex(checkpoint.head_hash), sealed_at, label))
    return heads, problems


def verify_trail(
    database: Database,
    settings: Settings,
    *,
    expect: ExpectedHead | None = None,
    public_key: Path | None = None,
    incremental: bool = False,
    progress: Callable[[int], None] | None = None,
    planned: Callable[[int], None] | None = None,
) -> VerifyReport:
    """`verify` plus every signed checkpoint of this database's witness log (checked with `public_key`).

    `incremental` starts from the newest of those checkpoints the chain still holds (see `verify`);
    `progress` and `planned`: see `verify`.
    """
    heads, problems = trusted_heads(settings, database, public_key)
    report = verify(database, expect=expect, trusted=heads, incremental=incremental, progress=progress, planned=planned)
    report.problems.extend(problems)
    if not heads and not problems and report.head_seq:
        report.notes.append(
            f"no signed checkpoint in {witness_log_path(settings, database)}: only the chain itself was checked "
            "(a consistent rewrite of all of it would not show; check JARVIS_WITNESS_LOG)"
        )
    return report
