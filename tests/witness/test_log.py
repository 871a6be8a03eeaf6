"""The witness log: one durable line per checkpoint, safe across processes, strict about corruption."""

from __future__ import annotations

import logging
import multiprocessing
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jarvis.witness import Checkpoint, SigningKey, WitnessError, WitnessLog

KEY = SigningKey.generate()
TRAIL = "0190f2a4-3b7c-7d8e-9f01-23456789abcd"
OTHER_TRAIL = "0190f2a4-3b7c-7d8e-9f01-000000000000"
SEALED = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def checkpoint(seq: int, trail: str = TRAIL) -> Checkpoint:
    return KEY.sign(trail, seq, seq.to_bytes(32, "big"), SEALED)


@pytest.fixture
def witness(tmp_path: Path) -> WitnessLog:
    return WitnessLog(tmp_path / "witness" / "trail.jsonl")


def _append_many(path: str, worker: int, count: int, start: multiprocessing.synchronize.Event) -> None:
    log = WitnessLog(path)
    start.wait()
    for i in range(count):
        log.append(checkpoint(worker * 1000 + i))


def test_missing_log_is_empty(witness: WitnessLog) -> None:
    assert witness.entries() == [] and witness.newest(TRAIL) is None


def test_appended_checkpoints_read_back_in_order(witness: WitnessLog) -> None:
    appended = [checkpoint(seq) for seq in range(3)]
    for item in appended:
        witness.append(item)
    assert witness.entries() == appended


def test_each_checkpoint_is_one_newline_terminated_line(witness: WitnessLog) -> None:
    witness.append(checkpoint(1))
    witness.append(checkpoint(2))
    lines = witness.path.read_bytes().split(b"\n")
    assert lines[2:] == [b""] and [Checkpoint.from_json(line.decode()) for line in lines[:2]] == witness.entries()


def test_log_directory_is_created_private(tmp_path: Path) -> None:
    WitnessLog(tmp_path / "a" / "b" / "trail.jsonl").append(checkpoint(1))
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700


def test_append_is_one_line_per_checkpoint_across_processes(witness: WitnessLog) -> None:
    context = multiprocessing.get_context("fork")
    start = context.Event()
    workers = [
        context.Process(target=_append_many, args=(str(witness.path), worker, 50, start)) for worker in range(1, 5)
    ]
    for process in workers:
        process.start()
    start.set()
    for process in workers:
        process.join(timeout=120)
        assert process.exitcode == 0
    seqs = [entry.seq for entry in witness.entries()]
    assert len(seqs) == 200
    assert sorted(seqs) == sorted(worker * 1000 + i for worker in range(1, 5) for i in range(50))


def test_torn_final_line_is_ignored(witness: WitnessLog, caplog: pytest.LogCaptureFixture) -> None:
    witness.append(checkpoint(1))
    with witness.path.open("ab") as file:
        file.write(checkpoint(2).to_json().encode()[:40])
    with caplog.at_level(logging.WARNING, logger="jarvis.witness"):
        assert witness.entries() == [checkpoint_at(witness, 0)]
    assert "incomplete last line 2" in caplog.text


def checkpoint_at(witness: WitnessLog, index: int) -> Checkpoint:
    return Checkpoint.from_json(witness.path.read_bytes().split(b"\n")[index].decode())


def test_append_after_a_torn_line_cuts_it_off(witness: WitnessLog) -> None:
    witness.append(checkpoint(1))
    with witness.path.open("ab") as file:
        file.write(b'{"trail":"torn')
    witness.append(checkpoint(2))
    assert [entry.seq for entry in witness.entries()] == [1, 2]


def test_torn_only_line_is_cut_off_by_the_next_append(witness: WitnessLog) -> None:
    witness.path.parent.mkdir()
    witness.path.write_bytes(b'{"tr')
    witness.append(checkpoint(1))
    assert [entry.seq for entry in witness.entries()] == [1]


def test_malformed_middle_line_names_the_line(witness: WitnessLog) -> None:
    witness.append(checkpoint(1))
    with witness.path.open("ab") as file:
        file.write(b"garbage\n")
    witness.append(checkpoint(2))
    with pytest.raises(WitnessError, match=f"witness log {witness.path} line 2: not valid JSON"):
        witness.entries()


def test_edited_line_with_a_bad_field_names_the_line(witness: WitnessLog) -> None:
    witness.append(checkpoint(1))
    text = witness.path.read_text().replace('"seq":1', '"seq":"1"')
    witness.path.write_text(text)
    with pytest.raises(WitnessError, match="line 1: field seq must be an integer"):
        witness.entries()


def test_newest_is_the_highest_seq_of_that_trail(witness: WitnessLog) -> None:
    for seq, trail in [(5, TRAIL), (9, TRAIL), (7, TRAIL), (50, OTHER_TRAIL)]:
        witness.append(checkpoint(seq, trail))
    newest = witness.newest(TRAIL)
    assert newest is not None and newest.seq == 9


def test_newest_of_an_unknown_trail_is_none(witness: WitnessLog) -> None:
    witness.append(checkpoint(1))
    assert witness.newest(OTHER_TRAIL) is None
