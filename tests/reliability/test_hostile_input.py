"""Hostile input: every value is either stored and read back identically, or refused with nothing written."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jarvis.db import Database, InvalidJsonError, RuntimeDDLError, RuntimeSchema, StateStore
from jarvis.db.audit import ToolCallLog
from jarvis_testkit import tamper

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

hostile_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**60, max_value=2**20000)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()  # includes NUL and lone surrogates
    | st.sampled_from(["'; DROP TABLE tool_calls; --", "\\u0000", "Robert'); --", "\x00", "\ud800", "ﬁ"])
)
hostile_json = st.recursive(
    hostile_scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8) | st.integers() | st.none(), inner, max_size=4),
    max_leaves=12,
)


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON documents, types included (1 is not 1.0 is not True)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"level": value}
    return value


FIXED_CASES = [
    pytest.param(nested(100), id="100-level-nesting"),
    pytest.param("x" * 5_000_000, id="5MB-string"),
    pytest.param({"big": 2**200, "neg": -(2**200)}, id="huge-ints"),
    pytest.param(10**5000, id="int-beyond-4300-digits"),
    pytest.param(float("nan"), id="nan"),
    pytest.param([float("inf")], id="infinity"),
    pytest.param(1e300, id="float-1e300"),
    pytest.param(-0.0, id="negative-zero"),
    pytest.param({"a\x00": 1}, id="nul-in-key"),
    pytest.param("lone \ud83d surrogate", id="lone-surrogate"),
    pytest.param({1: "int key"}, id="non-string-key"),
    pytest.param({"tuple": (1, 2)}, id="tuple"),
    pytest.param({"set": {1}}, id="set"),
]


@pytest.fixture(scope="module")
def state(database: Database) -> StateStore:
    return StateStore(database)


def check_state_round_trip(state: StateStore, key: str, value: Any) -> str:
    try:
        state.set(key, value)
    except InvalidJsonError as refusal:
        assert str(refusal), "a refusal must say why"
        assert state.get(key) is None, "a refused value must leave nothing behind"
        return "refused"
    entry = state.get(key)
    assert entry is not None and same_json(entry.value, json.loads(json.dumps(value)))
    state.delete(key)
    return "stored"


@pytest.mark.parametrize("value", FIXED_CASES)
def test_fixed_hostile_values_are_stored_identically_or_refused(state: StateStore, value: Any) -> None:
    check_state_round_trip(state, "hostile.fixed", value)


def test_the_refusals_are_the_expected_ones(state: StateStore) -> None:
    outcomes = {p.id: check_state_round_trip(state, "hostile.expect", p.values[0]) for p in FIXED_CASES}
    assert outcomes == {
        "100-level-nesting": "stored",
        "5MB-string": "stored",
        "huge-ints": "stored",
        "int-beyond-4300-digits": "refused",
        "nan": "refused",
        "infinity": "refused",
        "float-1e300": "refused",
        "negative-zero": "refused",
        "nul-in-key": "refused",
        "lone-surrogate": "refused",
        "non-string-key": "refused",
        "tuple": "stored",
        "set": "refused",
    }


@SETTINGS
@given(value=hostile_json)
def test_any_value_is_stored_identically_or_refused_with_nothing_written(state: StateStore, value: Any) -> None:
    check_state_round_trip(state, "hostile.any", value)


@SETTINGS
@given(value=hostile_json)
def test_tool_input_is_recorded_identically_or_refused_before_any_row(
    database: Database, migrated_database_url: str, value: Any
) -> None:
    tools = ToolCallLog(database)
    before = len(tamper.rows(migrated_database_url, "tool_calls"))
    try:
        start = tools.start("hostile", value)
    except InvalidJsonError:
        assert len(tamper.rows(migrated_database_url, "tool_calls")) == before
        return
    stored = [r for r in tamper.rows(migrated_database_url, "tool_calls") if r["id"] == start.id]
    assert len(stored) == 1 and same_json(stored[0]["input"], json.loads(json.dumps(value)))
    tools.record_completion(start, "succeeded")


@SETTINGS
@given(key=st.text(min_size=1, max_size=40))
def test_hostile_state_keys_are_data_or_refused(state: StateStore, key: str) -> None:
    try:
        state.set(key, "v")
    except InvalidJsonError:
        assert "\x00" in key or any(0xD800 <= ord(c) <= 0xDFFF for c in key)
        return
    entry = state.get(key)
    assert entry is not None and entry.key == key
    assert [e.key for e in state.list(key)][0] == key
    state.delete(key)


@SETTINGS
@given(name=st.text(max_size=70) | st.sampled_from(["select", "pg_class", "x;drop", "a", "tool_calls"]))
def test_runtime_ddl_names_create_exactly_that_table_or_nothing(database: Database, name: str) -> None:
    schema = RuntimeSchema(database)
    before = set(schema.tables())
    try:
        created = schema.create_table(name, {"v": "text"})
    except RuntimeDDLError:
        assert set(schema.tables()) == before
        return
    assert set(schema.tables()) - before <= {name} and name in schema.tables()
    assert created.name == name


def test_math_guard_matches_postgres_for_boundary_floats(state: StateStore) -> None:
    for value in (9.999999999999998e15, 1e-300, 5e-324, -1.5, 123456789.123456789):
        assert check_state_round_trip(state, "hostile.float", value) == "stored", value
    assert math.isfinite(9.999999999999998e15)
