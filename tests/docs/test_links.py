"""Every relative link of README.md and docs/*.md points at a file of the repository, so a split or a move
cannot leave a front page whose links lead nowhere."""

from __future__ import annotations

import re
from pathlib import Path

from docs.examples import ROOT

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCED = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def relative_links(document: Path) -> list[str]:
    text = FENCED.sub("", document.read_text())
    return [target for target in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def test_the_front_page_links_to_every_docs_page() -> None:
    linked = {target.split("#")[0] for target in relative_links(ROOT / "README.md")}
    pages = {f"docs/{page.name}" for page in DOCUMENTS[1:]}
    assert pages - linked == set()


def test_every_relative_link_points_at_an_existing_file() -> None:
    broken = [
        f"{document.relative_to(ROOT)}: {target}"
        for document in DOCUMENTS
        for target in relative_links(document)
        if target.split("#")[0] and not (document.parent / target.split("#")[0]).exists()
    ]
    assert len(DOCUMENTS) > 5 and broken == []
