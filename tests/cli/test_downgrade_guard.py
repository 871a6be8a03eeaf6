"""No single command wipes the trail: a downgrade that would destroy audit rows is refused, or exports first."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from jarvis.cli.main import app
from jarvis.config import load_settings
from jarvis.db import open_database
from jarvis.db.migrate import downgrade, upgrade_to_head
from jarvis.db.migrations.guard import AuditTrailGuardError
from jarvis_testkit import services

runner = CliRunner()
COUNTED = ("planning_cycles", "tool_calls", "decision_log", "audit_chain", "schema_changes")


def jarvis(url: str, data_dir: Path, *args: str) -> tuple[int, str]:
    env = {"DATABASE_URL": url, "REDIS_URL": "", "COLUMNS": "250", "JARVIS_DATA_DIR": str(data_dir)}
    result = runner.invoke(app, list(args), env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        found = {}
        for table in COUNTED:
            if conn.execute("SELECT to_regclass(%s)", (f"public.{table}",)).fetchone() == (None,):
                continue
            row = conn.execute(f"SELECT count(*) FROM public.{table}").fetchone()
            found[table] = int(row[0]) if row else 0
        return found


@pytest.fixture
def trail_url(isolated_database_url: str, tmp_path: Path) -> str:
    """A database holding a verified trail (the demo's)."""
    code, out = jarvis(isolated_database_url, tmp_path, "demo")
    assert code == 0, out
    return isolated_database_url


def head(url: str, data_dir: Path) -> str:
    code, out = jarvis(url, data_dir, "audit", "verify")
    assert code == 0, out
    return out.split(" head ")[1].split(";")[0]


def test_downgrade_to_base_with_a_trail_is_refused_and_every_row_stays(trail_url: str, tmp_path: Path) -> None:
    before, head_before = counts(trail_url), head(trail_url, tmp_path)
    code, out = jarvis(trail_url, tmp_path, "db", "downgrade", "base")
    assert code == 2, out
    refusal = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(refusal) == 1 and "--destroy-audit-trail" in refusal[0]
    for table, rows in before.items():
        assert f"{table} ({rows} rows)" in out
    assert counts(trail_url) == before
    assert head(trail_url, tmp_path) == head_before


def test_downgrade_prints_what_each_step_drops_before_acting(trail_url: str, tmp_path: Path) -> None:
    code, out = jarvis(trail_url, tmp_path, "db", "downgrade", "base")
    assert "step 0002 -> 0001: touches no audit table" in out
    assert "step 0001 -> base: drops or rewrites planning_cycles" in out


def test_library_and_plain_alembic_downgrades_are_refused_too(trail_url: str, tmp_path: Path) -> None:
    before = counts(trail_url)
    database = open_database(load_settings(database_url=trail_url), url=trail_url, role="owner")
    try:
        with pytest.raises(AuditTrailGuardError, match="audit_chain"):
            downgrade(database, "base")
    finally:
        database.shutdown()
    assert counts(trail_url) == before


def test_plain_alembic_downgrade_is_refused_unless_destruction_is_passed_with_x(
    trail_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `alembic downgrade base` from the repository root runs: env.py's own engine, from DATABASE_URL."""
    from alembic import command
    from alembic.config import Config

    from jarvis.db.migrate import MIGRATIONS_DIR

    monkeypatch.setenv("DATABASE_URL", trail_url)
    before = counts(trail_url)
    plain = Config()
    plain.set_main_option("script_location", str(MIGRATIONS_DIR))
    with pytest.raises(AuditTrailGuardError, match="audit_chain"):
        command.downgrade(plain, "base")
    assert counts(trail_url) == before


def test_destroying_the_trail_exports_a_bundle_that_verifies_offline_first(trail_url: str, tmp_path: Path) -> None:
    export = tmp_path / "export" / "trail.jsonl"
    export.parent.mkdir()
    code, out = jarvis(
        trail_url, tmp_path, "db", "downgrade", "base", "--destroy-audit-trail", "--export-to", str(export)
    )
    assert code == 0, out
    assert f"exported the trail to {export}" in out.replace("\n", "")
    assert counts(trail_url) == {}
    code, out = jarvis("postgresql://nobody@127.0.0.1:1/none", tmp_path, "audit", "verify", "--bundle", str(export))
    assert code == 0, out
    assert "OK" in out


def test_a_destroyed_trails_witness_log_is_retired_so_a_new_trail_starts_clean(trail_url: str, tmp_path: Path) -> None:
    export = tmp_path / "trail.jsonl"
    code, out = jarvis(
        trail_url, tmp_path, "db", "downgrade", "base", "--destroy-audit-trail", "--export-to", str(export)
    )
    assert code == 0 and "moved the destroyed trail's witness log to" in out.replace("\n", ""), out
    code, out = jarvis(trail_url, tmp_path, "demo")
    assert code == 0, out
    assert "OK:" in out and "TAMPERED" not in out


def test_a_failing_export_leaves_everything_in_place(trail_url: str, tmp_path: Path) -> None:
    before = counts(trail_url)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, out = jarvis(
        trail_url,
        tmp_path,
        "db",
        "downgrade",
        "base",
        "--destroy-audit-trail",
        "--export-to",
        str(blocker / "trail.jsonl"),
    )
    assert code == 2, out
    assert "Traceback" not in out and "cannot write" in out
    assert counts(trail_url) == before


def test_an_empty_database_still_downgrades_without_the_flag(fresh_url: str, tmp_path: Path) -> None:
    upgrade_to_head(load_settings(database_url=fresh_url), url=fresh_url)
    code, out = jarvis(fresh_url, tmp_path, "db", "downgrade", "base")
    assert code == 0, out
    assert "downgraded to base" in out
    assert counts(fresh_url) == {}


@pytest.fixture
def fresh_url(postgres_admin_url: str) -> Iterator[str]:
    with services.fresh_database(postgres_admin_url, "downgrade_empty") as url:
        yield url


def test_on_a_terminal_a_wrong_database_name_changes_nothing(trail_url: str, tmp_path: Path) -> None:
    before = counts(trail_url)
    controller, terminal = os.openpty()
    env = {
        **os.environ,
        "DATABASE_URL": trail_url,
        "REDIS_URL": "",
        "JARVIS_DATA_DIR": str(tmp_path),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    command = [sys.executable, "-m", "jarvis.cli.main", "db", "downgrade", "base", "--destroy-audit-trail"]
    with subprocess.Popen(command, stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env) as proc:
        os.write(controller, b"not-the-database\n")
        out, _ = proc.communicate(timeout=120)
    os.close(controller)
    os.close(terminal)
    assert proc.returncode == 2, out
    assert b"nothing was changed" in out
    assert counts(trail_url) == before
