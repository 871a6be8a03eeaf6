"""The runnable ```python blocks of README.md and docs/*.md: found here, run by test_readme_examples.py and
by infra/wheel-check.sh (against the installed wheel). Standard library only, so the script can use it too.

A block that is deliberately not runnable (a fragment, pseudo-code) is marked with the comment
`<!-- not run -->` on the line before its opening fence.

    python3 tests/docs/examples.py OUT_DIR   # writes each block to OUT_DIR/NN-<file>-L<line>.py
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_RUN = "<!-- not run -->"
FENCE = re.compile(r"^```python[ \t]*\n(?P<code>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Example:
    path: str
    line: int
    code: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


def examples(text: str, path: str) -> list[Example]:
    """The runnable ```python blocks of one Markdown text, each with the line of its opening fence."""
    found = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        if before != NOT_RUN:
            found.append(Example(path, line, match.group("code")))
    return found


def documented_examples(root: Path = ROOT) -> list[Example]:
    documents = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    return [example for document in documents for example in examples(document.read_text(), document.name)]


def main(out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for number, example in enumerate(documented_examples(), 1):
        (out / f"{number:02d}-{Path(example.path).stem}-L{example.line}.py").write_text(example.code)


if __name__ == "__main__":
    main(sys.argv[1])
