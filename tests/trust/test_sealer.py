"""The sealer against a hostile queue, a session that holds it, and an app role that tries to block it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.types.json import Jsonb

from jarvis.db import Database
from jarvis.db.audit import SealerBusyError, ToolCallLog, seal, verify
from jarvis_testkit import tamper
from jarvis_testkit.tamper import Trail, within, without_traceback

ORPHANS = 5_001


def test_seal_returns_past_5001_queued_rows_that_do_not_exist_and_verify_names_them(
    isolated_database: Database, trail: Trail
) -> None:
    with tamper.superuser_without_triggers(trail.url) as conn:
        orphans = {
            row["row_id"]
            for row in conn.execute(
                "INSERT INTO public.audit_pending (table_name, row_id, queued_at) "
                "SELECT 'tool_calls', gen_random_uuid(), now() - interval '1 day' FROM generate_series(1, %s) "
                "RETURNING row_id",
                (ORPHANS,),
            )
        }
    honest = ToolCallLog(isolated_database).start("lookup", {"q": "rent"}).id

    result = within(10, lambda: seal(isolated_database, wait=5))

    assert result.linked == 1  # the honest row queued behind them is still linked
    report = without_traceback(lambda: verify(isolated_database))
    named = {p.row_id for p in report.problems if "queued row was deleted before it was sealed" in p.reason}
    assert named == orphans and len(report.problems) == ORPHANS, report.summary()
    assert all(p.table == "tool_calls" for p in report.problems)
    assert honest not in {p.row_id for p in report.problems}


def hold_the_sealer(url: str) -> tuple[psycopg.Connection[tuple[object, ...]], int]:
    """An app-role session that called jarvis_seal() and keeps its transaction open."""
    holder = psycopg.connect(url)
    role = holder.execute("SELECT app_role FROM public.trail_info").fetchone()
    assert role is not None
    holder.commit()
    holder.execute(f"SET ROLE {role[0]}")
    holder.execute("SELECT * FROM public.jarvis_seal(1)")
    pid = holder.info.backend_pid
    return holder, pid


def test_seal_gives_up_after_its_wait_naming_the_backend_that_holds_the_sealer(
    isolated_database: Database, trail: Trail
) -> None:
    holder, pid = hold_the_sealer(trail.url)
    try:
        with pytest.raises(SealerBusyError) as raised:
            within(5, lambda: seal(isolated_database, wait=0.5))
    finally:
        holder.close()
    assert f"backend {pid}" in str(raised.value), str(raised.value)
    assert f"pg_terminate_backend({pid})" in str(raised.value)


def test_verify_is_not_blocked_by_a_session_holding_the_sealer(isolated_database: Database, trail: Trail) -> None:
    holder, _ = hold_the_sealer(trail.url)
    try:
        report = within(5, lambda: verify(isolated_database))
    finally:
        holder.close()
    assert report.ok and f"{report.head_seq}:{report.head_hex}" == trail.head, report.summary()


@pytest.fixture
def app(isolated_database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with tamper.as_app_role(isolated_database_url) as conn:
        yield conn


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM public.audit_seal_head FOR UPDATE",
        "SELECT * FROM public.audit_seal_head FOR NO KEY UPDATE",
        "SELECT * FROM public.audit_seal_head FOR SHARE",
        "SELECT * FROM public.audit_seal_head FOR KEY SHARE",
        "LOCK TABLE public.audit_seal_head IN SHARE MODE",
        "LOCK TABLE public.audit_seal_head IN ACCESS EXCLUSIVE MODE",
        "LOCK TABLE public.audit_pending IN SHARE MODE",
        "LOCK TABLE public.audit_chain IN SHARE MODE",
        "LOCK TABLE public.tool_calls IN ACCESS EXCLUSIVE MODE",
        "LOCK TABLE public.schema_changes IN ACCESS EXCLUSIVE MODE",
    ],
)
def test_app_role_cannot_take_a_lock_that_blocks_the_sealer(
    app: psycopg.Connection[tuple[object, ...]], statement: str
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege), app.transaction():
        app.execute(statement)


def test_app_role_locks_it_may_take_do_not_block_the_sealer(
    isolated_database: Database, trail: Trail, isolated_database_url: str
) -> None:
    with tamper.as_app_role(isolated_database_url, autocommit=False) as app:
        for key in (0x4A415244, 0x4A415256, 0, 1, -1):  # the old sealer's and the migrations' keys among them
            app.execute("SELECT pg_advisory_lock(%s)", (key,))
            app.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
        app.execute("SELECT pg_advisory_lock(hashtext('jarvis.seal')), pg_advisory_lock(0, 0)")
        for table in ("audit_seal_head", "audit_pending", "audit_chain", "planning_cycles", "tool_calls"):
            app.execute(f"LOCK TABLE public.{table} IN ACCESS SHARE MODE")
        app.execute("SELECT * FROM public.audit_seal_head")
        # and an insert of its own left uncommitted
        app.execute(
            "INSERT INTO public.tool_calls (id, tool_name, status, input) VALUES (%s, 'probe', 'started', %s)",
            (uuid.uuid4(), Jsonb({})),
        )
        committed = ToolCallLog(isolated_database).start("lookup", {"q": "rent"}).id

        result = within(5, lambda: seal(isolated_database, wait=0.5))

        assert result.linked == 1
        app.rollback()
    report = verify(isolated_database)
    assert report.ok and report.pending == 0 and committed not in {p.row_id for p in report.problems}
