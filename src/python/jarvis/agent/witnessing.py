"""Seal, sign, and verify against what was signed: the audit chain plus checkpoints kept outside PostgreSQL.

The database's chain shows any edit that does not recompute it. A superuser
who does recompute it consistently is caught by a checkpoint: after every seal
the head (position, hash, the database's seal time, the signer's clock) is signed
with an Ed25519 key the database never sees and appended to a witness log on the
file system (one file per trail). Sealing and signing live in the database layer
(`jarvis.db.audit.witnessed`, re-exported here), so the database handle's
background sealer signs too. `verify_trail` checks every checkpoint in that log:
the chain must still hold each head at its position, nothing dated before a
checkpoint (by the signer's clock) may enter the chain after it, the seal times
must run forward with the signer's clock, and the log must hold the newest
checkpoint the database records as signed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from jarvis.cache import RedisLink
from jarvis.config import Settings
from jarvis.db import Database
from jarvis.db.audit import ExpectedHead, Problem, SealResult, TrustedHead, VerifyReport, verify
from jarvis.db.audit.witnessed import (
    CheckpointContradictedError,
    ImplausibleSealTimeError,
    ensure_signing_key,
    newest_recorded_checkpoint,
    refuse_to_contradict,
    trail_id,
    witness_log_path,
)
from jarvis.db.audit.witnessed import seal_and_sign as sign_sealed
from jarvis.witness import (
    Checkpoint,
    PublicKey,
    WitnessError,
    WitnessLog,
    load_public_key,
    plausible_seal_time,
    timeline_problems,
)

__all__ = [
    "CHECKPOINT_STREAM",
    "CheckpointContradictedError",
    "ImplausibleSealTimeError",
    "checkpoints",
    "ensure_signing_key",
    "refuse_to_contradict",
    "seal_and_sign",
    "trail_id",
    "trusted_heads",
    "verify_trail",
    "witness_log_path",
]

log = logging.getLogger("jarvis.audit")


CHECKPOINT_STREAM = "checkpoints"
"""The Redis stream (under the database's namespace) checkpoints are also published to: a copy for
watchers, never evidence — verify reads the witness log and checks every signature itself."""


def seal_and_sign(
    database: Database, settings: Settings, *, wait: float = 0.0, redis_link: RedisLink | None = None
) -> SealResult:
    """Seal what is queued, then sign the head into the witness log (`jarvis.db.audit.witnessed.seal_and_sign`).

    With `redis_link`, the signed checkpoint is also published to Redis; a Redis that is down
    costs only that copy.
    """
    publish: Callable[[Checkpoint], None] | None = None
    if redis_link is not None:
        link = redis_link
        stream = link.key(CHECKPOINT_STREAM)

        def publish(checkpoint: Checkpoint) -> None:
            link.run(
                lambda r: r.xadd(stream, {"checkpoint": checkpoint.to_json()}, maxlen=10_000, approximate=True),
                None,
            )

    return sign_sealed(database, settings, wait=wait, on_checkpoint=publish)


def checkpoints(settings: Settings, database: Database) -> list[Checkpoint]:
    """The signed checkpoints of this database's witness log, oldest first."""
    return WitnessLog(witness_log_path(settings, database)).entries()


def trusted_heads(
    settings: Settings, database: Database, public_key: Path | None = None
) -> tuple[list[TrustedHead], list[Problem]]:
    """The witness log's checkpoints whose signature holds, and a problem for each one that does not.

    A head's time is its `signed_at` (the signer's clock), never the database's word. Also reported:
    seal times that go backwards or stray from their signing (`timeline_problems`), and a log that
    lacks the newest checkpoint the database records as signed (deleted, emptied or an older copy).
    """
    recorded, unreadable = newest_recorded_checkpoint(database)  # first: the log is appended before the record
    where = witness_log_path(settings, database)
    problems: list[Problem] = []
    if unreadable is not None:
        problems.append(Problem("audit_checkpoints", None, None, unreadable))
    try:
        entries = WitnessLog(where).entries()
    except WitnessError as error:
        return [], [*problems, Problem("witness log", None, None, str(error))]
    if not entries and recorded is None:
        return [], problems
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
                    "the database was replaced, or this log belongs to another database "
                    "(then give each its own JARVIS_WITNESS_LOG)",
                )
            )
        elif not plausible_seal_time(datetime.fromisoformat(checkpoint.sealed_at)):
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
            signed_at = datetime.fromisoformat(checkpoint.signed_at)
            heads.append(
                TrustedHead(checkpoint.seq, bytes.fromhex(checkpoint.head_hash), signed_at, label, checkpoint.flagged)
            )
    own = [(n, c) for n, c in enumerate(entries, start=1) if c.trail == trail and c.verify(trusted_key)]
    for number, why in timeline_problems(own):
        problems.append(Problem("witness log", None, None, f"{where} entry {number}: {why}"))
    problems.extend(_record_problems(recorded, [c for _, c in own], trusted_key, trail, where))
    return heads, problems


def _record_problems(
    recorded: Checkpoint | None, own: list[Checkpoint], key: PublicKey, trail: str, where: Path
) -> list[Problem]:
    """The database's record of the newest signed checkpoint against the log: missing, older, or different."""
    if recorded is None:
        return []
    label = f"checkpoint {recorded.seq}:{recorded.head_hash[:12]}… signed {recorded.signed_at}"
    why: str | None = None
    if recorded.key_id != key.key_id:
        why = (
            f"was signed by key {recorded.key_id}, not the trusted key {key.key_id}: another Jarvis process with "
            "another JARVIS_SIGNING_KEY signs this trail (verify with its public key and witness log), or it "
            "was written by hand"
        )
    elif not recorded.verify(key):
        why = "does not carry the trusted key's signature: it was written by hand (the app role or a superuser)"
    elif recorded.trail != trail:
        why = f"is of trail {recorded.trail}, not this database's {trail}: the database was replaced or copied"
    if why is not None:
        return [Problem("audit_checkpoints", None, None, f"the newest checkpoint the database records ({label}) {why}")]
    if any(c.signature == recorded.signature for c in own):
        return []
    if not own:
        why = f"the witness log {where} has no checkpoint of this trail: it was deleted, emptied or replaced"
    elif max(datetime.fromisoformat(c.signed_at) for c in own) < datetime.fromisoformat(recorded.signed_at):
        why = f"the witness log {where} ends before it: it was cut or replaced by an older copy"
    else:
        why = f"the witness log {where} does not hold it: the log was edited or replaced"
    return [
        Problem(
            "witness log",
            None,
            None,
            f"the database records that {label} was signed, but {why}. Restore the log (JARVIS_WITNESS_LOG); "
            "until then nothing vouches for the trail",
        )
    ]


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
