"""A `jarvis` command killed with SIGKILL never leaves the embedded PostgreSQL running for good (issue 23, item 5).

pgserver lists the processes using its server in `.handle_pids.json` and the last one to exit
stops it. A process killed with SIGKILL never removes itself, so before the fix every later
command saw a "user" that would never leave and left the server running after it ended.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import jarvis.cli.main  # noqa: F401  (not used here: the subprocesses run it, so Pants must ship it)
from jarvis.db.embedded import HANDLE_PIDS, process_alive
from jarvis_testkit.services import scratch_root, service_unavailable

DEADLINE = 240.0
"""Seconds for a first start plus a demo on a loaded machine (a first start is 5-20 s)."""


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A fresh data directory under scratch_root() (traversable by the server's user when we are root)."""
    try:
        import pgserver  # noqa: F401
    except ImportError:
        service_unavailable("pgserver", "not installed (the crash bookkeeping is pgserver's)")
    root = Path(tempfile.mkdtemp(prefix="crash-", dir=scratch_root()))
    try:
        yield root
    finally:
        pid = postmaster(root)
        if pid is not None:
            os.kill(pid, signal.SIGINT)  # the server this test started: fast shutdown
        shutil.rmtree(root, ignore_errors=True)


def postmaster(data_dir: Path) -> int | None:
    """The running postmaster of the data directory's embedded server, or None."""
    try:
        pid = int((data_dir / "postgres16" / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if process_alive(pid) else None


def start_jarvis(data_dir: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("JARVIS_")}
    env.update(JARVIS_DATA_DIR=str(data_dir), REDIS_URL="", PYTHONPATH=os.pathsep.join(map(os.path.abspath, sys.path)))
    return subprocess.Popen(
        [sys.executable, "-m", "jarvis.cli.main", *args],
        env=env,
        cwd=data_dir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def users(data_dir: Path) -> list[int]:
    try:
        return [int(pid) for pid in json.loads((data_dir / "postgres16" / HANDLE_PIDS).read_text())]
    except (OSError, ValueError):
        return []


def test_after_a_killed_command_the_next_command_stops_the_server_when_it_ends(data_dir: Path) -> None:
    victim = start_jarvis(data_dir, "demo")
    deadline = time.monotonic() + DEADLINE
    while victim.pid not in users(data_dir) or postmaster(data_dir) is None:  # the server is up and it is a user
        assert victim.poll() is None, f"demo ended before it could be killed: {victim.communicate()[1]!r}"
        assert time.monotonic() < deadline, "demo never started the embedded server"
        time.sleep(0.05)
    victim.kill()
    victim.wait()
    assert postmaster(data_dir) is not None  # the crash left it running, listed as used by a dead process

    follower = start_jarvis(data_dir, "db", "current")
    _, stderr = follower.communicate(timeout=DEADLINE)
    assert follower.returncode == 0, stderr.decode()
    assert postmaster(data_dir) is None, f"the server still runs; its users: {users(data_dir)}"
    assert users(data_dir) == []
