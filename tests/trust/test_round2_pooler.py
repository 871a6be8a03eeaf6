"""Round 2: session state a pooled neighbour leaves on the one server connection Jarvis gets next.

PgBouncer (transaction mode) pools per database and user and never resets a server connection
between clients. The neighbour is a client of the same bouncer, database and login as Jarvis; with
one server connection in the pool its state is certain to reach Jarvis' next transaction.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from jarvis.config import load_settings
from jarvis.db import Database, open_database
from jarvis.db.audit import ToolCallLog, verify
from jarvis_testkit.pgbouncer import PgBouncer, pgbouncer
from jarvis_testkit.tamper import Trail, within, without_traceback


@pytest.fixture
def single_connection_bouncer(postgres_admin_url: str) -> Iterator[PgBouncer]:
    with pgbouncer(postgres_admin_url, pool_mode="transaction", pool_size=1) as running:
        yield running


@pytest.fixture
def through(single_connection_bouncer: PgBouncer, trail: Trail) -> Iterator[Database]:
    """Jarvis (the app role, as always) through the bouncer."""
    url = single_connection_bouncer.url_for(trail.url)
    database = open_database(load_settings(database_url=url), url=url)
    yield database
    database.shutdown()


def neighbour(bouncer: PgBouncer, trail: Trail) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(bouncer.url_for(trail.url), autocommit=True, prepare_threshold=None, connect_timeout=5)


@pytest.mark.parametrize("cursor", ["verify_chain", "verify_tool_calls"])
def test_a_held_cursor_under_verifys_name_does_not_break_verify(
    single_connection_bouncer: PgBouncer, trail: Trail, through: Database, cursor: str
) -> None:
    """verify declares server-side cursors with fixed names; a WITH HOLD cursor outlives its client's
    transaction on the shared connection, so verify's DECLARE fails (DuplicateCursor, a traceback)."""
    with neighbour(single_connection_bouncer, trail) as conn:
        conn.execute(f"DECLARE {cursor} CURSOR WITH HOLD FOR SELECT 1")

        report = without_traceback(lambda: within(5, lambda: verify(through)))

    assert report.ok and f"{report.head_seq}:{report.head_hex}" == trail.head, report.summary()


def test_a_read_only_default_left_by_a_neighbour_does_not_lose_a_tool_calls_outcome(
    single_connection_bouncer: PgBouncer, trail: Trail, through: Database
) -> None:
    """The transfer was made; its completion row is what says so. The engine sets role and search_path
    per transaction, but not transaction_read_only: a neighbour's `SET default_transaction_read_only
    = on` makes the completion fail, and the call later reads as 'abandoned'."""
    tools = ToolCallLog(through)
    start = tools.start("transfer", {"to": "landlord", "usd": 10})
    with neighbour(single_connection_bouncer, trail) as conn:
        conn.execute("SET default_transaction_read_only = on")

        completion = within(5, lambda: tools.record_completion(start, "succeeded", output={"tx": "0xbeef"}))

    with psycopg.connect(trail.url) as conn:
        assert conn.execute("SELECT count(*) FROM public.tool_calls WHERE id = %s", (completion,)).fetchone() == (1,)
