"""The sealing queue stays small: it is vacuumed after a fixed number of dead rows, whatever its history."""

from __future__ import annotations

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
