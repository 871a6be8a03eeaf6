"""Migrations are the source of truth: they match the models, round-trip, and tolerate concurrency."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

import jarvis.db.models  # noqa: F401
from jarvis.config import Settings
from jarvis.db import Database, RuntimeSchema, open_database
from jarvis.db.base import Base
from jarvis.db.migrate import current_revision, downgrade, head_revision, include_name, upgrade
from jarvis_testkit import services


@pytest.fixture
def scratch(postgres_admin_url: str, settings: Settings) -> Iterator[Database]:
    with services.fresh_database(postgres_admin_url, "scratch") as url:
        db = open_database(settings, url=url, role="owner")
        yield db
        db.shutdown()


def schema_diff(db: Database) -> list[object]:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": include_name})
        return list(compare_metadata(context, Base.metadata))


def test_models_and_migrations_agree(owner_database: Database) -> None:
    assert schema_diff(owner_database) == []


def test_runtime_tables_never_appear_in_the_autogenerate_diff(database: Database, owner_database: Database) -> None:
    RuntimeSchema(database).create_table("agent_made", {"x": "text"})
    assert schema_diff(owner_database) == []


def test_upgrade_on_an_up_to_date_database_is_a_no_op(owner_database: Database) -> None:
    before = current_revision(owner_database)
    upgrade(owner_database)
    assert current_revision(owner_database) == before == head_revision()


def test_upgrade_downgrade_upgrade_round_trips(scratch: Database) -> None:
    upgrade(scratch)
    assert current_revision(scratch) == head_revision()
    downgrade(scratch, "base")
    assert current_revision(scratch) is None
    assert set(inspect(scratch.engine).get_table_names()) <= {"alembic_version"}
    upgrade(scratch)
    assert current_revision(scratch) == head_revision()
    assert schema_diff(scratch) == []


def test_concurrent_upgrades_from_two_processes_both_succeed(scratch: Database) -> None:
    script = (
        "import sys; from jarvis.config import load_settings; from jarvis.db import open_database; "
        "from jarvis.db.migrate import upgrade; "
        "upgrade(open_database(load_settings(), url=sys.argv[1], role='owner'))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", script, scratch.url], env=env, stderr=subprocess.PIPE) for _ in range(2)
    ]
    outcomes = [(proc.wait(timeout=120), proc.stderr.read().decode() if proc.stderr else "") for proc in procs]
    assert [code for code, _ in outcomes] == [0, 0], outcomes
    assert current_revision(scratch) == head_revision()
    with scratch.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
