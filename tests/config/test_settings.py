"""Settings: defaults, environment, .env, and errors a person can act on."""

from __future__ import annotations

from pathlib import Path

import pytest

from jarvis.config import ConfigError, load_settings, mask_url, redact, setting_sources

ALL_VARS = [
    "DATABASE_URL",
    "REDIS_URL",
    "JARVIS_POOL_SIZE",
    "JARVIS_POOL_IDLE_TIMEOUT",
    "JARVIS_CONNECT_TIMEOUT",
    "JARVIS_DATA_DIR",
    "JARVIS_LOG_LEVEL",
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ALL_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_use_embedded_services() -> None:
    settings = load_settings()
    assert settings.database_url is None
    assert settings.redis_url is None
    assert settings.pool_size == 20
    assert settings.pool_idle_timeout == 30.0
    assert settings.connect_timeout == 2.0


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:pw@db.example:5432/jarvis")
    monkeypatch.setenv("JARVIS_POOL_SIZE", "5")
    settings = load_settings()
    assert settings.database_url == "postgresql://app:pw@db.example:5432/jarvis"
    assert settings.pool_size == 5
    assert setting_sources()["pool_size"] == "environment"


def test_dotenv_file_is_read_and_reported_as_the_source(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("JARVIS_CONNECT_TIMEOUT=7.5\n")
    assert load_settings().connect_timeout == 7.5
    assert setting_sources()["connect_timeout"] == ".env"
    assert setting_sources()["pool_size"] == "default"


def test_blank_database_url_means_embedded_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "  ")
    assert load_settings().database_url is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("mysql://root@localhost/jarvis", "expected a PostgreSQL URL"),
        ("postgresql://user@localhost:5432", "expected a database name"),
        ("postgresql:///jarvis", "expected a host"),
        ("not a url", "expected a PostgreSQL URL"),
    ],
)
def test_invalid_database_url_names_variable_and_fix(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "DATABASE_URL=" in str(info.value)
    assert expected in str(info.value)
    assert "Fix: set DATABASE_URL" in str(info.value)


def test_invalid_database_url_never_shows_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://root:hunter2@localhost/jarvis")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "hunter2" not in str(info.value)
    assert "root:***@localhost" in str(info.value)


def test_invalid_redis_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "http://localhost:6379")
    with pytest.raises(ConfigError, match="REDIS_URL=.*expected a Redis URL"):
        load_settings()


def test_non_numeric_pool_size_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JARVIS_POOL_SIZE", "twenty")
    with pytest.raises(ConfigError, match="JARVIS_POOL_SIZE='twenty'.*integer"):
        load_settings()


def test_zero_pool_size_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JARVIS_POOL_SIZE", "0")
    with pytest.raises(ConfigError, match="JARVIS_POOL_SIZE='0'.*greater than or equal to 1"):
        load_settings()


def test_negative_timeout_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JARVIS_CONNECT_TIMEOUT", "-1")
    with pytest.raises(ConfigError, match="JARVIS_CONNECT_TIMEOUT='-1'.*greater than 0"):
        load_settings()


def test_unknown_log_level_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JARVIS_LOG_LEVEL", "chatty")
    with pytest.raises(ConfigError, match="JARVIS_LOG_LEVEL"):
        load_settings()


def test_all_errors_are_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JARVIS_POOL_SIZE", "x")
    monkeypatch.setenv("JARVIS_CONNECT_TIMEOUT", "-3")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "JARVIS_POOL_SIZE" in str(info.value) and "JARVIS_CONNECT_TIMEOUT" in str(info.value)


def test_mask_url_hides_only_the_password() -> None:
    assert mask_url("postgresql://app:s3cret@db:5432/j") == "postgresql://app:***@db:5432/j"
    assert mask_url("redis://localhost:6379/0") == "redis://localhost:6379/0"


def test_redact_masks_urls_inside_free_text() -> None:
    text = "could not connect to postgresql://app:s3cret@db:5432/j: timeout"
    assert redact(text) == "could not connect to postgresql://app:***@db:5432/j: timeout"


def test_env_example_documents_every_setting() -> None:
    example = Path(__file__).resolve().parents[2] / ".env.example"
    documented = {
        line.split("=", 1)[0].lstrip("# ").strip() for line in example.read_text().splitlines() if "=" in line
    }
    assert set(ALL_VARS) <= documented
