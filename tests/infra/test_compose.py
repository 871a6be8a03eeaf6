"""infra/docker-compose.yml, checked for structure (no container engine runs compose here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "infra" / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_services_use_postgres_16_and_redis_7(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert services["jarvis"]["image"] == services["migrate"]["image"] == "jarvis:latest"


def test_databases_have_healthchecks(compose: dict[str, Any]) -> None:
    assert "pg_isready" in " ".join(compose["services"]["postgres"]["healthcheck"]["test"])
    assert compose["services"]["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]


def test_jarvis_starts_only_after_healthy_services_and_migrations(compose: dict[str, Any]) -> None:
    depends = compose["services"]["jarvis"]["depends_on"]
    assert depends["postgres"]["condition"] == depends["redis"]["condition"] == "service_healthy"
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert compose["services"]["migrate"]["command"] == ["db", "upgrade"]
    assert compose["services"]["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_named_volumes_keep_the_data(compose: dict[str, Any]) -> None:
    assert set(compose["volumes"]) == {"postgres-data", "redis-data", "jarvis-data"}
    assert "postgres-data:/var/lib/postgresql/data" in compose["services"]["postgres"]["volumes"]


def test_environment_names_match_env_example(compose: dict[str, Any]) -> None:
    documented = {
        line.split("=", 1)[0].lstrip("# ").strip()
        for line in (ROOT / ".env.example").read_text().splitlines()
        if "=" in line
    }
    used = set(compose["services"]["jarvis"]["environment"])
    assert used <= documented, used - documented
    assert {"DATABASE_URL", "REDIS_URL"} <= used
    assert compose["services"]["jarvis"]["environment"]["DATABASE_URL"].startswith("postgresql://jarvis:")
