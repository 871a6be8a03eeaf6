"""The one canonical encoding of an audit row, shared by the sealer and the verifier.

Hashing `str(dict)` or the server's JSONB text would make a hash depend on
key order, float formatting or the server version. Instead every row becomes
JSON with sorted keys, no whitespace, UTF-8, UUIDs as strings and timestamps
as UTC ISO-8601 with microseconds. NULL columns are left out, so adding a
nullable column in a later migration keeps every earlier hash valid.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from jarvis.db.base import AUDIT_TABLES, Base

GENESIS = bytes(32)
"""The predecessor of the first link."""

_encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def audit_columns(table: str) -> tuple[str, ...]:
    """Every column of an audit table, from the models: a new column is hashed without code changes."""
    return tuple(Base.metadata.tables[table].columns.keys())


AUDIT_COLUMNS = {table: audit_columns(table) for table in AUDIT_TABLES}


def _plain(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def canonical_row(table: str, row: Mapping[str, Any]) -> bytes:
    document = {column: _plain(row[column]) for column in AUDIT_COLUMNS[table] if row[column] is not None}
    document["$table"] = table
    return _encoder.encode(document).encode("utf-8")


def row_hash(table: str, row: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(canonical_row(table, row)).digest()


def link_hash(previous: bytes, seq: int, table: str, row_id: uuid.UUID, content: bytes) -> bytes:
    """chain_hash[n] = sha256(chain_hash[n-1] || seq || table || 0x00 || row_id || row_hash)."""
    return hashlib.sha256(
        previous + seq.to_bytes(8, "big") + table.encode() + b"\x00" + row_id.bytes + content
    ).digest()
