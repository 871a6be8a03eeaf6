"""At most one running planning cycle per agent across processes: a Redis lock with a fencing token.

The lock is the fast path and the courtesy; the database trigger (one open
cycle per agent) is the guarantee. A lock that expires while its holder is
still running (a long GC pause, a partition) can let a second process in,
but that process's `open_cycle` is then refused by PostgreSQL. The fencing
token (strictly increasing per agent) is recorded in the cycle's outcomes so
the order of holders can be audited.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from jarvis.cache.link import RedisLink

LOCK_TTL_MS = 60_000

RELEASE_IF_OURS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

EXTEND_IF_OURS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


@dataclass(frozen=True)
class CycleLease:
    agent: str
    owner: str
    fencing_token: int


class CycleLockHeldError(RuntimeError):
    """Another process holds the planning-cycle lock of this agent."""


class CycleLock:
    def __init__(self, link: RedisLink, agent: str, *, ttl_ms: int = LOCK_TTL_MS) -> None:
        self.link = link
        self.agent = agent
        self.ttl_ms = ttl_ms
        self._key = link.key("cycle-lock", agent)
        self._fence = link.key("cycle-fence", agent)
        self._release = link.client.register_script(RELEASE_IF_OURS)
        self._extend = link.client.register_script(EXTEND_IF_OURS)

    def acquire(self) -> CycleLease | None:
        """A lease, or None when Redis is unavailable (the database constraint still guards).

        Raises CycleLockHeldError when another live holder has it.
        """
        owner = uuid.uuid4().hex
        got = self.link.run(lambda r: r.set(self._key, owner, nx=True, px=self.ttl_ms), None)
        if got is None and not self.link.available:
            return None
        if not got:
            raise CycleLockHeldError(
                f"another process is running a planning cycle for agent {self.agent!r} (Redis lock {self._key})"
            )
        token = self.link.run(lambda r: int(r.incr(self._fence)), 0)
        return CycleLease(self.agent, owner, token)

    def extend(self, lease: CycleLease) -> bool:
        return bool(
            self.link.run(lambda r: self._extend(keys=[self._key], args=[lease.owner, self.ttl_ms], client=r), 0)
        )

    def release(self, lease: CycleLease) -> bool:
        return bool(self.link.run(lambda r: self._release(keys=[self._key], args=[lease.owner], client=r), 0))
