"""A signed checkpoint: "trail T had reached position SEQ with head hash H".

The audit chain in PostgreSQL proves rows were not edited one at a time, but a
database superuser can rewrite the whole chain consistently. A checkpoint signed
by a key the database never sees, and kept outside it, catches that: the
rewritten chain no longer reaches the signed head hash at the signed position.

The signature covers every field except itself, as a canonical byte string
(a version tag plus compact, key-sorted JSON), so changing any field, or
re-labelling the key id, makes verification fail.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from jarvis.witness.errors import WitnessError

if TYPE_CHECKING:
    from jarvis.witness.keys import PublicKey

MESSAGE_PREFIX = b"jarvis-checkpoint-v1\n"
SIGNATURE_BYTES = 64
FIELDS = ("trail", "seq", "head_hash", "sealed_at", "signed_at", "key_id", "signature")
OPTIONAL_FIELDS = ("flagged",)
"""Signed when present, absent from checkpoints signed before they existed (which verify as they were)."""
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX16 = re.compile(r"[0-9a-f]{16}")


def utc_timestamp(moment: datetime) -> str:
    """The one spelling of a moment used in checkpoints: ISO-8601 in UTC, microseconds, '+00:00'."""
    offset = moment.utcoffset()
    if offset is None:
        raise WitnessError(f"timestamp {moment.isoformat()} has no time zone; pass an aware datetime (UTC)")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Checkpoint:
    """One signed statement about an audit trail's chain head. Construct it with SigningKey.sign."""

    trail: str
    seq: int
    head_hash: str
    sealed_at: str
    signed_at: str
    key_id: str
    signature: str
    flagged: int | None = None
    """How many linked rows up to `seq` the sealer flagged as not vouched for (audit_flags); None: not recorded."""

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem is not None:
            raise WitnessError(f"invalid checkpoint: {problem}")

    def signed_message(self) -> bytes:
        """The exact bytes the signature covers: every field except the signature."""
        return signed_message(
            self.trail, self.seq, self.head_hash, self.sealed_at, self.signed_at, self.key_id, flagged=self.flagged
        )

    def verify(self, public_key: PublicKey) -> bool:
        """True only if `public_key` signed exactly these field values."""
        if public_key.key_id != self.key_id:
            return False
        return public_key.verify(base64.b64decode(self.signature), self.signed_message())

    def to_json(self) -> str:
        """One line of compact JSON (no newline), the witness log's line format."""
        fields = {name: value for name, value in asdict(self).items() if name in FIELDS or value is not None}
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, *, where: str = "checkpoint JSON") -> Checkpoint:
        """Parse and validate one checkpoint; `where` (e.g. "<file> line 3") starts every error message."""
        fix = "the checkpoint was edited or corrupted; restore it from a copy or move it aside"
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as error:
            detail = error.msg if isinstance(error, json.JSONDecodeError) else "nested too deeply"
            raise WitnessError(f"{where}: not valid JSON ({detail}); {fix}") from None
        if not isinstance(data, dict):
            raise WitnessError(f"{where}: expected a JSON object, got {type(data).__name__}; {fix}")
        missing = [name for name in FIELDS if name not in data]
        if missing:
            raise WitnessError(f"{where}: missing field(s) {', '.join(missing)}; {fix}")
        unknown = sorted(set(data) - set(FIELDS) - set(OPTIONAL_FIELDS))
        if unknown:
            raise WitnessError(f"{where}: unknown field(s) {', '.join(unknown)}; {fix}")
        problem = _problem_in(data)
        if problem is not None:
            raise WitnessError(f"{where}: {problem}; {fix}")
        return cls(**data)


def signed_message(
    trail: str, seq: int, head_hash: str, sealed_at: str, signed_at: str, key_id: str, *, flagged: int | None = None
) -> bytes:
    body: dict[str, str | int] = {
        "trail": trail,
        "seq": seq,
        "head_hash": head_hash,
        "sealed_at": sealed_at,
        "signed_at": signed_at,
        "key_id": key_id,
    }
    if flagged is not None:
        body["flagged"] = flagged
    return MESSAGE_PREFIX + json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii")


def canonical_trail(trail: str) -> str:
    """A trail id as checkpoints spell it: a lowercase, hyphenated UUID."""
    try:
        return str(uuid.UUID(trail))
    except (ValueError, TypeError, AttributeError):
        raise WitnessError(f"trail {trail!r} is not a UUID; pass the audit trail's UUID") from None


def _problem(checkpoint: Checkpoint) -> str | None:
    return _problem_in(asdict(checkpoint))


def _problem_in(data: dict[str, Any]) -> str | None:
    """What is wrong with these field values, or None. Types are checked too: JSON can hold anything."""
    for name in FIELDS:
        if name != "seq" and not isinstance(data[name], str):
            return f"field {name} must be a string, got {_shown(data[name])}"
    trail, seq = data["trail"], data["seq"]
    if not _is_canonical_uuid(trail):
        return f"field trail must be a lowercase hyphenated UUID, got {_shown(trail)}"
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        return f"field seq must be an integer >= 0, got {_shown(seq)}"
    if not _HEX64.fullmatch(data["head_hash"]):
        return f"field head_hash must be 64 lowercase hex characters, got {_shown(data['head_hash'])}"
    for name in ("sealed_at", "signed_at"):
        if not _is_utc_timestamp(data[name]):
            return f"field {name} must be an ISO-8601 UTC timestamp, got {_shown(data[name])}"
    if not _HEX16.fullmatch(data["key_id"]):
        return f"field key_id must be 16 lowercase hex characters, got {_shown(data['key_id'])}"
    flagged = data.get("flagged")
    if flagged is not None and (isinstance(flagged, bool) or not isinstance(flagged, int) or flagged < 0):
        return f"field flagged must be an integer >= 0, got {_shown(flagged)}"
    if not _is_signature(data["signature"]):
        return f"field signature must be the base64 of {SIGNATURE_BYTES} bytes, got {_shown(data['signature'])}"
    return None


def _is_canonical_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def _is_utc_timestamp(value: str) -> bool:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return False
    return parsed.utcoffset() == timedelta(0)


def _is_signature(value: str) -> bool:
    try:
        return len(base64.b64decode(value, validate=True)) == SIGNATURE_BYTES
    except (binascii.Error, ValueError):
        return False


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def plausible_seal_time(moment: datetime) -> bool:
    """A time an honest database clock gives and every client can do arithmetic with (years 2000-9998).

    A checkpoint sealed outside it means the database's clock or its sealer was tampered with.
    """
    return datetime(2000, 1, 1, tzinfo=UTC) <= moment < datetime(9999, 1, 1, tzinfo=UTC)
