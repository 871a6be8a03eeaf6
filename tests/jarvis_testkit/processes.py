"""Running the real `jarvis` command in a subprocess, as a user (or a supervisor sending signals) would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable


def jarvis_process(*args: str, database_url: str, **env: str) -> subprocess.Popen[str]:
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "DATABASE_URL": database_url,
        "REDIS_URL": "",
        "COLUMNS": "200",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-c", "from jarvis.cli.main import main; main()", *args],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(
    condition: Callable[[], bool],
    *,
    timeout: float = 30,
    what: str = "condition",
    process: subprocess.Popen[str] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"process exited ({process.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
