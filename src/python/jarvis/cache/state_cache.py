"""A read-through Redis cache in front of `agent_state`, never serving a value older than a committed write.

Writes go to PostgreSQL first; then the key's generation counter is bumped and
the cached copy dropped. A reader that misses notes the generation, reads
PostgreSQL, and installs what it read only if the generation did not move in
between (one Lua script, atomic in Redis). So a slow reader can never put
back a value some process has since overwritten, in this process or any
other. If the invalidation itself is lost (Redis down at that moment), the
writer replays it as soon as Redis answers again, and the TTL bounds how long
any other view could be stale.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from typing import Any

import redis

from jarvis.cache.link import RedisLink
from jarvis.db import StateEntry, StateStore
from jarvis.db.state import check_key

CACHE_TTL_MS = 30_000
GENERATION_TTL_S = 86_400

INSTALL_IF_GENERATION_UNCHANGED = """
local current = redis.call('GET', KEYS[2]) or '0'
if current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""


class CachedStateStore:
    """Same interface as `StateStore`; reads are served from Redis when possible."""

    def __init__(self, store: StateStore, link: RedisLink, *, ttl_ms: int = CACHE_TTL_MS) -> None:
        self.store = store
        self.link = link
        self.ttl_ms = ttl_ms
        self._install = link.client.register_script(INSTALL_IF_GENERATION_UNCHANGED)
        self._lost_invalidations: set[str] = set()
        self._lost_lock = threading.Lock()
        link.recoveries.append(self._replay_lost_invalidations)
        self.hits = 0
        self.misses = 0

    def _value_key(self, key: str) -> str:
        return self.link.key("state", key)

    def _generation_key(self, key: str) -> str:
        return self.link.key("state-gen", key)

    def get(self, key: str) -> StateEntry | None:
        check_key(key)
        cached: Any = self.link.run(lambda r: r.get(self._value_key(key)), None)
        if cached is not None:
            self.hits += 1
            return _decode(key, cached)
        self.misses += 1
        generation = self.link.run(lambda r: r.get(self._generation_key(key)), None)
        entry = self.store.get(key)
        if entry is not None and self.link.available:
            seen = generation.decode() if isinstance(generation, bytes) else "0"
            self.link.run(
                lambda r: self._install(
                    keys=[self._value_key(key), self._generation_key(key)],
                    args=[seen, _encode(entry), self.ttl_ms],
                    client=r,
                ),
                0,
            )
        return entry

    def set(self, key: str, value: Any, *, expected_version: int | None = None) -> StateEntry:
        entry = self.store.set(key, value, expected_version=expected_version)
        self._invalidate(key)
        return entry

    def delete(self, key: str, *, expected_version: int | None = None) -> bool:
        deleted = self.store.delete(key, expected_version=expected_version)
        self._invalidate(key)
        return deleted

    def list(self, prefix: str = "", *, limit: int = 1000) -> list[StateEntry]:
        return self.store.list(prefix, limit=limit)  # scans are PostgreSQL's job

    def _invalidate(self, key: str) -> None:
        def bump(r: redis.Redis) -> bool:
            pipe = r.pipeline(transaction=True)
            pipe.incr(self._generation_key(key))
            pipe.expire(self._generation_key(key), GENERATION_TTL_S)
            pipe.delete(self._value_key(key))
            pipe.execute()
            return True

        if not self.link.run(bump, False):
            with self._lost_lock:
                self._lost_invalidations.add(key)

    def _replay_lost_invalidations(self) -> None:
        with self._lost_lock:
            lost, self._lost_invalidations = self._lost_invalidations, set()
        for key in lost:
            self._invalidate(key)


def _encode(entry: StateEntry) -> str:
    return json.dumps(
        {"v": entry.value, "ver": entry.version, "at": entry.updated_at.isoformat()},
        ensure_ascii=False,
        allow_nan=False,
    )


def _decode(key: str, raw: bytes) -> StateEntry:
    data = json.loads(raw)
    return StateEntry(key=key, value=data["v"], version=data["ver"], updated_at=datetime.fromisoformat(data["at"]))
