"""Helpers of the Redis tests: waiting on a condition with a deadline (never a fixed sleep), Redis log capture."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

T = TypeVar("T")

DEADLINE_S = 20.0
"""Generous on purpose: conditions usually hold within milliseconds, but a loaded 2-core CI machine may stall."""


def wait_until(condition: Callable[[], T], what: str, *, timeout: float = DEADLINE_S, interval: float = 0.01) -> T:
    """Poll `condition` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., Any]:
    return wait_until


@pytest.fixture
def cache_warnings(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The warnings `jarvis.cache` logged so far in this test."""
    caplog.set_level(logging.INFO, logger="jarvis.cache")

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "jarvis.cache" and r.levelno == logging.WARNING]

    return warnings


@pytest.fixture(scope="session")
def respell() -> Iterator[Callable[[str], str]]:
    """Another spelling of a PostgreSQL URL that reaches the same server and database.

    TCP: `127.0.0.1` and `localhost` swapped. A Unix socket (the embedded
    server): the socket directory through a symbolic link.
    """
    with tempfile.TemporaryDirectory(prefix="jrs-") as links:

        def respelled(url: str) -> str:
            parts = urlsplit(url)
            if parts.hostname in ("127.0.0.1", "localhost"):
                other = "localhost" if parts.hostname == "127.0.0.1" else "127.0.0.1"
                return urlunsplit(parts._replace(netloc=parts.netloc.replace(parts.hostname, other)))
            query = dict(parse_qsl(parts.query))
            assert "host" in query and query["host"].startswith("/"), f"cannot respell {url}"
            link = Path(links) / f"s{len(list(Path(links).iterdir()))}"
            link.symlink_to(query["host"], target_is_directory=True)
            return urlunsplit(parts._replace(query=urlencode({**query, "host": str(link)})))

        yield respelled
