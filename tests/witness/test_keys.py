"""Signing keys: private on disk, refused when exposed, named by a stable key id."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from jarvis.witness import WitnessError, generate_key, key_id, load_public_key, load_signing_key


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "checkpoint.key"


def test_key_file_is_private(key_path: Path) -> None:
    generate_key(key_path)
    assert mode(key_path) == 0o600


def test_public_key_is_written_next_to_it_world_readable(key_path: Path) -> None:
    public_path = generate_key(key_path)
    assert public_path == key_path.with_name("checkpoint.key.pub")
    assert mode(public_path) == 0o644
    assert b"BEGIN PUBLIC KEY" in public_path.read_bytes()


def test_private_key_is_unencrypted_pkcs8_pem(key_path: Path) -> None:
    generate_key(key_path)
    assert key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")


def test_missing_parent_directories_are_created_private(tmp_path: Path) -> None:
    generate_key(tmp_path / "a" / "b" / "checkpoint.key")
    assert mode(tmp_path / "a") == 0o700 and mode(tmp_path / "a" / "b") == 0o700


def test_key_is_written_without_leftover_temp_files(key_path: Path) -> None:
    generate_key(key_path)
    generate_key(key_path, overwrite=True)
    assert sorted(p.name for p in key_path.parent.iterdir()) == ["checkpoint.key", "checkpoint.key.pub"]


def test_existing_key_is_not_overwritten(key_path: Path) -> None:
    generate_key(key_path)
    before = key_path.read_bytes()
    with pytest.raises(WitnessError, match="already exists.*--force"):
        generate_key(key_path)
    assert key_path.read_bytes() == before


def test_overwrite_replaces_the_key_and_its_public_key(key_path: Path) -> None:
    first = load_public_key(generate_key(key_path))
    second = load_public_key(generate_key(key_path, overwrite=True))
    assert first != second
    assert load_signing_key(key_path).public_key == second


def test_loaded_signing_key_matches_its_public_key_file(key_path: Path) -> None:
    public_path = generate_key(key_path)
    assert load_signing_key(key_path).public_key == load_public_key(public_path)


@pytest.mark.parametrize("loose_mode", [0o640, 0o604, 0o660])
def test_group_readable_key_is_refused(key_path: Path, loose_mode: int) -> None:
    generate_key(key_path)
    key_path.chmod(loose_mode)
    with pytest.raises(WitnessError, match=f"chmod 600 {key_path}"):
        load_signing_key(key_path)


def test_missing_key_says_run_keys_init(key_path: Path) -> None:
    with pytest.raises(WitnessError, match=f"{key_path}.*jarvis keys init"):
        load_signing_key(key_path)


def test_missing_public_key_says_run_keys_init(key_path: Path) -> None:
    with pytest.raises(WitnessError, match="jarvis keys init"):
        load_public_key(key_path.with_name("checkpoint.key.pub"))


def test_non_ed25519_key_is_refused(key_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    key_path.parent.mkdir()
    key_path.write_bytes(pem)
    key_path.chmod(0o600)
    with pytest.raises(WitnessError, match="not Ed25519"):
        load_signing_key(key_path)


def test_non_ed25519_public_key_is_refused(tmp_path: Path) -> None:
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    path = tmp_path / "other.pub"
    path.write_bytes(pem)
    with pytest.raises(WitnessError, match="not Ed25519"):
        load_public_key(path)


def test_garbage_key_file_is_refused_naming_it(key_path: Path) -> None:
    key_path.parent.mkdir()
    key_path.write_bytes(b"not a key\n")
    key_path.chmod(0o600)
    with pytest.raises(WitnessError, match=f"{key_path} is not a PEM private key"):
        load_signing_key(key_path)


def test_key_id_is_sha256_prefix_of_the_raw_public_key(key_path: Path) -> None:
    public_key = load_public_key(generate_key(key_path))
    raw = public_key.raw
    assert len(raw) == 32
    assert key_id(public_key) == hashlib.sha256(raw).hexdigest()[:16] == public_key.key_id
