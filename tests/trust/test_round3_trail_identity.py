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
from jarvis.db.audit.trail_binding import TrailBindingError
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


# --- The trail's identity pinned outside the database; records of checkpoints only count when signed (fix 3).


def swap_trail_id(url: str) -> None:
    """What a superuser does after a consistent rewrite: a new trail id, and no record of the old checkpoints."""
    with tamper.superuser_without_triggers(url) as conn:
        conn.execute("UPDATE public.trail_info SET trail_id = gen_random_uuid()")
        conn.execute("DELETE FROM public.audit_checkpoints")


def test_verify_fails_when_a_superuser_swaps_the_trail_id_after_a_rewrite(
    isolated_database: Database, trail: Trail, signer: Settings
) -> None:
    old = trail_id(isolated_database)
    seal_and_sign(isolated_database, signer)
    tamper.edit(trail.url, "tool_calls", trail.completions[0], "output", '\'{"tx": "0xFORGED"}\'')
    tamper.recompute_chain(trail.url)
    swap_trail_id(trail.url)

    exit_code, output = verify_directly(trail, signer)

    assert exit_code == 1, output
    assert f"trail_info.trail_id changed from {old} to {trail_id(isolated_database)}" in output, output
    assert "holds 1 checkpoint(s)" in output, output


def test_the_signer_refuses_to_sign_a_database_whose_trail_id_was_swapped(
    isolated_database: Database, trail: Trail, signer: Settings
) -> None:
    seal_and_sign(isolated_database, signer)
    swap_trail_id(trail.url)
    ToolCallLog(isolated_database).start("transfer", {"to": "attacker", "usd": 10})

    with pytest.raises(TrailBindingError, match=r"trail_info\.trail_id changed"):
        seal_and_sign(isolated_database, signer)

    assert not witness_log_path(signer, isolated_database).exists()  # no log of the forged trail was started


def test_the_signer_refuses_a_new_log_for_a_trail_whose_log_and_records_were_deleted(
    isolated_database: Database, trail: Trail, signer: Settings
) -> None:
    seal_and_sign(isolated_database, signer)
    witness_log_path(signer, isolated_database).unlink()
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute("DELETE FROM public.audit_checkpoints")
    rewrite_consistently(trail)

    report = without_traceback(lambda: verify_trail(isolated_database, signer))
    assert not report.ok, report.summary()
    assert any("neither" in str(p) and "holds any checkpoint" in str(p) for p in report.problems), report.summary()
    with pytest.raises(TrailBindingError, match="holds no checkpoint of trail"):
        seal_and_sign(isolated_database, signer)


def test_rebind_lets_a_deliberately_changed_trail_be_signed_again(
    isolated_database: Database, trail: Trail, signer: Settings
) -> None:
    seal_and_sign(isolated_database, signer)
    swap_trail_id(trail.url)
    env = {"DATABASE_URL": trail.url, "REDIS_URL": "", "JARVIS_DATA_DIR": str(signer.data_dir), "COLUMNS": "200"}

    result = runner.invoke(app, ["audit", "rebind"], env=env)

    assert result.exit_code == 0, result.output
    assert f"trail {trail_id(isolated_database)}" in result.output, result.output
    seal_and_sign(isolated_database, signer)
    assert verify_trail(isolated_database, signer).ok


def app_role_records(url: str, line: str, seq: int, signed_at: str) -> None:
    """The app role calls jarvis_record_checkpoint as it is (the text alone) or was (seq, signed_at, text)."""
    for call, args in (
        ("SELECT public.jarvis_record_checkpoint(%s)", (line,)),
        ("SELECT public.jarvis_record_checkpoint(%s::bigint, %s::timestamptz, %s)", (seq, signed_at, line)),
    ):
        with tamper.as_app_role(url) as conn:
            try:
                conn.execute(call, args)
            except psycopg.Error:
                pass  # refused, or not this version's signature


def test_a_checkpoint_record_forged_by_the_app_role_is_a_note_not_tampering(
    isolated_database: Database, trail: Trail, signer: Settings, tmp_path: Path
) -> None:
    seal_and_sign(isolated_database, signer)
    app_role_records(trail.url, "not a checkpoint", 1, "9999-12-31")
    other = tmp_path / "other.key"
    generate_key(other)
    head_seq, head_hash = trail.head.split(":")
    forged = load_signing_key(other).sign(
        trail_id(isolated_database), int(head_seq), bytes.fromhex(head_hash), datetime.now(UTC)
    )
    app_role_records(trail.url, forged.to_json(), forged.seq, forged.signed_at)

    report = verify_trail(isolated_database, signer)

    assert report.ok, report.summary()
    assert any("the app role may call jarvis_record_checkpoint" in note for note in report.notes), report.notes


def test_the_app_role_cannot_pin_an_old_checkpoint_as_the_newest_record(
    isolated_database: Database, trail: Trail, signer: Settings
) -> None:
    seal_and_sign(isolated_database, signer)
    log_path = witness_log_path(signer, isolated_database)
    first = WitnessLog(log_path).entries()[0]
    app_role_records(trail.url, first.to_json(), first.seq, "9999-12-31")  # re-recorded, dated far ahead
    for i in range(3):
        ToolCallLog(isolated_database).start(f"transfer_{i}", {"usd": 100})
        seal_and_sign(isolated_database, signer)
    log_path.write_text(first.to_json() + "\n")  # an older copy of the log comes back
    tamper.truncate_tail(trail.url, 3)  # and the three signed rows after it are deleted

    report = without_traceback(lambda: verify_trail(isolated_database, signer))

    assert not report.ok, report.summary()
    assert any("ends before it" in str(p) for p in report.problems), report.summary()


def test_a_copy_of_the_database_is_told_to_get_its_own_trail_and_the_original_is_unaffected(
    postgres_admin_url: str, isolated_database_url: str, signer: Settings
) -> None:
    quiet = signer.model_copy(update={"seal_interval": 0})
    original = open_database(quiet, url=isolated_database_url)
    ToolCallLog(original).start("transfer", {"to": "landlord", "usd": 10})
    seal_and_sign(original, quiet)
    original.shutdown()  # a template may have no sessions
    name = urlsplit(isolated_database_url).path.strip("/")
    copy_url = urlunsplit(urlsplit(isolated_database_url)._replace(path=f"/{name}_copy"))
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}_copy" TEMPLATE "{name}"')
    original = open_database(quiet, url=isolated_database_url)
    copy = open_database(quiet.model_copy(update={"database_url": copy_url}), url=copy_url)
    try:
        ToolCallLog(copy).start("staging", {"y": 2})
        ToolCallLog(original).start("production", {"x": 1})

        with pytest.raises(TrailBindingError, match="is a copy of trail") as refused:
            seal_and_sign(copy, quiet)  # the copy tries first
        assert "UPDATE public.trail_info SET trail_id = gen_random_uuid()" in str(refused.value)
        with pytest.raises(TrailBindingError, match="is a copy of trail"):
            verify_trail(copy, quiet)

        seal_and_sign(original, quiet)
        report = verify_trail(original, quiet)
        assert report.ok and report.checkpoints_checked == 2, report.summary()
    finally:
        copy.shutdown()
        original.shutdown()
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}_copy" WITH (FORCE)')
