"""The database handle's background sealer: every audited row sealed and signed within JARVIS_SEAL_INTERVAL.

A row is only as safe as its seal: until it is linked into the chain and a signed checkpoint covers
it, a superuser's edit of it leaves no trace. Sealing used to happen when something asked (the
agent's cycle end, an MCP session's end, `verify --seal`), so a library caller, a long MCP session
or an HTTP server left rows open for as long as it ran. Now the first audit row a process appends
through a `Database` (app role) starts one daemon thread per handle; each append wakes it, and it
seals and signs (`jarvis.db.audit.witnessed.seal_and_sign`) at most every `seal_interval` seconds,
then once more when the handle shuts down (`Database.shutdown`, also run at exit). The asyncio API
wakes the sealer of its sync twin. A failure is logged and retried, never raised into a tool call.

A sealer that cannot do its job must not be quiet about it: a session holding the sealer's lock
(any app-role login can, with `BEGIN; SELECT * FROM jarvis_seal(1);` left open) is logged at ERROR,
naming the blocking backend, once rows have waited longer than `SEAL_BOUND` (after which every
verify fails over them); a seal without a signature (no signing key) is no checkpoint, is logged at
ERROR at every attempt and retried, and is not counted in `signed`.
"""

from __future__ import annotations

import logging
import math
import threading
import time

from jarvis.db.audit.chain import SEAL_BOUND, SealerBusyError, seal
from jarvis.db.audit.witnessed import ensure_signing_key, seal_and_sign
from jarvis.db.engine import Database
from jarvis.witness import Checkpoint, WitnessError

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
        """Checkpoints signed so far (a seal without a signature does not count): for tests and diagnostics."""
        self._pending = False
        self._waiting_since: float | None = None
        """When (monotonic) the oldest append not yet covered by a signed checkpoint woke this sealer."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._key_ready = False
        self._failures = 0
        self._thread = threading.Thread(target=self._run, name="jarvis-sealer", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Something was appended: seal it within the interval."""
        with self._lock:
            self._pending = True
            if self._waiting_since is None:
                self._waiting_since = time.monotonic()
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
            unsigned = self._seal()
        except Exception as error:  # never into the caller's tool call: logged, retried
            with self._lock:
                self._pending = True
            self._failures = min(self._failures + 1, 10)
            self._wake.set()
            waited = self._waited()
            if isinstance(error, SealerBusyError) and waited <= SEAL_BOUND.total_seconds():
                log.info("background seal failed (rows stay queued, retried): %s", error)
            elif isinstance(error, SealerBusyError):
                log.error(
                    "audit rows have waited %.0f s to be sealed (verify fails past %g s): %s. Rows stay queued "
                    "and the sealer keeps trying",
                    waited,
                    SEAL_BOUND.total_seconds(),
                    error,
                )
            else:
                # A contradicted checkpoint, an implausible seal time, a key that cannot sign: a person must act.
                level = logging.ERROR if isinstance(error, WitnessError) else logging.WARNING
                log.log(level, "background seal failed (rows stay queued, retried): %s", error)
            return False
        if unsigned is not None:  # linked, but no checkpoint covers it: retried every interval until one does
            with self._lock:
                self._pending = True
            self._failures = 0
            self._wake.set()
            log.error(
                "audit rows were sealed but NOT signed for %.0f s (verify fails past %g s): %s",
                self._waited(),
                SEAL_BOUND.total_seconds(),
                unsigned,
            )
            return False
        self._failures = 0
        with self._lock:  # appended during this seal: waiting since about now
            self._waiting_since = time.monotonic() if self._pending else None
        self.signed += 1
        return True

    def _waited(self) -> float:
        """Seconds the oldest append not yet covered by a signed checkpoint has waited (0: none)."""
        since = self._waiting_since
        return 0.0 if since is None else time.monotonic() - since

    def _seal(self) -> str | None:
        """Seal and sign; None when a checkpoint was signed, else why the seal went unsigned."""
        settings = self.database.settings
        if not self._key_ready:
            try:
                ensure_signing_key(settings)
                self._key_ready = True
            except Exception as error:  # still sealed below: the rows leave the queue, the chain stays complete
                seal(self.database, wait=self.interval)
                return f"{error}. Until a checkpoint is signed, a superuser's edit of these rows leaves no trace"
        signed: list[Checkpoint] = []
        seal_and_sign(self.database, settings, wait=self.interval, on_checkpoint=signed.append)
        if not signed:  # the key went away since (seal_and_sign then only seals)
            self._key_ready = False
            return f"no signing key at {settings.signing_key_path()} (JARVIS_SIGNING_KEY)"
        return None


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
