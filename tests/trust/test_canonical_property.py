"""Encoding 2 has two implementations: the database's `jarvis_canonical` (what is sealed) and Python's
re-rendering (what verify trusts). For any JSON document they must agree byte for byte."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jarvis.db.audit.canonical import canonical_jsonb


class Number(str):
    """A JSON number token, written to the document exactly as generated."""


def dump(value: Any, ascii_only: bool) -> str:
    """JSON text of `value` with Number tokens verbatim and strings escaped either way."""
    if isinstance(value, Number):
        return str.__str__(value)
    if isinstance(value, dict):
        items = (f"{json.dumps(k, ensure_ascii=ascii_only)}: {dump(v, ascii_only)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v, ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


# Any character PostgreSQL's jsonb accepts: control characters yes, NUL and lone surrogates no.
characters = st.characters(codec="utf-8", exclude_characters="\x00")
awkward = ["", "\u2028", "\x7f", "\U0001f4b8", "é", '"\\/', "$table"]
texts = st.text(characters, max_size=12) | st.sampled_from(awkward)
numbers = st.one_of(
    st.integers(min_value=-(10**60), max_value=10**60).map(lambda n: Number(str(n))),
    st.from_regex(r"-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,25})?([eE][+-]?[0-9]{1,3})?", fullmatch=True).map(Number),
    st.sampled_from(
        ["1.10", "1e-7", "1E+2", "-0", "0.0", "3000.5", "3000.50000000000000000001", "1e300", "9" * 400]
    ).map(Number),
)
scalars = st.none() | st.booleans() | numbers | texts
documents = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=5),
    max_leaves=25,
)
rows = st.dictionaries(texts, documents, max_size=8)


@pytest.fixture(scope="module")
def conn(migrated_database_url: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    with psycopg.connect(migrated_database_url, autocommit=True) as connection:
        yield connection


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(row=rows, ascii_only=st.booleans())
def test_python_rendering_equals_the_database_canonical_form(
    conn: psycopg.Connection[tuple[Any, ...]], row: dict[str, Any], ascii_only: bool
) -> None:
    text = dump(row, ascii_only)
    found = conn.execute(
        "SELECT public.jarvis_canonical('tool_calls', %s::jsonb), (%s::jsonb)::text", (text, text)
    ).fetchone()
    assert found is not None
    in_database, as_stored = found
    assert canonical_jsonb("tool_calls", as_stored) == in_database.encode("utf-8"), text
