"""`jarvis keys init | show`: make the signing key once, refuse to clobber it, show its id."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from jarvis.cli.main import app
from jarvis.witness import load_public_key

runner = CliRunner()


@pytest.fixture
def key_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no stray .env
    return tmp_path / "keys" / "checkpoint.key"


def jarvis(key_path: Path, *args: str) -> tuple[int, str]:
    environment = {
        "DATABASE_URL": "",
        "REDIS_URL": "",
        "COLUMNS": "400",
        "JARVIS_DATA_DIR": str(key_path.parent.parent / "data"),
        "JARVIS_SIGNING_KEY": str(key_path),
    }
    result = runner.invoke(app, list(args), env=environment)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_keys_init_cli(key_path: Path) -> None:
    code, out = jarvis(key_path, "keys", "init")
    public_path = key_path.with_name("checkpoint.key.pub")
    assert code == 0
    assert str(key_path) in out and str(public_path) in out
    assert load_public_key(public_path).key_id in out


def test_keys_init_cli_refuses_to_overwrite(key_path: Path) -> None:
    jarvis(key_path, "keys", "init")
    before = key_path.read_bytes()
    code, out = jarvis(key_path, "keys", "init")
    assert code == 2 and "already exists" in out and "--force" in out
    assert len(out.strip().splitlines()) == 1 and "Traceback" not in out
    assert key_path.read_bytes() == before


def test_keys_init_cli_force_replaces_the_key(key_path: Path) -> None:
    jarvis(key_path, "keys", "init")
    old_id = load_public_key(key_path.with_name("checkpoint.key.pub")).key_id
    code, out = jarvis(key_path, "keys", "init", "--force")
    new_id = load_public_key(key_path.with_name("checkpoint.key.pub")).key_id
    assert code == 0 and new_id != old_id and new_id in out


def test_keys_show_prints_public_key_and_key_id(key_path: Path) -> None:
    jarvis(key_path, "keys", "init")
    code, out = jarvis(key_path, "keys", "show")
    public_path = key_path.with_name("checkpoint.key.pub")
    assert code == 0 and str(public_path) in out and load_public_key(public_path).key_id in out


def test_keys_show_without_a_key_exits_4(key_path: Path) -> None:
    code, out = jarvis(key_path, "keys", "show")
    assert code == 4 and "jarvis keys init" in out and "Traceback" not in out
