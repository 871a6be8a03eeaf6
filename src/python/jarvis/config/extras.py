"""The optional parts of Jarvis and the pip extras that install them.

`pip install jarvis` is the core: PostgreSQL (embedded or yours), the sync and asyncio APIs,
the audit trail and the CLI. Redis (`[redis]`), MCP (`[mcp]`), the web view (`[ui]`) and the
OpenTelemetry export (`[otel]`) pull packages not every user wants, so the core never imports them
at import time: the code that needs one imports it through `require` (or an `OptionalModule`) and a
missing package becomes one actionable error naming the extra, instead of a `ModuleNotFoundError`
at start-up.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from jarvis.config.settings import ConfigError


class MissingExtraError(ConfigError):
    """A feature was asked for whose packages are not installed (exit 2: the fix is an install)."""


def require(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import `module`, or raise MissingExtraError naming the extra that installs it.

    Only a missing `module` (or a package it needs) is translated; any other import error is a bug
    and propagates unchanged.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] == "jarvis":
            raise  # a module of Jarvis itself is missing: a broken install, not a missing extra
        raise MissingExtraError(
            f"{feature} needs the Python package {error.name or module!r}, which is not installed. "
            f"Fix: pip install 'jarvis[{extra}]'"
        ) from None


class OptionalModule:
    """A module of an extra, imported on first attribute access (then behaves like the module).

    For modules whose names appear in code that runs only when the feature is used (a client
    constructor, an `except redis.RedisError` clause): the core imports without the extra, and the
    first use without it raises MissingExtraError.
    """

    def __init__(self, module: str, *, extra: str, feature: str) -> None:
        self._spec = (module, extra, feature)
        self._module: ModuleType | None = None

    def __getattr__(self, name: str) -> Any:
        if self._module is None:
            module, extra, feature = self._spec
            self._module = require(module, extra=extra, feature=feature)
        return getattr(self._module, name)
