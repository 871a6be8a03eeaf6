"""Settings: defaults, environment, .env, and errors a person can act on."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from psycopg import conninfo
from sqlalchemy.engine import make_url

from jarvis.config import ConfigError, Settings, load_settings, mask_url, redact, setting_sources
from jarvis.config.settings import env_var_name, env_var_names

ALL_VARS = [name for field in Settings.model_fields for name in env_var_names(field)]
"""Every variable a person can set, deprecated names included: from the model, never a hand-kept list."""


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
    assert settings.pool_max_age == 30.0
    assert settings.connect_timeout == 2.0
    assert setting_sources() == dict.fromkeys(Settings.model_fields, "default")


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


def test_dotenv_file_is_read_as_pydantic_settings_reads_it(tmp_path: Path) -> None:
    # The sources come from python-dotenv, the parser pydantic-settings itself uses: quotes, `export`,
    # comments and multi-line values mean the same to both.
    (tmp_path / ".env").write_text(
        "# JARVIS_SEAL_WAIT=3\n"
        "export JARVIS_POOL_SIZE=5\n"
        'JARVIS_CONNECT_TIMEOUT="7.5"  # seconds\n'
        'JARVIS_DATA_DIR="/srv/one\nJARVIS_LOG_LEVEL=DEBUG"\n'
        "JARVIS_PRODUCTION\n"
    )
    settings = load_settings()
    assert (settings.pool_size, settings.connect_timeout, settings.log_level.value) == (5, 7.5, "INFO")
    assert not settings.production and settings.seal_wait == 10.0
    sources = setting_sources()
    assert {field for field, source in sources.items() if source == ".env"} == {
        "pool_size",
        "connect_timeout",
        "data_dir",
    }


def test_pool_max_age_is_read_under_its_name(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("JARVIS_POOL_MAX_AGE", "0.5")
    settings = load_settings()
    assert settings.pool_max_age == 0.5
    assert settings.pool_recycle_seconds() == 1  # rounded up: a pool_recycle of 0 would replace every checkout
    assert setting_sources()["pool_max_age"] == "environment"
    assert env_var_name("pool_max_age") == "JARVIS_POOL_MAX_AGE"
    assert "deprecated" not in caplog.text


@pytest.mark.parametrize(("max_age", "recycle"), [(0.001, 1), (1.0, 1), (29.5, 30), (30.0, 30), (3600.25, 3601)])
def test_pool_recycle_seconds_rounds_up_and_is_never_zero(max_age: float, recycle: int) -> None:
    assert load_settings(pool_max_age=max_age).pool_recycle_seconds() == recycle


def test_deprecated_pool_idle_timeout_still_works_and_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("JARVIS_POOL_IDLE_TIMEOUT", "12")
    with caplog.at_level("WARNING", logger="jarvis.config.settings"):
        settings = load_settings()
    assert settings.pool_max_age == 12.0
    assert setting_sources()["pool_max_age"] == "environment"
    assert "JARVIS_POOL_IDLE_TIMEOUT is deprecated (its value is still used): rename it to JARVIS_POOL_MAX_AGE" in (
        caplog.text
    )


def test_deprecated_name_in_dotenv_warns_and_the_new_name_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / ".env").write_text("JARVIS_POOL_IDLE_TIMEOUT=12\n")
    monkeypatch.setenv("JARVIS_POOL_MAX_AGE", "40")
    with caplog.at_level("WARNING", logger="jarvis.config.settings"):
        settings = load_settings()
    assert settings.pool_max_age == 40.0
    assert "JARVIS_POOL_IDLE_TIMEOUT is deprecated (JARVIS_POOL_MAX_AGE is also set and wins)" in caplog.text


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


def read_back(masked: str) -> dict[str, Any]:
    """What libpq would connect with, after checking SQLAlchemy reads the URL back too."""
    make_url(masked)
    return conninfo.conninfo_to_dict(masked.replace("postgresql+psycopg://", "postgresql://", 1))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://app@db:5432/j?password=s3cret", "postgresql://app@db:5432/j?password=***"),
        (
            "postgresql://app@db/j?sslmode=require&sslpassword=k3y&password=s3cret",
            "postgresql://app@db/j?password=***&sslmode=require&sslpassword=***",
        ),
        ("redis://localhost:6379/0?password=s3cret", "redis://localhost:6379/0?password=***"),
        ("unix:///run/redis.sock?db=0&password=s3cret", "unix:///run/redis.sock?db=0&password=***"),
    ],
)
def test_mask_url_hides_passwords_given_as_query_parameters(url: str, expected: str) -> None:
    # Issue #12 item 5: `?password=` was printed verbatim by config, doctor and 'using PostgreSQL at'.
    assert mask_url(url) == expected
    assert "s3cret" not in mask_url(url) and "k3y" not in mask_url(url)


def test_mask_url_of_an_ipv6_url_parses_back() -> None:
    # It used to drop the brackets: postgresql://u:***@::1:5432/db, which no parser reads back.
    masked = mask_url("postgresql://u:p@[::1]:5432/db")
    assert masked == "postgresql://u:***@[::1]:5432/db"
    assert read_back(masked) == {"user": "u", "password": "***", "host": "::1", "port": "5432", "dbname": "db"}


def test_mask_url_hides_a_password_holding_a_raw_at() -> None:
    # SQLAlchemy and libpq read 'p@ss' as password 'p' on host 'ss@db': the whole of it is masked.
    assert mask_url("postgresql://u:p@ss@db:5432/j") == "postgresql://u:***@db:5432/j"
    assert mask_url("postgresql://u:p@ss:w0rd@db:5432/j") == "postgresql://u:***@db:5432/j"
    assert mask_url("redis://:p@ss@localhost:6379/0") == "redis://:***@localhost:6379/0"
    assert read_back(mask_url("postgresql://u:p@ss@db:5432/j"))["host"] == "db"


def test_mask_url_of_a_multi_host_libpq_url_hides_the_password() -> None:
    masked = mask_url("postgresql://u:s3cret@h1:5432,h2:5433/j")
    assert masked == "postgresql://u:***@h1:5432,h2:5433/j"
    assert conninfo.conninfo_to_dict(masked)["password"] == "***"


def test_mask_url_leaves_urls_without_passwords_and_plain_values_alone() -> None:
    for value in ("postgresql://app@db:5432/j?sslmode=require", "redis://localhost:6379/0", "INFO", "/var/lib/jarvis"):
        assert mask_url(value) == value


@given(
    secret=st.text(alphabet="abcXYZ019@:!$&'()*+,;=-._~%/?#[]", min_size=1, max_size=24),
    raw=st.booleans(),
)
@example(secret="@':", raw=True)  # no parser reads it safely: masked whole, yet it reads back as a masked password
def test_no_password_survives_mask_url(secret: str, raw: bool) -> None:
    password = "Qz7" + secret  # a prefix found nowhere else in the URL
    if raw and not any(c in secret for c in "/?#[]%"):
        url = f"postgresql://app:{password}@db.example:5432/j"  # a raw password, '@' and all
    else:
        url = f"postgresql://app:{quote(password, safe='')}@db.example:5432/j"
    query = f"postgresql://app@db.example:5432/j?password={quote(password, safe='')}"
    for masked in (mask_url(url), mask_url(query)):
        assert "Qz7" not in masked
        assert read_back(masked).get("password") == "***"


def test_redact_masks_the_tail_of_a_raw_at_password_wherever_a_library_prints_it() -> None:
    # libpq and psycopg print the host they misread: the password's tail was shown in connection errors.
    assert (
        redact("failed to resolve host 'ss@127.0.0.1': [Errno -2]")
        == "failed to resolve host '***@127.0.0.1': [Errno -2]"
    )
    assert (
        redact('could not translate host name "ss@db" to address')
        == 'could not translate host name "***@db" to address'
    )
    assert redact("to postgresql://u:p@ss@db:5432/j: timeout") == "to postgresql://u:***@db:5432/j: timeout"
    assert redact("user=u password=s3cret host=db") == "user=u password=*** host=db"
    assert redact("at postgresql://u@db/j?sslmode=require&password=s3cret") == (
        "at postgresql://u@db/j?sslmode=require&password=***"
    )
    masked = "DATABASE_URL='postgresql://u:***@db:5432/j': bad"
    assert redact(masked) == masked  # an already masked URL stays readable


def test_env_example_documents_every_setting() -> None:
    # Derived from the model: a setting added without a line in .env.example fails here.
    example = Path(__file__).resolve().parents[2] / ".env.example"
    documented = {
        line.split("=", 1)[0].lstrip("# ").strip() for line in example.read_text().splitlines() if "=" in line
    }
    names = {env_var_name(field) for field in Settings.model_fields}
    assert len(names) == len(Settings.model_fields) >= 14
    assert names - documented == set()


def test_every_setting_has_a_description() -> None:
    # `jarvis config` and .env.example explain a setting with it; an empty one explains nothing.
    assert [field for field, info in Settings.model_fields.items() if not (info.description or "").strip()] == []
