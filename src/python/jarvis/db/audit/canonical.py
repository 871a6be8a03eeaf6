"""The canonical encodings of an audit row, shared by the sealer and the verifier.

Encoding 2 (every link sealed since migration 0003) is what the database's
`jarvis_seal()` hashes: the row as JSONB text (`to_jsonb(row)` with
TimeZone UTC: keys ordered by length then bytes, `", "` and `": "`
separators, numbers exactly as stored), top-level NULLs left out and
`"$table"` added. The verifier does not trust the server for that
rendering: it parses the row's JSONB text and renders it again here, so a
replaced or altered function in the database cannot make a changed row hash
like the original. Numbers are kept as their decimal text, never floats.

Encoding 1 (links sealed before 0003) was computed by Python from loaded
values: sorted keys, no whitespace, timestamps with microseconds, numbers
through float. It is verified as it was, and a number whose text is not
exactly what a float gives back is reported (an edit float would hide).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from jarvis.config import JarvisError
from jarvis.db import models  # noqa: F401  (registers the tables on Base.metadata, read below at import)
from jarvis.db.base import AUDIT_TABLES, Base

GENESIS = bytes(32)
"""The predecessor of the first link."""

_encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def audit_columns(table: str) -> tuple[str, ...]:
    """Every column of an audit table, from the models: a new column is hashed without code changes."""
    return tuple(Base.metadata.tables[table].columns.keys())


AUDIT_COLUMNS = {table: audit_columns(table) for table in AUDIT_TABLES}

ENCODING_PYTHON = 1
ENCODING_JSONB = 2


class NotCanonicalError(JarvisError, ValueError):
    """A row's stored text cannot be encoded (unparseable, or a number a float would change)."""


class _Number(str):
    """A JSON number kept as its exact decimal text."""


def _reject_constant(name: str) -> Any:
    raise NotCanonicalError(f"{name} is not JSON")


def _parse_exact(text: str) -> Any:
    try:
        return json.loads(text, parse_float=_Number, parse_int=_Number, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        raise NotCanonicalError(f"stored JSON cannot be parsed ({type(error).__name__})") from None


def _jsonb_key(key: str) -> tuple[int, bytes]:
    encoded = key.encode("utf-8")
    return len(encoded), encoded


class _Text(str):
    """Punctuation or an already-encoded key, emitted as is by render_jsonb."""


def render_jsonb(value: Any) -> str:
    """`value` as PostgreSQL prints JSONB: keys by length then bytes, `, ` and `: `, numbers verbatim.

    Iterative, with an explicit stack: a document nested as deep as Jarvis accepts (and far
    deeper) renders without touching Python's recursion limit.
    """
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Text):
            out.append(item)
        elif isinstance(item, _Number):
            out.append(str.__str__(item))
        elif isinstance(item, str):
            out.append(json.dumps(item, ensure_ascii=False))
        elif item is True:
            out.append("true")
        elif item is False:
            out.append("false")
        elif item is None:
            out.append("null")
        elif isinstance(item, list):
            parts: list[Any] = [_Text("[")]
            for index, element in enumerate(item):
                if index:
                    parts.append(_Text(", "))
                parts.append(element)
            parts.append(_Text("]"))
            stack.extend(reversed(parts))
        elif isinstance(item, dict):
            parts = [_Text("{")]
            for index, (key, element) in enumerate(sorted(item.items(), key=lambda pair: _jsonb_key(pair[0]))):
                if index:
                    parts.append(_Text(", "))
                parts.append(_Text(json.dumps(key, ensure_ascii=False) + ": "))
                parts.append(element)
            parts.append(_Text("}"))
            stack.extend(reversed(parts))
        else:
            raise NotCanonicalError(f"unexpected {type(item).__name__} in a JSON document")
    return "".join(out)


def canonical_jsonb(table: str, row_json: str) -> bytes:
    """Encoding 2 of a row, from its `to_jsonb(row)` text (read with TimeZone UTC)."""
    document = _parse_exact(row_json)
    if not isinstance(document, dict):
        raise NotCanonicalError("a row must be a JSON object")
    kept = {key: value for key, value in document.items() if value is not None}
    kept["$table"] = table
    try:
        return render_jsonb(kept).encode("utf-8")
    except RecursionError:
        raise NotCanonicalError("stored JSON is nested too deeply to encode") from None


def _exact_float(token: str) -> float:
    number = float(token)
    try:
        if Decimal(token) != Decimal(repr(number)):
            raise NotCanonicalError(f"number {token[:40]} is not what was sealed (a float reads it as {number!r})")
    except InvalidOperation:
        raise NotCanonicalError(f"number {token[:40]} cannot be read") from None
    return number


def canonical_python_from_json(table: str, row_json: str) -> bytes:
    """Encoding 1 of a row, from its `to_jsonb(row)` text (read with TimeZone UTC)."""
    try:
        document = json.loads(row_json, parse_float=_exact_float, parse_constant=_reject_constant)
    except NotCanonicalError:
        raise
    except (ValueError, RecursionError) as error:
        raise NotCanonicalError(f"stored JSON cannot be loaded ({type(error).__name__}: {str(error)[:80]})") from None
    if not isinstance(document, dict):
        raise NotCanonicalError("a row must be a JSON object")
    created_at = document.get("created_at")
    if isinstance(created_at, str):
        try:
            document["created_at"] = datetime.fromisoformat(created_at)
        except ValueError:
            raise NotCanonicalError(f"created_at {created_at[:40]!r} cannot be loaded") from None
    return canonical_row(table, {column: document.get(column) for column in AUDIT_COLUMNS[table]})


def json_scalar(value: Any) -> Any:
    """A column value as JSON holds it: a UUID as its text, a timestamp in UTC to the microsecond (the form
    every row is hashed in, and the one exports print), anything else unchanged."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def canonical_row(table: str, row: Mapping[str, Any]) -> bytes:
    """The bytes a row is hashed as: its non-null columns in canonical JSON, tagged with its table (encoding 1)."""
    document = {column: json_scalar(row[column]) for column in AUDIT_COLUMNS[table] if row[column] is not None}
    document["$table"] = table
    return _encoder.encode(document).encode("utf-8")


def row_hash(table: str, row: Mapping[str, Any]) -> bytes:
    """The row's content hash, the last input of its chain link: changes when any stored value does."""
    return hashlib.sha256(canonical_row(table, row)).digest()


def link_hash(previous: bytes, seq: int, table: str, row_id: uuid.UUID, content: bytes) -> bytes:
    """chain_hash[n] = sha256(chain_hash[n-1] || seq || table || 0x00 || row_id || row_hash)."""
    return hashlib.sha256(
        previous + seq.to_bytes(8, "big") + table.encode() + b"\x00" + row_id.bytes + content
    ).digest()
