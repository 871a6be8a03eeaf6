"""Every test the documentation names exists: a guarantee in the threat model is only as good as the test that
performs its attack, so a renamed or deleted test must not leave a claim standing on nothing."""

from __future__ import annotations

import re
from pathlib import Path

from docs.examples import ROOT

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)?(::[\w\[\]-]+)?")


def named_tests(document: Path) -> list[tuple[str, str | None]]:
    """(test file, test name or None) per `tests/…py::name` reference; a bare `::name` is the row's last file."""
    found: list[tuple[str, str | None]] = []
    for line in document.read_text().splitlines():
        last: str | None = None
        for match in REFERENCE.finditer(line):
            path, name = match.group(1), match.group(2)
            if path:
                last = path
                found.append((path, None))
            if name and last:
                found.append((last, name[2:].split("[")[0]))
    return found


def test_the_threat_model_names_tests() -> None:
    assert len(named_tests(ROOT / "docs" / "audit-trail.md")) > 100


def test_every_test_the_documentation_names_exists() -> None:
    missing = []
    for document in DOCUMENTS:
        for path, name in named_tests(document):
            source = ROOT / path
            if not source.is_file():
                missing.append(f"{document.name}: {path}")
            elif name is not None and not re.search(rf"def {re.escape(name)}\b", source.read_text()):
                missing.append(f"{document.name}: {path}::{name}")
    assert missing == []
