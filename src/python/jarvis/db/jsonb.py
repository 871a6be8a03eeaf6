"""Validating JSON values before they reach a JSONB column.

PostgreSQL refuses some values only after a round trip (`\\u0000`), and some
Python values have no JSON form at all (NaN, non-string keys, sets). Checking
up front gives an error that says where the bad value is, and guarantees that
nothing partial is written.

Every value is also held to a size cap, JARVIS_MAX_VALUE_BYTES (default 1 MiB):
the length of its compact JSON text in UTF-8. It is counted while the value is
walked, and the walk stops as soon as the count passes the cap, so a value far
over it (or one that shares sub-values to look small, like an expanded YAML
alias bomb) costs about as much work as the cap, never as much as the value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

from jarvis.config import ExitCode, JarvisError
from jarvis.db.base import JsonValue

MAX_DEPTH = 500
MAX_INT_BITS = 14_000
DEFAULT_MAX_VALUE_BYTES = 1024 * 1024
"""JARVIS_MAX_VALUE_BYTES when unset: 1 MiB of compact JSON per stored value."""

_max_value_bytes = DEFAULT_MAX_VALUE_BYTES


class InvalidJsonError(JarvisError, ValueError):
    """A value cannot be stored as JSONB; the message gives its path and the fix."""

    exit_code = ExitCode.BAD_INPUT


class ValueTooLargeError(InvalidJsonError):
    """A value's compact JSON text is larger than the cap (JARVIS_MAX_VALUE_BYTES)."""


def set_max_value_bytes(limit: int) -> None:
    """Set the process-wide cap; `open_database` sets it from JARVIS_MAX_VALUE_BYTES."""
    global _max_value_bytes
    if limit < 1:
        raise ValueError(f"the value size cap must be at least 1 byte, not {limit}")
    _max_value_bytes = limit


def max_value_bytes() -> int:
    """The cap stored values are held to: JARVIS_MAX_VALUE_BYTES of the most recently opened database."""
    return _max_value_bytes


def too_large(what: str, limit: int, at_least: int, unit: str = "bytes as compact JSON") -> ValueTooLargeError:
    """The error for a value over JARVIS_MAX_VALUE_BYTES, naming the value, the cap and the fix."""
    return ValueTooLargeError(
        f"{what} is larger than the {limit:,}-byte cap of JARVIS_MAX_VALUE_BYTES (at least {at_least:,} {unit}). "
        "Fix: store less (split it up, or store a reference to it), or raise JARVIS_MAX_VALUE_BYTES."
    )


def ensure_jsonb(value: Any, *, what: str = "value", max_bytes: int | None = None) -> JsonValue:
    """Return `value` unchanged if PostgreSQL can store it as JSONB and read it back identically.

    Its compact JSON text must also fit in `max_bytes` (default: JARVIS_MAX_VALUE_BYTES).
    """
    _Walk(what, _max_value_bytes if max_bytes is None else max_bytes).run(value)
    return value


