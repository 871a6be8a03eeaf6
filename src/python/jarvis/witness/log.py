"""The witness log: an append-only JSONL file of signed checkpoints, outside PostgreSQL.

One line per checkpoint. An append returns only once the line is on disk
(fsync), so an acknowledged checkpoint survives a crash. Appenders hold an
exclusive flock while writing, so lines from several processes never
interleave; readers hold a shared one, so they never see half a line.

A crash mid-write can still leave a torn last line (no newline). Readers skip
it with a warning; the next appender cuts it off before writing, so it never
ends up glued to, or in front of, a good line.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from jarvis.witness.checkpoint import Checkpoint, canonical_trail
from jarvis.witness.errors import WitnessError
from jarvis.witness.files import ensure_private_directory, fsync_directory, write_all

log = logging.getLogger(__name__)

LOG_MODE = 0o644  # checkpoints are public statements; the directory around them is private
_TAIL_CHUNK = 64 * 1024


TAIL_BYTES = 64 * 1024
"""Far more than one checkpoint line (about 400 bytes)."""


class WitnessLog:
    """The checkpoints in one JSONL file (created, with private parent directories, on first append)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def append(self, checkpoint: Checkpoint) -> None:
        """Add one checkpoint as one line; returns once it is durable."""
        line = checkpoint.to_json().encode("ascii") + b"\n"
        try:
            ensure_private_directory(self.path.parent)
            created, fd = self._open_for_append()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._cut_torn_tail(fd)
                write_all(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)  # closing releases the lock
            if created:
                fsync_directory(self.path.parent)
        except OSError as error:
            raise WitnessError(
                f"cannot append to the witness log {self.path}: {error.strerror}; "
                "make it writable or choose another path (JARVIS_WITNESS_LOG)"
            ) from None

    def entries(self) -> list[Checkpoint]:
        """Every checkpoint in file order ([] if the file does not exist yet)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return []
        except OSError as error:
            raise WitnessError(f"cannot read the witness log {self.path}: {error.strerror}; check its mode") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            with os.fdopen(fd, "rb", closefd=False) as file:
                data = file.read()
        finally:
            os.close(fd)
        lines = data.split(b"\n")
        torn = lines.pop()  # b"" when the file ends with a newline, as it should
        if torn:
            log.warning(
                "witness log %s: ignoring an incomplete last line %d (a crash cut it off); "
                "the next checkpoint appended removes it",
                self.path,
                len(lines) + 1,
            )
        return [self._parse(raw, number) for number, raw in enumerate(lines, start=1)]

    def last(self) -> Checkpoint | None:
        """The last complete checkpoint, reading only the file's tail (a seal must not read the whole log)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise WitnessError(f"cannot read the witness log {self.path}: {error.strerror}; check its mode") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            size = os.fstat(fd).st_size
            with os.fdopen(fd, "rb", closefd=False) as file:
                file.seek(max(0, size - TAIL_BYTES))
                tail = file.read()
        finally:
            os.close(fd)
        complete = tail.split(b"\n")[:-1]  # what follows the last newline is torn (or empty)
        if size > TAIL_BYTES:
            complete = complete[1:]  # the window began mid-line
        if not complete:
            return None
        return Checkpoint.from_json(complete[-1].decode("utf-8"), where=f"{self.path} (last line)")

    def newest(self, trail: str) -> Checkpoint | None:
        """The checkpoint of `trail` with the highest seq (the last appended of equal ones), or None.

        The highest seq is the furthest the chain is known to have reached, which
        is what a truncated or rewritten chain has to be compared against. The
        log holds no keys: verify the result's signature before trusting it.
        """
        wanted = canonical_trail(trail)
        best: Checkpoint | None = None
        for checkpoint in self.entries():
            if checkpoint.trail == wanted and (best is None or checkpoint.seq >= best.seq):
                best = checkpoint
        return best

    def _open_for_append(self) -> tuple[bool, int]:
        """(created, fd): O_EXCL first so we know whether the directory entry is new and needs an fsync."""
        flags = os.O_RDWR | os.O_APPEND
        try:
            fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, LOG_MODE)
        except FileExistsError:
            return False, os.open(self.path, flags)
        os.fchmod(fd, LOG_MODE)
        return True, fd

    def _cut_torn_tail(self, fd: int) -> None:
        """Under the exclusive lock, a last line without a newline is a crashed append: truncate it away.

        That append never returned, so nobody was told the checkpoint was kept.
        """
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        keep, end = 0, size
        while end > 0:
            start = max(0, end - _TAIL_CHUNK)
            newline = os.pread(fd, end - start, start).rfind(b"\n")
            if newline != -1:
                keep = start + newline + 1
                break
            end = start
        log.warning(
            "witness log %s: removing %d bytes of an incomplete last line (a crash cut it off)", self.path, size - keep
        )
        os.ftruncate(fd, keep)

    def _parse(self, raw: bytes, number: int) -> Checkpoint:
        where = f"witness log {self.path} line {number}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WitnessError(
                f"{where}: not UTF-8 text; the file was edited or corrupted: restore it from a copy or move it aside"
            ) from None
        return Checkpoint.from_json(text, where=where)
