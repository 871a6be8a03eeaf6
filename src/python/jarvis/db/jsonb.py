"""Validating JSON values before they reach a JSONB column.

PostgreSQL refuses some values only after a round trip (`\\u0000`), and some
Python values have no JSON form at all (NaN, non-string keys, sets). Checking
up front gives an error that says where the bad value is, and guarantees that
nothing partial is written.
"""

from __future__ import annotations

import math
from typing import Any

from jarvis.db.base import JsonValue

MAX_DEPTH = 500
MAX_INT_BITS = 14_000


class InvalidJsonError(ValueError):
    """A value cannot be stored as JSONB; the message gives its path and the fix."""


def ensure_jsonb(value: Any, *, what: str = "value") -> JsonValue:
    """Return `value` unchanged if PostgreSQL can store it as JSONB and read it back identically."""
    stack: list[tuple[Any, str, int]] = [(value, "$", 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidJsonError(f"{what} at {path}: nested deeper than {MAX_DEPTH} levels. Fix: flatten it.")
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, int):
            if item.bit_length() > MAX_INT_BITS:
                raise InvalidJsonError(
                    f"{what} at {path}: an integer of {item.bit_length()} bits is too large to read back "
                    "(Python parses at most 4300 digits). Fix: store it as a string."
                )
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidJsonError(
                    f"{what} at {path}: {item!r} is not a JSON number. Fix: store null or a string instead."
                )
            if abs(item) >= 1e16 or (item == 0 and math.copysign(1, item) < 0):
                # PostgreSQL's numeric prints 1e16 as 10000000000000000 (read back as an int, and for
                # 1e300 a different number) and has no negative zero: the value would not come back.
                raise InvalidJsonError(
                    f"{what} at {path}: the float {item!r} would not read back as the same float from JSONB. "
                    "Fix: store it as a string, or as an int if it is whole."
                )
        elif isinstance(item, str):
            check_text(item, f"{what} at {path}")
        elif isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise InvalidJsonError(
                        f"{what} at {path}: key {key!r} is a {type(key).__name__}; JSON object keys must be strings. "
                        "Fix: convert the key with str()."
                    )
                check_text(key, f"{what} at {path}: key")
                stack.append((child, f"{path}.{key}", depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{path}[{index}]", depth + 1) for index, child in enumerate(item))
        else:
            raise InvalidJsonError(
                f"{what} at {path}: a {type(item).__name__} is not JSON. "
                "Fix: use dict, list, str, int, float, bool or None."
            )
    return value


def check_text(text: str, where: str) -> None:
    """Text PostgreSQL can store: no NUL (JSONB and text both refuse it), valid UTF-8 (no lone surrogates)."""
    if "\x00" in text:
        raise InvalidJsonError(
            f"{where}: contains a NUL character (\\u0000), which PostgreSQL cannot store. Fix: remove it."
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidJsonError(
            f"{where}: contains a lone surrogate ({text[exc.start]!r}), which is not valid Unicode. Fix: remove it."
        ) from None
