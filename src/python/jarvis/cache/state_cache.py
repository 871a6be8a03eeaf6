"""A read-through Redis cache in front of `agent_state` that never outranks PostgreSQL.

PostgreSQL is the source of truth; Redis may be written by others. So:

* Every entry is signed (HMAC, `jarvis.cache.auth`) over the exact Redis key
  and the row it copies. An entry that fails the check (planted, unsigned,
  moved from another key) is a cache miss, a warning and is removed.
* Every hit is checked against PostgreSQL before it is served: the entry
  carries the row's stamp (row id, version and xmin, which change with every
  write, delete or re-creation), and one small index lookup of that stamp
  must match. So once PostgreSQL has a newer version, no cached copy of an
  older one (a lost invalidation, a write that bypassed the cache, a genuine
  entry replayed by an attacker) is ever served. The cache saves reading and
  decoding the value, never the question "is this still it?".
* Writes go to PostgreSQL first; then the key's generation counter is bumped
  and the cached copy dropped (also when the write failed: it may have
  committed). A reader that misses notes the generation, reads PostgreSQL and
  installs what it read only if the generation did not move in between (one
  Lua script), so a slow reader cannot put back an overwritten value. An
  invalidation lost to an outage is replayed when Redis answers again.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from jarvis.cache.auth import Authenticator
from jarvis.cache.link import LinkBase, RedisLink
from jarvis.db import StateEntry, StateStore
from jarvis.db.state import check_key

if TYPE_CHECKING:  # the [redis] extra; only a link (jarvis.cache.link) imports it at run time
    import redis

log = logging.getLogger("jarvis.cache")

CACHE_TTL_MS = 30_000
GENERATION_TTL_S = 86_400
ENTRY_PREFIX = b"j1."
PURPOSE = "state"

INSTALL_IF_GENERATION_UNCHANGED = """
local current = redis.call('GET', KEYS[2]) or '0'
if current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""

DELETE_IF_UNCHANGED = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

STAMP_SQL = "SELECT id::text, version, xmin::text FROM public.agent_state WHERE key = %s"
ROW_SQL = "SELECT id::text, version, xmin::text, value, updated_at FROM public.agent_state WHERE key = %s"


@dataclass(frozen=True)
class _Row:
    """A row of `agent_state` and its stamp: (id, version, xmin) names exactly one committed state of one row."""

    entry: StateEntry
    stamp: tuple[str, int, str]


# The cache's rules without I/O: CachedStateStore and AsyncCachedStateStore (jarvis.cache.aio) both use them.


def value_key(link: LinkBase[Any, Any], key: str) -> str:
    return link.key("state", key)


def generation_key(link: LinkBase[Any, Any], key: str) -> str:
    return link.key("state-gen", key)


def row_from(key: str, row: Sequence[Any] | None) -> _Row | None:
    """`ROW_SQL`'s row as an entry with its stamp."""
    if row is None:
        return None
    row_id, version, xmin, value, updated_at = row
    return _Row(StateEntry(key=key, value=value, version=version, updated_at=updated_at), (row_id, version, xmin))


def encode_entry(auth: Authenticator, value_key: str, row: _Row) -> bytes:
    """The cache entry of `row` under `value_key`: `j1.<mac>.<json>`, the MAC over the key and the payload."""
    row_id, version, xmin = row.stamp
    payload = json.dumps(
        {
            "v": row.entry.value,
            "ver": version,
            "at": row.entry.updated_at.isoformat(),
            "id": row_id,
            "xmin": xmin,
        },
        ensure_ascii=False,
        allow_nan=False,
        separators=(",", ":"),
    ).encode()
    return ENTRY_PREFIX + auth.sign(PURPOSE, value_key, payload).encode() + b"." + payload


def decode_entry(auth: Authenticator, key: str, value_key: str, raw: bytes) -> _Row | None:
    """The entry if it carries a valid MAC for this very key and reads as one; None otherwise (`rejected`)."""
    mac, _, payload = raw.removeprefix(ENTRY_PREFIX).partition(b".")
    if raw.startswith(ENTRY_PREFIX) and auth.verify(PURPOSE, value_key, payload, mac):
        try:
            data = json.loads(payload)
            return _Row(
                StateEntry(
                    key=key, value=data["v"], version=data["ver"], updated_at=datetime.fromisoformat(data["at"])
                ),
                (str(data["id"]), int(data["ver"]), str(data["xmin"])),
            )
        except (ValueError, KeyError, TypeError):
            pass  # signed by us but unreadable: an older format; treat like any bad entry
    return None


def rejected(value_key: str) -> None:
    """Log an entry that failed authentication (the caller counts it and removes it)."""
    log.warning(
        "Redis cache entry %s failed authentication (forged, unsigned, or signed with another "
        "JARVIS_CACHE_KEY); ignored and removed, reading PostgreSQL instead",
        value_key,
    )


def generation_seen(generation: Any) -> str:
    """The generation a reader saw before reading PostgreSQL ('0' when the counter does not exist)."""
    return generation.decode() if isinstance(generation, bytes) else "0"


StoreT = TypeVar("StoreT")
LinkT = TypeVar("LinkT", bound=LinkBase[Any, Any])


