"""The sealing queue stays small: it is vacuumed after a fixed number of dead rows, whatever its history."""

from __future__ import annotations

import time

import psycopg

from jarvis.db import Database
from jarvis.db.audit import ToolCallLog, seal
from jarvis_testkit import tamper


def queue_options(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT reloptions FROM pg_class WHERE oid = 'public.audit_pending'::regclass").fetchone()
    assert row is not None
    return dict(option.split("=", 1) for option in row[0] or [])


def test_the_sealing_queue_is_vacuumed_after_a_thousand_dead_rows_not_a_fraction_of_the_table(
    migrated_database_url: str,
) -> None:
    options = queue_options(migrated_database_url)
    assert options["autovacuum_vacuum_scale_factor"] == "0"
    assert options["autovacuum_vacuum_threshold"] == "1000"
    assert options["autovacuum_vacuum_cost_delay"] == "0"


def test_sealing_empties_the_queue_it_was_given(isolated_database: Database, isolated_database_url: str) -> None:
    log = ToolCallLog(isolated_database)
    for n in range(5):
        with log.record("probe", {"n": n}) as call:
            call.succeed({"n": n})
    seal(isolated_database)
    with psycopg.connect(isolated_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM public.audit_pending").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM public.audit_chain").fetchone() == (10,)


def test_sealing_reads_and_empties_the_queue_without_scanning_its_dead_rows(
    isolated_database: Database, isolated_database_url: str
) -> None:
    """Dead queue entries wait for autovacuum; a seal that scanned the table would pay for all of them."""
    log = ToolCallLog(isolated_database)
    for round_ in range(3):  # earlier seals leave dead entries behind
        for n in range(20):
            with log.record("probe", {"round": round_, "n": n}) as call:
                call.succeed(None)
        if round_ < 2:
            seal(isolated_database)
    with tamper.as_app_role(isolated_database_url, autocommit=False) as app:  # a new session: fresh counters
        linked = app.execute("SELECT linked FROM public.jarvis_seal(5000)").fetchone()
        counters = app.execute(
            "SELECT seq_scan, idx_scan, n_tup_del FROM pg_stat_xact_user_tables "
            "WHERE relid = 'public.audit_pending'::regclass"
        ).fetchone()
        app.commit()
    assert linked == (40,)
    assert counters == (0, 1, 40)


def test_a_seal_starts_reading_the_queue_after_what_earlier_seals_emptied(
    isolated_database: Database, isolated_database_url: str
) -> None:
    """Dead entries of earlier seals are not even visited: a seal reads from the transaction where the last one
    stopped, so its cost does not depend on how far autovacuum is behind (here: switched off)."""
    with psycopg.connect(isolated_database_url, autocommit=True) as owner:
        owner.execute("ALTER TABLE public.audit_pending SET (autovacuum_enabled = false)")
        log = ToolCallLog(isolated_database)
        for n in range(300):  # 600 queue entries, sealed: 600 dead entries in the queue's heap and index
            with log.record("probe", {"n": n}) as call:
                call.succeed(None)
        newest = owner.execute("SELECT max(queued_by) FROM public.audit_pending").fetchone()
        # The start can only pass transactions that have ended: a writer still running anywhere on the server
        # (another test's) holds it back. Seal until it has passed ours, within a deadline.
        deadline = time.monotonic() + 120
        while True:
            seal(isolated_database)
            passed = owner.execute("SELECT queue_scan_from > %s FROM public.audit_seal_head", newest).fetchone()
            if passed == (True,) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert passed == (True,), "the seal's starting point never passed the entries it sealed"
    with log.record("probe", {"n": "last"}) as call:
        call.succeed(None)
    with tamper.as_app_role(isolated_database_url, autocommit=False) as app:  # a new session: fresh counters
        linked = app.execute("SELECT linked FROM public.jarvis_seal(5000)").fetchone()
        (index_entries_read,) = app.execute(  # this transaction's idx_tup_read
            "SELECT pg_stat_get_xact_tuples_returned('public.ix_audit_pending_queued_by'::regclass)"
        ).fetchone() or (None,)
        app.commit()
    assert linked == (2,)
    assert index_entries_read is not None and index_entries_read <= 10, index_entries_read
