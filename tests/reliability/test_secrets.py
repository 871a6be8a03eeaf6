"""Privileges and secrets: the app role is boxed in, doctor warns about superusers, no password ever shows."""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from jarvis.cli.main import app
from jarvis_testkit.services import free_port
from jarvis_testkit.roles import app_role

PASSWORD = "pw-n3ver-sh0wn"
PLAN = """\
cycles:
  - goals: ["leak nothing"]
    steps:
      - decision: "fail loudly"
        tool: fail
        input: {reason: "boom"}
"""


def with_password(url: str) -> str:
    return url.replace("postgres:@", f"postgres:{PASSWORD}@", 1)


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE tool_calls ADD COLUMN sneaky int",
        "DROP TABLE decision_log",
        "ALTER TABLE planning_cycles DISABLE TRIGGER ALL",
        "SET session_replication_role = replica",
    ],
)
def test_the_application_role_cannot_alter_drop_or_silence_triggers(migrated_database_url: str, statement: str) -> None:
    with psycopg.connect(migrated_database_url, autocommit=True) as conn:
        conn.execute(f"SET ROLE {app_role(migrated_database_url)}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_doctor_warns_when_connected_as_a_superuser(migrated_database_url: str) -> None:
    result = CliRunner().invoke(app, ["doctor"], env={"DATABASE_URL": migrated_database_url, "COLUMNS": "250"})
    assert result.exit_code == 0
    assert "superuser" in result.output and "warn" in result.output


def test_no_output_or_log_line_ever_contains_the_password(
    isolated_database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    (tmp_path / "plan.yaml").write_text(PLAN)
    (tmp_path / "bad.yaml").write_text("cycles: [")
    url = with_password(isolated_database_url)
    dead = f"postgresql://jarvis:{PASSWORD}@127.0.0.1:{free_port()}/jarvis"
    runner = CliRunner()
    outputs = []
    for env_url, args in [
        (url, ["config"]),
        (url, ["doctor"]),
        (url, ["demo"]),
        (url, ["run", str(tmp_path / "plan.yaml")]),
        (url, ["run", str(tmp_path / "bad.yaml")]),
        (url, ["audit", "verify"]),
        (url, ["state", "get", "nope"]),
        (dead, ["state", "get", "x"]),
        (dead, ["doctor"]),
        (dead, ["db", "upgrade"]),
        (dead, ["audit", "verify"]),
        ("mysql://root:" + PASSWORD + "@h/db", ["config"]),
    ]:
        result = runner.invoke(
            app, args, env={"DATABASE_URL": env_url, "JARVIS_CONNECT_TIMEOUT": "1", "JARVIS_LOG_LEVEL": "DEBUG"}
        )
        outputs.append(result.output)
        assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), args
    everything = "\n".join(outputs) + "\n".join(r.getMessage() for r in caplog.records)
    assert "OK:" in everything and "Cannot reach PostgreSQL" in everything  # the commands really ran
    assert PASSWORD not in everything
    print(f"RELIABILITY secrets commands={len(outputs)} log_records={len(caplog.records)} leaks=0")
