"""Fixtures shared by every test: real PostgreSQL and Redis, one database per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jarvis_testkit import services


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
