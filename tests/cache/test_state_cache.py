"""The Redis state cache: hits, invalidation across processes, no stale installs, never older than PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from jarvis.cache import CachedStateStore, RedisLink, namespace_for
from jarvis.db import Database, StateStore


@pytest.fixture
def link(redis_url: str, database: Database) -> RedisLink:
    return RedisLink(redis_url, namespace=namespace_for(database.url))


@pytest.fixture
def cache(database: Database, link: RedisLink) -> CachedStateStore:
    return CachedStateStore(StateStore(database), link)


def test_second_read_is_a_cache_hit(cache: CachedStateStore) -> None:
    cache.set("hit.me", {"n": 1})
    first, second = cache.get("hit.me"), cache.get("hit.me")
    assert first == second and first is not None and first.value == {"n": 1}
    assert (cache.misses, cache.hits) == (1, 1)


def test_missing_key_is_a_miss_and_none(cache: CachedStateStore) -> None:
    assert cache.get("absent.key") is None
    assert (cache.misses, cache.hits, cache.outdated) == (1, 0, 0)
    # Nothing is cached for a key PostgreSQL does not have: the next read is a miss again, not a cached None.
    assert cache.get("absent.key") is None
    assert (cache.misses, cache.hits) == (2, 0)


def test_a_write_invalidates_the_cached_value(cache: CachedStateStore) -> None:
    cache.set("moving", 1)
    assert cache.get("moving") is not None
    cache.set("moving", 2)
    entry = cache.get("moving")
    assert entry is not None and entry.value == 2 and entry.version == 2


def test_a_delete_invalidates_the_cached_value(cache: CachedStateStore) -> None:
    cache.set("gone", 1)
    cache.get("gone")
    cache.delete("gone")
    assert cache.get("gone") is None


def test_a_write_by_another_process_is_seen_immediately(
    cache: CachedStateStore, redis_url: str, migrated_database_url: str
) -> None:
    cache.set("shared", "old")
    assert cache.get("shared") is not None  # now cached here
    script = (
        "import sys\n"
        "from jarvis.config import load_settings\n"
        "from jarvis.db import open_database, StateStore\n"
        "from jarvis.cache import CachedStateStore, RedisLink, namespace_for\n"
        "db = open_database(load_settings(database_url=sys.argv[1]), url=sys.argv[1])\n"
        "link = RedisLink(sys.argv[2], namespace=namespace_for(db.url))\n"
        "CachedStateStore(StateStore(db), link).set('shared', 'new')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", script, migrated_database_url, redis_url], env=env, check=True, timeout=60)
    entry = cache.get("shared")
    assert entry is not None and entry.value == "new"


def test_a_slow_reader_never_installs_a_value_overwritten_meanwhile(
    database: Database, link: RedisLink, cache: CachedStateStore
) -> None:
    cache.set("raced", "v1")

    class SlowReader(CachedStateStore):
        def _read(self, key: str) -> Any:
            row = super()._read(key)  # reads v1 ...
            cache.set(key, "v2")  # ... while another writer commits v2 and invalidates
            return row

    slow_reader = SlowReader(StateStore(database), link)
    stale = slow_reader.get("raced")
    assert stale is not None and stale.value == "v1"  # what it read is returned to it...
    assert link.client.exists(link.key("state", "raced")) == 0  # ...but never installed for anyone else
    fresh = cache.get("raced")
    assert fresh is not None and fresh.value == "v2"


def test_a_write_that_bypassed_the_cache_is_never_served(database: Database, link: RedisLink) -> None:
    cache = CachedStateStore(StateStore(database), link)
    cache.set("bypassed", "v1")
    cache.get("bypassed")
    assert cache.get("bypassed") is not None and cache.hits == 1  # cached
    StateStore(database).set("bypassed", "v2")  # a write that did not invalidate (an old client, raw SQL)
    entry = cache.get("bypassed")
    assert entry is not None and entry.value == "v2" and entry.version == 2
    assert cache.outdated == 1  # the cached v1 was authentic, but PostgreSQL had moved on
    again = cache.get("bypassed")
    assert again is not None and again.value == "v2" and cache.hits == 2  # the fresh copy was installed


def test_keys_are_namespaced_per_database(cache: CachedStateStore, link: RedisLink) -> None:
    cache.set("ns.probe", 1)
    cache.get("ns.probe")
    assert link.client.exists(link.key("state", "ns.probe")) == 1
    assert link.namespace.startswith("jarvis:") and link.namespace != "jarvis:"
