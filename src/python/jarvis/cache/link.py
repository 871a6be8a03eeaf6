"""The one Redis connection of a process, and how it degrades.

Redis is a cache and a bus, never the only copy of anything. Every call goes
through `RedisLink.run(operation, fallback)`: when Redis does not answer, the
fallback is returned, a single warning is logged, and Redis is left alone for
a moment before it is tried again, so an outage costs callers nothing but
speed and a recovery needs nobody's help.

A link also carries what makes Redis safe to share: the namespace of one
database (`namespace_for`: the database's identity, not the spelling of its
URL) and the authenticator that signs and checks everything Jarvis puts there
(`jarvis.cache.auth`, key JARVIS_CACHE_KEY).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import psycopg

from jarvis.cache.auth import Authenticator, ensure_cache_key
from jarvis.config import load_settings, mask_url, redact
from jarvis.config.extras import OptionalModule
from jarvis.db import Database
from jarvis.db.engine import psycopg_connection, unavailable
from jarvis.db.urls import libpq_url

if TYPE_CHECKING:
    import redis
else:  # the [redis] extra: imported when a link is made (REDIS_URL set), so the core runs without it
    redis = OptionalModule("redis", extra="redis", feature="Redis (REDIS_URL)")

log = logging.getLogger("jarvis.cache")

T = TypeVar("T")

SOCKET_TIMEOUT = 0.25
RETRY_AFTER = 0.5
IDENTITY_CONNECT_TIMEOUT = 5

SYSTEM_IDENTITY_SQL = (
    "SELECT s.system_identifier::text, d.oid::text FROM pg_catalog.pg_control_system() AS s, "
    "pg_catalog.pg_database AS d WHERE d.datname = pg_catalog.current_database()"
)
FALLBACK_IDENTITY_SQL = (
    "SELECT coalesce(pg_catalog.current_setting('cluster_name', true), ''), "
    "coalesce(pg_catalog.host(pg_catalog.inet_server_addr()), 'local'), pg_catalog.current_setting('port'), "
    "d.oid::text, d.datname FROM pg_catalog.pg_database AS d WHERE d.datname = pg_catalog.current_database()"
)


def namespace_for(database: Database | str) -> str:
    """The Redis key prefix of one database: derived from what the database *is*, not how it was reached.

    Two spellings of one database (`localhost` and `127.0.0.1`, a socket, a
    pooler, another user) must share cache entries, invalidations, streams and
    locks, and two databases must never. So the namespace is a hash of the
    cluster's system identifier (`pg_control_system()`, fixed at initdb and
    shared by its physical replicas) and the database's oid. Where a hardened
    server has revoked `pg_control_system()` from the login, it falls back to
    the cluster name, the server address and port, the oid and the name, and
    says so once (two spellings of one server address then still differ).
    """
    if isinstance(database, Database):
        with database.raw_connection() as proxy:
            try:
                return _namespace_from(psycopg_connection(proxy), database.display_url)
            except psycopg.OperationalError as error:
                proxy.invalidate()
                raise unavailable(database.url, error) from None
    try:
        with psycopg.connect(libpq_url(database), connect_timeout=IDENTITY_CONNECT_TIMEOUT) as conn:
            return _namespace_from(conn, mask_url(database))
    except psycopg.OperationalError as error:
        raise unavailable(database, error) from None


_fallback_warned: set[str] = set()


def _namespace_from(conn: Any, where: str) -> str:
    autocommit = conn.autocommit
    conn.autocommit = True  # nothing of this outlives the statement, and a refusal leaves no aborted transaction
    try:
        try:
            row = conn.execute(SYSTEM_IDENTITY_SQL).fetchone()
            identity = f"system:{row[0]}:database:{row[1]}"
        except psycopg.errors.InsufficientPrivilege:
            row = conn.execute(FALLBACK_IDENTITY_SQL).fetchone()
            identity = "server:" + ":".join(str(part) for part in row)
            if where not in _fallback_warned:
                _fallback_warned.add(where)
                log.warning(
                    "the login of %s may not call pg_control_system(), so the Redis namespace is derived from the "
                    "server address, port and database oid instead of the cluster's system identifier: use one "
                    "spelling of the host everywhere, or GRANT EXECUTE ON FUNCTION pg_control_system() to the login",
                    where,
                )
    finally:
        if not conn.closed:
            conn.autocommit = autocommit
    return "jarvis:" + hashlib.sha256(identity.encode()).hexdigest()[:16]


def connection_errors() -> tuple[type[BaseException], ...]:
    """What makes Redis count as down (redis.asyncio raises the same classes)."""
    return (redis.ConnectionError, redis.TimeoutError, OSError)


class RedisHealth:
    """Whether Redis is down, and when to try it again: the degradation rules of both links, without I/O.

    `RedisLink` (sync) and `AsyncRedisLink` (jarvis.cache.aio) ask it before each operation
    and tell it what happened; it logs one warning per outage and one on recovery.
    """

    def __init__(self, url: str, retry_after: float) -> None:
        self.url = url
        self.retry_after = retry_after
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._next_try = 0.0

    @property
    def available(self) -> bool:
        return self._down_since is None

    def wait_before_trying(self) -> bool:
        """True while Redis is down and its next try is not due yet: return the fallback at once."""
        return self._down_since is not None and time.monotonic() < self._next_try

    def failed(self, error: BaseException) -> None:
        """An operation (or the probe) failed: Redis is down from now, tried again after `retry_after`."""
        with self._lock:
            self._next_try = time.monotonic() + self.retry_after
            if self._down_since is None:
                self._down_since = time.monotonic()
                log.warning(
                    "Redis at %s is unavailable (%s); continuing on PostgreSQL alone until it is back",
                    mask_url(self.url),
                    redact(str(error)) or type(error).__name__,
                )

    def answered(self) -> bool:
        """The probe answered: True if this ends an outage (the caller then runs its recoveries)."""
        with self._lock:
            if self._down_since is None:
                return False
            outage = time.monotonic() - self._down_since
            self._down_since = None
        log.warning("Redis at %s is back after %.1f s; caching and streaming resume", mask_url(self.url), outage)
        return True

    @staticmethod
    def command_failed(error: BaseException) -> None:
        """A command Redis refused (e.g. a script error): a bug, logged, but never the caller's problem."""
        log.error("Redis command failed: %s", redact(str(error)))