class _Walk:
    """A depth-first walk with one iterator per open container: memory grows with depth, not with size."""

    def __init__(self, what: str, limit: int) -> None:
        self.what = what
        self.limit = limit
        self.size = 0  # bytes of compact JSON seen so far
        self.parts: list[str | int] = []  # parts[i]: the key or index taken in the i-th open container

    def path(self, depth: int) -> str:
        return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.parts[:depth])

    def add(self, count: int) -> None:
        self.size += count
        if self.size > self.limit:
            raise too_large(self.what, self.limit, self.size)

    def run(self, value: Any) -> None:
        stack: list[Iterator[tuple[str | int, Any]]] = []
        children = self.visit(value, 0)
        if children is not None:
            stack.append(children)
            self.parts.append(0)
        while stack:
            try:
                part, child = next(stack[-1])
            except StopIteration:
                stack.pop()
                self.parts.pop()
                continue
            self.parts[-1] = part
            children = self.visit(child, len(stack))
            if children is not None:
                stack.append(children)
                self.parts.append(0)

    def visit(self, item: Any, depth: int) -> Iterator[tuple[str | int, Any]] | None:
        """Check and count one value; for a container, the iterator over its members."""
        if depth > MAX_DEPTH:
            raise InvalidJsonError(
                f"{self.what} at {self.path(depth)}: nested deeper than {MAX_DEPTH} levels. Fix: flatten it."
            )
        if item is None or item is True:
            self.add(4)
        elif item is False:
            self.add(5)
        elif isinstance(item, int) and not isinstance(item, bool):
            if item.bit_length() > MAX_INT_BITS:
                raise InvalidJsonError(
                    f"{self.what} at {self.path(depth)}: an integer of {item.bit_length()} bits is too large to "
                    "read back (Python parses at most 4300 digits). Fix: store it as a string."
                )
            self.add(len(int.__repr__(item)))
        elif isinstance(item, float):
            self.check_float(item, depth)
            self.add(len(float.__repr__(item)))
        elif isinstance(item, str):
            self.add(self.text_size(item, depth, ""))
        elif isinstance(item, dict):
            self.add(1 + max(1, 2 * len(item)))  # braces, colons and commas; then at least 3 bytes a member
            if self.size + 3 * len(item) > self.limit:
                raise too_large(self.what, self.limit, self.size + 3 * len(item))
            return self.members(item, depth)
        elif isinstance(item, list | tuple):
            self.add(1 + max(1, len(item)))  # brackets and commas; then at least 1 byte an element
            if self.size + len(item) > self.limit:
                raise too_large(self.what, self.limit, self.size + len(item))
            return enumerate(item)
        else:
            raise InvalidJsonError(
                f"{self.what} at {self.path(depth)}: a {type(item).__name__} is not JSON. "
                "Fix: use dict, list, str, int, float, bool or None."
            )
        return None

    def check_float(self, item: float, depth: int) -> None:
        if not math.isfinite(item):
            raise InvalidJsonError(
                f"{self.what} at {self.path(depth)}: {item!r} is not a JSON number. "
                "Fix: store null or a string instead."
            )
        if abs(item) >= 1e16 or (item == 0 and math.copysign(1, item) < 0):
            # PostgreSQL's numeric prints 1e16 as 10000000000000000 (read back as an int, and for
            # 1e300 a different number) and has no negative zero: the value would not come back.
            raise InvalidJsonError(
                f"{self.what} at {self.path(depth)}: the float {item!r} would not read back as the same float "
                "from JSONB. Fix: store it as a string, or as an int if it is whole."
            )

    def members(self, item: dict[Any, Any], depth: int) -> Iterator[tuple[str | int, Any]]:
        for key, child in item.items():
            if not isinstance(key, str):
                raise InvalidJsonError(
                    f"{self.what} at {self.path(depth)}: key {key!r} is a {type(key).__name__}; JSON object keys "
                    "must be strings. Fix: convert the key with str()."
                )
            self.add(self.text_size(key, depth, ": key"))
            yield key, child

    def text_size(self, text: str, depth: int, suffix: str) -> int:
        """The bytes of `text` as a JSON string, once it is known to be storable and to fit."""
        if self.size + len(text) + 2 > self.limit:  # a character is at least one byte
            raise too_large(self.what, self.limit, self.size + len(text) + 2)
        if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
            return len(text) + 2  # nothing to escape, one byte a character: the common case, without encoding
        problem = text_problem(text)
        if problem is not None:
            raise InvalidJsonError(f"{self.what} at {self.path(depth)}{suffix}: {problem}")
        return len(json.dumps(text, ensure_ascii=False).encode("utf-8"))


def text_problem(text: str) -> str | None:
    """Why PostgreSQL cannot store `text` (a NUL, a lone surrogate), or None."""
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which PostgreSQL cannot store. Fix: remove it."
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains a lone surrogate ({text[exc.start]!r}), which is not valid Unicode. Fix: remove it."
    return None


def check_text(text: str, where: str, *, max_bytes: int | None = None) -> None:
    """Text PostgreSQL can store: no NUL (JSONB and text both refuse it), valid UTF-8 (no lone surrogates),
    at most `max_bytes` (default: JARVIS_MAX_VALUE_BYTES) bytes of UTF-8."""
    limit = _max_value_bytes if max_bytes is None else max_bytes
    if len(text) > limit:
        raise too_large(where, limit, len(text), "bytes of UTF-8")
    problem = text_problem(text)
    if problem is not None:
        raise InvalidJsonError(f"{where}: {problem}")
    size = len(text.encode("utf-8"))
    if size > limit:
        raise too_large(where, limit, size, "bytes of UTF-8")
