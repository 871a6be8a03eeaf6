"""Hostile input: every value is either stored and read back identically, or refused with nothing written.

Values are also held to JARVIS_MAX_VALUE_BYTES (default 1 MiB of compact JSON), counted while they are
walked, so a value that only looks small (shared sub-values: an expanded YAML alias bomb) is refused after
about as much work as the cap. The command line's side of hostile input is in test_hostile_cli.py.
"""

from __future__ import annotations

import json
import math
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jarvis.config import load_settings
from jarvis.db import (
    Database,
    InvalidJsonError,
    MemoryStore,
    RuntimeDDLError,
    RuntimeSchema,
    StateStore,
    ensure_jsonb,
    open_database,
)
from jarvis.db.audit import PlanningLog, ToolCallLog
from jarvis.db.jsonb import DEFAULT_MAX_VALUE_BYTES, ValueTooLargeError, max_value_bytes, set_max_value_bytes
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


def shared_bomb(levels: int, width: int = 9) -> Any:
    """What a YAML alias bomb expands to: each level holds `width` references to the one below.

    A few hundred bytes of objects, width**levels strings of JSON (9**10 * 6 bytes ~ 21 GB here).
    """
    value: Any = ["lol"] * width
    for _ in range(levels - 1):
        value = [value] * width
    return value


def compact_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


MIB = DEFAULT_MAX_VALUE_BYTES

FIXED_CASES = [
    pytest.param(nested(100), id="100-level-nesting"),
    pytest.param(nested(500), id="500-level-nesting"),
    pytest.param(nested(501), id="501-level-nesting"),
    pytest.param("x" * (MIB - 2), id="string-of-exactly-1MiB"),
    pytest.param("x" * (MIB - 1), id="string-1-byte-over-1MiB"),
    pytest.param("é" * (MIB // 2), id="1MiB-characters-2MiB-of-UTF-8"),
    pytest.param("x" * 5_000_000, id="5MB-string"),
    pytest.param(shared_bomb(10), id="shared-reference-bomb-9^10"),
    pytest.param([None] * 2_000_000, id="2M-element-list"),
    pytest.param({str(i): i for i in range(300_000)}, id="300k-key-object"),
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


@pytest.fixture(autouse=True)
def default_cap() -> Iterator[None]:
    """Each test starts, and leaves the process, with the default cap (opening a database sets it)."""
    set_max_value_bytes(DEFAULT_MAX_VALUE_BYTES)
    yield
    set_max_value_bytes(DEFAULT_MAX_VALUE_BYTES)


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
        "500-level-nesting": "stored",
        "501-level-nesting": "refused",
        "string-of-exactly-1MiB": "stored",
        "string-1-byte-over-1MiB": "refused",
        "1MiB-characters-2MiB-of-UTF-8": "refused",
        "5MB-string": "refused",
        "shared-reference-bomb-9^10": "refused",
        "2M-element-list": "refused",
        "300k-key-object": "refused",
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


@pytest.fixture
def capped(migrated_database_url: str) -> Iterator[Database]:
    """The module's database opened with JARVIS_MAX_VALUE_BYTES=4096: the cap of the whole process from then on."""
    db = open_database(load_settings(database_url=migrated_database_url, max_value_bytes=4096))
    assert max_value_bytes() == 4096
    yield db
    db.shutdown()


def rows_of(url: str) -> dict[str, int]:
    tables = ("agent_state", "memory_facts", "tool_calls", "planning_cycles", "decision_log")
    with psycopg.connect(url) as conn:
        return {table: conn.execute(f"SELECT count(*) FROM public.{table}").fetchall()[0][0] for table in tables}


def test_the_cap_is_exact_and_every_kind_of_stored_value_is_held_to_it(
    capped: Database, migrated_database_url: str
) -> None:
    """JARVIS_MAX_VALUE_BYTES is the compact JSON size: a value of exactly the cap is stored, one byte more is not."""
    state = StateStore(capped)
    fits = {"text": "x" * (4096 - len('{"text":""}'))}
    assert compact_size(fits) == 4096
    assert state.set("hostile.cap", fits).value == fits
    state.delete("hostile.cap")
    over = {"text": "x" * (4097 - len('{"text":""}'))}
    before = rows_of(migrated_database_url)
    planning = PlanningLog(capped, agent="hostile-cap")
    refusals: dict[str, Callable[[], object]] = {
        "state": lambda: state.set("hostile.cap", over),
        "memory": lambda: MemoryStore(capped).add("hostile", over),
        "tool input": lambda: ToolCallLog(capped).start("hostile", over),
        "goals": lambda: planning.open_cycle([over]),
        "decision reasoning": lambda: planning.record_decision(uuid.uuid4(), "d", over),
        "decision text": lambda: planning.record_decision(uuid.uuid4(), "x" * 4097, {}),
    }
    for _what, write in refusals.items():
        with pytest.raises(ValueTooLargeError, match="JARVIS_MAX_VALUE_BYTES"):
            write()
    assert rows_of(migrated_database_url) == before, "a refused value must leave nothing behind"
    print(f"RELIABILITY value-cap cap=4096 exact_fit=stored one_byte_over=refused kinds={len(refusals)} written=0")


def test_a_tool_output_over_the_cap_is_a_failed_call_not_a_stored_value(
    capped: Database, migrated_database_url: str
) -> None:
    tools = ToolCallLog(capped)
    with pytest.raises(ValueTooLargeError):
        with tools.record("hostile-output", {}) as call:
            call.succeed({"rows": ["x" * 100] * 100})
    rows = [r for r in tamper.rows(migrated_database_url, "tool_calls") if r["tool_name"] == "hostile-output"]
    outcome = next(r for r in rows if r["parent_id"] is not None)
    assert outcome["status"] == "failed" and outcome["output"] is None
    assert "ValueTooLargeError" in outcome["error"] and "JARVIS_MAX_VALUE_BYTES" in outcome["error"]


def test_an_expanded_alias_bomb_is_refused_in_bounded_time_and_memory() -> None:
    """9**10 shared references (~21 GB as JSON): refused after walking about 1 MiB of it."""
    bomb = shared_bomb(10)
    started = time.perf_counter()
    with pytest.raises(ValueTooLargeError):
        ensure_jsonb(bomb, what="bomb")
    seconds = time.perf_counter() - started
    tracemalloc.start()
    try:
        with pytest.raises(ValueTooLargeError):
            ensure_jsonb(bomb, what="bomb")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seconds < 10, f"refusing the bomb took {seconds:.1f} s"
    assert peak < 10 * 1024 * 1024, f"refusing the bomb allocated {peak / 2**20:.1f} MiB at its peak"
    print(f"RELIABILITY alias-bomb-value expanded_bytes~{6 * 9**10} refused_s={seconds:.2f} peak_kib={peak / 1024:.0f}")


storable_text = st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))
storable_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(min_value=-1e15, max_value=1e15, allow_nan=False).filter(lambda f: math.copysign(1, f) > 0 or f != 0)
    | storable_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(storable_text, inner, max_size=4),
    max_leaves=12,
)


@SETTINGS
@given(value=storable_json)
def test_the_size_is_counted_exactly_for_any_json(value: Any) -> None:
    """The running count is len(compact JSON in UTF-8), escapes included: the cap admits exactly that size."""
    size = compact_size(value)
    ensure_jsonb(value, max_bytes=size)
    with pytest.raises(ValueTooLargeError):
        ensure_jsonb(value, max_bytes=size - 1)
