"""Durable, private file writes shared by keys and the witness log.

A checkpoint only protects the chain if it survives a crash and nobody else
can read the key that made it, so every write here is fsynced and every
directory created here is private (0700).
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from jarvis.witness.errors import WitnessError


def fsync_directory(directory: Path) -> None:
    """Make a created, renamed or linked directory entry survive a crash."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_private_directory(directory: Path) -> None:
    """Create `directory` and any missing parents with mode 0700 (existing ones are left alone).

    os.makedirs(mode=...) no longer applies the mode to intermediate directories,
    so each missing level is created here, parent first.
    """
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass  # another process made it first
        except OSError as error:
            raise WitnessError(
                f"cannot create directory {path}: {error.strerror}; create it (mode 700) or choose another location"
            ) from None
        fsync_directory(path.parent)


def write_all(fd: int, data: bytes) -> None:
    """os.write may write less than asked (signals, full disks); keep going until all of it is written."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_new_file(path: Path, data: bytes, mode: int, *, overwrite: bool) -> None:
    """Write `path` atomically: a fsynced temp file in the same directory, then a rename.

    Readers see the old file or the complete new one, never a partial one. With
    overwrite=False the temp file is hard-linked into place, which fails if
    `path` exists, so two concurrent writers cannot silently replace each other.
    The mode is set with fchmod, so the umask cannot loosen it.
    """
    directory = path.parent
    temp = directory / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            os.fchmod(fd, mode)
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(temp, path)
        else:
            try:
                os.link(temp, path)
            except FileExistsError:
                raise WitnessError(
                    f"{path} already exists; keep it, or replace it deliberately (`jarvis keys init --force`)"
                ) from None
            finally:
                temp.unlink()
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_directory(directory)


def read_private_file(
    path: Path, *, what: str, setting: str, renew: str, error: type[Exception], limit: int = -1
) -> bytes:
    """Read a secret, refusing a missing file, a non-file, or one that group or others can access.

    The checks are made on the file actually opened (fstat), not the name, so a swap in
    between cannot slip past. `what` names it in messages ("signing key"), `setting` is the
    variable that points at it, `renew` how to make a new one; errors are raised as `error`.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise error(f"no {what} at {path}; run `jarvis keys init` to create it ({setting})") from None
    except OSError as failure:
        raise error(f"cannot read the {what} {path}: {failure.strerror}; check its owner and mode") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{what} {path} is not a regular file; point {setting} at the key file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise error(
                f"{what} {path} is accessible by group or others (mode {mode:04o}); run `chmod 600 {path}` "
                f"(and consider it exposed: {renew})"
            )
        with os.fdopen(fd, "rb", closefd=False) as file:
            return file.read(limit)
    finally:
        os.close(fd)
