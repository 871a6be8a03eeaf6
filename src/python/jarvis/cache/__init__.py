"""Redis: a read-through state cache, the live audit stream and the cycle lock. Optional by design.

Everything Jarvis writes to Redis is authenticated (`jarvis.cache.auth`), and
PostgreSQL stays the source of truth: Redis is never believed over it.
"""

from jarvis.cache.audit_stream import AuditStream, StreamEvent, StreamReader
from jarvis.cache.auth import CacheKeyError, cache_key_path, ensure_cache_key, generate_cache_key, load_cache_key
from jarvis.cache.cycle_lock import CycleLease, CycleLock, CycleLockHeldError
from jarvis.cache.link import RedisLink, namespace_for
from jarvis.cache.state_cache import CachedStateStore

__all__ = [
    "AuditStream",
    "CacheKeyError",
    "CachedStateStore",
    "CycleLease",
    "CycleLock",
    "CycleLockHeldError",
    "RedisLink",
    "StreamEvent",
    "StreamReader",
    "cache_key_path",
    "ensure_cache_key",
    "generate_cache_key",
    "load_cache_key",
    "namespace_for",
]
