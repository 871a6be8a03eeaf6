"""`jarvis ui` as a user starts it: the real command in a subprocess, and its refusal to listen unprotected."""

from __future__ import annotations

import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner
from ui.conftest import Trail
from ui.trails import free_port

from jarvis.cli.main import app
from jarvis_testkit.processes import jarvis_process, wait_for


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError):
        return False


def test_jarvis_ui_serves_the_trail_on_loopback(migrated_database_url: str, trail: Trail) -> None:
    port = free_port()
    process = jarvis_process("ui", "--port", str(port), database_url=migrated_database_url)
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/"), what="jarvis ui to answer", process=process)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/cycles/{trail.failed_cycle.cycle_id}") as page:
            assert 'data-status="failed"' in page.read().decode()
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)


def test_jarvis_ui_refuses_a_public_address_without_a_token() -> None:
    result = CliRunner().invoke(app, ["ui", "--host", "0.0.0.0"], env={"JARVIS_UI_TOKEN": ""})
    assert result.exit_code == 2
    assert "give --token" in result.output


def test_a_token_in_dot_env_lets_jarvis_ui_listen_on_a_public_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("JARVIS_UI_TOKEN=a-token-from-dot-env-0123456789\n")
    monkeypatch.chdir(tmp_path)
    closed_port = free_port()  # nothing listens there: the command gets past the token, then cannot connect
    result = CliRunner().invoke(
        app,
        ["ui", "--host", "0.0.0.0"],
        env={"JARVIS_UI_TOKEN": "", "DATABASE_URL": f"postgresql://nobody@127.0.0.1:{closed_port}/db", "REDIS_URL": ""},
    )
    assert "give --token" not in result.output
    assert result.exit_code == 3, result.output
