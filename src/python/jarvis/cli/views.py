"""Rich renderings of audit data shared by several commands."""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape
from rich.table import Table

from jarvis.db.audit import CycleSummary, TimelineEntry, VerifyReport

STATUS_STYLE = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "abandoned": "magenta", "started": "cyan"}


def short_json(value: Any, limit: int = 70) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def styled(status: str | None) -> str:
    if not status:
        return ""
    style = STATUS_STYLE.get(status, "white")
    return f"[{style}]{status}[/{style}]"


def timeline_table(cycle: CycleSummary, entries: list[TimelineEntry]) -> Table:
    table = Table(
        title=f"cycle {cycle.id} · {short_json(cycle.goals, 60)} · {styled(cycle.status)}",
        title_justify="left",
        expand=True,
    )
    table.add_column("time", no_wrap=True, min_width=12)
    table.add_column("event", no_wrap=True, min_width=14)
    table.add_column("name", max_width=22, overflow="ellipsis", no_wrap=True)
    table.add_column("status", no_wrap=True, max_width=9)
    table.add_column("detail", overflow="ellipsis", no_wrap=True, ratio=1, min_width=16)
    for entry in entries:
        table.add_row(
            entry.at.strftime("%H:%M:%S.%f")[:-3],
            entry.kind,
            entry.name or "",
            styled(entry.status),
            short_json(entry.detail, 200),
        )
    return table


def cycles_table(cycles: list[CycleSummary]) -> Table:
    table = Table(title="planning cycles (newest first)", title_justify="left")
    for column in ("cycle", "agent", "started", "status", "goals"):
        table.add_column(column, overflow="fold")
    for cycle in cycles:
        table.add_row(
            str(cycle.id),
            cycle.agent,
            cycle.started_at.isoformat(timespec="seconds"),
            styled(cycle.status),
            short_json(cycle.goals, 50),
        )
    return table


def verify_line(report: VerifyReport) -> str:
    colour = "green" if report.ok else "bold red"
    return f"[{colour}]{escape(report.summary())}[/{colour}]"
