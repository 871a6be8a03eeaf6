"""What most tests mean by "verify": seal what is queued (as the agent does), then verify."""

from __future__ import annotations

from typing import Any

from jarvis.db import Database
from jarvis.db.audit import ExpectedHead, VerifyReport, seal, verify


def seal_and_verify(database: Database, *, expect: str | None = None, **kwargs: Any) -> VerifyReport:
    seal(database, wait=30)
    return verify(database, expect=ExpectedHead.parse(expect) if expect else None, **kwargs)
