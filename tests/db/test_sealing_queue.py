"""The sealing queue stays small: it is vacuumed after a fixed number of dead rows, whatever its history."""

from __future__ import annotations

import psycopg

from jarvis.db import Database
from jarvis.db.audit import ToolCallLog, seal


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
