"""Checkpoints: a signature over every field, strict parsing, UTC timestamps."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jarvis.witness import Checkpoint, SigningKey, WitnessError

KEY = SigningKey.generate()
TRAIL = "0190f2a4-3b7c-7d8e-9f01-23456789abcd"
SEALED = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def checkpoint(**overrides: Any) -> Checkpoint:
    fields: dict[str, Any] = {"trail": TRAIL, "seq": 41, "head_hash": bytes(range(32)), "sealed_at": SEALED}
    fields.update(overrides)
    return KEY.sign(**fields)


@given(
    trail=st.uuids(),
    seq=st.integers(min_value=0, max_value=2**63 - 1),
    head_hash=st.binary(min_size=32, max_size=32),
    sealed_at=st.datetimes(
        min_value=datetime(1970, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.builds(timezone, st.timedeltas(min_value=-timedelta(hours=23), max_value=timedelta(hours=23))),
    ),
)
def test_signed_checkpoint_verifies_and_survives_json(
    trail: uuid.UUID, seq: int, head_hash: bytes, sealed_at: datetime
) -> None:
    signed = KEY.sign(str(trail), seq, head_hash, sealed_at)
    assert signed.verify(KEY.public_key)
    parsed = Checkpoint.from_json(signed.to_json())
    assert parsed == signed and parsed.verify(KEY.public_key)
    assert (parsed.trail, parsed.seq, bytes.fromhex(parsed.head_hash)) == (str(trail), seq, head_hash)
    assert datetime.fromisoformat(parsed.sealed_at) == sealed_at


@pytest.mark.parametrize(
    "edit",
    [
        {"seq": 42},
        {"head_hash": "ff" * 32},
        {"sealed_at": "2025-03-01T12:00:01.123456+00:00"},
        {"signed_at": "2000-01-01T00:00:00.000000+00:00"},
        {"trail": "0190f2a4-3b7c-7d8e-9f01-23456789abce"},
    ],
    ids=lambda edit: next(iter(edit)),
)
def test_signature_of_edited_checkpoint_fails(edit: dict[str, Any]) -> None:
    assert not dataclasses.replace(checkpoint(), **edit).verify(KEY.public_key)


def test_relabelled_key_id_fails() -> None:
    other = SigningKey.generate()
    assert not dataclasses.replace(checkpoint(), key_id=other.key_id).verify(other.public_key)


def test_checkpoint_signed_by_another_key_fails() -> None:
    assert not SigningKey.generate().sign(TRAIL, 1, bytes(32), SEALED).verify(KEY.public_key)


def test_forged_signature_under_the_right_key_id_fails() -> None:
    forged = dataclasses.replace(SigningKey.generate().sign(TRAIL, 1, bytes(32), SEALED), key_id=KEY.key_id)
    assert not forged.verify(KEY.public_key)


def test_timestamps_are_recorded_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    signed = checkpoint(sealed_at=datetime(2025, 3, 1, 14, 0, tzinfo=plus_two))
    assert signed.sealed_at == "2025-03-01T12:00:00.000000+00:00"
    assert signed.signed_at.endswith("+00:00")


def test_naive_sealed_at_is_refused() -> None:
    with pytest.raises(WitnessError, match="no time zone"):
        checkpoint(sealed_at=datetime(2025, 3, 1, 12, 0))


def test_trail_is_spelled_as_a_lowercase_uuid() -> None:
    assert checkpoint(trail=TRAIL.upper()).trail == TRAIL


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"trail": "not-a-uuid"}, "not a UUID"),
        ({"seq": -1}, "seq must be an integer >= 0"),
        ({"head_hash": bytes(31)}, "head_hash must be 32 bytes"),
    ],
)
def test_bad_fields_are_refused_when_signing(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(WitnessError, match=message):
        checkpoint(**overrides)


def test_from_json_of_invalid_json_names_where() -> None:
    with pytest.raises(WitnessError, match="^log.jsonl line 7: not valid JSON"):
        Checkpoint.from_json("{not json", where="log.jsonl line 7")


def test_from_json_of_missing_field_names_it() -> None:
    data = json.loads(checkpoint().to_json())
    del data["signature"]
    with pytest.raises(WitnessError, match="line 3: missing field.*signature"):
        Checkpoint.from_json(json.dumps(data), where="line 3")


def test_from_json_of_unknown_field_names_it() -> None:
    data = {**json.loads(checkpoint().to_json()), "extra": 1}
    with pytest.raises(WitnessError, match="unknown field.*extra"):
        Checkpoint.from_json(json.dumps(data))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seq", "41"),
        ("seq", True),
        ("seq", 4.5),
        ("trail", 5),
        ("trail", TRAIL.upper()),
        ("head_hash", "AB" * 32),
        ("head_hash", "ab" * 31),
        ("sealed_at", "yesterday"),
        ("sealed_at", "2025-03-01T12:00:00"),
        ("signed_at", "2025-03-01T12:00:00+01:00"),
        ("key_id", "xyz"),
        ("signature", "not base64!"),
        ("signature", "AAAA"),
    ],
)
def test_from_json_of_ill_typed_field_names_it(field: str, value: Any) -> None:
    data = {**json.loads(checkpoint().to_json()), field: value}
    with pytest.raises(WitnessError, match=f"line 9: field {field} must be"):
        Checkpoint.from_json(json.dumps(data), where="line 9")


def test_from_json_of_non_object_is_refused() -> None:
    with pytest.raises(WitnessError, match="expected a JSON object"):
        Checkpoint.from_json("[1, 2]")


def test_to_json_is_one_line() -> None:
    assert "\n" not in checkpoint().to_json()
