"""Verify in the background, one run at a time, with progress a page can poll.

It reads and never writes: `verify_trail` runs in a REPEATABLE READ READ ONLY transaction as the
auditor role, and the witness log and public key are only read. Starting it twice while it runs
starts it once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from jarvis.agent.witnessing import verify_trail
from jarvis.config import JarvisError, Settings
from jarvis.db import Database
from jarvis.db.audit import AuditQueries, VerifyReport


@dataclass(frozen=True)
class VerifyProgress:
    """A snapshot for the page: state is idle, running, done (see `report`) or error (see `error`)."""

    state: str
    done: int
    total: int
    started_at: datetime | None
    finished_at: datetime | None
    report: VerifyReport | None
    error: str | None

    @property
    def percent(self) -> int:
        if self.state == "done":
            return 100
        return min(99, 100 * self.done // self.total) if self.total else 0


class VerifyJob:
    """The one background verify of this UI process."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self.settings = settings
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._progress = VerifyProgress("idle", 0, 0, None, None, None, None)

    def start(self) -> bool:
        """Start a verify unless one is running; True if this call started it."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            head = AuditQueries(self.database).trail_head()
            # An estimate until verify says (`planned`): every row read once and every link checked once.
            total = max(1, 2 * head.seq + head.pending)
            self._progress = VerifyProgress("running", 0, total, datetime.now(UTC), None, None, None)
            self._thread = threading.Thread(target=self._run, name="jarvis-ui-verify", daemon=True)
            self._thread.start()
            return True

    def progress(self) -> VerifyProgress:
        return self._progress

    def wait(self, timeout: float) -> VerifyProgress:
        """The progress once the running verify (if any) ended, or after `timeout` seconds."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self._progress

    def _plan(self, total: int) -> None:
        """verify's own count of the work (rows plus links) replaces the estimate made at start."""
        current = self._progress
        self._progress = VerifyProgress("running", current.done, max(1, total), current.started_at, None, None, None)

    def _advance(self, done: int) -> None:
        current = self._progress
        self._progress = VerifyProgress("running", done, max(current.total, done), current.started_at, None, None, None)

    def _run(self) -> None:
        started = self._progress.started_at
        try:
            report = verify_trail(self.database, self.settings, progress=self._advance, planned=self._plan)
        except JarvisError as error:
            self._progress = VerifyProgress(
                "error", self._progress.done, self._progress.total, started, datetime.now(UTC), None, str(error)
            )
            return
        except Exception as error:  # shown on the page, never a dead thread and a bar stuck forever
            self._progress = VerifyProgress(
                "error",
                self._progress.done,
                self._progress.total,
                started,
                datetime.now(UTC),
                None,
                f"{type(error).__name__}: {error}",
            )
            return
        self._progress = VerifyProgress(
            "done", self._progress.total, self._progress.total, started, datetime.now(UTC), report, None
        )
