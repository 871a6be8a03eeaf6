"""The core install (`pip install jarvis`, no extras) imports and runs; the optional parts name their extra.

Each test runs a fresh interpreter in which the extras' packages cannot be imported (a meta-path
finder refuses them, as if they had never been installed), so what passes here passes in a venv
with the core wheel alone.
"""

from __future__ import annotations

import os
import subprocess
import sys

EXTRAS_PACKAGES = ("redis", "hiredis", "mcp", "mcp_types", "anyio", "starlette", "uvicorn", "jinja2")

WITHOUT_EXTRAS = f"""
import sys
from importlib.abc import MetaPathFinder

class NotInstalled(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {EXTRAS_PACKAGES!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
"""

CORE_MODULES = (
    "jarvis.config",
    "jarvis.db",
    "jarvis.db.aio",
    "jarvis.db.audit",
    "jarvis.cache",
    "jarvis.agent",
    "jarvis.agent.runtime",
    "jarvis.agent.doctor",
    "jarvis.witness",
    "jarvis.cli.main",
)


def run_without_extras(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(os.path.abspath, sys.path)), "REDIS_URL": ""}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS + code, *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_the_core_imports_without_any_extra() -> None:
    imports = "".join(f"import {module}\n" for module in CORE_MODULES)
    result = run_without_extras(imports + "import redis\n")
    assert "No module named 'redis'" in result.stderr, result.stderr  # the blocker works
    result = run_without_extras(imports)
    assert result.returncode == 0, result.stderr


def test_the_cli_without_the_ui_extra_names_it() -> None:
    result = run_without_extras("from jarvis.cli.main import main\nsys.argv = ['jarvis', 'ui']\nmain()\n")
    assert result.returncode == 2, result.stderr
    assert "pip install 'jarvis[ui]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_cli_without_the_mcp_extra_names_it() -> None:
    code = "from jarvis.cli.main import main\nsys.argv = ['jarvis', 'mcp', 'proxy', '--', 'true']\nmain()\n"
    result = run_without_extras(code)
    assert result.returncode == 2, result.stderr
    assert "pip install 'jarvis[mcp]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_redis_link_without_the_redis_extra_names_it() -> None:
    code = (
        "from jarvis.cache import RedisLink\n"
        "from jarvis.config.extras import MissingExtraError\n"
        "try:\n"
        "    RedisLink('redis://127.0.0.1:1/0', namespace='n', auth_key=b'k' * 32)\n"
        "except MissingExtraError as error:\n"
        "    print(error)\n"
    )
    result = run_without_extras(code)
    assert result.returncode == 0, result.stderr
    assert "pip install 'jarvis[redis]'" in result.stdout


def test_the_asyncio_redis_twins_without_the_redis_extra_name_it() -> None:
    result = run_without_extras("import jarvis.cache.aio\n")
    assert result.returncode == 1
    assert "pip install 'jarvis[redis]'" in result.stderr
