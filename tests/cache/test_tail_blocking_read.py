"""`jarvis audit tail` on a quiet stream reports no outage (issue 23, item 7).

The reader waits in Redis (XREAD BLOCK, 1 s by default); the link's socket timeout is 0.25 s. On
the link's own client every quiet wait timed out, was taken for an outage ("Redis ... is
unavailable (Timeout reading from socket)", then "is back after 0.5 s"), eleven times in twelve seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from jarvis.cache import RedisLink, StreamReader, namespace_for
from jarvis.cache.link import SOCKET_TIMEOUT
from jarvis.db import Database


def test_blocking_reads_on_a_quiet_stream_are_not_outages(
    redis_url: str, database: Database, cache_warnings: Callable[[], list[str]]
) -> None:
    link = RedisLink(redis_url, namespace=namespace_for(database.url))
    reader = StreamReader(link)
    block_ms = 1000
    assert block_ms / 1000 > SOCKET_TIMEOUT  # the case of the bug: a wait longer than the link's timeout
    started = time.monotonic()
    for _ in range(3):
        assert reader.read(block_ms=block_ms) == []
    assert time.monotonic() - started >= 3 * block_ms / 1000 * 0.9  # each read waited in Redis, as asked
    assert link.available
    assert cache_warnings() == []
    link.close()
