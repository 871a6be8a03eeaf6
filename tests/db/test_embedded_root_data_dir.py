"""Root's data directory is per user, and its embedded server never opens up root's home (issue 23, item 6).

Before, root's default data directory was the shared /var/lib/jarvis, so two users or two checkouts
on one machine shared (and migrated) one embedded database without knowing it. It is now
~/.local/share/jarvis for everyone; as root the embedded PostgreSQL (run as an unprivileged user)
keeps its cluster under /var/lib/jarvis/servers/<hash of the data directory> instead of making
root's home traversable.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import jarvis.cli.main  # noqa: F401  (not used here: the subprocess runs it, so Pants must ship it)
from jarvis.config.settings import default_data_dir
from jarvis.db.embedded import SERVERS_ROOT, process_alive
from jarvis_testkit.services import scratch_root


def test_the_default_data_dir_is_per_user_even_for_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert default_data_dir() == tmp_path / ".local" / "share" / "jarvis"


@pytest.fixture
def private_home() -> Iterator[Path]:
    """A home directory as root's is: closed to every other user (0700)."""
    if os.geteuid() != 0:
        pytest.skip("only root runs the embedded PostgreSQL as another user")
    home = Path(tempfile.mkdtemp(prefix="root-home-", dir=scratch_root()))  # mkdtemp: mode 0700
    pgdata = home / ".local" / "share" / "jarvis" / "postgres16"
    try:
        yield home
    finally:
        try:
            pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
            if process_alive(pid):
                os.kill(pid, signal.SIGINT)  # the server this test started: fast shutdown
        except (OSError, ValueError, IndexError):
            pass
        if pgdata.is_symlink():
            shutil.rmtree(pgdata.resolve().parent, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


def test_as_root_the_embedded_server_lives_outside_a_private_home(private_home: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "XDG_DATA_HOME") and not k.startswith("JARVIS_")
    }
    env.update(HOME=str(private_home), REDIS_URL="", PYTHONPATH=os.pathsep.join(map(os.path.abspath, sys.path)))
    result = subprocess.run(
        [sys.executable, "-m", "jarvis.cli.main", "db", "upgrade"],
        env=env,
        cwd=private_home,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    data_dir = private_home / ".local" / "share" / "jarvis"
    assert (data_dir / "keys").is_dir() or (data_dir / ".postgres16.lock").exists()  # Jarvis' own data stays here
    assert (private_home.stat().st_mode & 0o777) == 0o700  # root's home was not opened up
    cluster = (data_dir / "postgres16").resolve()
    assert cluster.parent.parent == SERVERS_ROOT and (cluster / "PG_VERSION").is_file()
