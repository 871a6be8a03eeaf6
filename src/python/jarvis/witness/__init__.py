"""Signed checkpoints of the audit hash chain, kept outside PostgreSQL.

A database superuser can rewrite the whole audit chain consistently, and the
chain alone cannot tell. A checkpoint, "trail T had reached position SEQ with
head hash H", signed by an Ed25519 key the database never sees and appended to
a file the database cannot write, can: a rewritten chain no longer matches it.

This package knows nothing of the database; callers pass in the chain head.
"""

from jarvis.witness.checkpoint import Checkpoint, plausible_seal_time
from jarvis.witness.errors import WitnessError
from jarvis.witness.keys import (
    PublicKey,
    SigningKey,
    generate_key,
    key_id,
    load_public_key,
    load_signing_key,
    public_key_path,
    write_public_key,
)
from jarvis.witness.log import WitnessLog
from jarvis.witness.timeline import CLOCK_SKEW, SEAL_AGE_LIMIT, seal_time_problem, timeline_problems

__all__ = [
    "CLOCK_SKEW",
    "SEAL_AGE_LIMIT",
    "Checkpoint",
    "PublicKey",
    "SigningKey",
    "WitnessError",
    "WitnessLog",
    "generate_key",
    "key_id",
    "load_public_key",
    "load_signing_key",
    "plausible_seal_time",
    "public_key_path",
    "seal_time_problem",
    "timeline_problems",
    "write_public_key",
]
