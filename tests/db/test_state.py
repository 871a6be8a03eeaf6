"""agent_state: JSON values by key, compare-and-set, and refusal of values JSONB cannot hold."""

from __future__ import annotations

import math

import pytest

from jarvis.config import ExitCode
from jarvis.db import Database, InvalidJsonError, InvalidKeyError, StateConflictError, StateStore


@pytest.fixture
def state(database: Database) -> StateStore:
    return StateStore(database)


def test_set_then_get_returns_the_value_at_version_one(state: StateStore) -> None:
    entry = state.set("wallet.balance", {"usd": 12.5, "tokens": [1, 2]})
    assert entry.version == 1
    got = state.get("wallet.balance")
    assert got is not None and got.value == {"usd": 12.5, "tokens": [1, 2]} and got.version == 1


def test_get_of_a_missing_key_is_none(state: StateStore) -> None:
    assert state.get("never.set") is None


def test_each_write_bumps_the_version(state: StateStore) -> None:
    state.set("counter", 1)
    assert state.set("counter", 2).version == 2
    assert state.set("counter", 3).version == 3


def test_compare_and_set_with_the_current_version_succeeds(state: StateStore) -> None:
    first = state.set("cas.ok", "a")
    assert state.set("cas.ok", "b", expected_version=first.version).value == "b"


def test_compare_and_set_with_a_stale_version_raises_a_conflict(state: StateStore) -> None:
    first = state.set("cas.stale", "a")
    state.set("cas.stale", "b")
    with pytest.raises(StateConflictError, match="expected version 1 but found version 2") as info:
        state.set("cas.stale", "c", expected_version=first.version)
    assert info.value.actual == 2
    current = state.get("cas.stale")
    assert current is not None and current.value == "b"


def test_expected_version_zero_means_create_only(state: StateStore) -> None:
    assert state.set("cas.new", 1, expected_version=0).version == 1
    with pytest.raises(StateConflictError):
        state.set("cas.new", 2, expected_version=0)


def test_delete_removes_the_key(state: StateStore) -> None:
    state.set("doomed", True)
    assert state.delete("doomed") is True
    assert state.get("doomed") is None
    assert state.delete("doomed") is False


def test_delete_with_a_stale_version_raises_a_conflict(state: StateStore) -> None:
    state.set("guarded", 1)
    state.set("guarded", 2)
    with pytest.raises(StateConflictError):
        state.delete("guarded", expected_version=1)
    assert state.get("guarded") is not None


def test_list_by_prefix_returns_only_matching_keys_in_order(state: StateStore) -> None:
    for key in ("plan.b", "plan.a", "planet", "other"):
        state.set(key, key)
    assert [e.key for e in state.list("plan.")] == ["plan.a", "plan.b"]


def test_prefix_with_like_wildcards_is_taken_literally(state: StateStore) -> None:
    state.set("pct%x", 1)
    state.set("pctAx", 2)
    assert [e.key for e in state.list("pct%")] == ["pct%x"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (math.nan, "not a JSON number"),
        ({"nested": [math.inf]}, r"\$.nested\[0\]"),
        ({1: "x"}, "keys must be strings"),
        ("a\x00b", "NUL"),
        ({"k\x00": 1}, "NUL"),
        ("\ud800", "lone surrogate"),
        ({1, 2}, "set is not JSON"),
    ],
)
def test_values_jsonb_cannot_hold_are_refused_and_nothing_is_written(
    state: StateStore, value: object, message: str
) -> None:
    with pytest.raises(InvalidJsonError, match=message):
        state.set("refused", value)
    assert state.get("refused") is None


def test_key_with_nul_is_refused(state: StateStore) -> None:
    with pytest.raises(InvalidJsonError, match="NUL"):
        state.set("bad\x00key", 1)


def test_quotes_and_semicolons_in_keys_are_just_data(state: StateStore) -> None:
    key = "x'; DROP TABLE agent_state; --"
    state.set(key, "still here")
    got = state.get(key)
    assert got is not None and got.value == "still here"


def test_a_too_long_or_empty_key_is_an_invalid_key_not_invalid_json(state: StateStore) -> None:
    # Issue #13 item 1: check_key called a key's length a JSON problem (InvalidJsonError).
    with pytest.raises(InvalidKeyError, match="at most 512") as too_long:
        state.set("k" * 513, 1)
    with pytest.raises(InvalidKeyError, match="non-empty") as empty:
        state.get("")
    for refused in (too_long.value, empty.value):
        assert not isinstance(refused, InvalidJsonError)
        assert isinstance(refused, ValueError) and refused.exit_code == ExitCode.BAD_INPUT
