"""infra/docker-compose.yml, checked for structure (no container engine runs compose here)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from jarvis_testkit.binaries import find_binary, search_path

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


def test_redis_requires_a_password_and_jarvis_uses_it(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert "--requirepass" in " ".join(redis["command"])
    password = redis["environment"]["REDIS_PASSWORD"]
    assert redis["environment"]["REDISCLI_AUTH"] == password  # the healthcheck's redis-cli authenticates
    url = compose["services"]["jarvis"]["environment"]["REDIS_URL"]
    assert url == f"redis://:{password}@redis:6379/0"
    assert compose["services"]["migrate"]["environment"]["REDIS_URL"] == url


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_redis_command_really_refuses_clients_without_the_password(compose: dict[str, Any], tmp_path: Path) -> None:
    """Run the compose file's Redis command line (with a local port) and knock without and with the password."""
    server_binary, cli_binary = find_binary("redis-server"), find_binary("redis-cli")
    if server_binary is None or cli_binary is None:
        pytest.skip(f"redis-server / redis-cli are in none of {search_path()}")
    redis = compose["services"]["redis"]
    shell, flag, script = redis["command"]
    assert (shell, flag) == ("sh", "-c")
    port = _free_port()
    script = (
        script.replace("$$", "$").replace("redis-server", server_binary, 1)
        + f" --port {port} --bind 127.0.0.1 --dir {tmp_path} --appendonly no"
    )
    password = "s3cret-for-the-test"
    env = {**os.environ, "REDIS_PASSWORD": password}
    server = subprocess.Popen([shell, flag, script], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ping = [cli_binary, "-p", str(port), "ping"]
    try:
        deadline = time.monotonic() + 20
        while True:
            authed = subprocess.run(ping, env={**env, "REDISCLI_AUTH": password}, capture_output=True, text=True)
            if authed.stdout.strip() == "PONG":
                break
            assert server.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, f"no PONG from the compose Redis command: {authed.stdout}"
            time.sleep(0.05)
        anonymous = subprocess.run(
            ping, env={k: v for k, v in env.items() if k != "REDISCLI_AUTH"}, capture_output=True, text=True
        )
        assert re.search("NOAUTH", anonymous.stdout + anonymous.stderr)
    finally:
        server.terminate()
        server.wait(timeout=10)
