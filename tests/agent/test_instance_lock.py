"""The agent's instance lock: one live process per agent name, held through Jarvis's own connection errors."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from jarvis.agent import Agent, AgentAlreadyRunningError
from jarvis.config import load_settings
from jarvis.db import PoolExhaustedError, open_database


def test_a_full_pool_is_jarvis_error_when_taking_the_instance_lock(migrated_database_url: str) -> None:
    # Issue #13 item 4: take_instance_lock called engine.connect() and leaked SQLAlchemy's TimeoutError.
    settings = load_settings(database_url=migrated_database_url, pool_size=1, connect_timeout=0.5)
    database = open_database(settings, url=migrated_database_url)
    try:
        with database.connect():  # the pool's one connection is busy
            with pytest.raises(PoolExhaustedError, match="JARVIS_POOL_SIZE"):
                Agent(database, name="crowded").take_instance_lock()
    finally:
        database.shutdown()


def test_the_instance_lock_is_exclusive_and_released_at_shutdown(migrated_database_url: str) -> None:
    settings = load_settings(database_url=migrated_database_url)
    first = Agent(open_database(settings, url=migrated_database_url), name="only-one")
    second = Agent(open_database(settings, url=migrated_database_url), name="only-one")
    try:
        first.take_instance_lock()
        with pytest.raises(AgentAlreadyRunningError, match="only-one"):
            second.take_instance_lock()
        first.shutdown()
        second.take_instance_lock()  # released with the first agent's held transaction
        with second.database.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1  # the failed attempt returned its connection
    finally:
        first.shutdown()
        second.shutdown()
