"""The test fixtures reach a real PostgreSQL 16 and a real Redis, one private database per module."""

from __future__ import annotations

import os

import psycopg
import pytest
import redis

from jarvis.db.urls import database_name


def test_postgres_round_trip_in_a_private_database(empty_database_url: str) -> None:
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE probe (id int PRIMARY KEY, body jsonb)")
        conn.execute("INSERT INTO probe VALUES (1, %s::jsonb)", ('{"ok": true}',))
        row = conn.execute("SELECT body FROM probe WHERE id = 1").fetchone()
        current = conn.execute("SELECT current_database()").fetchone()
    assert row == ({"ok": True},)
    assert current is not None and current[0] == database_name(empty_database_url)
    assert current[0].startswith("jarvis_t_")


def test_embedded_postgres_is_version_16(empty_database_url: str) -> None:
    if os.environ.get("DATABASE_URL"):
        pytest.skip("DATABASE_URL is set: the server version is the operator's choice")
    with psycopg.connect(empty_database_url) as conn:
        assert conn.info.server_version // 10000 == 16


def test_redis_round_trip(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set("jarvis:test:probe", b"pong", ex=30)
    assert client.get("jarvis:test:probe") == b"pong"
