"""The database handle's background sealer: every audited row sealed and signed within JARVIS_SEAL_INTERVAL.

A row is only as safe as its seal: until it is linked into the chain and a signed checkpoint covers
it, a superuser's edit of it leaves no trace. Sealing used to happen when something asked (the
agent's cycle end, an MCP session's end, `verify --seal`), so a library caller, a long MCP session
or an HTTP server left rows open for as long as it ran. Now the first audit row a process appends
through a `Database` (app role) starts one daemon thread per handle; each append wakes it, and it
seals and signs (`jarvis.db.audit.witnessed.seal_and_sign`) at most every `seal_interval` seconds,
then once more when the handle shuts down (`Database.shutdown`, also run at exit). The asyncio API
wakes the sealer of its sync twin. A failure is logged and retried, never raised into a tool call.
"""

from __future__ import annotations

import logging
import math
import threading
import time

from jarvis.db.audit.chain import SealerBusyError
from jarvis.db.audit.witnessed import (
    CheckpointContradictedError,
    ImplausibleSealTimeError,
    ensure_signing_key,
    seal_and_sign,
)
from jarvis.db.engine import Database

log = logging.getLogger("jarvis.audit")

MAX_BACKOFF = 60.0
"""Seconds between attempts at most, while sealing keeps failing (a database outage, a refused signature)."""

STOP_TIMEOUT = 60.0
"""Seconds a shutdown waits for the final seal and signature."""

_starting = threading.Lock()


class BackgroundSealer:
    """Seals and signs what its database handle appended, at most every `interval` seconds."""

    def __init__(self, database: Database, interval: float) -> None:
        self.database = database
        self.interval = interval
        self.signed = 0
        """Checkpoints signed so far (a seal without a key counts too): for tests and diagnostics."""
        self._pending = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._key_ready: bool | None = None
        self._failures = 0
        self._thread = threading.Thread(target=self._run, name="jarvis-sealer", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Something was appended: seal it within the interval."""
        with self._lock:
            self._pending = True
        self._wake.set()

    def stop(self) -> None:
        """Seal and sign what is pending one last time, then end the thread (waits up to STOP_TIMEOUT)."""
        self._stopping.set()
        self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(STOP_TIMEOUT)

    def _run(self) -> None:
        last = -math.inf
        while not self._stopping.is_set():
            self._wake.wait()
            delay = last + self.interval - time.monotonic()
            if delay > 0 and self._stopping.wait(delay):
                break
            self._wake.clear()
            if self._stopping.is_set():
                break
            last = time.monotonic()
            if not self._seal_pending() and self._stopping.wait(min(MAX_BACKOFF, self.interval * 2**self._failures)):
                break
        self._seal_pending()

    def _seal_pending(self) -> bool:
        """One seal and signature if anything is pending; False when it failed (it stays pending)."""
        with self._lock:
            if not self._pending:
                return True
            self._pending = False
        try:
            self._seal()
        except Exception as error:  # never into the caller's tool call: logged, retried
            with self._lock:
                self._pending = True
            self._failures = min(self._failures + 1, 10)
            self._wake.set()
            level = (
                logging.ERROR
                if isinstance(error, CheckpointContradictedError | ImplausibleSealTimeError)
                else (logging.INFO if isinstance(error, SealerBusyError) else logging.WARNING)
            )
            log.log(level, "background seal failed (rows stay queued, retried): %s", error)
            return False
        self._failures = 0
        self.signed += 1
        return True

    def _seal(self) -> None:
        settings = self.database.settings
        if self._key_ready is None:
            try:
                ensure_signing_key(settings)
                self._key_ready = True
            except Exception as error:
                self._key_ready = False
                log.warning("the background sealer seals without signing: %s", error)
        seal_and_sign(self.database, settings, wait=self.interval)


def wake_sealer(database: Database) -> None:
    """Tell `database`'s background sealer that a row was appended (starting it on first use).

    Only a handle of the app role seals (an owner's or auditor's never appends audit rows this way),
    and not when JARVIS_SEAL_INTERVAL is 0 or the handle is shut down.
    """
    sealer = database.background_sealer
    if sealer is None:
        if database.role != "app" or database.settings.seal_interval <= 0 or database.closed:
            return
        with _starting:
            sealer = database.background_sealer
            if sealer is None:
                sealer = BackgroundSealer(database, database.settings.seal_interval)
                database.background_sealer = sealer
    if isinstance(sealer, BackgroundSealer):
        sealer.wake()
