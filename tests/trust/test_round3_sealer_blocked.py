"""Round 3, B7 second pass: a blocked or keyless sealer never leaves verify saying OK.

The attacks: an app-role session runs `BEGIN; SELECT * FROM jarvis_seal(1);` and keeps its
transaction open, holding the sealer's lock; the background sealer failed at every interval, logged
at INFO only, plain verify said "OK … waiting to be sealed", and a superuser edited the unsealed
rows, which the eventual seal then signed. And a JARVIS_SIGNING_KEY naming a missing file: the
sealer linked rows without signing, logged one WARNING and counted the seal as signed, and a verify
with the real key said OK over links past the newest checkpoint.

Now a row may wait at most `SEAL_BOUND` (60 s) in the queue, and a link at most as long past the
newest signed checkpoint, before every verify fails naming them; the sealer logs at ERROR. The tests
do not wait a minute: a superuser moves the queue entry's or the link's time back instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest

from jarvis.config import Settings
from jarvis.db import Database, open_database
from jarvis.db.audit import ToolCallLog
from jarvis.db.audit.autoseal import BackgroundSealer
from jarvis.db.audit.witnessed import seal_and_sign
from jarvis_testkit import tamper
from jarvis_testkit.operator import audit
from jarvis_testkit.processes import wait_for

UNCOVERED = "not covered by a signed checkpoint within 60 s: the sealer was blocked or could not sign"
INTERVAL = 1.0


def plain_verify(settings: Settings) -> tuple[int, str]:
    """`jarvis audit verify`, no flags, with the real key and witness log: what an operator runs."""
    return audit(settings, "verify")


@pytest.fixture
def neighbour(isolated_database_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """An app-role session that ran `jarvis_seal(1)` in a transaction it keeps open: it holds the sealer's lock."""
    with tamper.as_app_role(isolated_database_url, autocommit=False) as session:
        session.execute("SELECT * FROM public.jarvis_seal(1)").fetchall()
        yield session
        session.rollback()


def backend_pid(session: psycopg.Connection[tuple[object, ...]]) -> int:
    row = session.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(str(row[0]))


def test_verify_fails_over_a_row_queued_past_the_bound_while_a_session_blocks_the_sealer(
    witnessed: Settings,
    isolated_database: Database,
    isolated_database_url: str,
    neighbour: psycopg.Connection[tuple[object, ...]],
) -> None:
    call = ToolCallLog(isolated_database).start("transfer_funds", {"usd": 1000})
    with tamper.superuser_without_triggers(isolated_database_url) as superuser:
        # A minute and more, without waiting for it: the queue entry's time moved back.
        superuser.execute(
            "UPDATE public.audit_pending SET queued_at = queued_at - interval '2 minutes' WHERE row_id = %s",
            (call.id,),
        )
    tamper.edit(isolated_database_url, "tool_calls", call.id, "input", """'{"usd": 1}'""")  # unsealed: no trace
    code, output = plain_verify(witnessed)
    assert code == 1, output
    assert f"tool_calls row {call.id}" in output and UNCOVERED in output, output


def test_a_row_queued_within_the_bound_still_verifies_ok_as_waiting(
    witnessed: Settings,
    isolated_database: Database,
    isolated_database_url: str,
    neighbour: psycopg.Connection[tuple[object, ...]],
) -> None:
    ToolCallLog(isolated_database).start("transfer_funds", {"usd": 1000})
    code, output = plain_verify(witnessed)
    assert code == 0 and "1 row(s) waiting to be sealed" in output, output


