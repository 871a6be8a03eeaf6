"""Hostile rows and links must be named by verify, never turned into a traceback; the sealer must not choke."""

from __future__ import annotations

import uuid

from jarvis.agent.witnessing import seal_and_sign, verify_trail
from jarvis.config import Settings
from jarvis.db import Database, RuntimeSchema
from jarvis.db.audit import seal, verify
from jarvis_testkit import tamper
from jarvis_testkit.tamper import Trail, without_traceback

HUGE = "9" * 5_000


def forge_infinite_row(url: str, cycle: uuid.UUID) -> uuid.UUID:
    """Drop the date CHECK and insert, triggers off, a start row dated 'infinity' holding a 5,000-digit number."""
    forged = uuid.uuid4()
    with tamper.superuser_without_triggers(url) as conn:
        conn.execute("ALTER TABLE public.tool_calls DROP CONSTRAINT ck_tool_calls_created_at_loadable")
        conn.execute(
            "INSERT INTO public.tool_calls (id, cycle_id, tool_name, status, input, created_at) "
            "VALUES (%s, %s, 'transfer', 'started', %s::jsonb, 'infinity')",
            (forged, cycle, f'{{"to": "attacker", "usd": {HUGE}}}'),
        )
    return forged


def test_row_dated_infinity_with_the_check_dropped_is_named_not_a_traceback(
    isolated_database: Database, trail: Trail
) -> None:
    forged = forge_infinite_row(trail.url, trail.cycle)

    seal(isolated_database)
    report = without_traceback(lambda: verify(isolated_database))

    named = [p for p in report.problems if p.row_id is not None]
    assert [p.row_id for p in named] == [forged], report.summary()
    assert "not in the chain" in named[0].reason
    assert any("ck_tool_calls_created_at_loadable is missing" in str(p) for p in report.problems)


def test_row_dated_infinity_queued_by_hand_is_named(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    """Honest rows are dated before the seal that links them; this one is dated after every checkpoint."""
    seal_and_sign(isolated_database, witnessed)
    forged = forge_infinite_row(trail.url, trail.cycle)
    tamper.queue_by_hand(trail.url, "tool_calls", forged)

    seal_and_sign(isolated_database, witnessed)
    report = without_traceback(lambda: verify_trail(isolated_database, witnessed))

    assert forged in {p.row_id for p in report.problems}, report.summary()


def test_json_number_with_5000_digits_is_sealed_and_verifies(isolated_database: Database, trail: Trail) -> None:
    with tamper.as_app_role(trail.url) as app:
        app.execute(
            "INSERT INTO public.tool_calls (id, tool_name, status, input) "
            "VALUES (%s, 'transfer', 'started', %s::jsonb)",
            (uuid.uuid4(), f'{{"usd": {HUGE}, "fee": {HUGE}.{HUGE}, "tiny": 1e-4000}}'),
        )

    assert seal(isolated_database).linked == 1
    report = without_traceback(lambda: verify(isolated_database))

    assert report.ok and report.rows_checked == 8, report.summary()


def test_json_number_with_5000_digits_edited_in_is_named(isolated_database: Database, trail: Trail) -> None:
    tamper.edit(trail.url, "tool_calls", trail.starts[1], "input", f"'{{\"usd\": {HUGE}}}'")

    report = without_traceback(lambda: verify(isolated_database))

    assert [(p.row_id, p.reason) for p in report.problems] == [
        (trail.starts[1], "row content was changed after it was sealed")
    ], report.summary()


def test_schema_change_with_a_negative_id_is_named(isolated_database: Database, trail: Trail) -> None:
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute(
            "INSERT INTO public.schema_changes (id, table_name, action, columns) OVERRIDING SYSTEM VALUE "
            "VALUES (-1, 'payees', 'create_table', '{}')"
        )

    report = without_traceback(lambda: verify(isolated_database))

    assert not report.ok and report.problems[0].table == "schema_changes", report.summary()


def test_schema_change_link_relabelled_as_legacy_encoding_is_named(isolated_database: Database, trail: Trail) -> None:
    RuntimeSchema(isolated_database).create_table("payees", {"iban": "text"})
    seal(isolated_database)
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute("UPDATE public.audit_chain SET encoding = 1 WHERE table_name = 'schema_changes'")

    report = without_traceback(lambda: verify(isolated_database))

    assert not report.ok and report.problems[0].table == "schema_changes", report.summary()
