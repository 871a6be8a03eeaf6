"""Trail text made safe to show: visible control and bidi characters, pretty JSON, long values cut.

Jinja's autoescape stops markup; these stop the rest. A right-to-left override (U+202E) in a tool
name would make the page lie about what it shows, a NUL or an ANSI escape would be invisible, and a
1 MB value would make a page of megabytes: each becomes a visible `\\u…` escape or a cut with a
"show all" link to the value as plain text.
"""

from __future__ import annotations

import json
import re
from typing import Any

DISPLAY_LIMIT = 2_000
"""The most characters of one value a page shows; the rest is one click away, as text/plain."""

_INVISIBLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]"
)
"""Controls (tab and newline kept), zero-width and bidirectional formatting characters."""


def visible(text: str) -> str:
    """`text` with every control, zero-width and bidi formatting character shown as a `\\uXXXX` escape."""
    return _INVISIBLE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def pretty_json(value: Any) -> str:
    """`value` as indented JSON (non-ASCII kept readable), with invisible characters made visible."""
    if value is None:
        return ""
    return visible(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str))


def shown(value: Any, limit: int = DISPLAY_LIMIT) -> str:
    """A value for a table cell: strings as they are, anything else as compact JSON; cut at `limit`."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return visible(cut(text, limit))


def cut(text: str, limit: int = DISPLAY_LIMIT) -> str:
    """`text`, or its first `limit` characters and a note of how many there are."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} characters)"


def is_cut(text: str, limit: int = DISPLAY_LIMIT) -> bool:
    return len(text) > limit
