"""The embedded PostgreSQL fallback (initdb/pg_ctl from PATH) for platforms without a pgserver wheel."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from jarvis.db.embedded import PathPostgres, embedded_url, start_embedded_postgres
from jarvis_testkit.services import scratch_root, service_unavailable


@pytest.fixture
def path_cluster() -> Iterator[PathPostgres]:
    if not shutil.which("initdb") or not shutil.which("pg_ctl"):
        service_unavailable("initdb/pg_ctl", "not on PATH (install PostgreSQL server binaries)")
    root = Path(tempfile.mkdtemp(prefix="path-pg-", dir=scratch_root()))
    server = start_embedded_postgres(root, backend="path")
    assert isinstance(server, PathPostgres)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_fallback_starts_a_private_server_on_a_unix_socket(path_cluster: PathPostgres) -> None:
    with psycopg.connect(embedded_url(path_cluster), autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)  # no TCP: never collides


def test_fallback_reuses_a_running_server(path_cluster: PathPostgres) -> None:
    again = start_embedded_postgres(path_cluster.pgdata.parent, backend="path")
    with psycopg.connect(embedded_url(again)) as conn:
        assert conn.execute("SELECT current_setting('data_directory')").fetchone() == (str(path_cluster.pgdata),)
