"""The one error the witness package raises.

Every message names the file involved and what to do about it, so the CLI can
print it as a single line instead of a traceback.
"""

from __future__ import annotations

from jarvis.config import ExitCode, JarvisError


class WitnessError(JarvisError):
    """A key or witness-log problem a person can fix (the message says how)."""

    exit_code = ExitCode.BAD_INPUT
