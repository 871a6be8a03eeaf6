"""Round 2: the witness log and the seal head, attacked where verify trusts one value per position.

Each test rewrites or rewinds something as a superuser, lets Jarvis do what it does every day
(seal and sign after a cycle, `audit verify --seal`), and checks that verify still names what was
done, without a traceback.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from jarvis.agent.bundle import BundleReport, export_bundle, verify_bundle
from jarvis.agent.witnessing import (
    CheckpointContradictedError,
    ImplausibleSealTimeError,
    checkpoints,
    seal_and_sign,
    trail_id,
    verify_trail,
    witness_log_path,
)
from jarvis.cli.main import app
from jarvis.config import Settings
from jarvis.db import Database, DatabaseError
from jarvis.db.audit import ToolCallLog, VerifyReport, seal, verify
from jarvis.witness import WitnessLog, load_signing_key
from jarvis_testkit import tamper
from jarvis_testkit.tamper import Trail, within, without_traceback

runner = CliRunner()


def problems(report: VerifyReport | BundleReport) -> list[str]:
    return [str(problem) for problem in report.problems]


# --- (b) two signed checkpoints for one position: only the last one is compared


def test_a_rewrite_is_not_laundered_by_the_next_checkpoint_at_the_same_position(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    """The superuser edits a sealed transfer and recomputes the chain (same length); the agent's next
    seal finds nothing queued and signs the rewritten head at the same position. The witness log now
    holds two valid checkpoints for that position, and `_check_chain` keeps one per position
    (`by_seq = {head.seq: head ...}`): the earlier, contradicting one is never compared."""
    seal_and_sign(isolated_database, witnessed)  # checkpoint 7:H of the honest chain
    tamper.edit(trail.url, "tool_calls", trail.starts[0], "input", '\'{"to": "attacker", "usd": 1500.25}\'')
    tamper.recompute_chain(trail.url)
    assert not verify_trail(isolated_database, witnessed).ok  # caught so far

    with pytest.raises(CheckpointContradictedError, match="checkpoint 7"):
        seal_and_sign(isolated_database, witnessed)  # the agent at its next cycle end / shutdown refuses
    # A checkpoint of the rewritten head signed some other way must not launder it either.
    with psycopg.connect(trail.url) as conn:
        head = conn.execute("SELECT chain_hash FROM public.audit_chain WHERE seq = 7").fetchone()
    assert head is not None
    forged = load_signing_key(witnessed.signing_key_path()).sign(
        trail_id(isolated_database), 7, bytes(head[0]), datetime.now(UTC)
    )
    WitnessLog(witness_log_path(witnessed, isolated_database)).append(forged)
    entries = checkpoints(witnessed, isolated_database)
    assert [c.seq for c in entries] == [7, 7] and entries[0].head_hash != entries[1].head_hash

    report = without_traceback(lambda: verify_trail(isolated_database, witnessed))

    assert not report.ok, f"a checkpoint of the honest chain contradicts it, yet verify says {report.summary()}"
    assert any("history was rewritten" in text for text in problems(report)), problems(report)


def test_cli_verify_seal_does_not_launder_a_rewrite(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    """The same through the operator's own `jarvis audit verify --seal`: it signs first, then verifies."""
    seal_and_sign(isolated_database, witnessed)
    tamper.edit(trail.url, "tool_calls", trail.starts[0], "input", '\'{"to": "attacker", "usd": 1500.25}\'')
    tamper.recompute_chain(trail.url)
    env = {
        "DATABASE_URL": trail.url,
        "REDIS_URL": "",
        "JARVIS_DATA_DIR": str(witnessed.data_dir),
        "JARVIS_SIGNING_KEY": str(witnessed.signing_key_path()),
        "JARVIS_WITNESS_LOG": str(witnessed.witness_log),
        "COLUMNS": "200",
    }

    result = runner.invoke(app, ["audit", "verify", "--seal"], env=env)

    assert result.exit_code == 1, result.output
    assert "history was rewritten" in result.output, result.output


# --- (b)(c) the seal head rewound: sealing breaks for good, verify says OK


def test_seal_head_rewound_by_a_superuser_is_reported_and_seal_fails_in_one_line(
    isolated_database: Database, trail: Trail
) -> None:
    """`audit_seal_head` set back to the genesis: every later seal hits the chain's primary key, so
    nothing is ever sealed again (the sealing window, in which edits go unnoticed, never closes).
    verify never looks at the seal head and calls the trail OK, with rows "waiting to be sealed"."""
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute("UPDATE public.audit_seal_head SET seq = 0, chain_hash = decode(repeat('00', 32), 'hex')")
    late = ToolCallLog(isolated_database).start("transfer", {"to": "landlord", "usd": 10}).id

    crash = None
    try:
        within(5, lambda: seal(isolated_database, wait=1))
    except DatabaseError:
        pass  # one line for a person: acceptable
    except Exception as error:  # an IntegrityError traceback: the agent only expects SealerBusyError
        crash = f"seal raised {type(error).__name__}: {str(error).splitlines()[0]}"
    report = without_traceback(lambda: verify(isolated_database))

    assert not report.ok, f"the sealer can never link {late} again, yet verify says {report.summary()}"
    assert any("audit_seal_head" in text for text in problems(report)), problems(report)
    assert crash is None, crash


