"""schema_changes is chained, and a number edited below float precision is caught in both encodings."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from jarvis.config import load_settings
from jarvis.db import Database, RuntimeSchema, open_database
from jarvis.db.audit import verify
from jarvis.db.audit.canonical import GENESIS, link_hash, row_hash
from jarvis.db.base import AUDIT_TABLES
from jarvis.db.migrate import upgrade
from jarvis_testkit import services, tamper
from jarvis_testkit.tamper import Trail, without_traceback
from jarvis_testkit.trail import seal_and_verify

EXACT = "3000.5"
BEYOND_FLOAT = "3000.50000000000000000001"


@pytest.fixture
def schema_change(isolated_database: Database, trail: Trail) -> int:
    """A runtime table created by the agent: one schema_changes row, sealed."""
    RuntimeSchema(isolated_database).create_table("payees", {"iban": "text", "limit_usd": "numeric"})
    report = without_traceback(lambda: seal_and_verify(isolated_database))
    assert report.ok, report.summary()
    with psycopg.connect(trail.url) as conn:
        row = conn.execute("SELECT id FROM public.schema_changes WHERE table_name = 'payees'").fetchone()
    assert row is not None
    return int(row[0])


def test_deleted_schema_change_is_reported(isolated_database: Database, trail: Trail, schema_change: int) -> None:
    with tamper.superuser_without_triggers(trail.url) as conn:
        assert conn.execute("DELETE FROM public.schema_changes WHERE id = %s", (schema_change,)).rowcount == 1

    report = without_traceback(lambda: verify(isolated_database))

    assert [(p.table, p.row_id, p.reason) for p in report.problems] == [
        ("schema_changes", uuid.UUID(int=schema_change), "row was deleted")
    ], report.summary()


def test_edited_schema_change_is_reported(isolated_database: Database, trail: Trail, schema_change: int) -> None:
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute(
            "UPDATE public.schema_changes SET columns = %s WHERE id = %s",
            (Jsonb({"iban": "text", "limit_usd": "numeric", "backdoor": "text"}), schema_change),
        )

    report = without_traceback(lambda: verify(isolated_database))

    assert [(p.table, p.row_id, p.reason) for p in report.problems] == [
        ("schema_changes", uuid.UUID(int=schema_change), "row content was changed after it was sealed")
    ], report.summary()


def test_number_edited_beyond_float_precision_is_reported_in_encoding_2(
    isolated_database: Database, trail: Trail
) -> None:
    with psycopg.connect(trail.url) as conn:
        row = conn.execute("SELECT encoding FROM public.audit_chain WHERE row_id = %s", (trail.decision,)).fetchone()
        assert row == (2,)
        reasoning = conn.execute(
            "SELECT reasoning::text FROM public.decision_log WHERE id = %s", (trail.decision,)
        ).fetchone()
    assert reasoning is not None and f'"amount": {EXACT}' in str(reasoning[0])
    tamper.edit(
        trail.url, "decision_log", trail.decision, "reasoning", f"reasoning || '{{\"amount\": {BEYOND_FLOAT}}}'"
    )

    report = without_traceback(lambda: verify(isolated_database))

    assert [p.row_id for p in report.problems] == [trail.decision], report.summary()


# --- a legacy (encoding 1) link: sealed by Python before migration 0003, as the old sealer did


def seal_like_before_0003(url: str) -> None:
    """The sealer of migrations 0001-0002: values loaded by psycopg (floats), hashed in Python, linked in order."""
    with psycopg.connect(url, row_factory=dict_row) as conn:
        pending = conn.execute("SELECT table_name, row_id FROM audit_pending ORDER BY queued_at, row_id").fetchall()
        rows: list[tuple[str, dict[str, Any]]] = []
        for table in AUDIT_TABLES:
            ids = [p["row_id"] for p in pending if p["table_name"] == table]
            with conn.cursor(binary=True) as cursor:
                found = cursor.execute(f"SELECT * FROM {table} WHERE id = ANY(%s)", (ids,)).fetchall()
            rows.extend((table, dict(row)) for row in found)
        rows.sort(key=lambda item: (item[1]["created_at"], AUDIT_TABLES.index(item[0]), item[1]["id"]))
        previous = GENESIS
        for seq, (table, row) in enumerate(rows, start=1):
            content = row_hash(table, row)
            previous = link_hash(previous, seq, table, row["id"], content)
            conn.execute(
                "INSERT INTO audit_chain (seq, table_name, row_id, row_hash, chain_hash) VALUES (%s, %s, %s, %s, %s)",
                (seq, table, row["id"], content, previous),
            )
        conn.execute("DELETE FROM audit_pending")


@pytest.fixture
def legacy_url(postgres_admin_url: str) -> Iterator[str]:
    with services.fresh_database(postgres_admin_url, "legacy_encoding") as url:
        yield url


def test_number_edited_beyond_float_precision_is_reported_in_legacy_encoding_1(legacy_url: str) -> None:
    settings = load_settings(database_url=legacy_url)
    owner = open_database(settings, url=legacy_url, role="owner")
    try:
        upgrade(owner, "0002")
        cycle, decision = uuid.uuid4(), uuid.uuid4()
        with psycopg.connect(legacy_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO planning_cycles (id, agent, status, goals) VALUES (%s, 'victim', 'started', %s)",
                (cycle, Jsonb(["pay rent"])),
            )
            conn.execute(
                "INSERT INTO decision_log (id, cycle_id, reasoning, decision) "
                f"VALUES (%s, %s, '{{\"amount\": {EXACT}}}', 'pay')",
                (decision, cycle),
            )
        seal_like_before_0003(legacy_url)
        upgrade(owner)
    finally:
        owner.shutdown()
    database = open_database(settings, url=legacy_url)
    try:
        before = verify(database)
        assert before.ok and before.rows_checked == 2, before.summary()
        with psycopg.connect(legacy_url) as conn:
            assert conn.execute("SELECT DISTINCT encoding FROM audit_chain").fetchall() == [(1,)]
        tamper.edit(legacy_url, "decision_log", decision, "reasoning", f"'{{\"amount\": {BEYOND_FLOAT}}}'")

        report = without_traceback(lambda: verify(database))

        assert [p.row_id for p in report.problems] == [decision], report.summary()
    finally:
        database.shutdown()
