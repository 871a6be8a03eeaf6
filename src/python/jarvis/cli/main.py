"""Entry point of the `jarvis` command: a thin shell over the agent and db APIs."""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from typing import Any

import typer
from rich.table import Column, Table
from typer._click import exceptions as click_errors  # the click typer vendors: what its parser raises
from typer.core import TyperGroup

from jarvis.agent.doctor import run_health_checks
from jarvis.cache.auth import cache_key_path
from jarvis.cli import audit_commands, db_commands, keys_commands, mcp_commands, memory_commands, state_commands
from jarvis.cli.agent_commands import demo_command, run_command
from jarvis.cli.session import ExitCode, console, errors, print_error, print_json
from jarvis.cli.ui_command import ui_command
from jarvis.cli.views import plain, safe, status_cell
from jarvis.config import ConfigError, Settings, load_settings, mask_url, setting_sources
from jarvis.config.settings import env_var_name


class OneLineUsageErrors(TyperGroup):
    """A bad option value, a missing argument, an unknown command: one `error:` line and exit 2.

    The same shape as every other input error (typer would draw a multi-line panel); the message
    quotes what was typed, so it is escaped like any untrusted text.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except click_errors.NoArgsIsHelpError as shown:  # the help is already printed
            sys.exit(shown.exit_code)
        except click_errors.ClickException as error:
            context = getattr(error, "ctx", None)
            hint = f" (see `{context.command_path} --help`)" if context is not None else ""
            print_error(f"{error.format_message()}{hint}")
            sys.exit(error.exit_code)
        except typer.Abort:
            errors.print("aborted", style="yellow")
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


app = typer.Typer(
    name="jarvis",
    cls=OneLineUsageErrors,
    help="Jarvis: state, memory and a tamper-evident audit trail for an autonomous agent.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db_commands.app, name="db")
app.add_typer(state_commands.app, name="state")
app.add_typer(memory_commands.app, name="memory")
app.add_typer(audit_commands.app, name="audit")
app.add_typer(keys_commands.app, name="keys")
app.add_typer(mcp_commands.app, name="mcp")
app.command("run")(run_command)
app.command("demo")(demo_command)
app.command("ui")(ui_command)


@app.command("config")
def config_command(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Print the resolved settings (passwords masked) and where each value came from."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        shown = "\n".join(safe(line) for line in str(exc).split("\n"))
        errors.print(f"[red]{shown}[/red]", highlight=False)
        raise typer.Exit(int(ExitCode.BAD_INPUT)) from None
    sources = setting_sources()
    in_effect = _values_in_effect(settings)
    rows = []
    for field, value in settings.model_dump(mode="json").items():
        shown = in_effect.get(field, mask_url(value) if isinstance(value, str) else value)
        rows.append({"variable": env_var_name(field), "value": shown, "source": sources[field]})
    if as_json:
        print_json(rows)
        return
    table = Table("variable", Column("value", overflow="fold"), "source", title="Jarvis settings", title_justify="left")
    for row in rows:
        table.add_row(row["variable"], plain(row["value"]), row["source"])
    console.print(table)


def _values_in_effect(settings: Settings) -> dict[str, Any]:
    """What an unset setting means, shown instead of None: the path or behaviour Jarvis actually uses.

    The UI token is never shown (a SecretStr dumps as asterisks); only whether one is set.
    """
    shown: dict[str, Any] = {
        "signing_key": str(settings.signing_key_path()),
        "witness_log": str(settings.witness_log or settings.data_dir / "witness" / "<trail id>.jsonl"),
        "cache_key": str(cache_key_path(settings)),
        "ui_token": "(set, not shown)" if settings.ui_token else "(none: `jarvis ui` serves loopback only)",
    }
    if settings.database_url is None:
        shown["database_url"] = "(embedded PostgreSQL 16)"
    if settings.redis_url is None:
        shown["redis_url"] = "(none: Redis disabled)"
    return shown


@app.command("doctor")
def doctor_command(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Check config, PostgreSQL, migrations, append-only enforcement and Redis; print fixes. Exit 1 on failure."""
    checks = run_health_checks()
    if as_json:
        print_json([vars(check) for check in checks])
    else:
        table = Table("check", "status", "detail", "fix", title="jarvis doctor", title_justify="left")
        for check in checks:
            table.add_row(plain(check.name), status_cell(check.status), plain(check.detail), plain(check.fix))
        console.print(table)
    if any(check.status == "fail" for check in checks):
        raise typer.Exit(int(ExitCode.FAILED))


def main() -> None:
    # SIGTERM unwinds like Ctrl-C (finally blocks and atexit run: pools are disposed cleanly);
    # `jarvis run` and `demo` install their own handler that also records the cancellation.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app(prog_name="jarvis")
    except Exception as error:
        # A signal can land inside a library's own clean-up (SQLAlchemy closing a transaction), whose
        # bookkeeping then fails while unwinding: the signal is the outcome, not that failure.
        stopped_by = _stopping_signal(error)
        if stopped_by is None:
            raise
        if stopped_by == signal.SIGINT:
            errors.print("interrupted", style="yellow")
        raise SystemExit(128 + stopped_by) from None


def _terminate(signum: int, _frame: object) -> None:
    raise _Terminated(128 + signum)


class _Terminated(SystemExit):
    """SystemExit(128 + signal) raised by the SIGTERM handler, told apart from any other exit."""


def _stopping_signal(error: BaseException) -> int | None:
    """The signal whose unwinding `error` happened during, if any (Ctrl-C or SIGTERM)."""
    seen: BaseException | None = error.__context__
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return int(signal.SIGINT)
        if isinstance(seen, _Terminated):
            return int(seen.code) - 128 if isinstance(seen.code, int) else None
        seen = seen.__context__
    return None


if __name__ == "__main__":
    main()