# --- (c) a signed checkpoint whose sealed_at is the database's word: verify must not crash on it


def replace_sealed_at(url: str, moment: str) -> str:
    """Make jarvis_seal() report `moment` as the database's clock; returns the original definition."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_get_functiondef('public.jarvis_seal(integer)'::regprocedure)").fetchone()
        assert row is not None
        original = str(row[0])
        assert "pg_catalog.now()" in original
        conn.execute(original.replace("pg_catalog.now()", f"'{moment}'::timestamptz"))
    return original


def restore(url: str, definition: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(definition)


def test_checkpoint_sealed_at_year_1_does_not_crash_verify_or_the_bundle(
    isolated_database: Database, trail: Trail, witnessed: Settings, tmp_path: Path
) -> None:
    """For one seal a superuser makes the database's clock read year 1, then restores jarvis_seal (so the
    catalog check is clean). The agent signed what the database said; every later verify computes
    `sealed_at - 60 s` and overflows."""
    original = replace_sealed_at(trail.url, "0001-01-01 00:00:00+00")
    with pytest.raises(ImplausibleSealTimeError):
        seal_and_sign(isolated_database, witnessed)  # the agent refuses to sign what the database said...
    restore(trail.url, original)
    sign_by_hand(isolated_database, witnessed, "0001-01-01T00:00:00+00:00")  # ...but one signed anyway must not crash
    ToolCallLog(isolated_database).start("transfer", {"to": "landlord", "usd": 10})
    seal_and_sign(isolated_database, witnessed)

    report = without_traceback(lambda: verify_trail(isolated_database, witnessed))
    assert not report.ok, report.summary()  # a checkpoint dated year 1 is not plausible
    bundle = tmp_path / "trail.bundle"
    export_bundle(isolated_database, witnessed, bundle)
    offline = without_traceback(lambda: verify_bundle(bundle, witnessed.public_key_path()))
    assert not offline.ok, offline.summary()


def test_checkpoint_sealed_at_year_9999_does_not_crash_verify(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    original = replace_sealed_at(trail.url, "9999-12-31 23:59:59.999999+00")
    with pytest.raises(ImplausibleSealTimeError):
        seal_and_sign(isolated_database, witnessed)
    restore(trail.url, original)
    sign_by_hand(isolated_database, witnessed, "9999-12-31T23:59:59.999999+00:00")

    report = without_traceback(lambda: within(10, lambda: verify_trail(isolated_database, witnessed)))

    assert not report.ok, report.summary()


def sign_by_hand(database: Database, settings: Settings, sealed_at: str) -> None:
    """A checkpoint of the current head with the given seal time, signed with the real key."""
    with database.connect() as conn:
        seq, head = conn.execute(text("SELECT seq, chain_hash FROM public.audit_seal_head")).one()
    checkpoint = load_signing_key(settings.signing_key_path()).sign(
        trail_id(database), int(seq), bytes(head), datetime.fromisoformat(sealed_at)
    )
    WitnessLog(witness_log_path(settings, database)).append(checkpoint)


# --- (c) trail_info, the row every command reads first


def test_trail_info_deleted_by_a_superuser_is_one_line_not_a_traceback(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    seal_and_sign(isolated_database, witnessed)
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute("DELETE FROM public.trail_info")
    env = {
        "DATABASE_URL": trail.url,
        "REDIS_URL": "",
        "JARVIS_DATA_DIR": str(witnessed.data_dir),
        "JARVIS_SIGNING_KEY": str(witnessed.signing_key_path()),
        "JARVIS_WITNESS_LOG": str(witnessed.witness_log),
        "COLUMNS": "200",
    }

    result = runner.invoke(app, ["audit", "verify"], env=env)

    crashed = result.exception if result.exception and not isinstance(result.exception, SystemExit) else None
    assert crashed is None, f"traceback: {type(crashed).__name__}: {crashed}"
    assert result.exit_code != 0 and "trail_info" in result.output, result.output


def test_trail_id_changed_by_a_superuser_is_reported_against_every_checkpoint(
    isolated_database: Database, trail: Trail, witnessed: Settings
) -> None:
    """Defended: a new trail id makes every checkpoint 'of another trail'."""
    seal_and_sign(isolated_database, witnessed)
    with tamper.superuser_without_triggers(trail.url) as conn:
        conn.execute("UPDATE public.trail_info SET trail_id = %s", (uuid.uuid4(),))

    report = without_traceback(lambda: verify_trail(isolated_database, witnessed))

    assert not report.ok and any("is for trail" in text for text in problems(report)), report.summary()
