"""Rich renderings of audit data shared by several commands, and the one way untrusted text reaches Rich.

Everything that comes from a plan, a tool, the database, Redis or the command line is untrusted:
Rich would obey `[green]…[/green]` in it (or crash on a stray `[/INST]`), and a terminal would obey
its control characters. `safe()` makes such text inert inside a markup string; `plain()` makes it a
Text that is never parsed as markup. Both show control characters, line breaks, bidi overrides and
lone surrogates as escapes, so untrusted text stays on its own line and cannot fake another.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from jarvis.db.audit import CycleSummary, TimelineEntry, VerifyReport

STATUS_STYLE = {
    # audit rows (tool calls, planning cycles)
    "started": "cyan",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "yellow",
    "abandoned": "magenta",
    # the doctor's checks
    "ok": "green",
    "warn": "yellow",
    "fail": "bold red",
    # a verified read that does not match its chain link
    "tampered": "bold red",
}
"""The colour of every status Jarvis prints; anything else (from a tampered database) is white."""


_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _shown(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(text: object) -> str:
    """`text` on one line, with every character that could move the cursor or hide text shown as an escape."""
    return _UNPRINTABLE.sub(_shown, str(text))


def safe(text: object) -> str:
    """Untrusted text to put inside a Rich markup string: printable, its [brackets] shown, never obeyed."""
    return escape(printable(text))


def plain(text: object, style: str = "") -> Text:
    """Untrusted text as a table cell or a line of its own: printable, never parsed as markup."""
    return Text(printable(text), style=style)


def short_json(value: Any, limit: int = 70) -> str:
    """A one-line, printable preview of a JSON value, at most `limit` characters before escaping."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return printable(text if len(text) <= limit else text[: limit - 1] + "…")


def styled(status: str | None) -> str:
    """A status for a markup string, in its colour (any status from the database is escaped)."""
    if not status:
        return ""
    style = STATUS_STYLE.get(status, "white")
    return f"[{style}]{safe(status)}[/{style}]"


def status_cell(status: str | None) -> Text:
    """A status as a table cell, in its colour."""
    return plain(status or "", STATUS_STYLE.get(status or "", "white"))


INTEGRITY_CELLS = {
    "verified": Text("ok", style="green"),
    "unsealed": Text("unsealed", style="yellow"),
    "flagged": Text("FLAGGED", style="bold yellow"),
    "tampered": Text("TAMPERED", style="bold red"),
    "unverifiable": Text("UNVERIFIABLE", style="bold red"),
}
"""How a row's verified-read state is shown: "ok" (its link vouches for it), "unsealed" (not yet
vouched for), "FLAGGED" (linked, but the sealer did not vouch for it: `audit verify` says why),
"TAMPERED" (its values are withheld), "UNVERIFIABLE" (the server's catalog or built-ins were changed,
so no row can be checked: values withheld, and the one-line reason is printed under the table)."""

WITHHELD = Text("(withheld: does not match its chain link)", style="red")


def integrity_cell(integrity: str) -> Text:
    """A row's integrity as a table cell ("TAMPERED" in bold red); anything unknown is shown as TAMPERED."""
    return INTEGRITY_CELLS.get(integrity, INTEGRITY_CELLS["tampered"]).copy()


def timeline_table(cycle: CycleSummary, entries: list[TimelineEntry]) -> Table:
    start_withheld = cycle.integrity in ("tampered", "unverifiable") and cycle.agent is None
    goals = f"[bold red]{cycle.integrity.upper()}[/bold red]" if start_withheld else escape(short_json(cycle.goals, 60))
    table = Table(
        title=f"cycle {cycle.id} · {goals} · {styled(cycle.status)}",
        title_justify="left",
        expand=True,
    )
    table.add_column("time", no_wrap=True, min_width=12)
    table.add_column("event", no_wrap=True, min_width=14)
    table.add_column("name", max_width=22, overflow="ellipsis", no_wrap=True)
    table.add_column("status", no_wrap=True, max_width=9)
    table.add_column("check", no_wrap=True, min_width=8)
    table.add_column("detail", overflow="ellipsis", no_wrap=True, ratio=1, min_width=16)
    for entry in entries:
        if entry.integrity not in ("verified", "unsealed", "flagged"):
            table.add_row(
                entry.at.strftime("%H:%M:%S.%f")[:-3],
                integrity_cell(entry.integrity),
                plain(entry.table),
                "",
                integrity_cell(entry.integrity),
                WITHHELD.copy(),
            )
            continue
        table.add_row(
            entry.at.strftime("%H:%M:%S.%f")[:-3],
            plain(entry.kind),
            plain(entry.name or ""),
            status_cell(entry.status),
            integrity_cell(entry.integrity),
            plain(short_json(entry.detail, 200)),
        )
    return table


def cycles_table(cycles: list[CycleSummary]) -> Table:
    table = Table(title="planning cycles (newest first)", title_justify="left")
    for column in ("cycle", "agent", "started", "status", "check", "goals"):
        table.add_column(column, overflow="fold")
    for cycle in cycles:
        start_withheld = cycle.integrity in ("tampered", "unverifiable") and cycle.agent is None
        table.add_row(
            str(cycle.id),
            WITHHELD.copy() if start_withheld else plain(cycle.agent or ""),
            cycle.started_at.isoformat(timespec="seconds"),
            status_cell(cycle.status),
            integrity_cell(cycle.integrity),
            WITHHELD.copy() if start_withheld else plain(short_json(cycle.goals, 50)),
        )
    return table


def verify_line(report: VerifyReport) -> str:
    colour = "green" if report.ok else "bold red"
    return f"[{colour}]{safe(report.summary())}[/{colour}]"
