"""The `benchmarks` resolve builds Jarvis' own sources too, so it must ask for what the product asks for."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "3rdparty" / "python"


def _requirements(name: str) -> dict[str, str]:
    lines = (REQUIREMENTS / name).read_text().splitlines()
    found = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            project = re.split(r"[\[<>=!~ ;]", line, maxsplit=1)[0].lower()
            found[project] = line
    return found


def _product_runtime() -> dict[str, str]:
    """The product's requirements above the "Product resolve only" and "Tests and tools" lines: what the
    Jarvis sources built in both resolves import at runtime (jarvis/otel is built in the product resolve only)."""
    text = (REQUIREMENTS / "requirements.txt").read_text()
    runtime_part = text.split("# Tests and tools", 1)[0].split("# Product resolve only", 1)[0]
    return {project: line for project, line in _requirements("requirements.txt").items() if line in runtime_part}


def test_benchmarks_resolve_asks_for_every_runtime_requirement_with_the_same_bounds() -> None:
    benchmarks = _requirements("benchmarks-requirements.txt")
    runtime = _product_runtime()
    assert runtime, "no runtime requirements found: has requirements.txt lost its layout?"
    assert {project: benchmarks.get(project) for project in runtime} == runtime


def test_product_resolve_carries_no_peer() -> None:
    product = _requirements("requirements.txt")
    assert not {"langgraph", "langgraph-checkpoint-postgres", "dbos"} & set(product)
