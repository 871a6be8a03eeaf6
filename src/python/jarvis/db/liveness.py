"""Which agents are running: a lease row per agent name, renewed by a heartbeat (migration 0010).

A running agent takes its name's lease at start, renews it every third of `JARVIS_LEASE_TTL`
from a heartbeat thread, and releases it at a clean shutdown; a crashed holder's lease
expires by the database's clock. No transaction, lock or server connection is held between
statements, so liveness survives `idle_in_transaction_session_timeout` and works through a
transaction pooler of any size (an advisory lock in a transaction held open did neither).

Only the app role may take, renew or release a lease, through SECURITY DEFINER functions:
a SELECT-only login can read who runs, never block an agent from starting. The holder id is
the holder's secret: the table keeps its SHA-256, and no role may read even that (whoever knew
the id could renew the lease with a tiny time to live and have a live agent's work closed).

An agent counts as running until its lease has been expired for one more of its own lifetimes
(`ttl`): a heartbeat delayed past the expiry (a busy pool, a short outage) takes the lease back
before a sweep calls the agent dead and closes its work as abandoned.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import text

from jarvis.db.engine import Database

log = logging.getLogger("jarvis.db.liveness")

BEATS_PER_TTL = 3
"""Renewals per lease lifetime: two may fail (a busy pool, a short outage) before the lease lapses."""


class Lease:
    """One holder's lease on an agent name. `take()` it, `keep()` it renewed, `release()` it. Thread-safe."""

    def __init__(self, database: Database, agent: str, *, ttl: float | None = None) -> None:
        self.database = database
        self.agent = agent
        self.ttl = float(ttl if ttl is not None else database.settings.lease_ttl)
        self.holder = uuid.uuid4()
        self.expires_at: datetime | None = None
        """The lease's expiry by the database's clock, as of the last take or renewal (None: not held)."""
        self.lost = False
        """The heartbeat found another holder's lease: another process runs this agent now."""
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def take(self) -> bool:
        """Take the lease if it is free, expired or already ours; False while another holder's is live."""
        self.expires_at = self._call("jarvis_take_lease", ttl=True)
        return self.expires_at is not None

    def renew(self) -> bool:
        """Push the expiry forward; False if the lease is no longer ours (it lapsed and was taken or released)."""
        self.expires_at = self._call("jarvis_renew_lease", ttl=True)
        return self.expires_at is not None

    def keep(self) -> None:
        """Renew the lease from a daemon thread every ttl/3 until `release()`."""
        if self._heartbeat is None:
            self._heartbeat = threading.Thread(target=self._beat, name=f"lease {self.agent}", daemon=True)
            self._heartbeat.start()

    def release(self) -> None:
        """Stop the heartbeat and delete the lease if it is still ours: the agent may start again at once.

        Best effort: a release that cannot reach the database leaves a lease that expires by itself.
        """
        self._stop.set()
        beat, self._heartbeat = self._heartbeat, None
        if beat is not None:
            beat.join(timeout=self.database.settings.connect_timeout + 5)
        if self.expires_at is None:
            return
        self.expires_at = None
        try:
            with self.database.begin() as conn:
                conn.execute(
                    text("SELECT public.jarvis_release_lease(:agent, :holder)"),
                    {"agent": self.agent, "holder": self.holder},
                )
        except Exception as error:  # never fail a shutdown over it: the lease expires by itself
            log.warning(
                "could not release the lease of agent %r (it expires within %g s): %s", self.agent, self.ttl, error
            )

    def _call(self, function: str, *, ttl: bool) -> datetime | None:
        with self.database.begin() as conn:
            until: datetime | None = conn.execute(
                text(f"SELECT public.{function}(:agent, :holder, :ttl)"),
                {"agent": self.agent, "holder": self.holder, "ttl": self.ttl},
            ).scalar()
        return until

    def _beat(self) -> None:
        interval = self.ttl / BEATS_PER_TTL
        renewed = time.monotonic()
        while not self._stop.wait(interval):
            try:
                if self.renew():
                    renewed = time.monotonic()
                    continue
                if self.take():  # it lapsed and was released meanwhile (a sweep closed our open work)
                    log.error(
                        "agent %r lost its lease for %.1f s (JARVIS_LEASE_TTL=%g) and took it again: work it had "
                        "open may have been closed as abandoned meanwhile",
                        self.agent,
                        time.monotonic() - renewed,
                        self.ttl,
                    )
                    renewed = time.monotonic()
                    continue
                self.lost = True
                log.error(
                    "agent %r lost its lease to another process (no renewal for %.1f s, JARVIS_LEASE_TTL=%g): "
                    "two processes now run this agent; stop this one",
                    self.agent,
                    time.monotonic() - renewed,
                    self.ttl,
                )
                return
            except Exception as error:  # a busy pool, an outage: the next beat tries again
                log.warning(
                    "could not renew the lease of agent %r (%.1f s since the last renewal, JARVIS_LEASE_TTL=%g): %s",
                    self.agent,
                    time.monotonic() - renewed,
                    self.ttl,
                    error,
                )


@contextmanager
def held_lease(database: Database, agent: str) -> Iterator[bool]:
    """Hold `agent`'s lease (kept renewed) while the block runs, if no one else holds it; yields whether we do."""
    lease = Lease(database, agent)
    ours = lease.take()
    if ours:
        lease.keep()
    try:
        yield ours
    finally:
        lease.release()


def running_agents(database: Database, names: Sequence[str]) -> list[str]:
    """Those of `names` presumed running: their lease has not been expired for a whole `ttl` yet.

    By the database's clock; read only (nothing is taken). The grace of one lifetime after expiry is
    what a sweep waits before closing an agent's work: see the module's docstring.
    """
    if not names:
        return []
    with database.connect() as conn:
        found = conn.execute(
            text(
                "SELECT l.agent FROM public.agent_leases l "
                "WHERE l.agent = ANY(CAST(:names AS text[])) "
                "AND l.expires_at + pg_catalog.make_interval(secs => l.ttl) > pg_catalog.clock_timestamp() "
                "ORDER BY l.agent"
            ),
            {"names": list(names)},
        ).scalars()
        return list(found)
