"""The one Redis connection of a process, and how it degrades.

Redis is a cache and a bus, never the only copy of anything. Every call goes
through `RedisLink.run(operation, fallback)`: when Redis does not answer, the
fallback is returned, a single warning is logged, and Redis is left alone for
a moment before it is tried again, so an outage costs callers nothing but
speed and a recovery needs nobody's help.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from jarvis.config import mask_url, redact

log = logging.getLogger("jarvis.cache")

T = TypeVar("T")

SOCKET_TIMEOUT = 0.25
RETRY_AFTER = 0.5


def namespace_for(database_url: str) -> str:
    """Keys are namespaced per database: two Jarvis databases never share cache entries or streams."""
    return "jarvis:" + hashlib.sha256(mask_url(database_url).encode()).hexdigest()[:12]


class RedisLink:
    def __init__(
        self, url: str, *, namespace: str, socket_timeout: float = SOCKET_TIMEOUT, retry_after: float = RETRY_AFTER
    ) -> None:
        self.url = url
        self.namespace = namespace
        self.retry_after = retry_after
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            health_check_interval=10,
            retry_on_timeout=False,
        )
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._next_try = 0.0
        self.recoveries: list[Callable[[], None]] = []
        """Called (once) each time Redis answers again after an outage, e.g. to replay lost invalidations."""

    def key(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    @property
    def available(self) -> bool:
        return self._down_since is None

    def run(self, operation: Callable[[redis.Redis], T], fallback: T) -> T:
        """`operation(client)`, or `fallback` while Redis is unreachable. Never raises a Redis error."""
        if self._down_since is not None:
            if time.monotonic() < self._next_try:
                return fallback
            try:
                self.client.ping()
            except (redis.RedisError, OSError) as error:
                self._mark_down(error)
                return fallback
            self._mark_up()  # replays what was lost before anyone reads through the cache again
        try:
            return operation(self.client)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
            self._mark_down(error)
            return fallback
        except redis.RedisError as error:  # e.g. a script error: a bug, but still never the caller's problem
            log.error("Redis command failed: %s", redact(str(error)))
            return fallback

    def _mark_down(self, error: BaseException) -> None:
        with self._lock:
            self._next_try = time.monotonic() + self.retry_after
            if self._down_since is None:
                self._down_since = time.monotonic()
                log.warning(
                    "Redis at %s is unavailable (%s); continuing on PostgreSQL alone until it is back",
                    mask_url(self.url),
                    redact(str(error)) or type(error).__name__,
                )

    def _mark_up(self) -> None:
        with self._lock:
            if self._down_since is None:
                return
            outage = time.monotonic() - self._down_since
            self._down_since = None
        log.warning("Redis at %s is back after %.1f s; caching and streaming resume", mask_url(self.url), outage)
        for recovery in self.recoveries:
            recovery()

    def close(self) -> None:
        self.client.close()
