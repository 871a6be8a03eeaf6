"""What every command shares: settings, logging, exit codes, and turning errors into one clear line.

Scripts can trust the exit codes:
0 success · 1 the operation failed (conflict, tampering, a failed step) ·
2 bad input or configuration · 3 PostgreSQL or Redis unreachable · 4 not found ·
128 + the signal when interrupted: 130 for Ctrl-C (SIGINT), 143 for SIGTERM.
SIGTERM becomes SystemExit(143) in `main()` for every command; `run` and `demo` catch
both signals themselves, record the cancellation, and exit with the same codes.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import psycopg
import sqlalchemy.exc
import typer
from rich.console import Console
from rich.logging import RichHandler

from jarvis.cli.views import printable, safe
from jarvis.config import ConfigError, JarvisError, Settings, load_settings, redact
from jarvis.config import ExitCode as ExitCode  # re-exported: every command imports it from here
from jarvis.db import Database, Role, open_database
from jarvis.db.jsonb import MAX_DEPTH
from jarvis.db.migrate import require_head

console = Console()
errors = Console(stderr=True)


class RedactingFilter(logging.Filter):
    """No log line ever shows a password from a URL, or lets a logged value break the line or drive the terminal."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = printable(redact(record.getMessage()))
        record.args = None
        return True


def configure_logging(settings: Settings | None) -> None:
    level = settings.log_level.value if settings else "INFO"
    handler = RichHandler(console=errors, show_path=False, show_time=False, markup=False)
    handler.addFilter(RedactingFilter())
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s", force=True)
    for name in ("jarvis", "alembic"):
        logging.getLogger(name).setLevel(level if name == "jarvis" else "WARNING")


def fail(message: str, code: ExitCode, *, multiline: bool = False) -> NoReturn:
    """Print `message` as `error: …` on stderr and exit with `code`.

    The message is untrusted (it may quote a plan, a key, a value): its markup is shown, never obeyed,
    and its control characters are escaped, so it stays one line. `multiline` keeps the line breaks of
    a message built as several lines (a configuration report), each line escaped.
    """
    print_error(message, multiline=multiline)
    raise typer.Exit(int(code))


def print_error(message: str, *, multiline: bool = False) -> None:
    lines = redact(message).split("\n") if multiline else [redact(message)]
    text = "\n".join(safe(line) for line in lines)
    errors.print(f"[bold red]error:[/bold red] {text}", highlight=False, soft_wrap=True)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Known errors become one line on stderr and an exit code; never a traceback.

    Every JarvisError names its own exit code, so a new error needs no entry here.
    """
    try:
        yield
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        errors.print("interrupted", style="yellow")
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    except JarvisError as error:  # each carries its exit code (jarvis.config.errors)
        fail(str(error), error.exit_code, multiline=isinstance(error, ConfigError))
    except Exception as error:
        refused = error.orig if isinstance(error, sqlalchemy.exc.DataError) else error
        if isinstance(refused, psycopg.errors.DataError):  # SQLSTATE class 22: a value the server cannot take
            reason = str(refused).strip().splitlines()[0] if str(refused).strip() else type(refused).__name__
            fail(f"PostgreSQL refused a value: {reason}. Nothing was written", ExitCode.BAD_INPUT)
        raise


def settings_or_exit() -> Settings:
    try:
        settings = load_settings()
    except ConfigError as error:
        configure_logging(None)
        fail(str(error), ExitCode.BAD_INPUT, multiline=True)
    configure_logging(settings)
    return settings


def parse_json_argument(raw: str, what: str) -> Any:
    shown = repr(raw) if len(raw) <= 200 else f"{raw[:200]!r}… ({len(raw):,} characters)"
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        fail(
            f"{what} is not valid JSON ({error.msg} at column {error.colno}): {shown}. "
            "Quote it for the shell, e.g. '{\"usd\": 12.5}' or '\"text\"'",
            ExitCode.BAD_INPUT,
        )
    except ValueError as error:  # e.g. an integer of more than 4300 digits
        fail(f"{what} cannot be read as JSON ({error}): {shown}", ExitCode.BAD_INPUT)
    except RecursionError:
        fail(
            f"{what} is nested too deeply to parse (JSON values may nest at most {MAX_DEPTH} levels): {shown}",
            ExitCode.BAD_INPUT,
        )


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


@contextmanager
def opened_database(role: Role = "auditor") -> Iterator[Database]:
    """The configured database (embedded by default), never migrated: readers as the auditor role.

    A database behind the code fails with "run `jarvis db upgrade`" (exit 2);
    only `db upgrade`, `run` and `demo` migrate.
    """
    settings = settings_or_exit()
    with reported_errors():
        database = open_database(settings, role=role)
        try:
            require_head(database)
            yield database
        finally:
            database.shutdown()
