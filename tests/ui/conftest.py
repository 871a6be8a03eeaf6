"""Fixtures of the UI tests: a migrated database holding the demo's trail and a hostile cycle."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from ui.trails import demo_agent, run_demo_plan, run_hostile_cycle

from jarvis.config import Settings
from jarvis.db import Database, open_database


@dataclass
class Trail:
    demo: list[Any]
    hostile: Any

    @property
    def failed_cycle(self) -> Any:
        return next(result for result in self.demo if result.status == "failed")


@pytest.fixture(scope="module")
def trail(database: Database) -> Iterator[Trail]:
    """The demo's three cycles and one hostile cycle, written by a real agent (app role), sealed and signed."""
    agent = demo_agent(database)
    yield Trail(demo=run_demo_plan(agent), hostile=run_hostile_cycle(agent))


@pytest.fixture(scope="module")
def auditor_database(migrated_database_url: str, settings: Settings) -> Iterator[Database]:
    """The handle `jarvis ui` uses: the same database as its SELECT-only auditor role."""
    db = open_database(settings, url=migrated_database_url, role="auditor")
    yield db
    db.shutdown()
