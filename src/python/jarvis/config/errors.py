"""The root of every error Jarvis raises for a person to act on, and the exit code each one means.

It lives in the bottom layer (config) so that db, cache, witness, agent and cli can all derive
from it without importing upwards. Each subclass names its exit code as a class attribute, so
the CLI turns any of them into one line and that code with a single `except JarvisError`, and a
new error cannot be forgotten in a table. Classes keep their historical builtin bases too
(`ValueError`, `RuntimeError`, `LookupError`), so code that catches those still does.
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar


class ExitCode(IntEnum):
    """What scripts can trust a `jarvis` command's exit status to mean."""

    OK = 0
    FAILED = 1
    """The operation failed: a conflict, tampering, a refused audit row, a failed step."""
    BAD_INPUT = 2
    """Bad input or configuration: the message names the value and the fix."""
    UNAVAILABLE = 3
    """PostgreSQL or Redis could not be reached (or the embedded server cannot run here)."""
    NOT_FOUND = 4
    INTERRUPTED = 130
    """Ctrl-C (128 + SIGINT). SIGTERM exits 143, 128 + its number (cli/main.py, `run`)."""


class JarvisError(Exception):
    """An error whose message says what went wrong and how to fix it; never a bug in Jarvis.

    `exit_code` is what the CLI exits with when this error ends a command. FAILED, the
    default, is also what an uncaught exception exits with, so an error that does not
    override it keeps the exit code it would have had without the CLI's handling.
    """

    exit_code: ClassVar[ExitCode] = ExitCode.FAILED
