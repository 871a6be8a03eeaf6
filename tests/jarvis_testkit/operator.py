"""The `jarvis` CLI as the agent's operator runs it: the database, signing key and witness log of a test's settings."""

from __future__ import annotations

from typer.testing import CliRunner, Result

from jarvis.cli.main import app
from jarvis.config import Settings

runner = CliRunner()


def operator_env(settings: Settings) -> dict[str, str]:
    """The environment of `settings` (no Redis, wide lines so messages are not wrapped)."""
    return {
        "DATABASE_URL": str(settings.database_url),
        "REDIS_URL": "",
        "COLUMNS": "500",
        "JARVIS_DATA_DIR": str(settings.data_dir),
        "JARVIS_SIGNING_KEY": str(settings.signing_key_path()),
        "JARVIS_WITNESS_LOG": str(settings.witness_log),
    }


def operator_run(settings: Settings, *args: str) -> Result:
    """`jarvis ARGS` run in-process with `operator_env(settings)`."""
    return runner.invoke(app, list(args), env=operator_env(settings))


def audit(settings: Settings, *args: str) -> tuple[int, str]:
    """`jarvis audit ARGS`: its exit code and output."""
    result = operator_run(settings, "audit", *args)
    return result.exit_code, result.output
