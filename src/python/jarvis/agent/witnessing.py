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
from jarvis.db.audit.trail_binding import binding_problem, database_identity
from jarvis.db.audit.witnessed import (
    CheckpointContradictedError,
    ImplausibleSealTimeError,
    any_recorded,
    ensure_signing_key,
    newest_recorded_checkpoint,
    refuse_to_contradict,
    trail_id,
    witness_log_path,
)
from jarvis.db.audit.witnessed import seal_and_sign as sign_sealed
from jarvis.witness import (
    Checkpoint,
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
) -> tuple[list[TrustedHead], list[Problem], list[str]]:
    """The witness log's checkpoints whose signature holds, a problem for each one that does not, and notes.

    A head's time is its `signed_at` (the signer's clock), never the database's word. Also reported:
    seal times that go backwards or stray from their signing (`timeline_problems`), a log that lacks
    the newest checkpoint the database records as signed (deleted, emptied or an older copy), and a
    trail id that is not the one the signer bound this database to (`jarvis.db.audit.trail_binding`;
    a copy of another database's trail raises TrailBindingError, a setting to fix).
    """
    trail = trail_id(database)
    bound, changed = binding_problem(settings, database_identity(database), trail)
    problems: list[Problem] = []
    notes: list[str] = []
    if changed is not None:
        problems.append(Problem("trail_info", None, None, changed))
    has_records = any_recorded(database)  # first: the log is appended before the record
    where = witness_log_path(settings, database)
    try:
        entries = WitnessLog(where).entries()
    except WitnessError as error:
        return [], [*problems, Problem("witness log", None, None, str(error))], notes
    if not entries and not has_records:
        if bound is not None and bound.signed and changed is None:
            problems.append(
                Problem(
                    "witness log",
                    None,
                    None,
                    f"this database was signed for into {bound.log} since {bound.bound_at}, but neither {where} "
                    "nor the database holds any checkpoint of it: the log and the database's records of it were "
                    "deleted. Restore the log (JARVIS_WITNESS_LOG); until then nothing vouches for the trail",
                )
            )
        return [], problems, notes
    # A missing or unreadable public key is a setting to fix (exit 2), not evidence of tampering.
    trusted_key = load_public_key(public_key or settings.public_key_path())
    recorded, skipped = newest_recorded_checkpoint(database, trusted_key)
    if skipped is not None:
        notes.append(skipped)
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
    problems.extend(_record_problems(recorded, [c for _, c in own], trail, where))
    return heads, problems, notes


def _record_problems(recorded: Checkpoint | None, own: list[Checkpoint], trail: str, where: Path) -> list[Problem]:
    """The newest signed checkpoint the database records against the log: missing, older, or different.

    `recorded` carries the trusted key's signature (`newest_recorded_checkpoint` skips any other record).
    """
    if recorded is None:
        return []
    label = f"checkpoint {recorded.seq}:{recorded.head_hash[:12]}… signed {recorded.signed_at}"
    if recorded.trail != trail:
        why = f"is of trail {recorded.trail}, not this database's {trail}: the database was replaced or copied"
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
    heads, problems, notes = trusted_heads(settings, database, public_key)
    report = verify(database, expect=expect, trusted=heads, incremental=incremental, progress=progress, planned=planned)
    report.problems.extend(problems)
    report.notes.extend(notes)
    if not heads and not problems and report.head_seq:
        report.notes.append(
            f"no signed checkpoint in {witness_log_path(settings, database)}: only the chain itself was checked "
            "(a consistent rewrite of all of it would not show; check JARVIS_WITNESS_LOG)"
        )
    return report
