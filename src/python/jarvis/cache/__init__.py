"""Redis: a read-through state cache, the live audit stream and the cycle lock. Optional by design."""

from jarvis.cache.audit_stream import AuditStream, StreamEvent, StreamReader
from jarvis.cache.cycle_lock import CycleLease, CycleLock, CycleLockHeldError
from jarvis.cache.link import RedisLink, namespace_for
from jarvis.cache.state_cache import CachedStateStore

__all__ = [
    "AuditStream",
    "CachedStateStore",
    "CycleLease",
    "CycleLock",
    "CycleLockHeldError",
    "RedisLink",
    "StreamEvent",
    "StreamReader",
    "namespace_for",
]
