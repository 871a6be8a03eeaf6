"""Fixtures of the trust tests: a small sealed trail, and a signing key with its witness log kept in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from jarvis.config import Settings, load_settings
from jarvis.db import Database
from jarvis.witness import generate_key
from jarvis_testkit.tamper import Trail, build_trail


@pytest.fixture
def trail(isolated_database: Database, isolated_database_url: str) -> Trail:
    return build_trail(isolated_database, isolated_database_url)


@pytest.fixture
def witnessed(tmp_path: Path, isolated_database_url: str) -> Settings:
    """Settings whose checkpoint key and witness log live in tmp_path (outside PostgreSQL, as in production)."""
    key = tmp_path / "keys" / "checkpoint.key"
    generate_key(key)
    return load_settings(
        database_url=isolated_database_url,
        data_dir=tmp_path,
        signing_key=key,
        witness_log=tmp_path / "witness" / "trail.jsonl",
    )
