"""Where tests find the service binaries they start: fixed system directories, never the caller's PATH.

Pants keys every test result on the environment it passes in. Passing the
shell's PATH made a cached result depend on whose shell ran it, so pants.toml
passes neither PATH nor HOME and pins the PATH its processes see; the fixtures
look in the directories where the system packages install these binaries
(`.ci/run` installs redis-server and pgbouncer with apt: /usr/bin, /usr/sbin).
"""

from __future__ import annotations

import glob
import os
import shutil

SYSTEM_BIN_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
"""Where apt, Homebrew-less installs and `make install` put programs (pants.toml pins the same PATH)."""


def search_path() -> str:
    """The fixed directories, then each Debian PostgreSQL version's bin directory, newest first."""
    postgres = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
    return os.pathsep.join([*SYSTEM_BIN_DIRS, *postgres])


def find_binary(name: str) -> str | None:
    """The absolute path of executable `name` in `search_path()`, or None when none is installed there."""
    return shutil.which(name, path=search_path())


def _version(bin_dir: str) -> tuple[int, ...]:
    version = bin_dir.split("/")[-2]
    return tuple(int(part) for part in version.split(".") if part.isdigit())
