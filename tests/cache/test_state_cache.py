"""The Redis state cache: hits, invalidation across processes, no stale installs, healing after loss."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from jarvis.cache import CachedStateStore, RedisLink, namespace_for
from jarvis.db import Database, StateEntry, StateStore


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

    class SlowStore(StateStore):
        def get(self, key: str) -> StateEntry | None:
            entry = super().get(key)  # reads v1 ...
            cache.set(key, "v2")  # ... while another writer commits v2 and invalidates
            return entry

    slow_reader = CachedStateStore(SlowStore(database), link)
    stale = slow_reader.get("raced")
    assert stale is not None and stale.value == "v1"  # what it read is returned to it...
    fresh = cache.get("raced")
    assert fresh is not None and fresh.value == "v2"  # ...but never installed for anyone else


def test_ttl_heals_an_invalidation_that_was_lost(database: Database, link: RedisLink) -> None:
    cache = CachedStateStore(StateStore(database), link, ttl_ms=300)
    cache.set("healing", "v1")
    cache.get("healing")
    StateStore(database).set("healing", "v2")  # a write that bypassed the cache: invalidation lost
    stale = cache.get("healing")
    assert stale is not None and stale.value == "v1"
    time.sleep(0.4)
    healed = cache.get("healing")
    assert healed is not None and healed.value == "v2"


def test_keys_are_namespaced_per_database(cache: CachedStateStore, link: RedisLink) -> None:
    cache.set("ns.probe", 1)
    cache.get("ns.probe")
    assert link.client.exists(link.key("state", "ns.probe")) == 1
    assert link.namespace.startswith("jarvis:") and link.namespace != "jarvis:"
