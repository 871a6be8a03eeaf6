"""Jarvis settings: one pydantic-settings model read from the environment and `.env`.

This package knows nothing of the database or Redis: it only turns strings
from the environment into validated, typed values, and explains a bad value in
terms a person can act on (the variable, the value with any password masked,
what is expected).
"""

from __future__ import annotations

import logging
import math
import os
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from jarvis.config.errors import ExitCode, JarvisError
from jarvis.config.secrets import mask_url

log = logging.getLogger(__name__)

POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
REDIS_SCHEMES = ("redis", "rediss", "unix")

DEPRECATED_NAMES = {"JARVIS_POOL_IDLE_TIMEOUT": "JARVIS_POOL_MAX_AGE", "pool_idle_timeout": "pool_max_age"}
"""Old name -> its new name. An old name still works (it is a later alias of the same field) and
logs a warning, so a deployment keeps running while its configuration is renamed."""


class LogLevel(str, Enum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


def default_data_dir() -> Path:
    """Where Jarvis keeps its data when JARVIS_DATA_DIR is unset: per user, root included.

    $XDG_DATA_HOME/jarvis, else ~/.local/share/jarvis. A shared default for root
    (/var/lib/jarvis, before) made two users or two checkouts on one machine share,
    and migrate, one embedded database without knowing it. As root the embedded
    PostgreSQL runs as an unprivileged user that cannot enter root's home; it then
    keeps its cluster outside it (jarvis.db.embedded.server_directory), so root's
    home is never opened up.
    """
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "jarvis"


class Settings(BaseSettings):
    """Everything Jarvis can be configured with. `.env.example` documents each variable."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        frozen=True,
    )

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "database_url"),
        description="PostgreSQL URL; unset means an embedded PostgreSQL 16 under the data directory.",
    )
    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL", "redis_url"),
        description="Redis URL; unset means Jarvis runs without Redis.",
    )
    pool_size: int = Field(
        default=20,
        ge=1,
        le=1000,
        validation_alias=AliasChoices("JARVIS_POOL_SIZE", "pool_size"),
        description="Most PostgreSQL connections a process opens: the pool's size, with no overflow.",
    )
    pool_max_age: float = Field(
        default=30.0,
        gt=0,
        # JARVIS_POOL_IDLE_TIMEOUT was this setting's old, misleading name: kept as a deprecated alias.
        validation_alias=AliasChoices(
            "JARVIS_POOL_MAX_AGE", "pool_max_age", "JARVIS_POOL_IDLE_TIMEOUT", "pool_idle_timeout"
        ),
        description="Seconds after a pooled PostgreSQL connection was opened at which it is closed and "
        "replaced at its next checkout, busy or idle (SQLAlchemy's pool_recycle); rounded up to whole "
        "seconds, at least 1.",
    )
    connect_timeout: float = Field(
        default=2.0,
        gt=0,
        validation_alias=AliasChoices("JARVIS_CONNECT_TIMEOUT", "connect_timeout"),
        description="Seconds to wait for a connection (PostgreSQL server, pool slot, or Redis in "
        "`jarvis doctor`) before failing; rounded up to whole seconds for the PostgreSQL server. An outcome "
        "row (a tool call's completion, a cycle's close) waits for a pool slot however long it takes.",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        validation_alias=AliasChoices("JARVIS_DATA_DIR", "data_dir"),
        description="Directory for embedded services' data, and the default home of the keys, "
        "witness logs and exports.",
    )
    log_level: LogLevel = Field(
        default=LogLevel.INFO,
        validation_alias=AliasChoices("JARVIS_LOG_LEVEL", "log_level"),
        description="DEBUG, INFO, WARNING or ERROR.",
    )
    max_value_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=256 * 1024 * 1024,
        validation_alias=AliasChoices("JARVIS_MAX_VALUE_BYTES", "max_value_bytes"),
        description="Largest JSON value stored (state, memory, tool input/output, goals, decisions), "
        "in bytes of compact JSON; larger ones are refused before anything is written.",
    )
    max_plan_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=1024,
        le=256 * 1024 * 1024,
        validation_alias=AliasChoices("JARVIS_MAX_PLAN_BYTES", "max_plan_bytes"),
        description="Largest plan file `jarvis run` reads, in bytes.",
    )

    production: bool = Field(
        default=False,
        validation_alias=AliasChoices("JARVIS_PRODUCTION", "production"),
        description="Production mode: `jarvis doctor` fails on a superuser login instead of warning.",
    )
    seal_wait: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        validation_alias=AliasChoices("JARVIS_SEAL_WAIT", "seal_wait"),
        description="Seconds `jarvis audit verify --seal` waits for another sealer before naming it and failing.",
    )
    seal_interval: float = Field(
        default=2.0,
        ge=0,
        le=5,
        validation_alias=AliasChoices("JARVIS_SEAL_INTERVAL", "seal_interval"),
        description="Seconds within which every audit row a process writes is sealed and covered by a signed "
        "checkpoint, in every mode (library, CLI, MCP proxy and server): the database handle's background "
        "sealer seals and signs at most this often, and once more when the process shuts down. 0 turns it off "
        "(rows then wait for an explicit seal: the agent's cycle end, `jarvis audit verify --seal`).",
    )
    lease_ttl: float = Field(
        default=15.0,
        ge=1,
        le=3600,
        validation_alias=AliasChoices("JARVIS_LEASE_TTL", "lease_ttl"),
        description="Seconds a running agent's liveness lease lasts unless renewed (its heartbeat renews it every "
        "third of that): how long after a crash (kill -9, a lost machine) its name stays taken and its work "
        "counts as live.",
    )
    signing_key: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("JARVIS_SIGNING_KEY", "signing_key"),
        description="Ed25519 private key that signs checkpoints (kept outside PostgreSQL). "
        "Default: <data dir>/keys/checkpoint.key; its public key is the same path + '.pub'.",
    )
    witness_log: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("JARVIS_WITNESS_LOG", "witness_log"),
        description="JSONL file of signed checkpoints, kept outside PostgreSQL. "
        "Default: <data dir>/witness/<trail id>.jsonl (one file per trail, named by the id stored in the database).",
    )
    cache_key: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("JARVIS_CACHE_KEY", "cache_key"),
        description="HMAC key (32 random bytes, mode 0600) that authenticates what Jarvis writes to Redis. "
        "Default: <data dir>/keys/cache.key; `jarvis keys init` or the agent's first start creates it.",
    )
    ui_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("JARVIS_UI_TOKEN", "ui_token"),
        description="`jarvis ui` only (same as --token): the token every request must carry; required when "
        "--host is not a loopback address.",
    )
    mcp_call_timeout: float = Field(
        default=300.0,
        ge=0.1,
        le=86_400,
        validation_alias=AliasChoices("JARVIS_MCP_CALL_TIMEOUT", "mcp_call_timeout"),
        description="`jarvis mcp proxy` only (same as --call-timeout): seconds a tools/call waits for the upstream "
        "MCP server's answer before it is recorded failed and the client gets an error.",
    )

    def signing_key_path(self) -> Path:
        """The private key file (it may not exist yet: `jarvis keys init` makes it)."""
        return self.signing_key if self.signing_key is not None else self.data_dir / "keys" / "checkpoint.key"

    def pool_recycle_seconds(self) -> int:
        """`pool_max_age` as SQLAlchemy's whole-second `pool_recycle`: rounded up, never 0.

        `int()` made 0.5 into 0, and a pool_recycle of 0 replaces the connection at every checkout.
        """
        return max(1, math.ceil(self.pool_max_age))

    def public_key_path(self) -> Path:
        path = self.signing_key_path()
        return path.with_name(path.name + ".pub")

    @model_validator(mode="before")
    @classmethod
    def _warn_about_deprecated_names(cls, data: Any) -> Any:
        """Say which old name is in use and what to call it now; the value is still read."""
        given = {str(key) for key in data} if isinstance(data, dict) else set()
        # pydantic-settings hands the value over under the new name, so look where it came from.
        in_use = _names_set(Path(str(cls.model_config.get("env_file") or ".env")))
        for old, new in DEPRECATED_NAMES.items():
            if old.upper() in in_use or old in given:
                # An environment name in `given` proves nothing: pydantic-settings files either spelling under it.
                also_new = new.upper() in in_use or (new.islower() and new in given)
                effect = f"{new} is also set and wins" if also_new else "its value is still used"
                log.warning("%s is deprecated (%s): rename it to %s.", old, effect, new)
        return data

    @field_validator("database_url", "redis_url", "ui_token", mode="before")
    @classmethod
    def _blank_means_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in POSTGRES_SCHEMES:
            raise ValueError(
                f"expected a PostgreSQL URL starting with one of {', '.join(s + '://' for s in POSTGRES_SCHEMES)}"
            )
        if not parts.path.strip("/"):
            raise ValueError("expected a database name in the URL path, e.g. postgresql://user@localhost:5432/jarvis")
        if not parts.hostname and "host=" not in parts.query:
            raise ValueError("expected a host, e.g. postgresql://user@localhost:5432/jarvis")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in REDIS_SCHEMES:
            raise ValueError(f"expected a Redis URL starting with one of {', '.join(s + '://' for s in REDIS_SCHEMES)}")
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("expected a host, e.g. redis://localhost:6379/0")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class ConfigError(JarvisError):
    """A setting has a value Jarvis cannot use; the message names the variable and the fix."""

    exit_code = ExitCode.BAD_INPUT


def env_var_name(field_name: str) -> str:
    """The environment variable a person sets for a field (its first alias)."""
    alias = Settings.model_fields[field_name].validation_alias
    assert isinstance(alias, AliasChoices)
    first = alias.choices[0]
    assert isinstance(first, str)
    return first


def _shown(value: Any) -> str:
    return repr(mask_url(value) if isinstance(value, str) else value)


def load_settings(**overrides: Any) -> Settings:
    """Read settings, turning pydantic's report into one actionable ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            name = env_var_name(field) if field in Settings.model_fields else field
            message = str(error["msg"]).removeprefix("Value error, ")
            fix = f"Fix: set {name} in the environment or .env (see .env.example)."
            lines.append(f"{name}={_shown(error.get('input'))}: {message}. {fix}")
        raise ConfigError("Invalid configuration:\n  " + "\n  ".join(lines)) from None


def env_var_names(field_name: str) -> list[str]:
    """Every environment variable that sets a field: its name first, then any deprecated ones."""
    alias = Settings.model_fields[field_name].validation_alias
    assert isinstance(alias, AliasChoices)
    return [name for name in alias.choices if isinstance(name, str) and name != name.lower()]


def _dotenv(env_file: Path) -> dict[str, str]:
    """The variables `env_file` sets, read by python-dotenv as pydantic-settings reads it.

    A bare `NAME` line (no `=`) sets nothing, so it is left out.
    """
    if not env_file.is_file():
        return {}
    return {key: value for key, value in dotenv_values(env_file, encoding="utf-8").items() if value is not None}


def _names_set(env_file: Path) -> set[str]:
    """Names set in the environment or `env_file`, upper-cased: pydantic-settings matches names that way."""
    return {name.upper() for name in os.environ} | {name.upper() for name in _dotenv(env_file)}


def setting_sources(env_file: Path = Path(".env")) -> dict[str, str]:
    """Where each setting's value came from: 'environment', '.env' or 'default'."""
    from_file = set(_dotenv(env_file))
    sources = {}
    for field in Settings.model_fields:
        names = env_var_names(field)
        sources[field] = (
            "environment"
            if any(name in os.environ for name in names)
            else ".env"
            if any(name in from_file for name in names)
            else "default"
        )
    return sources
