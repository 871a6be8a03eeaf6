"""Fixtures shared by every test: real PostgreSQL and Redis, one database per test module."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from jarvis.config import Settings, load_settings
from jarvis.db import Database, open_database
from jarvis.db.migrate import upgrade_to_head
from jarvis_testkit import services

# Keys and witness logs of this test process stay out of the real data directory (~/.local/share/jarvis),
# in a directory of its own that is removed when the session ends (pytest_sessionfinish), not left in /tmp.
TEST_DATA_DIR = None if "JARVIS_DATA_DIR" in os.environ else tempfile.mkdtemp(prefix="jarvis-test-data-")
if TEST_DATA_DIR is not None:
    os.environ["JARVIS_DATA_DIR"] = TEST_DATA_DIR
# No background sealer unless a test asks for one (tests/trust/test_round3_sealing_delay.py does): most tests
# attack or inspect rows while they are still queued, and a sealer at work would race them.
os.environ.setdefault("JARVIS_SEAL_INTERVAL", "0")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove this session's data directory: session fixtures are torn down by now, so nothing uses it."""
    if TEST_DATA_DIR is not None:
        shutil.rmtree(TEST_DATA_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """Superuser URL of the server the tests use (DATABASE_URL or the embedded PostgreSQL 16)."""
    return services.postgres_admin_url()


@pytest.fixture(scope="module")
def empty_database_url(postgres_admin_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database created for this test module alone and dropped after it."""
    with services.fresh_database(postgres_admin_url, request.module.__name__) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with services.redis_url() as url:
        yield url


@pytest.fixture(scope="module")
def settings(empty_database_url: str) -> Settings:
    return load_settings(database_url=empty_database_url)


@pytest.fixture(scope="module")
def migrated_database_url(empty_database_url: str, settings: Settings) -> str:
    """This module's database, upgraded to the newest migration."""
    upgrade_to_head(settings, url=empty_database_url)
    return empty_database_url


@pytest.fixture(scope="module")
def database(migrated_database_url: str, settings: Settings) -> Iterator[Database]:
    """The migrated database as the application sees it: through the database's restricted app role."""
    db = open_database(settings, url=migrated_database_url)
    yield db
    db.shutdown()


@pytest.fixture(scope="module")
def owner_database(migrated_database_url: str, settings: Settings) -> Iterator[Database]:
    """The same database as its owner (a superuser in tests): what an administrator could do."""
    db = open_database(settings, url=migrated_database_url, role="owner")
    yield db
    db.shutdown()


@pytest.fixture(scope="module")
def migrated_template_url(postgres_admin_url: str, settings: Settings, request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated database that is never connected to, so it can be cloned per test."""
    with services.fresh_database(postgres_admin_url, "tmpl_" + request.module.__name__) as url:
        upgrade_to_head(settings, url=url)
        yield url


@pytest.fixture
def isolated_database_url(
    postgres_admin_url: str, migrated_template_url: str, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A migrated database for this test alone (for tests that tamper with it)."""
    url = services.clone_database(postgres_admin_url, migrated_template_url, request.node.name)
    try:
        yield url
    finally:
        services.drop_database(postgres_admin_url, url)


@pytest.fixture
def isolated_database(isolated_database_url: str, settings: Settings) -> Iterator[Database]:
    db = open_database(settings, url=isolated_database_url)
    yield db
    db.shutdown()


@pytest.fixture(scope="module")
def private_redis_server() -> Iterator[services.RedisServer]:
    """A redis-server of this module's own, which tests may stop and restart to inject outages."""
    with services.private_redis() as server:
        yield server
