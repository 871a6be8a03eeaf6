"""Privileges and secrets: the app role is boxed in, doctor warns about superusers, no password ever shows."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import conninfo
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from jarvis.cli.main import app
from jarvis_testkit.roles import app_role
from jarvis_testkit.services import free_port

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


def with_query_password(url: str, password: str) -> str:
    return url + ("&" if "?" in url else "?") + "password=" + password


def with_raw_at_password(url: str, head: str, tail: str) -> str:
    """user:HEAD@TAIL@host -- a password holding a raw '@', as people paste them."""
    parts = urlsplit(url)
    user = parts.username or "postgres"
    return urlunsplit(parts._replace(netloc=f"{user}:{head}@{tail}@{parts.netloc.rpartition('@')[2]}"))


def test_query_parameter_and_raw_at_passwords_never_show(
    isolated_database_url: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue #12 item 5: `?password=` (DATABASE_URL or REDIS_URL) was printed verbatim by config, doctor and
    # every command's 'using PostgreSQL at' line; the tail of a password holding a raw '@' was printed in
    # connection errors (libpq reads it as the host name).
    caplog.set_level(logging.DEBUG)
    url = with_query_password(isolated_database_url, PASSWORD)
    raw_at = with_raw_at_password(isolated_database_url, "pw-head", "t4il-sh0wn")
    redis = with_query_password(redis_url, PASSWORD)
    runner = CliRunner()
    outputs = []
    for env, args in [
        ({"DATABASE_URL": url}, ["config"]),
        ({"DATABASE_URL": url}, ["config", "--json"]),
        ({"DATABASE_URL": url}, ["doctor"]),
        ({"DATABASE_URL": url}, ["state", "get", "nope"]),
        ({"DATABASE_URL": url}, ["audit", "verify"]),
        ({"DATABASE_URL": url, "REDIS_URL": redis}, ["config"]),
        ({"DATABASE_URL": url, "REDIS_URL": redis}, ["doctor"]),
        ({"DATABASE_URL": raw_at}, ["config"]),
        ({"DATABASE_URL": raw_at}, ["state", "get", "x"]),
        ({"DATABASE_URL": raw_at}, ["doctor"]),
        ({"DATABASE_URL": raw_at}, ["db", "upgrade"]),
    ]:
        result = runner.invoke(
            app, args, env={"REDIS_URL": "", "JARVIS_CONNECT_TIMEOUT": "1", "JARVIS_LOG_LEVEL": "DEBUG", **env}
        )
        outputs.append(result.output)
        assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), args
    everything = "\n".join(outputs) + "\n".join(r.getMessage() for r in caplog.records)
    assert PASSWORD not in everything
    assert "t4il" not in everything and "pw-head" not in everything
    assert "using PostgreSQL at" in everything and "PostgreSQL 1" in everything  # connected with ?password=
    assert "password=***" in everything


def test_config_shows_an_ipv6_url_that_parses_back() -> None:
    # mask_url('postgresql://u:p@[::1]:5432/db') lost the brackets: the URL shown could not be read back.
    env = {"DATABASE_URL": f"postgresql://app:{PASSWORD}@[::1]:5432/jarvis", "REDIS_URL": ""}
    result = CliRunner().invoke(app, ["config", "--json"], env=env)
    assert result.exit_code == 0, result.output
    shown = next(row["value"] for row in json.loads(result.stdout) if row["variable"] == "DATABASE_URL")
    assert shown == "postgresql://app:***@[::1]:5432/jarvis"
    assert make_url(shown).host == "::1"
    assert conninfo.conninfo_to_dict(shown) == {
        "user": "app",
        "password": "***",
        "host": "::1",
        "port": "5432",
        "dbname": "jarvis",
    }
