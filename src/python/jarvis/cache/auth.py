"""What Jarvis writes to Redis is signed, so whoever else can write to Redis cannot speak for it.

Redis is shared infrastructure: anything that reaches it can SET a key or
XADD an event. Jarvis therefore signs every cache entry, stream event and
lock token with HMAC-SHA256 under a key that lives outside Redis and outside
PostgreSQL (JARVIS_CACHE_KEY, default <data dir>/keys/cache.key: 32 random
bytes, mode 0600, made by `jarvis keys init` or by the agent on first use).
A reader checks the MAC before it believes anything: a forged or unsigned
entry is a cache miss, a forged event is dropped, a forged lock token is a
stale lock. Each MAC binds the purpose and the exact Redis key (which carries
the database's namespace), so a genuine value cannot be moved to another key,
another database or another use.

A MAC proves who wrote a value, not that it is current: a replayed genuine
entry is still old. Freshness is PostgreSQL's job (see `state_cache`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from pathlib import Path

from jarvis.config import ConfigError, Settings
from jarvis.witness.errors import WitnessError
from jarvis.witness.files import ensure_private_directory, read_private_file, write_new_file

log = logging.getLogger("jarvis.cache")

KEY_BYTES = 32
MAC_HEX_LENGTH = 64


class CacheKeyError(ConfigError):
    """JARVIS_CACHE_KEY cannot be used (missing directory, wrong mode, wrong size); the message says the fix."""


def cache_key_path(settings: Settings) -> Path:
    """JARVIS_CACHE_KEY, or <data dir>/keys/cache.key beside the default signing key."""
    return settings.cache_key if settings.cache_key is not None else settings.data_dir / "keys" / "cache.key"


def generate_cache_key(path: Path, *, overwrite: bool = False) -> Path:
    """Write 32 random bytes to `path` (0600, directory 0700, atomic and fsynced); never clobbers unless told."""
    path = Path(path)
    try:
        ensure_private_directory(path.parent)
        write_new_file(path, secrets.token_bytes(KEY_BYTES), 0o600, overwrite=overwrite)
    except WitnessError as error:
        raise CacheKeyError(f"JARVIS_CACHE_KEY: {error}") from None
    except OSError as error:
        raise CacheKeyError(
            f"cannot write the cache key {path}: {error.strerror}; make {path.parent} writable "
            "or choose another path (JARVIS_CACHE_KEY)"
        ) from None
    return path


def load_cache_key(path: Path) -> bytes:
    """Read the key, refusing a file that group or others can access, or one of the wrong size."""
    data = read_private_file(
        path,
        what="cache key",
        setting="JARVIS_CACHE_KEY",
        renew="delete it and run `jarvis keys init` for a new one",
        error=CacheKeyError,
        limit=KEY_BYTES + 1,
    )
    if len(data) != KEY_BYTES:
        raise CacheKeyError(
            f"cache key {path} holds {len(data)} bytes, not {KEY_BYTES}; delete it and run `jarvis keys init`"
        )
    return data


def ensure_cache_key(settings: Settings) -> bytes:
    """The cache key, created on first use (like the checkpoint signing key)."""
    path = cache_key_path(settings)
    if not path.exists():
        try:
            generate_cache_key(path)
            log.info("created the Redis authentication key at %s (JARVIS_CACHE_KEY)", path)
        except CacheKeyError:
            if not path.exists():
                raise
            # another process made it at the same moment: use theirs
    return load_cache_key(path)


class Authenticator:
    """HMAC-SHA256 over (purpose, Redis key, payload) with the cache key."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise CacheKeyError(f"a cache key must be {KEY_BYTES} bytes, got {len(key)}")
        self._key = key
        self.key_id = hashlib.sha256(b"jarvis cache key id\x00" + key).hexdigest()[:16]
        """Names the key without revealing it (for messages: do two processes share a key?)."""

    def sign(self, purpose: str, subject: str, payload: bytes) -> str:
        """A MAC over the value for one purpose and subject, so a value cannot be replayed under another key."""
        message = b"jarvis/" + purpose.encode() + b"\x00" + subject.encode() + b"\x00" + payload
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def verify(self, purpose: str, subject: str, payload: bytes, mac: str | bytes) -> bool:
        """Whether `mac` is this key's MAC of the value (constant-time; malformed MACs are just False)."""
        if isinstance(mac, bytes):
            try:
                mac = mac.decode("ascii")
            except UnicodeDecodeError:
                return False
        if len(mac) != MAC_HEX_LENGTH:
            return False
        return hmac.compare_digest(self.sign(purpose, subject, payload), mac)
