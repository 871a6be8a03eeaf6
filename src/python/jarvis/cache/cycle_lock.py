"""At most one running planning cycle per agent across processes: a Redis lock with a fencing token.

The lock is the fast path and the courtesy; the database trigger (one open
cycle per agent) is the guarantee. A lock that expires while its holder is
still running (a long GC pause, a partition) can let a second process in,
but that process's `open_cycle` is then refused by PostgreSQL. The fencing
token (strictly increasing per agent) is recorded in the cycle's outcomes so
the order of holders can be audited.

The lock itself is redis-py's `Lock` (a unique token set with SET NX PX,
released and extended by Lua scripts that check the token). Because anyone
who can write to Redis can also write the lock key, a holder is only
honoured while it looks like one of ours: a key without an expiry, a value
that is not a token signed with JARVIS_CACHE_KEY, or a remaining lifetime
longer than the token itself asked for, is treated as stale, removed with a
warning, and the lock taken. So a squatted key delays nobody; someone who
keeps deleting or replanting keys with Redis access can at worst let two
processes race, which PostgreSQL then refuses.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jarvis.cache.link import LinkBase, RedisLink
from jarvis.config import JarvisError
from jarvis.config.extras import OptionalModule

if TYPE_CHECKING:
    import redis
    import redis.exceptions
    import redis.lock
else:  # the [redis] extra: used only once a link exists (REDIS_URL set)
    redis = OptionalModule("redis", extra="redis", feature="Redis (REDIS_URL)")

log = logging.getLogger("jarvis.cache")

LOCK_TTL_MS = 60_000
PURPOSE = "cycle-lock"

DELETE_IF_UNCHANGED = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class CycleLease:
    agent: str
    owner: str
    fencing_token: int


class CycleLockHeldError(JarvisError, RuntimeError):
    """Another process holds the planning-cycle lock of this agent."""


class LockRules:
    """The lock's keys, tokens and stale rule, without I/O: `CycleLock` and `AsyncCycleLock` (jarvis.cache.aio)."""

    def __init__(self, link: LinkBase[Any, Any], agent: str, ttl_ms: int) -> None:
        self.link = link
        self.agent = agent
        self.ttl_ms = ttl_ms
        self._key = link.key("cycle-lock", agent)
        self._fence = link.key("cycle-fence", agent)
        self.stale_cleared = 0
        """Lock keys removed because they were not a live holder of ours (no expiry, forged, overlong)."""

    def _new_token(self) -> str:
        """A random nonce and the lifetime it asks for, signed: `nonce.ttl_ms.mac`."""
        body = f"{secrets.token_hex(16)}.{self.ttl_ms}"
        return f"{body}.{self.link.auth.sign(PURPOSE, self._key, body.encode())}"

    def _token_lifetime(self, token: bytes) -> int | None:
        """The lifetime (ms) a genuine token asked for; None if the token is not one of ours."""
        try:
            nonce, ttl, mac = token.decode("ascii").split(".")
            lifetime = int(ttl)
        except ValueError:  # also UnicodeDecodeError
            return None
        if not self.link.auth.verify(PURPOSE, self._key, f"{nonce}.{ttl}".encode(), mac):
            return None
        return lifetime

    def _stale_reason(self, held: bytes, remaining: int) -> str | None:
        """Why the key's holder is not a live holder of ours (then it may be removed); None for a live holder."""
        lifetime = self._token_lifetime(held)
        if lifetime is None:
            return "its value is not a lock token signed with this JARVIS_CACHE_KEY"
        if remaining == -1:
            return "it has no expiry"
        if remaining > lifetime:
            return f"its expiry ({remaining} ms) is longer than its token asked for ({lifetime} ms)"
        return None

    def _cleared(self, why: str) -> None:
        self.stale_cleared += 1
        log.warning(
            "removed the planning-cycle lock %s of agent %r as stale: %s (planted by something other than Jarvis, "
            "or left by another key); taking the lock",
            self._key,
            self.agent,
            why,
        )

    def _held_error(self) -> CycleLockHeldError:
        return CycleLockHeldError(
            f"another process is running a planning cycle for agent {self.agent!r} (Redis lock {self._key})"
        )


class CycleLock(LockRules):
    def __init__(self, link: RedisLink, agent: str, *, ttl_ms: int = LOCK_TTL_MS) -> None:
        super().__init__(link, agent, ttl_ms)
        self.link: RedisLink = link
        self._delete_if_unchanged = link.client.register_script(DELETE_IF_UNCHANGED)

    def _lock(self, owner: str | None = None) -> redis.lock.Lock:
        lock = redis.lock.Lock(
            self.link.client, self._key, timeout=self.ttl_ms / 1000, blocking=False, thread_local=False
        )
        if owner is not None:
            lock.local.token = owner.encode()
        return lock

    def acquire(self) -> CycleLease | None:
        """A lease, or None when Redis is unavailable (the database constraint still guards).

        Raises CycleLockHeldError when another live holder has it.
        """
        owner = self._new_token()

        def take(r: redis.Redis) -> bool:
            lock = self._lock()
            if lock.acquire(blocking=False, token=owner):
                return True
            return self._clear_if_stale(r) and bool(lock.acquire(blocking=False, token=owner))

        got = self.link.run(take, None)
        if got is None and not self.link.available:
            return None
        if not got:
            raise self._held_error()
        token = self.link.run(lambda r: int(r.incr(self._fence)), 0)
        return CycleLease(self.agent, owner, token)

    def _clear_if_stale(self, r: redis.Redis) -> bool:
        """True if the key is free now (it expired, or it was stale and we removed it)."""
        pipe = r.pipeline(transaction=True)
        pipe.get(self._key)
        pipe.pttl(self._key)
        held: Any
        remaining: Any
        held, remaining = pipe.execute()
        if held is None:
            return True
        why = self._stale_reason(held, remaining)
        if why is None:
            return False  # a live holder
        if not self._delete_if_unchanged(keys=[self._key], args=[held], client=r):
            return False  # it changed meanwhile: someone else's now
        self._cleared(why)
        return True

    def extend(self, lease: CycleLease) -> bool:
        """Renew the lease for another TTL; False when it is no longer ours (expired or taken over)."""

        def extend(r: redis.Redis) -> bool:
            try:
                return bool(self._lock(lease.owner).extend(self.ttl_ms / 1000, replace_ttl=True))
            except redis.exceptions.LockError:  # no longer ours (expired, taken over)
                return False

        return self.link.run(extend, False)

    def release(self, lease: CycleLease) -> bool:
        """Give the lock up; False when it was no longer ours (the next holder's lock is never deleted)."""

        def release(r: redis.Redis) -> bool:
            try:
                self._lock(lease.owner).release()
            except redis.exceptions.LockError:  # no longer ours: never delete the next holder's lock
                return False
            return True

        return self.link.run(release, False)
