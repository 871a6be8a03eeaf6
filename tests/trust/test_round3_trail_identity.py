"""Round 3, B8: the trail's identity comes from the database, and a missing witness log of a signed trail fails.

The attack: the agent reaches its database through a PgBouncer pool named `agentpool`, and its
witness log was named after the database name in DATABASE_URL, `agentpool.jsonl`. A direct verify
of the same database looked for `<database>.jsonl`, found no log and, after a superuser rewrote the
chain consistently, said OK and exited 0. Now the log is named by the trail id stored in the
database, and the database records every checkpoint signed (`audit_checkpoints`, migration 0009):
a log that is missing, emptied or older than that record makes verify fail.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from typer.testing import CliRunner

from jarvis.agent.witnessing import seal_and_sign, trail_id, verify_trail, witness_log_path
from jarvis.cli.main import app
from jarvis.config import Settings, load_settings
from jarvis.db import Database, open_database
from jarvis.db.audit import ToolCallLog
from jarvis.witness import WitnessLog, generate_key, load_signing_key
from jarvis_testkit import tamper
from jarvis_testkit.pgbouncer import pgbouncer
from jarvis_testkit.tamper import Trail, without_traceback

runner = CliRunner()


@pytest.fixture
def signer(tmp_path: Path, isolated_database_url: str) -> Settings:
    """The agent's settings with the default witness log naming (no JARVIS_WITNESS_LOG), all under tmp_path."""
    key = tmp_path / "keys" / "checkpoint.key"
    generate_key(key)
    return load_settings(database_url=isolated_database_url, data_dir=tmp_path / "data", signing_key=key)


def rewrite_consistently(trail: Trail) -> None:
    """A superuser edits a sealed transfer and recomputes the whole chain (plain verify accepts it)."""
    tamper.edit(trail.url, "tool_calls", trail.starts[0], "input", '\'{"to": "attacker", "usd": 1500.25}\'')
    tamper.recompute_chain(trail.url)


def verify_directly(trail: Trail, settings: Settings) -> tuple[int, str]:
    """`jarvis audit verify` on a direct connection, as an operator runs it."""
    env = {
        "DATABASE_URL": trail.url,
        "REDIS_URL": "",
        "JARVIS_DATA_DIR": str(settings.data_dir),
        "JARVIS_SIGNING_KEY": str(settings.signing_key_path()),
        "COLUMNS": "200",
    }
    result = runner.invoke(app, ["audit", "verify"], env=env)
    return result.exit_code, result.output


@pytest.fixture
def through_agentpool(postgres_admin_url: str, trail: Trail, signer: Settings) -> Iterator[tuple[Database, Settings]]:
    """The agent's database handle through a PgBouncer pool named `agentpool` that leads to the trail's database."""
    real = urlsplit(trail.url).path.strip("/")
    with pgbouncer(postgres_admin_url, aliases={"agentpool": real}) as bouncer:
        parts = urlsplit(bouncer.url_for(trail.url))
        url = urlunsplit(parts._replace(path="/agentpool"))
        settings = signer.model_copy(update={"database_url": url})
        database = open_database(settings, url=url)
        try:
            yield database, settings
        finally:
            database.shutdown()


def test_a_log_signed_through_a_pool_of_another_name_catches_a_rewrite_in_a_direct_verify(
    trail: Trail, signer: Settings, through_agentpool: tuple[Database, Settings]
) -> None:
    pooled, pooled_settings = through_agentpool
    ToolCallLog(pooled).start("transfer", {"to": "landlord", "usd": 10})
    seal_and_sign(pooled, pooled_settings)
    rewrite_consistently(trail)

    exit_code, output = verify_directly(trail, signer)

    assert exit_code == 1, output
    assert "history was rewritten" in output, output


def test_verify_fails_when_the_witness_log_of_a_signed_trail_is_deleted(
    isolated_database: Database, trail: Trail, signer: Settings
) -> None:
    seal_and_sign(isolated_database, signer)
    witness_log_path(signer, isolated_database).unlink()
    rewrite_consistently(trail)

    report = without_traceback(lambda: verify_trail(isolated_database, signer))

    assert not report.ok, report.summary()
    assert any("has no checkpoint of this trail" in str(p) for p in report.problems), report.summary()
    assert verify_directly(trail, signer)[0] == 1


def test_verify_fails_when_the_witness_log_is_replaced_by_an_older_copy(
    isolated_database: Database, trail: Trail, signer: Settings, tmp_path: Path
) -> None:
    seal_and_sign(isolated_database, signer)
    path = witness_log_path(signer, isolated_database)
    older = tmp_path / "older.jsonl"
    shutil.copy(path, older)
    ToolCallLog(isolated_database).start("transfer", {"to": "landlord", "usd": 10})
    seal_and_sign(isolated_database, signer)
    shutil.copy(older, path)  # the superuser puts back the copy from before the last checkpoint
    tamper.truncate_tail(trail.url, 1)  # and cuts the row that checkpoint covered

    report = without_traceback(lambda: verify_trail(isolated_database, signer))

    assert not report.ok, report.summary()
    assert any("ends before it" in str(p) for p in report.problems), report.summary()


def test_the_app_role_cannot_write_the_record_of_signed_checkpoints(trail: Trail) -> None:
    with tamper.as_app_role(trail.url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("DELETE FROM public.audit_checkpoints")


def test_a_log_of_the_old_name_is_found_and_moved_to_the_trail_id(
    isolated_database: Database, trail: Trail, signer: Settings
) -> None:
    """An upgrade must not lose the checkpoints signed into `<database>.jsonl` before logs were named by trail."""
    old = signer.data_dir / "witness" / (urlsplit(trail.url).path.strip("/") + ".jsonl")
    head_seq, head_hash = trail.head.split(":")
    WitnessLog(old).append(
        load_signing_key(signer.signing_key_path()).sign(
            trail_id(isolated_database),
            int(head_seq),
            bytes.fromhex(head_hash),
            datetime.now(UTC) - timedelta(seconds=1),
        )
    )

    seal_and_sign(isolated_database, signer)

    new = signer.data_dir / "witness" / f"{trail_id(isolated_database)}.jsonl"
    assert new.exists() and not old.exists()
    assert len(WitnessLog(new).entries()) == 2
    assert verify_trail(isolated_database, signer).checkpoints_checked == 2