class CacheState(Generic[StoreT, LinkT]):
    """What a state cache holds, sync (`CachedStateStore`) or asyncio (`AsyncCachedStateStore`)."""

    def __init__(self, store: StoreT, link: LinkT, *, ttl_ms: int = CACHE_TTL_MS) -> None:
        self.store = store
        self.link = link
        self.ttl_ms = ttl_ms
        self._install = link.client.register_script(INSTALL_IF_GENERATION_UNCHANGED)
        self._delete_if_unchanged = link.client.register_script(DELETE_IF_UNCHANGED)
        self._lost_invalidations: set[str] = set()
        self._lost_lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.rejected = 0
        """Entries that failed authentication (forged, unsigned, or signed with another key)."""
        self.outdated = 0
        """Authentic entries PostgreSQL had moved past (never served)."""

    def _value_key(self, key: str) -> str:
        return value_key(self.link, key)

    def _generation_key(self, key: str) -> str:
        return generation_key(self.link, key)

    def _lost(self, key: str) -> None:
        """An invalidation Redis did not take: replayed when it answers again."""
        with self._lost_lock:
            self._lost_invalidations.add(key)

    def _take_lost(self) -> set[str]:
        with self._lost_lock:
            lost, self._lost_invalidations = self._lost_invalidations, set()
        return lost


class CachedStateStore(CacheState[StateStore, RedisLink]):
    """Same interface as `StateStore`; reads are served from Redis when PostgreSQL confirms they are current."""

    def __init__(self, store: StateStore, link: RedisLink, *, ttl_ms: int = CACHE_TTL_MS) -> None:
        super().__init__(store, link, ttl_ms=ttl_ms)
        link.recoveries.append(self._replay_lost_invalidations)

    def get(self, key: str) -> StateEntry | None:
        """The entry, from Redis when the cached copy is current, else from PostgreSQL (and cached)."""
        check_key(key)
        value_key, generation_key = self._value_key(key), self._generation_key(key)
        cached: Any = self.link.run(lambda r: r.mget([value_key, generation_key]), None)
        raw, generation = cached if cached is not None else (None, None)
        outdated: bytes | None = None
        if raw is not None:
            row = self._authentic(key, value_key, raw)
            if row is not None:
                if self.store.database.read_one(STAMP_SQL, (key,)) == row.stamp:
                    self.hits += 1
                    return row.entry
                self.outdated += 1
                outdated = raw
        self.misses += 1
        fresh = self._read(key)
        if fresh is None and outdated is not None:  # the row is gone, so goes its copy (others are replaced below)
            stale = outdated
            self.link.run(lambda r: self._delete_if_unchanged(keys=[value_key], args=[stale], client=r), 0)
        if fresh is not None and self.link.available:
            seen = generation_seen(generation)
            encoded = encode_entry(self.link.auth, value_key, fresh)
            self.link.run(
                lambda r: self._install(keys=[value_key, generation_key], args=[seen, encoded, self.ttl_ms], client=r),
                0,
            )
        return fresh.entry if fresh is not None else None

    def _read(self, key: str) -> _Row | None:
        """The row as PostgreSQL has it now, with its stamp."""
        return row_from(key, self.store.database.read_one(ROW_SQL, (key,)))

    def set(self, key: str, value: Any, *, expected_version: int | None = None) -> StateEntry:
        """Write through to PostgreSQL, then drop the cached copy (even on error: the write may have committed)."""
        try:
            return self.store.set(key, value, expected_version=expected_version)
        finally:
            self._invalidate(key)  # also after an error: the write may have committed

    def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        """Delete in PostgreSQL, then drop the cached copy."""
        try:
            return self.store.delete(key, expected_version=expected_version)
        finally:
            self._invalidate(key)

    def list(self, prefix: str = "", *, limit: int = 1000) -> list[StateEntry]:
        """Entries whose key starts with `prefix`, read from PostgreSQL (scans are not cached)."""
        return self.store.list(prefix, limit=limit)  # scans are PostgreSQL's job

    def invalidate(self, key: str) -> bool:
        """Drop the cached copy and bump the generation; False when Redis did not answer (replayed later)."""
        check_key(key)
        return self._invalidate(key)

    def _invalidate(self, key: str) -> bool:
        def bump(r: redis.Redis) -> bool:
            pipe = r.pipeline(transaction=True)
            pipe.incr(self._generation_key(key))
            pipe.expire(self._generation_key(key), GENERATION_TTL_S)
            pipe.delete(self._value_key(key))
            pipe.execute()
            return True

        if self.link.run(bump, False):
            return True
        self._lost(key)
        return False

    def _replay_lost_invalidations(self) -> None:
        for key in self._take_lost():
            self._invalidate(key)

    def _authentic(self, key: str, value_key: str, raw: bytes) -> _Row | None:
        """The entry, if it carries a valid MAC for this very key; otherwise None, a warning, and it is removed."""
        row = decode_entry(self.link.auth, key, value_key, raw)
        if row is None:
            self.rejected += 1
            rejected(value_key)
            self.link.run(lambda r: self._delete_if_unchanged(keys=[value_key], args=[raw], client=r), 0)
        return row