ClientT = TypeVar("ClientT")
RecoveryT = TypeVar("RecoveryT")


class LinkBase(Generic[ClientT, RecoveryT]):
    """What both links hold: the namespace, the authenticator, the health rules, a client and recoveries.

    `RedisLink` has a `redis.Redis` client; `AsyncRedisLink` (jarvis.cache.aio) a `redis.asyncio.Redis`.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str,
        socket_timeout: float = SOCKET_TIMEOUT,
        retry_after: float = RETRY_AFTER,
        auth_key: bytes | None = None,
    ) -> None:
        """`auth_key` signs and checks what goes through Redis; default: JARVIS_CACHE_KEY (created if missing)."""
        self.url = url
        self.namespace = namespace
        self.auth = Authenticator(auth_key if auth_key is not None else ensure_cache_key(load_settings()))
        self.retry_after = retry_after
        self.socket_timeout = socket_timeout
        self.health = RedisHealth(url, retry_after)
        self.client: ClientT = self.connect(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            health_check_interval=10,
            retry_on_timeout=False,  # an outage falls back at once
        )
        self.recoveries: list[RecoveryT] = []
        """Called (once) each time Redis answers again after an outage, e.g. to replay lost invalidations."""
        self._blocking: dict[float, ClientT] = {}
        """Clients for blocking commands, by socket timeout (`RedisLink.blocking_client`)."""

    def connect(self, url: str, **options: Any) -> ClientT:
        raise NotImplementedError

    def key(self, *parts: str) -> str:
        """A key inside this database's namespace, so agents on different databases never share keys."""
        return ":".join((self.namespace, *parts))

    @property
    def available(self) -> bool:
        """False while Redis is considered down (callers fall back to PostgreSQL)."""
        return self.health.available


class RedisLink(LinkBase["redis.Redis", Callable[[], None]]):
    def connect(self, url: str, **options: Any) -> redis.Redis:
        return redis.Redis.from_url(url, **options)

    def blocking_client(self, block: float) -> redis.Redis:
        """A client for a command that waits in Redis up to `block` seconds (XREAD BLOCK).

        The link's client gives up after `socket_timeout` (0.25 s), so a blocking read on it timed
        out on every quiet second and was reported as an outage. This one waits `block` longer; a
        Redis that does not answer at all is still noticed within `socket_timeout` of the wait.
        """
        timeout = self.socket_timeout + block
        client = self._blocking.get(timeout)
        if client is None:
            client = self._blocking[timeout] = self.connect(
                self.url,
                socket_timeout=timeout,
                socket_connect_timeout=self.socket_timeout,
                health_check_interval=10,
                retry_on_timeout=False,
            )
        return client

    def run(self, operation: Callable[[redis.Redis], T], fallback: T) -> T:
        """`operation(client)`, or `fallback` while Redis is unreachable. Never raises a Redis error."""
        if self.health.wait_before_trying():
            return fallback
        if not self.health.available:
            try:
                self.client.ping()
            except (redis.RedisError, OSError) as error:
                self.health.failed(error)
                return fallback
            if self.health.answered():  # replays what was lost before anyone reads through the cache again
                for recovery in self.recoveries:
                    recovery()
        try:
            return operation(self.client)
        except connection_errors() as error:
            self.health.failed(error)
            return fallback
        except redis.RedisError as error:
            self.health.command_failed(error)
            return fallback

    def close(self) -> None:
        """Close the clients' connections."""
        self.client.close()
        for client in self._blocking.values():
            client.close()
