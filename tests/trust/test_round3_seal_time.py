"""Round 3, B2: a seal time bent by a superuser must not move the bounds that expose a backdated row.

The attack: for one seal, a superuser swaps `jarvis_seal()` for a copy that reports the database's
clock an hour early, then restores it (the catalog check is clean again). The agent signed that
time; verify took the newest checkpoint's seal time as the lower bound for later rows, so a
`transfer` forged into the closed cycle, dated half an hour ago and queued by hand, passed `verify`
and the offline bundle check. Now the signer refuses a seal time its own clock contradicts, and
readers bound rows by the signer's clock (`signed_at`) and report a log whose seal times go backwards.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from jarvis.agent.bundle import export_bundle, verify_bundle
from jarvis.agent.witnessing import (
    ImplausibleSealTimeError,
    seal_and_sign,
    trail_id,
    verify_trail,
    witness_log_path,
)
from jarvis.config import Settings
from jarvis.db import Database
from jarvis.db.audit import seal
from jarvis.witness import WitnessLog, load_signing_key
from jarvis_testkit import tamper
from jarvis_testkit.tamper import Trail, without_traceback


def swap_seal_clock(url: str, moment_sql: str) -> str:
    """As a superuser, make jarvis_seal() report `moment_sql` as its seal time; returns the original to restore."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_get_functiondef(p.oid) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public' AND p.proname = 'jarvis_seal'"
        ).fetchone()
        assert row is not None
        original = str(row[0])
        assert "pg_catalog.now()" in original
        conn.execute(original.replace("pg_catalog.now()", f"({moment_sql})"))
    return original


def restore(url: str, definition: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(definition)


def forge_transfer_into_closed_cycle(trail: Trail) -> uuid.UUID:
    """A superuser's `transfer` in the trail's closed cycle, dated half an hour ago, queued for the sealer by hand."""
    forged = uuid.uuid4()
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute(
            "INSERT INTO public.tool_calls (id, cycle_id, tool_name, status, input, created_at) "
            "VALUES (%s, %s, 'transfer_funds', 'started', %s, now() - interval '30 minutes')",
            (forged, trail.cycle, Jsonb({"to": "attacker", "usd": 9000})),
        )
    tamper.queue_by_hand(trail.url, "tool_calls", forged)
    return forged


def sign_what_the_database_says(database: Database, settings: Settings) -> None:
    """What an agent that believed the database's seal time did: seal, and sign that time as it came."""
    result = seal(database)
    checkpoint = load_signing_key(settings.signing_key_path()).sign(
        trail_id(database), result.head_seq, result.head_hash, result.sealed_at
    )
    WitnessLog(witness_log_path(settings, database)).append(checkpoint)


def backdated(report_problems: list[tuple[uuid.UUID | None, str]], forged: uuid.UUID) -> bool:
    return any(row_id == forged and "backdated" in reason for row_id, reason in report_problems)


def test_the_agent_refuses_to_sign_a_seal_time_an_hour_before_its_own_clock(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    seal_and_sign(isolated_database, witnessed)
    original = swap_seal_clock(trail.url, "pg_catalog.now() - interval '1 hour'")
    try:
        with pytest.raises(ImplausibleSealTimeError, match="clock"):
            seal_and_sign(isolated_database, witnessed)
    finally:
        restore(trail.url, original)
    forged = forge_transfer_into_closed_cycle(trail)
    seal_and_sign(isolated_database, witnessed)  # the next honest seal links the forged row

    report = without_traceback(lambda: verify_trail(isolated_database, witnessed))

    assert not report.ok, report.summary()
    assert backdated([(p.row_id, p.reason) for p in report.problems], forged), [str(p) for p in report.problems]


def test_verify_bounds_rows_by_the_signers_clock_when_a_checkpoint_carries_a_bent_seal_time(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    """The bent checkpoint was signed anyway (an agent from before this check): verify must not trust its time."""
    seal_and_sign(isolated_database, witnessed)
    original = swap_seal_clock(trail.url, "pg_catalog.now() - interval '1 hour'")
    try:
        sign_what_the_database_says(isolated_database, witnessed)
    finally:
        restore(trail.url, original)
    forged = forge_transfer_into_closed_cycle(trail)
    seal_and_sign(isolated_database, witnessed)

    report = without_traceback(lambda: verify_trail(isolated_database, witnessed))

    shown = [str(p) for p in report.problems]
    assert not report.ok, report.summary()
    assert backdated([(p.row_id, p.reason) for p in report.problems], forged), shown
    assert any("goes backwards" in text for text in shown), shown


def test_the_bundle_check_bounds_rows_by_the_signers_clock_when_a_checkpoint_carries_a_bent_seal_time(
    isolated_database: Database, trail: Trail, witnessed: Settings, tmp_path: Path
) -> None:
    seal_and_sign(isolated_database, witnessed)
    original = swap_seal_clock(trail.url, "pg_catalog.now() - interval '1 hour'")
    try:
        sign_what_the_database_says(isolated_database, witnessed)
    finally:
        restore(trail.url, original)
    forged = forge_transfer_into_closed_cycle(trail)
    seal_and_sign(isolated_database, witnessed)
    bundle = tmp_path / "trail.bundle"
    export_bundle(isolated_database, witnessed, bundle)

    offline = without_traceback(lambda: verify_bundle(bundle, witnessed.public_key_path()))

    assert not offline.ok, offline.summary()
    assert backdated([(p.row_id, p.reason) for p in offline.problems], forged), [str(p) for p in offline.problems]