def test_the_background_sealer_logs_an_error_naming_the_backend_that_blocks_it(
    witnessed: Settings,
    isolated_database_url: str,
    neighbour: psycopg.Connection[tuple[object, ...]],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It logged at INFO, every interval, for as long as the neighbour held the lock: nobody was told."""
    monkeypatch.setattr("jarvis.db.audit.autoseal.SEAL_BOUND", timedelta(0))  # past the bound, without waiting
    caplog.set_level(logging.INFO, logger="jarvis.audit")
    pid = backend_pid(neighbour)
    database = open_database(witnessed.model_copy(update={"seal_interval": INTERVAL}), url=isolated_database_url)
    try:
        ToolCallLog(database).start("transfer_funds", {"usd": 1000})  # wakes the sealer, which finds the lock held
        wait_for(
            lambda: any(
                r.levelno == logging.ERROR and f"backend {pid}" in r.getMessage()
                for r in caplog.records
                if r.name == "jarvis.audit"
            ),
            what=f"an ERROR from the background sealer naming backend {pid}",
        )
        sealer = database.background_sealer
        assert isinstance(sealer, BackgroundSealer) and sealer.signed == 0
    finally:
        neighbour.rollback()
        database.shutdown()


@pytest.fixture
def keyless(witnessed: Settings, isolated_database_url: str) -> Settings:
    """The same trail after one signed checkpoint, with JARVIS_SIGNING_KEY pointing at a missing file."""
    database = open_database(witnessed, url=isolated_database_url)
    try:
        ToolCallLog(database).start("first", {})
        seal_and_sign(database, witnessed, wait=5)
    finally:
        database.shutdown()
    assert witnessed.signing_key is not None
    return witnessed.model_copy(
        update={"signing_key": witnessed.signing_key.with_name("moved.key"), "seal_interval": INTERVAL}
    )


def test_a_sealer_without_its_signing_key_logs_errors_and_counts_no_checkpoint(
    keyless: Settings, isolated_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """It logged one WARNING and counted the unsigned seal as a checkpoint signed."""
    caplog.set_level(logging.INFO, logger="jarvis.audit")
    database = open_database(keyless, url=isolated_database_url)
    try:
        call = ToolCallLog(database).start("transfer_funds", {"usd": 1000})

        def unsigned_errors() -> int:
            return sum(
                1
                for r in caplog.records
                if r.name == "jarvis.audit" and r.levelno == logging.ERROR and "NOT signed" in r.getMessage()
            )

        wait_for(lambda: unsigned_errors() >= 2, what="an ERROR at every attempt of the keyless sealer")
        with psycopg.connect(isolated_database_url) as conn:
            linked = conn.execute("SELECT seq FROM public.audit_chain WHERE row_id = %s", (call.id,)).fetchall()
        assert linked, "the keyless sealer still links the row (the chain stays complete)"
        sealer = database.background_sealer
        assert isinstance(sealer, BackgroundSealer) and sealer.signed == 0
    finally:
        database.shutdown()


def test_verify_with_the_real_key_fails_over_links_sealed_unsigned_past_the_bound(
    keyless: Settings, witnessed: Settings, isolated_database_url: str
) -> None:
    database = open_database(keyless, url=isolated_database_url)
    try:
        call = ToolCallLog(database).start("transfer_funds", {"usd": 1000})
        seal_and_sign(database, keyless, wait=5)  # no key: it only seals, as the library's sealer did
    finally:
        database.shutdown()
    # A superuser rewrites the unsigned tail consistently, and a minute and more passes (the links' time moved back).
    tamper.edit(isolated_database_url, "tool_calls", call.id, "input", """'{"usd": 1}'""")
    tamper.recompute_chain(isolated_database_url)
    with tamper.superuser_without_triggers(isolated_database_url) as superuser:
        row = superuser.execute("SELECT seq FROM public.audit_chain WHERE row_id = %s", (call.id,)).fetchone()
        assert row is not None
        superuser.execute(
            "UPDATE public.audit_chain SET sealed_at = sealed_at - interval '2 minutes' WHERE seq >= %s",
            (row["seq"],),
        )
    code, output = plain_verify(witnessed)
    assert code == 1, output
    assert f"chain position {row['seq']}" in output and UNCOVERED in output, output


def test_links_past_the_newest_checkpoint_within_the_bound_still_verify_ok(
    keyless: Settings, witnessed: Settings, isolated_database_url: str
) -> None:
    """Between a seal and its signature there is always such a tail: no false alarm inside the bound."""
    database = open_database(keyless, url=isolated_database_url)
    try:
        ToolCallLog(database).start("transfer_funds", {"usd": 1000})
        seal_and_sign(database, keyless, wait=5)
    finally:
        database.shutdown()
    code, output = plain_verify(witnessed)
    assert code == 0, output
