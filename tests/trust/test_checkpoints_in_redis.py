"""Checkpoints are published to Redis too (a copy for watchers), and a forged copy there changes nothing."""

from __future__ import annotations

import json
from typing import Any

import redis

from jarvis.agent.witnessing import CHECKPOINT_STREAM, seal_and_sign, verify_trail
from jarvis.cache import RedisLink, ensure_cache_key, namespace_for
from jarvis.config import Settings
from jarvis.db import Database
from jarvis.witness import Checkpoint, load_public_key
from jarvis_testkit.tamper import Trail


def test_a_signed_checkpoint_is_published_to_redis_after_each_seal(
    isolated_database: Database, trail: Trail, witnessed: Settings, redis_url: str
) -> None:
    link = RedisLink(redis_url, namespace=namespace_for(isolated_database), auth_key=ensure_cache_key(witnessed))
    try:
        result = seal_and_sign(isolated_database, witnessed, redis_link=link)
        entries: Any = redis.Redis.from_url(redis_url, decode_responses=True).xrange(link.key(CHECKPOINT_STREAM))
    finally:
        link.close()
    published = Checkpoint.from_json(str(entries[-1][1]["checkpoint"]))
    assert published.seq == result.head_seq and published.head_hash == result.head_hash.hex()
    assert published.verify(load_public_key(witnessed.public_key_path()))


def test_a_forged_checkpoint_in_redis_is_not_evidence(
    isolated_database: Database, trail: Trail, witnessed: Settings, redis_url: str
) -> None:
    """Whoever can write to Redis may publish anything there: verify reads only the witness log."""
    seal_and_sign(isolated_database, witnessed)
    forged = {"trail": "x", "seq": 10**6, "head_hash": "00" * 32, "signature": "forged"}
    stream = f"{namespace_for(isolated_database)}:{CHECKPOINT_STREAM}"
    redis.Redis.from_url(redis_url).xadd(stream, {"checkpoint": json.dumps(forged)})
    report = verify_trail(isolated_database, witnessed)
    assert report.ok, report.summary()
    assert report.checkpoints_checked == 1
