"""Running the real `jarvis` command in a subprocess, as a user (or a supervisor sending signals) would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

WAIT_TIMEOUT = 60.0
"""Default deadline of `wait_for`: conditions hold within a second or two, but a loaded 2-core machine stalls."""

LONG_SLEEP = 10.0
"""Seconds from which a `time.sleep` in the subprocess is a tool at work: Jarvis itself never sleeps that long."""

# `jarvis` as its console script runs it, plus, with JARVIS_TEST_SLEEP_MARKER set, a marker file written the
# moment a long `time.sleep` begins (the `sleep` tool of a plan). A start row only says the call was recorded;
# the marker says the process is inside the tool, past the point where an interruption is recorded as its
# outcome, so a signal sent after it cannot land between the start row's commit and the tool itself.
ENTRY_POINT = f"""\
import os, time
marker = os.environ.pop("JARVIS_TEST_SLEEP_MARKER", "")
if marker:
    real_sleep = time.sleep

    def sleep(seconds):
        if seconds >= {LONG_SLEEP}:
            with open(marker, "a") as file:
                file.write(f"{{seconds}}\\n")
        real_sleep(seconds)

    time.sleep = sleep
from jarvis.cli.main import main
main()
"""


def jarvis_process(
    *args: str, database_url: str, sleep_marker: Path | None = None, **env: str
) -> subprocess.Popen[str]:
    """`jarvis ARGS` in a subprocess; with `sleep_marker`, that file appears once a tool's long sleep begins."""
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "DATABASE_URL": database_url,
        "REDIS_URL": "",
        "COLUMNS": "200",
        **env,
    }
    if sleep_marker is not None:
        environment["JARVIS_TEST_SLEEP_MARKER"] = str(sleep_marker)
    return subprocess.Popen(
        [sys.executable, "-c", ENTRY_POINT, *args],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(
    condition: Callable[[], object],
    *,
    timeout: float = WAIT_TIMEOUT,
    what: str = "condition",
    process: subprocess.Popen[str] | None = None,
) -> None:
    """Poll `condition` until it is true; fail naming `what` at the deadline, or as soon as `process` exits."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"process exited ({process.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
