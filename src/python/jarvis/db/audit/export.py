"""Exporting the audit trail: every row as JSON lines, or tool calls as OpenTelemetry GenAI spans.

The span form follows the GenAI semantic conventions for `execute_tool`
(status: development), so existing observability tools can ingest it.
Arguments and results are opt-in there, and here too: they may hold secrets.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import text

from jarvis.db.audit.canonical import AUDIT_COLUMNS, json_scalar
from jarvis.db.base import AUDIT_TABLES
from jarvis.db.engine import Database


def export_rows(database: Database, *, since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Every audit row (optionally from `since` on), oldest first, tagged with its table."""
    selects = " UNION ALL ".join(
        f"SELECT '{table}' AS tbl, created_at, id, to_jsonb(t) AS row FROM ONLY public.{table} t "
        "WHERE CAST(:since AS timestamptz) IS NULL OR created_at >= :since"
        for table in AUDIT_TABLES
    )
    with database.connect() as conn:
        result = conn.execution_options(yield_per=1000).execute(
            text(f"{selects} ORDER BY created_at, id"), {"since": since}
        )
        for row in result:
            yield {"table": row.tbl, **{k: row.row.get(k) for k in AUDIT_COLUMNS[row.tbl]}}


def tool_call_spans(database: Database, *, include_content: bool = False) -> Iterator[dict[str, Any]]:
    """One `execute_tool` span per tool call: start row joined with its outcome (if any)."""
    with database.connect() as conn:
        result = conn.execution_options(yield_per=1000).execute(
            text(
                "SELECT s.id, s.tool_name, s.input, s.created_at AS started_at, s.cycle_id, c.status, c.output, "
                "c.error, c.created_at AS ended_at FROM ONLY public.tool_calls s "
                "LEFT JOIN ONLY public.tool_calls c ON c.parent_id = s.id "
                "WHERE s.parent_id IS NULL ORDER BY s.created_at, s.id"
            )
        )
        for row in result:
            attributes: dict[str, Any] = {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": row.tool_name,
                "gen_ai.tool.call.id": str(row.id),
                "gen_ai.tool.type": "function",
            }
            if row.status not in (None, "succeeded"):
                attributes["error.type"] = (row.error or row.status).split(":", 1)[0]
            if include_content:
                attributes["gen_ai.tool.call.arguments"] = row.input
                if row.output is not None:
                    attributes["gen_ai.tool.call.result"] = row.output
            yield {
                "name": f"execute_tool {row.tool_name}",
                "span_id": str(row.id),
                "parent_cycle_id": json_scalar(row.cycle_id),
                "start_time": json_scalar(row.started_at),
                "end_time": json_scalar(row.ended_at),
                "status": {"code": "OK" if row.status == "succeeded" else "UNSET" if row.status is None else "ERROR"},
                "attributes": attributes,
            }
