"""Every ```python block of README.md and docs/*.md runs as written, so the documentation cannot drift.

A block is run as a script of its own in a fresh interpreter, as a reader would paste it into a
file, against this module's fresh database (DATABASE_URL; the blocks migrate it themselves, as a
new user must). Which blocks run, and the `<!-- not run -->` marker: tests/docs/examples.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from docs.examples import Example, documented_examples, examples

EXAMPLES = documented_examples()


def test_the_library_page_has_its_sync_and_asyncio_examples() -> None:
    """The extraction finds the library examples (docs/library.md, linked from the README's front page): a broken
    pattern would make every test vacuous."""
    library = [example.code for example in EXAMPLES if example.path == "library.md"]
    assert any("open_database(" in code for code in library)
    assert any("open_async_database(" in code and "asyncio.run(" in code for code in library)


def test_a_block_marked_not_run_is_skipped() -> None:
    text = "```python\nrun()\n```\n\n<!-- not run -->\n```python\nfragment(\n```\n"
    assert [example.code for example in examples(text, "x.md")] == ["run()\n"]


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_example_runs_as_written(example: Example, empty_database_url: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(example.code)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(map(os.path.abspath, sys.path)),  # the example runs elsewhere
        "DATABASE_URL": empty_database_url,
        "REDIS_URL": "",
        "JARVIS_DATA_DIR": str(tmp_path / "data"),
    }
    # Run where a reader would: outside the repository (no .env of ours is read).
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{example} failed:\n{result.stdout}\n{result.stderr}"
