"""The PgBouncer fixture is a real transaction pooler in front of the test PostgreSQL.

These tests pin down what "transaction pooling" means for a client, so tests
of Jarvis behind PgBouncer can rely on it: server connections are shared
between clients between transactions, session state set outside a
transaction leaks to whoever gets the connection next, and server-side
prepared statements collide (hence `prepare_threshold=None`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from jarvis.db.urls import database_name
from jarvis_testkit.pgbouncer import PgBouncer, pgbouncer


@pytest.fixture(scope="module")
def bouncer(postgres_admin_url: str) -> Iterator[PgBouncer]:
    """Transaction pooling with the default pool of 10 server connections."""
    with pgbouncer(postgres_admin_url) as running:
        yield running


@pytest.fixture
def single_connection_bouncer(postgres_admin_url: str) -> Iterator[PgBouncer]:
    """Transaction pooling over one server connection, fresh per test (tests leave session state on it)."""
    with pgbouncer(postgres_admin_url, pool_size=1) as running:
        yield running


def connect(url: str, *, autocommit: bool = True, prepare_threshold: int | None = None) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=autocommit, prepare_threshold=prepare_threshold, connect_timeout=5)


def backend_pid(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


def test_two_clients_run_queries_through_the_bouncer(bouncer: PgBouncer, empty_database_url: str) -> None:
    url = bouncer.url_for(empty_database_url)
    assert f"127.0.0.1:{bouncer.port}" in url and "host=" not in url
    with connect(url, autocommit=False) as first, connect(url, autocommit=False) as second:
        assert first.info.port == second.info.port == bouncer.port
        with first.transaction():
            first.execute("CREATE TABLE probe (id int PRIMARY KEY, body text NOT NULL)")
        # Interleaved transactions, the same parameterised statements over and over: with psycopg's
        # default prepare_threshold they would be prepared server-side after 5 runs.
        for i in range(20):
            client = first if i % 2 else second
            with client.transaction():
                client.execute("INSERT INTO probe (id, body) VALUES (%s, %s)", (i, f"row {i}"))
                row = client.execute("SELECT count(*) FROM probe WHERE id <= %s", (i,)).fetchone()
            assert row == (i + 1,)
        with second.transaction():
            database = second.execute("SELECT current_database()").fetchone()
            bodies = second.execute("SELECT body FROM probe ORDER BY id").fetchall()
    assert database == (database_name(empty_database_url),)
    assert [body for (body,) in bodies] == [f"row {i}" for i in range(20)]


def test_connected_clients_share_one_server_connection(
    single_connection_bouncer: PgBouncer, empty_database_url: str
) -> None:
    url = single_connection_bouncer.url_for(empty_database_url)
    with connect(url) as first, connect(url) as second:
        pid = backend_pid(first)
        # With session pooling and a pool of one, the second client would wait for the first to disconnect.
        assert backend_pid(second) == pid
        assert backend_pid(first) == pid


def test_session_state_set_outside_a_transaction_leaks_to_the_next_client(
    single_connection_bouncer: PgBouncer, empty_database_url: str
) -> None:
    url = single_connection_bouncer.url_for(empty_database_url)
    with connect(url) as first, connect(url) as second:
        first.execute("SET jarvis.probe = 'set by the first client'")
        assert second.execute("SELECT current_setting('jarvis.probe', true)").fetchone() == ("set by the first client",)
        # SET LOCAL ends with its transaction, so it stays with the client that set it.
        with first.transaction():
            first.execute("SET LOCAL jarvis.local_probe = 'first only'")
            assert first.execute("SELECT current_setting('jarvis.local_probe', true)").fetchone() == ("first only",)
        row = second.execute("SELECT current_setting('jarvis.local_probe', true)").fetchone()
        assert row is not None and row[0] in (None, "")


def test_session_pooling_keeps_each_clients_state_its_own(postgres_admin_url: str, empty_database_url: str) -> None:
    with pgbouncer(postgres_admin_url, pool_mode="session", pool_size=2) as session_bouncer:
        url = session_bouncer.url_for(empty_database_url)
        with connect(url) as first, connect(url) as second:
            assert backend_pid(first) != backend_pid(second)
            first.execute("SET jarvis.probe = 'set by the first client'")
            row = second.execute("SELECT current_setting('jarvis.probe', true)").fetchone()
            assert row is not None and row[0] in (None, "")


def test_server_side_prepared_statements_collide_between_clients(
    single_connection_bouncer: PgBouncer, empty_database_url: str
) -> None:
    if single_connection_bouncer.version >= (1, 21):
        pytest.skip("PgBouncer 1.21+ can track protocol-level prepared statements (max_prepared_statements)")
    url = single_connection_bouncer.url_for(empty_database_url)
    with connect(url, prepare_threshold=0) as first, connect(url, prepare_threshold=0) as second:
        first.execute("SELECT 1")  # prepared as _pg3_0 on the one server connection
        with pytest.raises(psycopg.errors.DuplicatePreparedStatement):
            second.execute("SELECT 2")  # its own _pg3_0: the same name on the same server connection


def test_an_extra_login_connects_as_itself(postgres_admin_url: str, empty_database_url: str) -> None:
    login = "jarvis_t_login_" + uuid.uuid4().hex[:8]
    password = uuid.uuid4().hex
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(login), password))
    try:
        with pgbouncer(postgres_admin_url, users={login: password}) as running:
            with connect(running.url_for(empty_database_url, user=login)) as conn:
                assert conn.execute("SELECT current_user").fetchone() == (login,)
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))


def test_url_for_points_at_the_bouncer() -> None:
    bouncer = PgBouncer(
        port=6543,
        workdir=Path("/nonexistent"),
        server_url="postgresql://postgres@/postgres?host=/tmp/sockets",
        pool_mode="transaction",
        pool_size=10,
        users={"postgres": "", "jarvis_login": ""},
        version=(1, 18, 0),
    )
    assert bouncer.url == "postgresql://postgres@127.0.0.1:6543/postgres"
    assert (
        bouncer.url_for("postgresql://postgres:secret@/jarvis_t_x?host=/tmp/sockets&connect_timeout=3")
        == "postgresql://postgres:secret@127.0.0.1:6543/jarvis_t_x?connect_timeout=3"
    )
    assert (
        bouncer.url_for("postgresql://postgres:secret@db.example:5433/jarvis", user="jarvis_login")
        == "postgresql://jarvis_login@127.0.0.1:6543/jarvis"
    )
    with pytest.raises(ValueError, match="users=\\('intruder',\\)"):
        bouncer.url_for("postgresql://intruder@127.0.0.1/jarvis")
