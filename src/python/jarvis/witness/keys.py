"""Ed25519 keys that sign checkpoints.

The private key must live where the database (and its superuser) cannot reach
it; otherwise whoever rewrites the chain can re-sign it too. So it is written
owner-only (0600) into an owner-only directory, and a key file others can read
is refused rather than used. The public key (same path + ".pub") is meant to be
copied anywhere checkpoints are verified.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from jarvis.witness.checkpoint import Checkpoint, canonical_trail, signed_message, utc_timestamp
from jarvis.witness.errors import WitnessError
from jarvis.witness.files import ensure_private_directory, read_private_file, write_new_file

HASH_BYTES = 32


class PublicKey:
    """An Ed25519 public key: verifies checkpoints, and names itself by key_id."""

    __slots__ = ("_key",)

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key

    @property
    def raw(self) -> bytes:
        """The 32 raw key bytes."""
        return self._key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def key_id(self) -> str:
        return key_id(self)

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def to_pem(self) -> bytes:
        return self._key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"PublicKey(key_id={self.key_id!r})"


class SigningKey:
    """An Ed25519 private key that turns a chain head into a Checkpoint."""

    __slots__ = ("_key", "public_key")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key = PublicKey(key.public_key())

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh key held in memory only (tests, or callers that store it themselves)."""
        return cls(Ed25519PrivateKey.generate())

    @property
    def key_id(self) -> str:
        return self.public_key.key_id

    def sign(
        self,
        trail: str,
        seq: int,
        head_hash: bytes,
        sealed_at: datetime,
        *,
        signed_at: datetime | None = None,
        flagged: int | None = None,
    ) -> Checkpoint:
        """Sign "trail `trail` had reached position `seq` with chain head `head_hash`, sealed at `sealed_at`".

        `sealed_at` comes from the database (when the head row was sealed);
        `signed_at` is this machine's clock (now, unless given). Both must be
        time-zone aware and are recorded in UTC.
        """
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise WitnessError(f"seq must be an integer >= 0, got {seq!r}")
        if not isinstance(head_hash, bytes) or len(head_hash) != HASH_BYTES:
            raise WitnessError(f"head_hash must be {HASH_BYTES} bytes (a SHA-256 digest), got {head_hash!r}")
        trail = canonical_trail(trail)
        sealed = utc_timestamp(sealed_at)
        signed = utc_timestamp(signed_at if signed_at is not None else datetime.now(UTC))
        message = signed_message(trail, seq, head_hash.hex(), sealed, signed, self.key_id, flagged=flagged)
        return Checkpoint(
            trail=trail,
            seq=seq,
            head_hash=head_hash.hex(),
            sealed_at=sealed,
            signed_at=signed,
            key_id=self.key_id,
            signature=base64.b64encode(self._key.sign(message)).decode("ascii"),
            flagged=flagged,
        )

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"


def key_id(public_key: PublicKey) -> str:
    """A short, stable name for a key: the first 16 hex characters of SHA-256 of its raw 32 bytes."""
    return hashlib.sha256(public_key.raw).hexdigest()[:16]


def public_key_path(private_path: Path) -> Path:
    """Where the public key of `private_path` lives: the same path + ".pub"."""
    return private_path.with_name(private_path.name + ".pub")


def generate_key(private_path: Path, *, overwrite: bool = False) -> Path:
    """Create a new key: the private key (PEM PKCS8, mode 0600) and its public key (PEM, 0644) at + ".pub".

    Missing parent directories are created 0700. Both files are written
    atomically and fsynced. An existing private key is kept (WitnessError)
    unless overwrite=True. Returns the public key's path.
    """
    private_path = Path(private_path)
    public_path = public_key_path(private_path)
    if private_path.exists() and not overwrite:
        raise WitnessError(
            f"a signing key already exists at {private_path}; keep it, or replace it with `jarvis keys init --force` "
            f"(checkpoints it signed then verify only with its old public key {public_path})"
        )
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        ensure_private_directory(private_path.parent)
        # Private key first, without clobbering one a concurrent caller just made; the public key follows it.
        write_new_file(private_path, private_pem, 0o600, overwrite=overwrite)
        write_new_file(public_path, PublicKey(key.public_key()).to_pem(), 0o644, overwrite=True)
    except OSError as error:
        raise WitnessError(
            f"cannot write the signing key {private_path}: {error.strerror}; make {private_path.parent} writable "
            "or choose another path (JARVIS_SIGNING_KEY)"
        ) from None
    return public_path


def load_signing_key(path: Path) -> SigningKey:
    """Read a private key written by generate_key, refusing one that group or others can access."""
    data = read_private_file(
        path,
        what="signing key",
        setting="JARVIS_SIGNING_KEY",
        renew="a new one is `jarvis keys init --force`",
        error=WitnessError,
    )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise WitnessError(
            f"signing key {path} is encrypted; Jarvis needs an unencrypted key (0600): `jarvis keys init --force`"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise WitnessError(
            f"{path} is not a PEM private key; restore the key file or create a new one with `jarvis keys init --force`"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise WitnessError(
            f"signing key {path} is a {type(key).__name__.lstrip('_')}, not Ed25519; "
            "create an Ed25519 key with `jarvis keys init --force`"
        )
    return SigningKey(key)


def load_public_key(path: Path) -> PublicKey:
    """Read a public key (PEM SubjectPublicKeyInfo, Ed25519) to verify checkpoints with."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise WitnessError(
            f"no public key at {path}: copy the signer's .pub file here, or name it with --public-key "
            "(a key made here with `jarvis keys init` is not the signer's and would report every checkpoint)"
        ) from None
    except OSError as error:
        raise WitnessError(f"cannot read the public key {path}: {error.strerror}; check its owner and mode") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise WitnessError(f"{path} is not a PEM public key; copy the signer's .pub file here again") from None
    if not isinstance(key, Ed25519PublicKey):
        raise WitnessError(
            f"public key {path} is a {type(key).__name__.lstrip('_')}, not Ed25519; copy the signer's .pub file here"
        )
    return PublicKey(key)


def write_public_key(key: SigningKey, path: Path) -> None:
    """(Re)write `key`'s public key at `path`: it always follows from the private key, so this is safe."""
    write_new_file(path, key.public_key.to_pem(), 0o644, overwrite=True)
