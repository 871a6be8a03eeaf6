"""`jarvis mcp` refusing to start: one line on stderr, an exit code, and nothing on stdout (the MCP channel)."""

from __future__ import annotations

import subprocess
import sys

from jarvis_testkit.mcp_parties import jarvis_command, jarvis_environment

DEADLINE = 120.0


def error_line(stderr: str) -> str:
    """The one `error:` line (log lines such as `INFO using PostgreSQL at …` may come before it)."""
    (line,) = (line for line in stderr.splitlines() if line.startswith("error:"))
    return line


def run(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        jarvis_command(*args), env=jarvis_environment(database_url), capture_output=True, text=True, timeout=DEADLINE
    )


def test_a_database_behind_the_migrations_is_refused_naming_the_fix(empty_database_url: str) -> None:
    refused = run(empty_database_url, "mcp", "proxy", "--", sys.executable, "-m", "mcp_server_time")
    assert refused.returncode == 2
    assert refused.stdout == ""
    line = error_line(refused.stderr)
    assert "jarvis db upgrade" in line


def test_a_non_loopback_bind_without_the_flag_is_refused(empty_database_url: str) -> None:
    refused = run(empty_database_url, "mcp", "serve", "--http", "--host", "0.0.0.0")
    assert refused.returncode == 2
    assert refused.stdout == ""
    line = error_line(refused.stderr)
    assert "--allow-remote" in line and "0.0.0.0" in line


def test_an_upstream_that_cannot_start_is_refused_naming_the_command(isolated_database_url: str) -> None:
    refused = run(isolated_database_url, "mcp", "proxy", "--", "/nonexistent/mcp-server", "--flag")
    assert refused.returncode == 2
    assert refused.stdout == ""
    line = error_line(refused.stderr)
    assert "/nonexistent/mcp-server --flag" in line and "Fix:" in line
