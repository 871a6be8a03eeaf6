"""An auditor on another machine checks the checkpoints with the public key alone (`--public-key`)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from jarvis.agent.witnessing import seal_and_sign
from jarvis.cli.main import app
from jarvis.config import Settings
from jarvis.db import Database
from jarvis.witness import generate_key
from jarvis_testkit.tamper import Trail


def audit_verify(settings: Settings, *args: str) -> tuple[int, str]:
    env = {
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": "",
        "COLUMNS": "250",
        "JARVIS_WITNESS_LOG": str(settings.witness_log),
        "JARVIS_SIGNING_KEY": "/nonexistent/auditors-have-no-private-key",
    }
    result = CliRunner().invoke(app, ["audit", "verify", *args], env=env)
    return result.exit_code, result.output


def test_an_auditor_checks_every_checkpoint_with_the_public_key_alone(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    seal_and_sign(isolated_database, witnessed)
    code, out = audit_verify(witnessed, "--public-key", str(witnessed.public_key_path()))
    assert code == 0, out
    assert "1 signed checkpoint(s) matched" in out


def test_checkpoints_checked_with_another_public_key_fail(
    isolated_database: Database, trail: Trail, witnessed: Settings, tmp_path: Path
) -> None:
    seal_and_sign(isolated_database, witnessed)
    other = generate_key(tmp_path / "other" / "checkpoint.key")
    code, out = audit_verify(witnessed, "--public-key", str(other))
    assert code == 1, out
    assert "bad signature" in out


def test_a_mistyped_signing_key_path_is_an_error_not_a_new_key(tmp_path: Path, isolated_database_url: str) -> None:
    from jarvis.agent.witnessing import ensure_signing_key
    from jarvis.config import load_settings
    from jarvis.witness import WitnessError

    typo = tmp_path / "keys" / "chekpoint.key"
    settings = load_settings(database_url=isolated_database_url, data_dir=tmp_path, signing_key=typo)
    try:
        ensure_signing_key(settings)
    except WitnessError as error:
        assert "JARVIS_SIGNING_KEY" in str(error)
    else:
        raise AssertionError("a missing JARVIS_SIGNING_KEY must not be created silently")
    assert not typo.exists()


def test_a_witness_log_signed_by_another_key_is_not_extended(
    isolated_database: Database, trail: Trail, witnessed: Settings, tmp_path: Path
) -> None:
    from jarvis.config import load_settings
    from jarvis.witness import WitnessError

    seal_and_sign(isolated_database, witnessed)
    other = tmp_path / "other" / "checkpoint.key"
    generate_key(other)
    wrong = load_settings(
        database_url=witnessed.database_url,
        data_dir=witnessed.data_dir,
        signing_key=other,
        witness_log=witnessed.witness_log,
    )
    try:
        seal_and_sign(isolated_database, wrong)
    except WitnessError as error:
        assert "was signed by key" in str(error)
    else:
        raise AssertionError("a witness log must never get checkpoints of two keys")
    code, out = audit_verify(witnessed, "--public-key", str(witnessed.public_key_path()))
    assert code == 0, out
