"""Engine lifecycle: the app role, pool exhaustion, outages and shutdown give clear outcomes."""

from __future__ import annotations

import time

import psycopg
import pytest
from sqlalchemy import text

from jarvis.config import Settings, load_settings
from jarvis.db import Database, DatabaseUnavailableError, PoolExhaustedError, open_database
from jarvis.db.engine import psycopg_connection
from jarvis_testkit.roles import app_role
from jarvis_testkit.services import free_port


def test_application_connections_run_as_the_restricted_role(database: Database) -> None:
    with database.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == app_role(database.url)


def test_pool_uses_configured_size_and_timeout(database: Database, settings: Settings) -> None:
    assert database.engine.pool.size() == settings.pool_size == 20  # type: ignore[attr-defined]
    assert database.engine.pool.timeout() == settings.connect_timeout  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("max_age", "recycle"),
    [({"pool_idle_timeout": 0.5}, 1), ({"pool_max_age": 0.5}, 1), ({"pool_max_age": 30.2}, 31), ({}, 30)],
)
def test_pool_max_age_is_the_pools_recycle_age_rounded_up_never_zero(max_age: dict[str, float], recycle: int) -> None:
    # Bug: pool_recycle=int(JARVIS_POOL_IDLE_TIMEOUT) made 0.5 into 0, replacing the connection at every checkout.
    url = f"postgresql://jarvis@127.0.0.1:{free_port()}/jarvis"
    db = open_database(load_settings(database_url=url, **max_age), url=url)
    try:
        assert db.engine.pool._recycle == recycle
    finally:
        db.shutdown()


def test_exhausted_pool_raises_a_clear_error_after_the_connect_timeout(migrated_database_url: str) -> None:
    small = load_settings(database_url=migrated_database_url, pool_size=2, connect_timeout=0.5)
    db = open_database(small, url=migrated_database_url)
    try:
        with db.connect(), db.connect():
            started = time.monotonic()
            with pytest.raises(PoolExhaustedError, match="All 2 pooled PostgreSQL connections") as info:
                with db.connect():
                    pass
            waited = time.monotonic() - started
        assert db.engine.pool.timeout() == 0.5  # type: ignore[attr-defined]
        # Never early; late only by what a loaded machine adds (a timeout not applied would wait 30 s or forever).
        assert 0.4 <= waited < 0.5 + 10, waited
        assert "JARVIS_POOL_SIZE" in str(info.value)
        with db.connect() as conn:  # recovered once connections came back
            assert conn.execute(text("SELECT 1")).scalar() == 1
    finally:
        db.shutdown()


def test_unreachable_server_gives_an_actionable_error_without_the_password() -> None:
    url = f"postgresql://jarvis:topsecret@127.0.0.1:{free_port()}/jarvis"
    db = open_database(load_settings(database_url=url, connect_timeout=1), url=url)
    try:
        with pytest.raises(DatabaseUnavailableError) as info:
            with db.connect():
                pass
    finally:
        db.shutdown()
    message = str(info.value)
    assert "topsecret" not in message
    assert "jarvis:***@127.0.0.1" in message and "Fix:" in message


def test_shutdown_closes_idle_connections_and_is_idempotent(migrated_database_url: str, settings: Settings) -> None:
    db = open_database(settings, url=migrated_database_url)
    with db.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert db.engine.pool.checkedin() == 1  # type: ignore[attr-defined]
    db.shutdown()
    db.shutdown()
    assert db.engine.pool.checkedin() == 0  # type: ignore[attr-defined]


def test_psycopg_connection_is_the_driver_connection_under_both_kinds_of_handle(database: Database) -> None:
    with database.connect() as conn:
        assert isinstance(psycopg_connection(conn), psycopg.Connection)
    with database.raw_connection() as proxy:
        assert psycopg_connection(proxy) is proxy.driver_connection
