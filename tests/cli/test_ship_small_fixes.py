"""Issue 23 item 9: `jarvis config` shows what is in effect, a busy port is one clear line, advice that is safe.

Each test runs the command as a user would (the CLI app, the auditor's own login).
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import typer.main
from psycopg import sql
from typer.testing import CliRunner

from jarvis.cli.main import app
from jarvis_testkit.roles import app_role, as_login, auditor_role

runner = CliRunner()
TOKEN = "a-ui-token-that-must-never-be-shown-0123"


def invoke(*args: str, url: str = "", **env: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"DATABASE_URL": url, "REDIS_URL": "", "COLUMNS": "200", **env})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def config_rows(**env: str | None) -> dict[str, Any]:
    result = runner.invoke(app, ["config", "--json"], env={"DATABASE_URL": "", "REDIS_URL": "", **env})
    assert result.exit_code == 0, result.output
    return {row["variable"]: row for row in json.loads(result.stdout)}


def test_config_shows_the_key_and_witness_paths_in_effect(tmp_path: Path) -> None:
    unset = {"JARVIS_SIGNING_KEY": None, "JARVIS_CACHE_KEY": None, "JARVIS_WITNESS_LOG": None}
    rows = config_rows(JARVIS_DATA_DIR=str(tmp_path), **unset)
    assert rows["JARVIS_SIGNING_KEY"]["value"] == str(tmp_path / "keys" / "checkpoint.key")
    assert rows["JARVIS_CACHE_KEY"]["value"] == str(tmp_path / "keys" / "cache.key")
    assert rows["JARVIS_WITNESS_LOG"]["value"] == str(tmp_path / "witness" / "<trail id>.jsonl")


def test_config_shows_the_ui_token_masked_and_the_mcp_call_timeout() -> None:
    rows = config_rows(JARVIS_UI_TOKEN=TOKEN, JARVIS_MCP_CALL_TIMEOUT="42")
    assert rows["JARVIS_UI_TOKEN"]["source"] == "environment" and TOKEN not in str(rows)
    assert rows["JARVIS_UI_TOKEN"]["value"] == "(set, not shown)"
    assert rows["JARVIS_MCP_CALL_TIMEOUT"]["value"] == 42.0
    assert "JARVIS_SEAL_INTERVAL" in rows


def test_ui_and_mcp_serve_http_default_to_different_ports() -> None:
    command = typer.main.get_command(app)
    ui = command.commands["ui"]  # type: ignore[attr-defined]
    serve = command.commands["mcp"].commands["serve"]  # type: ignore[attr-defined]
    port = {name: next(p.default for p in c.params if p.name == "port") for name, c in (("ui", ui), ("serve", serve))}
    assert port["ui"] != port["serve"], port


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def test_jarvis_ui_on_a_busy_port_says_so_in_one_line_and_exits_2(busy_port: int, migrated_database_url: str) -> None:
    code, output = invoke("ui", "--port", str(busy_port), url=migrated_database_url)
    assert code == 2, output
    assert f"127.0.0.1:{busy_port}" in output and "already in use" in output and "--port" in output, output
    assert "http://" not in output and "Errno" not in output, output


def test_mcp_serve_http_on_a_busy_port_says_so_in_one_line_and_exits_2(
    busy_port: int, migrated_database_url: str
) -> None:
    code, output = invoke("mcp", "serve", "--http", "--port", str(busy_port), url=migrated_database_url)
    assert code == 2, output
    assert f"127.0.0.1:{busy_port}" in output and "already in use" in output and "--port" in output, output
    assert "Errno" not in output, output


@pytest.fixture
def auditor_login_url(isolated_database_url: str) -> Iterator[str]:
    """A login that is only the auditor role (SELECT-only), as the README's production recipe makes one."""
    login = f"auditor_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(isolated_database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(
                sql.Identifier(login), sql.Identifier(auditor_role(isolated_database_url))
            )
        )
    try:
        yield as_login(isolated_database_url, login)
    finally:
        with psycopg.connect(isolated_database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))


def test_an_auditor_login_that_tries_to_write_is_not_told_to_get_the_app_role(
    auditor_login_url: str, isolated_database_url: str
) -> None:
    login = auditor_login_url.split("://", 1)[1].split("@", 1)[0]
    code, output = invoke("state", "set", "wallet.usd", "12.5", url=auditor_login_url)
    assert code == 2, output
    flat = " ".join(output.split())
    assert "may not do the agent's work" in flat, output
    assert f"GRANT {app_role(isolated_database_url)} TO {login}" not in flat, output
    assert "the agent's login" in flat, output
