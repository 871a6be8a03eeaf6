"""JARVIS_CACHE_KEY: 32 random bytes, 0600, made by `jarvis keys init` or on first use, refused when exposed."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jarvis.cache import CacheKeyError, RedisLink, cache_key_path, ensure_cache_key, load_cache_key
from jarvis.cli.main import app
from jarvis.config import ConfigError, load_settings

runner = CliRunner()


def test_the_key_is_made_on_first_use_private_and_kept(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    path = cache_key_path(settings)
    assert path == tmp_path / "data" / "keys" / "cache.key" and not path.exists()
    key = ensure_cache_key(settings)
    assert len(key) == 32 and path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert ensure_cache_key(settings) == key  # never replaced
    assert ensure_cache_key(load_settings(data_dir=tmp_path / "other")) != key  # random, not derived


def test_the_setting_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JARVIS_CACHE_KEY", str(tmp_path / "elsewhere" / "redis.key"))
    settings = load_settings()
    assert cache_key_path(settings) == tmp_path / "elsewhere" / "redis.key"
    key = ensure_cache_key(settings)
    # a RedisLink without an explicit key uses exactly this one
    link = RedisLink("redis://127.0.0.1:9/0", namespace="jarvis:key-test")
    assert link.auth.sign("t", "k", b"p") == RedisLink(
        "redis://127.0.0.1:9/0", namespace="jarvis:key-test", auth_key=key
    ).auth.sign("t", "k", b"p")
    link.close()


def test_an_exposed_or_damaged_key_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "cache.key"
    path.write_bytes(os.urandom(32))
    path.chmod(0o644)
    with pytest.raises(CacheKeyError, match=r"mode 0644.*chmod 600"):
        load_cache_key(path)
    path.chmod(0o600)
    assert len(load_cache_key(path)) == 32
    path.write_bytes(b"short")
    with pytest.raises(CacheKeyError, match="5 bytes, not 32"):
        load_cache_key(path)
    with pytest.raises(CacheKeyError, match="jarvis keys init"):
        load_cache_key(tmp_path / "missing.key")
    assert issubclass(CacheKeyError, ConfigError)  # the CLI reports it as bad configuration (exit 2)


def test_keys_init_creates_the_cache_key_beside_the_signing_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    env = {"DATABASE_URL": "", "REDIS_URL": "", "COLUMNS": "400", "JARVIS_DATA_DIR": str(tmp_path / "data")}
    result = runner.invoke(app, ["keys", "init", "--json"], env=env)
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout)
    cache_key = Path(made["cache_key"])
    assert cache_key == tmp_path / "data" / "keys" / "cache.key"
    assert cache_key.parent == Path(made["private_key"]).parent
    assert stat.S_IMODE(cache_key.stat().st_mode) == 0o600 and len(cache_key.read_bytes()) == 32
    before = cache_key.read_bytes()
    forced = runner.invoke(app, ["keys", "init", "--force"], env=env)
    assert forced.exit_code == 0 and str(cache_key) in forced.output
    assert cache_key.read_bytes() == before  # an existing cache key is kept: running agents keep trusting it
