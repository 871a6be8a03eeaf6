"""The embedded default's first start, done by several processes at once (#17).

With no DATABASE_URL and a fresh data directory, four `jarvis` processes
started together all start the server, create the database, migrate (`demo`)
and make the checkpoint signing key. Each must succeed, or give one line that
is not a race: a reader that comes before the migration says "run `jarvis db
upgrade`" (exit 2), a `state get` after it may find no such key (exit 4).
Never a traceback; the trail verifies afterwards.

JARVIS_FIRST_START_ROUNDS sets how many fresh data directories are raced
(default 3, about 8 s each; the fix was proven with 10 and more in a row).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import jarvis.cli.main  # noqa: F401  (not used here: the subprocesses run it, so Pants must ship it)
from jarvis_testkit.services import scratch_root, service_unavailable

ROUNDS = int(os.environ.get("JARVIS_FIRST_START_ROUNDS", "3"))
ROUND_DEADLINE = 240.0
"""Seconds the four processes of one round get in all (a first start is 5-20 s, a demo a few more)."""

COMMANDS: list[tuple[str, ...]] = [
    ("demo",),
    ("demo", "--agent", "demo-2"),  # two agents: one live process per agent name is by design
    ("audit", "show"),
    ("state", "get", "x"),
]
READERS = {("audit", "show"), ("state", "get", "x")}


@dataclass
class Finished:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return f"`jarvis {' '.join(self.args)}` exited {self.returncode}:\n{self.stderr}\n{self.stdout[-2000:]}"


def embedded_postgres_available() -> None:
    if importlib.util.find_spec("pgserver") is None and not (shutil.which("initdb") and shutil.which("pg_ctl")):
        service_unavailable("embedded PostgreSQL", "neither pgserver nor initdb/pg_ctl on PATH")


@pytest.fixture
def fresh_data_dir() -> Iterator[Path]:
    """A data directory nobody has used, under scratch_root(), not pytest's tmp_path.

    The server's Unix socket lives in it (a socket path is limited to ~107
    bytes), and as root the server runs as another user that must be able to
    traverse every parent (pytest's temporary directories are 0700).
    """
    embedded_postgres_available()
    root = Path(tempfile.mkdtemp(prefix="first-start-", dir=scratch_root()))
    try:
        yield root
    finally:
        stop_server(root / "postgres16")
        shutil.rmtree(root, ignore_errors=True)


def stop_server(pgdata: Path) -> None:
    """Fast-stop the postmaster our processes started, if it still runs (the PATH fallback leaves it up)."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, signal.SIGINT)  # SIGINT is PostgreSQL's fast shutdown
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def environment(data_dir: Path) -> dict[str, str]:
    """No DATABASE_URL, no Redis, nothing of ours from the caller's environment: the zero-config default."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("JARVIS_")}
    env.update(
        JARVIS_DATA_DIR=str(data_dir),
        REDIS_URL="",
        PYTHONPATH=os.pathsep.join(os.path.abspath(entry) for entry in sys.path),  # they run in data_dir
        COLUMNS="200",
    )
    return env


def run_together(data_dir: Path, commands: list[tuple[str, ...]], *, deadline: float) -> list[Finished]:
    """Start every command at once, then wait for all of them until `deadline` (time.monotonic())."""
    env = environment(data_dir)
    started = []
    for number, args in enumerate(commands):
        out = open(data_dir / f"{number}.out", "w+")  # files, not pipes: nobody has to drain them meanwhile
        err = open(data_dir / f"{number}.err", "w+")
        process = subprocess.Popen(
            [sys.executable, "-m", "jarvis.cli.main", *args],
            env=env,
            cwd=data_dir,  # no .env file of the repository is read
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
        started.append((args, process, out, err))
    finished = []
    try:
        for args, process, out, err in started:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"`jarvis {' '.join(args)}` still runs after the round's deadline (a deadlock?)")
            out.seek(0)
            err.seek(0)
            finished.append(Finished(args, process.returncode, out.read(), err.read()))
    finally:
        for _args, process, out, err in started:
            if process.poll() is None:
                process.kill()
                process.wait()
            out.close()
            err.close()
    return finished


def check(result: Finished) -> None:
    assert "Traceback" not in result.stderr, result.describe()
    if result.returncode == 0:
        return
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.args in READERS, result.describe()
    assert len(lines) == 1, result.describe()
    if result.returncode == 2:
        assert "jarvis db upgrade" in lines[0], result.describe()  # came before the migration
    else:
        assert result.args == ("state", "get", "x") and result.returncode == 4, result.describe()
        assert "no state under key 'x'" in lines[0], result.describe()  # came after it


@pytest.mark.parametrize("round_number", range(1, ROUNDS + 1))
def test_four_processes_share_one_first_start(fresh_data_dir: Path, round_number: int) -> None:
    began = time.monotonic()
    results = run_together(fresh_data_dir, COMMANDS, deadline=began + ROUND_DEADLINE)
    for result in results:
        check(result)
    assert [r.returncode for r in results[:2]] == [0, 0], "\n".join(r.describe() for r in results[:2])

    verify = run_together(fresh_data_dir, [("audit", "verify")], deadline=time.monotonic() + 120)[0]
    assert verify.returncode == 0 and verify.stdout.startswith("OK:"), verify.describe()
    assert "Traceback" not in verify.stderr, verify.describe()
    exits = ", ".join(f"{' '.join(r.args)}={r.returncode}" for r in results)
    print(f"round {round_number}: {time.monotonic() - began:.1f} s ({exits}); {verify.stdout.strip()}")
