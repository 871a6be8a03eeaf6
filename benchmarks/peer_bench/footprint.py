"""What a unit of work leaves behind: commits, rows, WAL and bytes on disk, from the server's own counters.

Counters come from pg_stat_database (per database: the contender's and, for DBOS, its system
database), read from a connection to another database so that reading them adds nothing. An
idle backend reports its counters up to ten seconds after its last transaction (PostgreSQL 15's
PGSTAT_IDLE_INTERVAL), so a reading is taken once they have not moved for longer than that.
WAL is the server's (pg_current_wal_lsn, read right around the work): exact only when nobody
else writes to the server. Bytes on disk are pg_total_relation_size (heap, indexes,
TOAST) summed over the database's own tables, with Jarvis' sealing queue (audit_pending) apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import psycopg

from jarvis.db.urls import with_database

QUEUE = "audit_pending"
QUIET = 12.5
"""Seconds the counters must stay still: an idle backend flushes them within PGSTAT_IDLE_INTERVAL (10 s)."""
DEADLINE = 45.0
"""A database that never goes quiet (DBOS polls its system database) is read after this long."""

SIZES_SQL = """
SELECT coalesce(sum(pg_total_relation_size(c.oid)) FILTER (WHERE c.relname <> %(queue)s), 0),
       coalesce(sum(pg_total_relation_size(c.oid)) FILTER (WHERE c.relname = %(queue)s), 0)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%'"""
COUNTERS_SQL = """
SELECT coalesce(sum(xact_commit), 0), coalesce(sum(tup_inserted), 0), coalesce(sum(tup_updated), 0),
       coalesce(sum(tup_deleted), 0)
FROM pg_stat_database WHERE datname = ANY(%s)"""
WAL_SQL = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"


@dataclass(frozen=True)
class Footprint:
    commits: float = 0
    inserted: float = 0
    updated: float = 0
    deleted: float = 0
    wal_bytes: float = 0
    disk_bytes: float = 0
    queue_bytes: float = 0

    def __sub__(self, other: Footprint) -> Footprint:
        return Footprint(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))

    def per(self, units: int) -> Footprint:
        return Footprint(*(getattr(self, f.name) / units for f in fields(self)))


@dataclass(frozen=True)
class Job:
    key: str
    databases: Sequence[str]
    units: int
    work: Callable[[], object]


class Meter:
    """Readings of a set of databases on one server; `measure` runs work between two of them."""

    def __init__(self, admin_url: str, databases: Sequence[str]) -> None:
        self.databases = list(databases)
        self.observer = psycopg.connect(with_database(admin_url, "postgres"), autocommit=True)
        self.sizers = {name: psycopg.connect(with_database(admin_url, name), autocommit=True) for name in databases}

    def close(self) -> None:
        for conn in (self.observer, *self.sizers.values()):
            conn.close()

    def sizes(self, databases: Sequence[str]) -> tuple[int, int]:
        """(bytes on disk without the queue, the queue's bytes), summed over `databases`."""
        disk = queue = 0
        for name in databases:
            row = self.sizers[name].execute(SIZES_SQL, {"queue": QUEUE}).fetchone()
            assert row is not None
            disk, queue = disk + int(row[0]), queue + int(row[1])
        return disk, queue

    def reading(self, databases: Sequence[str]) -> Footprint:
        """Counters and sizes (WAL is read around the work itself, `measure`)."""
        disk, queue = self.sizes(databases)
        commits, inserted, updated, deleted = self._settled_counters(databases)
        return Footprint(commits, inserted, updated, deleted, disk_bytes=disk, queue_bytes=queue)

    def _settled_counters(self, databases: Sequence[str]) -> tuple[int, ...]:
        deadline = time.monotonic() + DEADLINE
        previous, still_since = self._counters(databases), time.monotonic()
        while time.monotonic() - still_since < QUIET and time.monotonic() < deadline:
            time.sleep(1.0)
            current = self._counters(databases)
            if current != previous:
                previous, still_since = current, time.monotonic()
        return previous

    def _counters(self, databases: Sequence[str]) -> tuple[int, ...]:
        self.observer.execute("SELECT pg_stat_clear_snapshot()")
        row: Any = self.observer.execute(COUNTERS_SQL, (list(databases),)).fetchone()
        return tuple(int(value) for value in row)

    def _wal(self) -> int:
        row: Any = self.observer.execute(WAL_SQL).fetchone()
        return int(row[0])

    def measure(self, jobs: Sequence[Job]) -> dict[str, Footprint]:
        """What each job wrote per unit, in order; one job's closing reading opens the next (same databases).

        The size query on each database commits once per reading: taken off the commits."""
        found: dict[str, Footprint] = {}
        before: Footprint | None = None
        before_databases: Sequence[str] = ()
        for job in jobs:
            if before is None or before_databases != job.databases:
                before = self.reading(job.databases)
            wal_before = self._wal()
            job.work()
            wal = self._wal() - wal_before
            after = self.reading(job.databases)
            delta = after - before
            found[job.key] = replace(delta, commits=delta.commits - len(job.databases), wal_bytes=wal).per(job.units)
            before, before_databases = after, job.databases
        return found
