"""`jarvis mcp proxy -- python -m mcp_server_time` from the PEX: the upstream runs in the user's environment.

A PEX in venv mode (the packaged `jarvis.pex`, and the image's `jarvis`) starts Jarvis with VIRTUAL_ENV set to its
own venv (marked by a PEX-INFO file) and that venv's bin/ first on PATH, so a bare `python` in an MCP client's
configuration used to be the PEX's interpreter: `No module named mcp_server_time`. Building the PEX here would be too
slow, so the test starts the proxy the way the PEX leaves it: a fake PEX venv whose `python` fails, first on PATH.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import pytest

from jarvis.mcp.proxy import upstream_environment
from jarvis_testkit.mcp_parties import proxy_session

pytestmark = pytest.mark.anyio
DEADLINE = 120.0


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def pex_venv(root: Path) -> Path:
    """A venv as a PEX leaves it: PEX-INFO at its root, and a `python` that has none of the user's packages."""
    venv = root / "pex-venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "PEX-INFO").write_text("{}")
    executable(
        venv / "bin" / "python", "#!/bin/sh\necho 'No module named mcp_server_time (the PEX python)' >&2\nexit 1\n"
    )
    return venv


def user_bin(root: Path) -> Path:
    """The user's own PATH entry, whose `python` has mcp-server-time installed."""
    directory = root / "user-bin"
    directory.mkdir()
    executable(directory / "python", f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    return directory


async def test_a_bare_python_upstream_is_the_user_s_not_the_pex_s(migrated_database_url: str, tmp_path: Path) -> None:
    venv = pex_venv(tmp_path)
    path = os.pathsep.join([str(venv / "bin"), str(user_bin(tmp_path)), os.environ.get("PATH", "")])
    pex = {"PATH": path, "VIRTUAL_ENV": str(venv), "PEX": str(tmp_path / "jarvis.pex"), "PEX_ROOT": str(tmp_path)}
    upstream = ["python", "-m", "mcp_server_time", "--local-timezone", "UTC"]
    with anyio.fail_after(DEADLINE):
        async with proxy_session(migrated_database_url, upstream, **pex) as session:
            result = await session.call_tool("get_current_time", {"timezone": "UTC"})
    assert not result.is_error, result


def test_the_pex_s_venv_and_variables_are_not_passed_to_the_upstream(tmp_path: Path) -> None:
    venv = pex_venv(tmp_path)
    mine = str(user_bin(tmp_path))
    environ = {
        "PATH": os.pathsep.join([str(venv / "bin"), mine, "/usr/bin"]),
        "VIRTUAL_ENV": str(venv),
        "PEX": "/x/jarvis.pex",
        "PEX_ROOT": "/x",
        "__PEX_EXTRA_SYS_PATH__": "/x",
        "HOME": "/home/someone",
        "MCP_TOKEN": "for the upstream",
    }
    assert upstream_environment(environ) == {
        "PATH": os.pathsep.join([mine, "/usr/bin"]),
        "HOME": "/home/someone",
        "MCP_TOKEN": "for the upstream",
    }


def test_the_user_s_own_venv_is_passed_on_unchanged(tmp_path: Path) -> None:
    """The wheel's console script in the user's venv: that venv is the user's environment, not to be touched."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    environ = {"PATH": os.pathsep.join([str(venv / "bin"), "/usr/bin"]), "VIRTUAL_ENV": str(venv)}
    assert upstream_environment(environ) == environ
