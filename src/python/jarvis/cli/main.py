"""Entry point of the `jarvis` command."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from jarvis.config import ConfigError, load_settings, mask_url, setting_sources
from jarvis.config.settings import env_var_name

app = typer.Typer(
    name="jarvis",
    help="Jarvis: state, memory and a tamper-evident audit trail for an autonomous agent.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)

EXIT_CONFIG = 2


@app.callback()
def jarvis() -> None:
    """Jarvis: state, memory and a tamper-evident audit trail for an autonomous agent."""


@app.command("config")
def show_config(as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON.")) -> None:
    """Print the resolved settings (passwords masked) and where each value came from."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        errors.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None
    sources = setting_sources()
    rows = []
    for field, value in settings.model_dump(mode="json").items():
        shown = mask_url(value) if isinstance(value, str) else value
        if field in ("database_url", "redis_url") and value is None:
            shown = "(embedded PostgreSQL 16)" if field == "database_url" else "(none: Redis disabled)"
        rows.append({"variable": env_var_name(field), "value": shown, "source": sources[field]})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="Jarvis settings")
    for column in ("variable", "value", "source"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["variable"], str(row["value"]), row["source"])
    console.print(table)


def main() -> None:
    app(prog_name="jarvis")


if __name__ == "__main__":
    main()
