"""Exporting the audit trail: every row as JSON lines, or tool calls as span-shaped dicts.

`tool_call_spans` is a plain-dict summary (UUID ids, no trace id): no collector reads it. The
`jarvis audit export --format otel|otlp` spans are built on the OpenTelemetry SDK in `jarvis.otel`
(the `[otel]` extra). Arguments and results are opt-in in both: they may hold secrets.
Both are verified reads (`jarvis.db.audit.verified`): each row says whether it matches its chain link.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from jarvis.db.audit.canonical import AUDIT_COLUMNS, json_scalar
from jarvis.db.audit.verified import TAMPERED, UNVERIFIABLE, WITHHELD, verified_reading, worst
from jarvis.db.base import AUDIT_TABLES
from jarvis.db.engine import Database


def export_rows(database: Database, *, since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Every audit row (optionally from `since` on), oldest first, tagged with its table and its `integrity`.

    A verified read: "verified", "unsealed", "flagged", "tampered" (the row does not match its chain
    link) or "unverifiable" (the server's catalog or built-ins were changed: "why" says how); a
    tampered or unverifiable row is exported as table, id, created_at and integrity only, its values
    withheld.
    """
    with verified_reading(database) as reader:
        selects = " UNION ALL ".join(
            f"SELECT '{table}'::pg_catalog.text AS tbl, x.created_at, x.id, pg_catalog.to_jsonb(x) AS row, "
            f"{reader.integrity(table)} AS integrity FROM ONLY public.{table} x "
            "WHERE %(since)s::pg_catalog.timestamptz IS NULL OR x.created_at >= %(since)s::pg_catalog.timestamptz"
            for table in AUDIT_TABLES
        )
        for row in reader.stream(f"{selects} ORDER BY 2, 3", {"since": since}):
            integrity = reader.settle(row.tbl, row.id, row.integrity) or TAMPERED
            if integrity in WITHHELD:
                yield {
                    "table": row.tbl,
                    "id": row.row.get("id"),
                    "created_at": row.row.get("created_at"),
                    "integrity": integrity,
                    **({"why": reader.why} if integrity == UNVERIFIABLE else {}),
                }
            else:
                yield {"table": row.tbl, **{k: row.row.get(k) for k in AUDIT_COLUMNS[row.tbl]}, "integrity": integrity}


def tool_call_spans(database: Database, *, include_content: bool = False) -> Iterator[dict[str, Any]]:
    """One `execute_tool` span per tool call: start row joined with its outcome (if any), both verified reads.

    `jarvis.audit.integrity` is the worse of the two rows' states; a tampered start row withholds the
    tool's name and arguments, a tampered outcome its status, error and result (the span's status is
    ERROR with the message "TAMPERED").
    """
    with verified_reading(database) as reader:
        rows = reader.stream(
            "SELECT s.id, s.tool_name, s.input, s.created_at AS started_at, s.cycle_id, c.id AS ended_id, c.status, "
            f"c.output, c.error, c.created_at AS ended_at, {reader.integrity('tool_calls', 's')} AS start_integrity, "
            f"{reader.integrity('tool_calls', 'c')} AS end_integrity FROM ONLY public.tool_calls s "
            "LEFT JOIN ONLY public.tool_calls c ON c.parent_id = s.id "
            "WHERE s.parent_id IS NULL ORDER BY s.created_at, s.id"
        )
        for row in rows:
            yield _span(
                row,
                reader.settle("tool_calls", row.id, row.start_integrity),
                reader.settle("tool_calls", row.ended_id, row.end_integrity),
                include_content,
                reader.why,
            )


def _span(
    row: Any, start: str | None, end: str | None, include_content: bool, why: str | None = None
) -> dict[str, Any]:
    start_ok, end_ok = start not in WITHHELD, end not in WITHHELD
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.call.id": str(row.id),
        "gen_ai.tool.type": "function",
        "jarvis.audit.integrity": worst(start, end),
    }
    if start_ok:
        attributes["gen_ai.tool.name"] = row.tool_name
    if not end_ok:
        attributes["error.type"] = str(end)
    elif row.status not in (None, "succeeded"):
        attributes["error.type"] = (row.error or row.status).split(":", 1)[0]
    if include_content:
        if start_ok:
            attributes["gen_ai.tool.call.arguments"] = row.input
        if end_ok and row.output is not None:
            attributes["gen_ai.tool.call.result"] = row.output
    status: dict[str, Any]
    if why is not None:
        status = {"code": "ERROR", "message": why}
    elif not end_ok:
        status = {"code": "ERROR", "message": "TAMPERED: the outcome row does not match its chain link"}
    else:
        status = {"code": "OK" if row.status == "succeeded" else "UNSET" if row.status is None else "ERROR"}
    return {
        "name": f"execute_tool {row.tool_name}" if start_ok else "execute_tool",
        "span_id": str(row.id),
        "parent_cycle_id": json_scalar(row.cycle_id),
        "start_time": json_scalar(row.started_at),
        "end_time": json_scalar(row.ended_at),
        "status": status,
        "attributes": attributes,
    }
